"""``flare-chain node run``: run one node's daemon from its TOML config until stopped."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["build_daemon", "register"]

log = logging.getLogger("flare_chain.node")

_CONNECT_RETRY_S = 60.0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    node = subparsers.add_parser("node", help="run a participant node")
    sub = node.add_subparsers(dest="node_command", required=True, metavar="ACTION")
    run = sub.add_parser("run", help="follow the coordinator and take part in every round until stopped",
                         description="Runs one node: trains, pins and submits each round, claims a committee "
                                     "seat when its VRF selects it, proposes or votes, pulls the committed "
                                     "adapter. State lives in <data_dir>/state.sqlite, so a restart resumes "
                                     "without sending anything twice. SIGTERM stops it between steps. "
                                     "FLARE_FAULT=<step>:<when> injects a crash (tests only).")
    run.add_argument("--config", type=Path, required=True, help="the node's TOML file (see nodes/)")
    run.add_argument("--max-rounds", type=int, default=None, metavar="N",
                     help="exit after pulling the outcome of N rounds (default: run until stopped)")
    run.add_argument("--json-logs", dest="node_json_logs", action="store_true",
                     help="emit log lines as JSON objects (same as the global --json-logs)")
    run.set_defaults(func=_run)


def _connect(rpc_url: str, deadline_s: float) -> Any:
    """Connect to the RPC endpoint, retrying with backoff for ``deadline_s`` (a node may start before its chain)."""
    from flare_chain.chain.deployment import connect_rpc
    from flare_chain.errors import ChainError

    began, delay = time.monotonic(), 0.5
    while True:
        try:
            return connect_rpc(rpc_url)
        except ChainError as exc:
            if time.monotonic() - began > deadline_s:
                raise
            log.warning("%s; retrying in %.1fs", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def build_daemon(config: Any, *, show_progress: bool | None = None) -> Any:
    """A ready ``Daemon`` for a validated ``NodeConfig``: chain, keystore, IPFS endpoint, model, data, state."""
    from flare_chain.chain.deployment import open_address, open_deployment
    from flare_chain.node.daemon import Daemon, DaemonSettings, Faults
    from flare_chain.node.endpoint import EndpointStore
    from flare_chain.node.keys import load_account, read_password
    from flare_chain.node.state import NodeState

    s = config.node
    texts = config.data.load()  # data first: a bad record stops the node before it connects, trains or pins
    account = load_account(s.keystore, read_password(env_name=s.password_env, file=s.password_file))
    w3 = _connect(config.chain.rpc_url, _CONNECT_RETRY_S)
    if config.chain.deployment is not None:
        _deployment, coordinator = open_deployment(w3, config.chain.deployment,
                                                   log_chunk_blocks=config.chain.log_chunk_blocks)
    else:  # checked before any state is written: an address without the coordinator's code stops here (exit 4)
        coordinator = open_address(w3, config.chain.contract, source="node config chain.contract",
                                   log_chunk_blocks=config.chain.log_chunk_blocks)
    data_dir = Path(s.data_dir)
    store = EndpointStore.connect(config.ipfs.endpoint, data_dir / "ipfs-cache", timeout_s=config.ipfs.timeout_s,
                                  retries=config.ipfs.retries, backoff_s=config.ipfs.backoff_s)
    if config.model.model_dir is not None:
        model_dir = Path(config.model.model_dir)
    else:
        from flare_chain.lora.reference import ensure_reference_model

        model_dir = ensure_reference_model(show_progress=bool(show_progress))
    tty = sys.stderr.isatty() if show_progress is None else show_progress
    settings = DaemonSettings(
        poll_interval_s=config.chain.poll_interval_s, confirmations=config.chain.confirmations,
        participate=config.committee.participate, vote_tolerance=config.committee.vote_tolerance,
        stake_wei=config.committee.stake_wei, backoff_s=max(config.ipfs.backoff_s, 0.5), show_progress=tty,
        compression=config.compression.powersgd_config(), device=config.model.device,
    )
    return Daemon(name=s.name, account=account, coordinator=coordinator, store=store,
                  state=NodeState(data_dir / "state.sqlite"), texts=texts, model_dir=model_dir,
                  params=config.train_params(), settings=settings, faults=Faults.from_env(node=s.name))


def _run(args: argparse.Namespace) -> int:
    from flare_chain.logs import configure_logging
    from flare_chain.node.config import load_node_config

    if args.node_json_logs:
        configure_logging(logging.getLevelName(logging.getLogger("flare_chain").level), json_lines=True)
    config = load_node_config(args.config)
    daemon = build_daemon(config)
    daemon.install_signal_handlers()
    try:
        return daemon.run(max_rounds=args.max_rounds)
    finally:
        daemon.state.close()
