"""``flare-chain node run`` (one node's daemon, a service) and ``node status`` (what it did, from its files)."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flare_chain.node.status_chain import DEFAULT_CHAIN_TIMEOUT_S  # light: web3 only when the chain is asked

__all__ = ["build_daemon", "connect_with_retry", "register"]

log = logging.getLogger("flare_chain.node")

_MAX_CONNECT_DELAY_S = 30.0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    node = subparsers.add_parser("node", help="run a participant node")
    sub = node.add_subparsers(dest="node_command", required=True, metavar="ACTION")
    run = sub.add_parser("run", help="follow the coordinator and take part in every round until stopped",
                         description="Runs one node: trains, pins and submits each round, claims a committee "
                                     "seat when its VRF selects it, proposes or votes, pulls the committed "
                                     "adapter. State lives in <data_dir>/state.sqlite, so a restart resumes "
                                     "without sending anything twice. SIGTERM or SIGINT stops it between steps and "
                                     "exits 0, also one that comes while it is still starting. "
                                     "FLARE_FAULT=<step>:<when> injects a crash (tests only).")
    run.add_argument("--config", type=Path, required=True, help="the node's TOML file (see nodes/)")
    run.add_argument("--max-rounds", type=int, default=None, metavar="N",
                     help="exit after pulling the outcome of N rounds (default: run until stopped)")
    run.add_argument("--json-logs", dest="node_json_logs", action="store_true",
                     help="emit log lines as JSON objects (same as the global --json-logs)")
    run.add_argument("--log-file", type=Path, default=None, metavar="PATH",
                     help="also append every log line to this file (stderr keeps them too)")
    run.set_defaults(func=_run, keeps_stop_request=True)
    status = sub.add_parser("status", help="what the node did per round (from its data_dir) and whether its updates were "
                                                 "accepted (from the chain, when it answers)",
                            description="Per round: the round's outcome and whether this node's update is in "
                                        "the accepted set, each step's state, transaction hash and gas, the vote, "
                                        "the last error, the compression residual, the adapter pulled; and where "
                                        "the node resumes. Reads <data_dir>/state.sqlite read-only, so it works "
                                        "beside a running node and for a stopped one; outcomes and acceptance come "
                                        "from the config's chain when it answers (short timeouts, read-only), "
                                        "otherwise from the state folder, marked 'chain unreachable'.")
    status.add_argument("--config", type=Path, required=True, help="the node's TOML file (see nodes/)")
    status.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    status.add_argument("--rounds", type=int, default=None, metavar="N", help="show only the last N rounds")
    status.add_argument("--chain-timeout", type=float, default=DEFAULT_CHAIN_TIMEOUT_S, metavar="SECONDS",
                        help="timeout of each call to the chain; the whole query stops after four times this")
    status.add_argument("--no-chain", action="store_true",
                        help="do not ask the chain; show what the state folder knows")
    status.set_defaults(func=_status)


def connect_with_retry(rpc_url: str, stop: threading.Event, *, connect: Callable[[str], Any] | None = None,
                       max_delay_s: float = _MAX_CONNECT_DELAY_S) -> Any | None:
    """Connect to the RPC endpoint, retrying with backoff until it answers or ``stop`` is set (then None).

    Operators start services in any order, so a node that starts before its
    chain waits for it however long that takes, one log line per attempt
    (backoff doubling to ``max_delay_s``), and SIGTERM ends the wait at once.
    """
    from flare_chain.chain.deployment import connect_rpc
    from flare_chain.errors import ChainError

    attempt = connect or connect_rpc
    delay, tries, began = 0.5, 0, time.monotonic()
    while not stop.is_set():
        try:
            return attempt(rpc_url)
        except ChainError as exc:
            tries += 1
            log.warning("%s; waiting for it (attempt %d, %.0f s so far), next try in %.1fs", exc, tries,
                        time.monotonic() - began, delay)
            stop.wait(delay)
            delay = min(delay * 2, max_delay_s)
    return None


def build_daemon(config: Any, *, show_progress: bool | None = None, stop: threading.Event | None = None) -> Any:
    """A ready ``Daemon`` for a validated ``NodeConfig``: chain, keystore, IPFS endpoint, model, data, state."""
    from flare_chain.chain.deployment import open_address, open_deployment
    from flare_chain.node.daemon import Daemon, DaemonSettings, Faults
    from flare_chain.node.endpoint import EndpointStore
    from flare_chain.node.keys import load_account, read_password
    from flare_chain.node.spec_binding import bind_spec
    from flare_chain.node.state import NodeState

    s = config.node
    texts = config.data.load()  # data first: a bad record stops the node before it connects, trains or pins
    account = load_account(s.keystore, read_password(env_name=s.password_env, file=s.password_file))
    stop = stop or threading.Event()
    w3 = connect_with_retry(config.chain.rpc_url, stop)
    if w3 is None:
        return None  # stopped while waiting for the chain
    base_model_cid = config.model.cid
    if config.chain.deployment is not None:
        deployment, coordinator = open_deployment(w3, config.chain.deployment,
                                                  log_chunk_blocks=config.chain.log_chunk_blocks)
        base_model_cid = deployment.base_model_cid or base_model_cid
    else:  # checked before any state is written: an address without the coordinator's code stops here (exit 4)
        coordinator = open_address(w3, config.chain.contract, source="node config chain.contract",
                                   log_chunk_blocks=config.chain.log_chunk_blocks)
    data_dir = Path(s.data_dir)
    store = EndpointStore.connect(config.ipfs.endpoint, data_dir / "ipfs-cache", timeout_s=config.ipfs.timeout_s,
                                  retries=config.ipfs.retries, backoff_s=config.ipfs.backoff_s)
    explicit_tolerance = "vote_tolerance" in config.committee.model_fields_set
    bound = bind_spec(coordinator.federation_spec_cid(), store, expected_cid=config.chain.spec_cid,
                      training=config.training,
                      vote_tolerance=config.committee.vote_tolerance if explicit_tolerance else None)
    vote_tolerance = bound.spec.committee.vote_tolerance if bound.cid else config.committee.vote_tolerance
    base = _base_model(config, base_model_cid, data_dir, show_progress=bool(show_progress))
    tty = sys.stderr.isatty() if show_progress is None else show_progress
    settings = DaemonSettings(
        poll_interval_s=config.chain.poll_interval_s, confirmations=config.chain.confirmations,
        participate=config.committee.participate, vote_tolerance=vote_tolerance,
        stake_wei=config.committee.stake_wei, backoff_s=max(config.ipfs.backoff_s, 0.5), show_progress=tty,
        compression=config.compression.powersgd_config(), device=config.model.device,
        attack=config.attack.kind if config.attack is not None else None,
    )
    return Daemon(name=s.name, account=account, coordinator=coordinator, store=store,
                  state=NodeState(data_dir / "state.sqlite"), texts=texts, model_dir=base.path,
                  params=bound.train_params(config.training), spec=bound.spec, settings=settings,
                  faults=Faults.from_env(node=s.name), stop=stop, base_model_cid=base.cid)


def _base_model(config: Any, cid: str | None, data_dir: Path, *, show_progress: bool) -> Any:  # -> ResolvedModel
    """The base model folder to load: the federation's CID (the local folder if it is that model, else fetched
    from the IPFS endpoint into the model cache), or without a CID the configured folder or the reference model."""
    from flare_chain.basemodel import resolve_base_model
    from flare_chain.ipfs import KuboClient

    local = config.model.model_dir
    if local is None and cid is None:
        from flare_chain.lora.reference import ensure_reference_model

        local = ensure_reference_model(show_progress=show_progress)
    # A client without a block cache: the model lands once, in the model cache, not also in ipfs-cache.
    with KuboClient(config.ipfs.endpoint, timeout_s=config.ipfs.timeout_s, retries=config.ipfs.retries,
                    backoff_s=config.ipfs.backoff_s) as client:
        return resolve_base_model(cid, local_dir=local, fetch=client.block_get, source=client.base_url,
                                  cache_root=config.model.cache_dir or data_dir / "models",
                                  show_progress=show_progress)


def _run(args: argparse.Namespace) -> int:
    from flare_chain.cli.stop_request import StopRequest
    from flare_chain.logs import configure_logging
    from flare_chain.node.config import load_node_config

    if args.node_json_logs or args.log_file is not None:
        configure_logging(logging.getLevelName(logging.getLogger("flare_chain").level),
                          json_lines=bool(args.node_json_logs or getattr(args, "json_logs", False)),
                          log_file=args.log_file)
    config = load_node_config(args.config)
    name = config.node.name
    request: StopRequest = args.stop_request  # armed by main() before the heavy imports
    request.announce_with(lambda signal_name: log.info("%s: %s received; stopping after the current step", name,
                                                       signal_name))
    if request.requested:  # SIGTERM while Python was still importing: honour it before touching anything
        log.info("%s: stopped before start (%s)", name, request.signal_name)
        return 0
    daemon = build_daemon(config, stop=request.event)
    if daemon is None:
        log.info("%s: stopped cleanly before it reached its chain", config.node.name)
        return 0
    try:
        return int(daemon.run(max_rounds=args.max_rounds))
    finally:
        daemon.state.close()


def _status(args: argparse.Namespace) -> int:
    from flare_chain.errors import ConfigError
    from flare_chain.node.config import load_node_config
    from flare_chain.node.status import read_status, render_status, with_chain
    from flare_chain.node.status_chain import ChainView, read_chain_view

    if args.chain_timeout <= 0:
        raise ConfigError(f"--chain-timeout must be above 0 s, got {args.chain_timeout}; use --no-chain to skip "
                          "the chain")
    config = load_node_config(args.config)
    status = read_status(Path(config.node.data_dir))
    if args.rounds is not None:
        status.rounds[:] = status.rounds[-args.rounds:] if args.rounds > 0 else []
    contract = status.contract or config.chain.contract or _deployment_address(config.chain.deployment)
    if args.no_chain:
        view = ChainView(False, "the state folder only (--no-chain)")
    elif status.node is None or contract is None:
        view = ChainView(False, "the state folder only (the node has not recorded its address and coordinator yet)")
    else:
        view = read_chain_view(config.chain.rpc_url, contract=contract, node=status.node, chain_id=status.chain_id,
                               round_ids=[r.round_id for r in status.rounds], timeout_s=args.chain_timeout)
    status = with_chain(status, view)
    print(status.to_json() if args.json else render_status(status, name=config.node.name))
    return 0


def _deployment_address(path: Path | None) -> str | None:
    """The coordinator named by the deployment file, read without the chain; None when it cannot be read."""
    from flare_chain.chain.deployment import load_deployment
    from flare_chain.errors import FlareError

    if path is None:
        return None
    try:
        return str(load_deployment(path).coordinator)
    except FlareError:
        return None
