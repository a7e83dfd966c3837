"""``flare-chain deploy``: deploy FlareCoordinator to any JSON-RPC endpoint and write its deployment file."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the spec's types pull in torch; `deploy --help` must not need it
    from flare_chain.protocol.spec import FederationSpec

__all__ = ["add_deploy_arguments", "register", "run", "spec_sample_cap"]

log = logging.getLogger("flare_chain.cli.deploy")


def add_deploy_arguments(p: argparse.ArgumentParser) -> None:
    """The deploy options, shared by ``flare-chain deploy`` and ``scripts/deploy.py``."""
    from flare_chain.chain.coordinator import (
        DEFAULT_LEADER_BLOCKS,
        DEFAULT_MAX_SAMPLE_COUNT,
        DEFAULT_MIN_STAKE_WEI,
    )

    p.add_argument("--rpc", required=True, metavar="URL", help="JSON-RPC endpoint, e.g. http://127.0.0.1:8545")
    p.add_argument("--keystore", required=True, type=Path, help="the deployer's encrypted keystore (becomes owner)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--password-env", metavar="VAR", help="read the keystore password from this variable")
    src.add_argument("--password-file", type=Path, metavar="FILE", help="read the keystore password from a file")
    p.add_argument("--threshold-bps", type=int, default=6666,
                   help="share of seated members whose approvals commit, in basis points (default 6666)")
    p.add_argument("--min-committee", type=int, default=2,
                   help="fewest seats a round goes on with; with --threshold-bps it must keep one seat from "
                        "committing alone (min-committee x threshold-bps > 10000) (default 2)")
    p.add_argument("--leader-blocks", type=int, default=DEFAULT_LEADER_BLOCKS,
                   help=f"blocks each proposer has before the next may (default {DEFAULT_LEADER_BLOCKS})")
    p.add_argument("--min-stake", type=int, default=DEFAULT_MIN_STAKE_WEI, metavar="WEI",
                   help=f"smallest stake a node registers with, in wei (default {DEFAULT_MIN_STAKE_WEI})")
    p.add_argument("--max-sample-count", type=int, default=DEFAULT_MAX_SAMPLE_COUNT, metavar="N",
                   help="most samples one submission may claim: caps one update's aggregation weight "
                        f"(default {DEFAULT_MAX_SAMPLE_COUNT})")
    p.add_argument("--spec", type=Path, default=None, metavar="SPEC.toml",
                   help="federation spec to pin (--spec-repo/--spec-ipfs) and fix on the coordinator; its "
                        "committee.max_sample_count becomes the contract's cap (default: no spec)")
    from flare_chain.cli.spec import add_spec_store_arguments

    add_spec_store_arguments(p)
    p.add_argument("--base-model-cid", metavar="CID", default=None,
                   help="the federation's base model, as `flare-chain model add DIR` printed it; nodes load it by "
                        "this CID (fetching it when their own folder differs) and the policy gate compares CIDs")
    p.add_argument("--out", type=Path, default=Path("deployment.json"), help="deployment file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing deployment file")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("deploy", help="deploy the coordinator contract and write a deployment file")
    add_deploy_arguments(p)
    p.set_defaults(func=run)


def spec_sample_cap(spec: FederationSpec, requested: int, *, source: str) -> int:
    """The contract's ``maxSampleCount`` under ``spec``: its ``committee.max_sample_count``.

    The coordinator enforces the cap and members clip FedAvg weights to the
    spec's, so the two must be one number; ``requested`` (a flag) may only
    repeat it or be left at the default. ``flare-chain deploy`` and the devnet
    both take the cap from here.
    """
    from flare_chain.chain.coordinator import DEFAULT_MAX_SAMPLE_COUNT
    from flare_chain.errors import ConfigError

    cap = spec.committee.max_sample_count
    if requested not in (cap, DEFAULT_MAX_SAMPLE_COUNT):
        raise ConfigError(f"--max-sample-count {requested} contradicts the spec's committee.max_sample_count "
                          f"{cap}; set it in {source} only")
    return cap


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from flare_chain.chain.deployment import ConstructorParams, connect_rpc, deploy, write_deployment
    from flare_chain.cli.spec import open_spec_store
    from flare_chain.errors import ConfigError
    from flare_chain.node.keys import load_account, read_password
    from flare_chain.protocol.spec import FederationSpec, pin_spec

    spec = FederationSpec.from_toml(args.spec) if args.spec is not None else None
    max_sample_count = args.max_sample_count
    if spec is not None:
        max_sample_count = spec_sample_cap(spec, max_sample_count, source=str(args.spec))
    try:
        params = ConstructorParams(approval_threshold_bps=args.threshold_bps, min_committee_size=args.min_committee,
                                   leader_blocks=args.leader_blocks, min_stake_wei=args.min_stake,
                                   max_sample_count=max_sample_count)
    except ValidationError as exc:
        names = {"approval_threshold_bps": "--threshold-bps", "min_committee_size": "--min-committee",
                 "leader_blocks": "--leader-blocks", "min_stake_wei": "--min-stake",
                 "max_sample_count": "--max-sample-count"}
        raise ConfigError("; ".join(f"{names.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']}"
                                    for e in exc.errors())) from None
    if args.base_model_cid is not None:  # checked before spending gas, like the file below
        from flare_chain.ipfs.multiformats import parse_cid

        try:
            parse_cid(args.base_model_cid)
        except ConfigError as exc:
            raise ConfigError(f"--base-model-cid {args.base_model_cid!r} is not a CID ({exc}); pass what "
                              "`flare-chain model add DIR` printed") from None
    if args.out.exists() and not args.overwrite:  # checked before spending gas
        raise ConfigError(f"deployment file {args.out} already exists; pass --overwrite or choose another --out")
    spec_cid = None
    if spec is not None:  # pinned before any gas is spent, so an unreachable store costs nothing
        spec = spec.naming_published(base_model_cid=args.base_model_cid, probe_corpus_cid=None,
                                     source=str(args.spec))
        spec_cid = pin_spec(open_spec_store(args), spec)
        log.info("federation spec %s pinned (%s)", spec_cid, args.spec)
    password = read_password(env_name=args.password_env, file=args.password_file)
    deployer = load_account(args.keystore, password)
    w3 = connect_rpc(args.rpc)
    record, _client = deploy(w3, deployer, params, rpc_url=args.rpc, federation_spec_cid=spec_cid,
                             base_model_cid=args.base_model_cid)
    write_deployment(record, args.out, overwrite=args.overwrite)
    log.info("FlareCoordinator deployed at %s on chain %d (block %d, tx %s)", record.coordinator,
             record.chain_id, record.deployment_block, record.deployment_tx)
    print(f"{record.coordinator} chain {record.chain_id} block {record.deployment_block} -> {args.out}")
    return 0
