"""``flare-chain audit``: rebuild every round from chain logs and IPFS, and check it.

    flare-chain audit --deployment deployment.json [--rpc http://127.0.0.1:8545] \\
        --ipfs http://127.0.0.1:5001 --rounds 1..20 --json audit.json --html audit.html

Exit status: 0 when every check passed, 8 when at least one check failed (each
finding is printed), 9 when nothing failed but some check could not be made
(missing IPFS objects, a base model not at hand, no round in the range, a
deployment file too thin to tell the chain from a twin): unverifiable is not
passed. A deployment file that does not match the chain (another chain with
the same id, a block range past its head) stops the audit with one line, 4.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from flare_chain.errors import ConfigError

if TYPE_CHECKING:
    from web3 import Web3

__all__ = ["EXIT_FINDINGS", "EXIT_UNVERIFIABLE", "connect", "parse_rounds", "register"]

EXIT_FINDINGS = 8
EXIT_UNVERIFIABLE = 9
DEFAULT_RPC = "http://127.0.0.1:8545"

log = logging.getLogger("flare_chain.cli.audit")


def parse_rounds(text: str) -> range:
    """``"A..B"`` (inclusive), ``"A.."`` (from A on) or ``"N"`` as a range of round ids."""
    start, sep, end = text.partition("..")
    try:
        first = int(start)
        last = int(end) if end else (2**63 if sep else first)
    except ValueError:
        raise ConfigError(f"--rounds {text!r} is not A..B, A.. or N (round ids are integers)") from None
    if first < 1 or last < first:
        raise ConfigError(f"--rounds {text!r}: need 1 <= A <= B")
    return range(first, last + 1)


def connect(url: str, timeout_s: float) -> Web3:
    """The Web3 the audit reads through (tests replace this to audit an in-process chain)."""
    from web3 import HTTPProvider, Web3

    return Web3(HTTPProvider(url, request_kwargs={"timeout": timeout_s}))


def cmd_audit(args: argparse.Namespace) -> int:
    from flare_chain.audit import ContentSource, load_target, run_audit
    from flare_chain.audit.report import render_text, write_html, write_json
    from flare_chain.ipfs import ContentStore, KuboClient
    from flare_chain.lora.reference import default_cache_dir

    target = load_target(args.deployment)
    if args.device != "cpu" and not args.no_reproduce:
        from flare_chain.lora.device import resolve_device

        resolve_device(args.device)  # "cuda" without a GPU: one error before anything is read
    rounds = parse_rounds(args.rounds) if args.rounds else None
    kubo = None
    if args.store:
        store = ContentStore(Path(args.store), create=False)
    else:
        cache = Path(args.cache) if args.cache else default_cache_dir() / "audit-ipfs"
        store = ContentStore(cache)
        kubo = KuboClient(args.ipfs, cache=store)
    rpc_url = args.rpc or target.rpc_url or DEFAULT_RPC
    if not args.rpc and target.rpc_url:  # say so when the endpoint did not come from the command line
        log.info("auditing through %s, the deployment file's rpc_url (--rpc overrides it)", rpc_url)
    w3 = connect(rpc_url, args.rpc_timeout_s)
    try:
        report = run_audit(w3, target, ContentSource(store, kubo), rounds=rounds,
                           model_dir=Path(args.model_dir) if args.model_dir else None,
                           chunk_blocks=args.chunk_blocks, reproduce=not args.no_reproduce,
                           device=args.device)
    finally:
        if kubo is not None:
            kubo.close()
    sys.stdout.write(render_text(report))
    if args.json:
        write_json(report, Path(args.json))
        print(f"JSON report: {args.json}")
    if args.html:
        write_html(report, Path(args.html))
        print(f"HTML report: {args.html}")
    if report.failures:
        return EXIT_FINDINGS
    return 0 if report.ok else EXIT_UNVERIFIABLE


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("audit", help="rebuild and verify every round from chain logs and IPFS",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--deployment", required=True, help="deployment JSON (chain_id, address, block)")
    p.add_argument("--rpc", default=None,
                   help="Ethereum JSON-RPC endpoint (default: the deployment file's rpc_url, else "
                        f"{DEFAULT_RPC})")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--ipfs", default="http://127.0.0.1:5001",
                       help="Kubo RPC endpoint to fetch objects from (default http://127.0.0.1:5001)")
    where.add_argument("--store", help="read objects from this embedded store directory instead of Kubo")
    p.add_argument("--cache", help="where objects fetched from --ipfs are kept (default ~/.cache/flare-chain/audit-ipfs)")
    p.add_argument("--rounds", help="rounds to check: A..B, A.. or N (default: all)")
    p.add_argument("--model-dir", help="base model directory, to rebuild aggregates (default: search the model cache)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu",
                   help="where the committee's gate models are re-run (default cpu; verdicts do not depend on it)")
    p.add_argument("--json", help="write the full report as JSON here")
    p.add_argument("--html", help="write a self-contained HTML report here")
    p.add_argument("--chunk-blocks", type=int, default=5_000, help="blocks per eth_getLogs call (default 5000)")
    p.add_argument("--rpc-timeout-s", type=float, default=30.0, help="seconds per RPC request (default 30)")
    p.add_argument("--no-reproduce", action="store_true",
                   help="skip re-running gates and aggregation (those checks read unverifiable)")
    p.set_defaults(func=cmd_audit)
