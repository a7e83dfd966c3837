"""``flare-chain rounds drive``: the owner opens N rounds on a deployment and prints how each ended."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from flare_chain.cli.tables import render_table

__all__ = ["default_probe_corpus", "register"]

log = logging.getLogger("flare_chain.cli.rounds")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    rounds = subparsers.add_parser("rounds", help="owner-side round control")
    sub = rounds.add_subparsers(dest="rounds_command", required=True, metavar="ACTION")
    p = sub.add_parser("drive", help="set the round-0 adapter if needed, open N rounds, finalize stuck ones, "
                                     "print a summary")
    p.add_argument("--deployment", required=True, type=Path, help="deployment file written by `flare-chain deploy`")
    p.add_argument("--rpc", default=None, metavar="URL", help="JSON-RPC endpoint (default: the deployment's rpc_url)")
    p.add_argument("--keystore", required=True, type=Path, help="the owner's (deployer's) keystore")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--password-env", metavar="VAR", help="read the keystore password from this variable")
    src.add_argument("--password-file", type=Path, metavar="FILE", help="read the keystore password from a file")
    p.add_argument("--ipfs", default="http://127.0.0.1:5001", metavar="URL",
                   help="Kubo RPC endpoint to pin the round-0 adapter to")
    p.add_argument("--node-config", type=Path, default=None, metavar="TOML",
                   help="take model dir and training params (rank, targets) from this node config, so the round-0 "
                        "adapter fits the nodes")
    p.add_argument("--model-dir", type=Path, default=None, help="base model directory (default: reference model)")
    p.add_argument("--adapter-seed", type=int, default=0, help="seed of the round-0 adapter")
    probe = p.add_mutually_exclusive_group()
    probe.add_argument("--probe-corpus", type=Path, action="append", default=None, metavar="PATH",
                       help="the federation's public probe corpus, pinned and named in the round-0 manifest: "
                            "JSONL files of instruction or chat records (the committee scores their responses "
                            "only, as the nodes learn them) or text files and directories (every token scored); "
                            "repeatable; default: the skills task's public probe records when --node-config's "
                            "data is task = \"skills\", else a sample of the stdlib reference task")
    probe.add_argument("--no-probe-corpus", action="store_true",
                       help="name no probe corpus: the committee's probe-loss gate stays off")
    p.add_argument("--rounds", type=int, default=3, metavar="N", help="rounds to open, one after another")
    p.add_argument("--submission-blocks", type=int, default=40, metavar="B",
                   help="blocks the nodes have to train, pin and submit")
    p.add_argument("--claim-blocks", type=int, default=10, metavar="B",
                   help="blocks for committee seat claims (3 to 256)")
    p.add_argument("--proposal-blocks", type=int, default=20, metavar="B",
                   help="blocks for the leader (then the next ranks) to propose the aggregate")
    p.add_argument("--voting-blocks", type=int, default=20, metavar="B", help="blocks for the committee's votes")
    p.add_argument("--committee-size", type=int, default=20, metavar="K",
                   help="expected committee weight k (seat weights are Poisson(k·stake share); 20 keeps a round of "
                        "3 or 4 equal nodes from falling short of the minimum weight but for p < 1e-6)")
    p.add_argument("--poll", type=float, default=1.0, metavar="S", help="seconds between chain polls")
    p.add_argument("--mine", action="store_true",
                   help="ask the chain for a block every poll (dev chains that mine only on transactions: anvil "
                        "without --block-time, `flare-chain chain serve` without --block-time)")
    p.add_argument("--round-timeout", type=float, default=3600.0, metavar="S",
                   help="give up on a round that has not ended after this many seconds")
    p.add_argument("--stall-timeout", type=float, default=120.0, metavar="S",
                   help="give up when the chain makes no block for this long while a round waits for a deadline")
    p.add_argument("--nodes-timeout", type=float, default=3600.0, metavar="S",
                   help="how long to wait for enough registered nodes before opening a round")
    p.set_defaults(func=_drive)


_FLAGS = {"rounds": "--rounds", "submission_blocks": "--submission-blocks", "claim_blocks": "--claim-blocks",
          "proposal_blocks": "--proposal-blocks", "voting_blocks": "--voting-blocks",
          "expected_committee_size": "--committee-size", "poll_interval_s": "--poll",
          "round_timeout_s": "--round-timeout", "stall_timeout_s": "--stall-timeout",
          "nodes_timeout_s": "--nodes-timeout"}
"""DriverSettings field -> the flag that sets it, so a bad value is reported under the name the user typed."""


def _training(args: argparse.Namespace, base_model_cid: str | None, ipfs: Any,
              spec: Any):  # -> (model_dir, LoraTrainParams)
    """The owner's base model and training params; with a published base CID, that model (fetched if the
    local folder is not it), exactly as the nodes load it. Under a federation spec (``(cid, spec)``) the LoRA
    params are the spec's, as the nodes bind them, and a node config that contradicts it stops here.
    Lazy: imports torch."""
    from flare_chain.basemodel import resolve_base_model
    from flare_chain.lora.params import LoraTrainParams
    from flare_chain.lora.reference import default_cache_dir, ensure_reference_model

    model_dir, params, cache = args.model_dir, LoraTrainParams(), None
    if args.node_config is not None:
        from flare_chain.node.config import load_node_config
        from flare_chain.node.spec_binding import require_config_agrees

        config = load_node_config(args.node_config)
        params = config.train_params()
        model_dir = model_dir or config.model.model_dir
        cache = config.model.cache_dir
        if spec is not None:
            require_config_agrees(spec[1], spec[0], training=config.training, vote_tolerance=None)
    if spec is not None:
        params = spec[1].lora
    if model_dir is None and base_model_cid is None:
        model_dir = ensure_reference_model(show_progress=False)
    base = resolve_base_model(base_model_cid, local_dir=model_dir, fetch=ipfs.block_get, source=ipfs.base_url,
                              cache_root=cache or default_cache_dir() / "base-models", show_progress=False)
    return base.path, params


def default_probe_corpus(node_config: Path | None) -> Any:  # -> NodeData | list[str]
    """The probe corpus of the task the nodes learn: the skills task's when the node config names it.

    ``rounds drive`` pins it by default; the devnet names its CID in the federation spec beforehand.
    """
    from flare_chain.lora.probe_corpus import reference_probe_texts

    if node_config is not None:
        from flare_chain.lora.skills import skills_probe_corpus
        from flare_chain.node.config import load_node_config

        data = load_node_config(node_config).data
        if data.task is not None:
            return skills_probe_corpus(seed=data.task_seed)
    return reference_probe_texts()


def _onchain_spec(coordinator: Any, ipfs: Any) -> Any:  # -> (cid, FederationSpec) | None
    """The federation spec the coordinator names, fetched (verified) from ``ipfs``; None when none is set."""
    from flare_chain.ipfs import cid_from_bytes
    from flare_chain.node.endpoint import EndpointStore
    from flare_chain.protocol.spec import fetch_spec

    raw = coordinator.federation_spec_cid()
    if not raw:
        return None
    cid = cid_from_bytes(raw)
    return cid, fetch_spec(EndpointStore(ipfs), cid)


def _require_spec_probe(spec_cid: str, named: str | None, probe_corpus: Any) -> None:
    """ConfigError when the round-0 probe corpus is not the one the spec names (the gate would judge by another)."""
    from flare_chain.errors import ConfigError
    from flare_chain.node.bundles import probe_corpus_cid

    if named is None:
        return
    pinned = None if probe_corpus is None else probe_corpus_cid(probe_corpus)
    if pinned != named:
        raise ConfigError(f"federation spec {spec_cid} names probe corpus {named}, but this round-0 adapter would "
                          f"name {pinned or 'none'}; pass --probe-corpus with the spec's corpus")


def _drive(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from flare_chain.chain.deployment import connect_rpc, load_deployment, verify_deployment
    from flare_chain.errors import ConfigError
    from flare_chain.ipfs import KuboClient
    from flare_chain.node.keys import load_account, read_password
    from flare_chain.node.owner import (
        DriverSettings,
        drive_rounds,
        ensure_global_adapter,
        pin_initial_adapter,
        summary_rows,
    )

    try:
        settings = DriverSettings(
            rounds=args.rounds, submission_blocks=args.submission_blocks, claim_blocks=args.claim_blocks,
            proposal_blocks=args.proposal_blocks, voting_blocks=args.voting_blocks,
            expected_committee_size=args.committee_size, poll_interval_s=args.poll, mine_every_poll=args.mine,
            round_timeout_s=args.round_timeout,
            stall_timeout_s=args.stall_timeout, nodes_timeout_s=args.nodes_timeout)
    except ValidationError as exc:
        raise ConfigError("; ".join(f"{_FLAGS.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']}"
                                    for e in exc.errors())) from None
    deployment = load_deployment(args.deployment)
    rpc = args.rpc or deployment.rpc_url
    if rpc is None:
        raise ConfigError(f"{args.deployment} records no rpc_url; pass --rpc")
    w3 = connect_rpc(rpc)
    verify_deployment(w3, deployment, source=f"deployment file {args.deployment}")
    coordinator = deployment.client(w3)
    owner = load_account(args.keystore, read_password(env_name=args.password_env, file=args.password_file))
    with KuboClient(args.ipfs) as ipfs:
        def make_round0() -> str:
            from flare_chain.lora.probe_corpus import read_probe_corpus

            spec = _onchain_spec(coordinator, ipfs)
            model_dir, params = _training(args, deployment.base_model_cid, ipfs, spec)
            probe_corpus = None if args.no_probe_corpus else (
                read_probe_corpus(args.probe_corpus) if args.probe_corpus else default_probe_corpus(args.node_config))
            if spec is not None:
                _require_spec_probe(spec[0], spec[1].probe_corpus_cid, probe_corpus)
            return pin_initial_adapter(ipfs, model_dir, params, seed=args.adapter_seed, probe_corpus=probe_corpus,
                                       base_model_cid=deployment.base_model_cid)

        ensure_global_adapter(coordinator, owner, make_round0)
        summaries = drive_rounds(coordinator, owner, settings, ipfs=ipfs)
    headers, rows = summary_rows(summaries)
    committed = sum(1 for s in summaries if s.committed_cid)
    print(render_table(headers, rows, title=f"\n{committed} of {len(summaries)} rounds committed "
                                            f"(coordinator {deployment.coordinator}, chain {deployment.chain_id})"))
    return 0
