"""How long an audit takes: 100 rounds of 10 nodes, split by phase, against baselines from the same run.

Generates a real history on an in-process eth-tester chain (the audit-ready
backend, so seeds can be recomputed): 10 registered nodes with equal stakes,
each submitting a small real update bundle (random deltas shaped like the
tiny reference model's LoRA adapter, with manifests) every round, seats
claimed with VRF proofs, the leader's aggregate built by
``committee.aggregate`` and committed by the committee's votes. Then audits it
from the logs, twice: cold (nothing cached) and warm (the same reader, IPFS
states cached by CID, so only checks run again).

Baselines, measured on the same history in the same process:
  * logs only: the ranged ``eth_getLogs`` reads with decoding, nothing else;
  * sha256 only: hashing every byte of every object the audit verifies.
The audit's phases (logs, chain reads, chain checks, IPFS, reproduce) are
printed beside them.

    .venv/bin/python scripts/bench_audit.py                  # 100 rounds x 10 nodes (generation dominates)
    .venv/bin/python scripts/bench_audit.py --rounds 10 --nodes 5

Run it with the project's virtualenv (``make setup`` creates ``.venv``): another
Python lacks the dependencies and is told so in one line.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

try:
    import base58  # noqa: F401 - the first dependency an interpreter outside the venv lacks
except ImportError as exc:
    sys.exit(f"bench_audit: {exc} under {sys.executable}; run it with the project's virtualenv: "
             ".venv/bin/python scripts/bench_audit.py (`make setup` creates .venv)")

from flare_chain.audit import ContentSource, run_audit
from flare_chain.audit.fetch import ChainReader
from flare_chain.audit.simulate import simulate
from flare_chain.chain.artifacts import load_artifact
from flare_chain.cli.tables import render_table
from flare_chain.ipfs import parse_cid
from flare_chain.ipfs.dag import iter_dag
from flare_chain.lora.params import LoraTrainParams
from flare_chain.lora.reference import ReferenceSpec, ensure_reference_model
from flare_chain.progress import progress

TINY = ReferenceSpec(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=128,
                     pretrain_steps=40, batch_size=8, seq_len=64, warmup_steps=4)
PARAMS = LoraTrainParams(rank=4, alpha=8, batch_size=8, seq_len=64, num_threads=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--k", type=int, default=4, help="expected committee size (default 4)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("flare_chain.progress").setLevel(logging.INFO)

    model_dir = ensure_reference_model(spec=TINY, show_progress=False)
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        began = time.perf_counter()
        fed = simulate(Path(tmp) / "store", model_dir, PARAMS, nodes=args.nodes, expected_committee_size=args.k)
        with progress("generating rounds", args.rounds, unit="round") as bar:
            for _ in range(args.rounds):
                fed.run_round()
                bar.update(1)
        generate_s = time.perf_counter() - began
        w3, target = fed.coordinator.w3, fed.target
        head = int(w3.eth.block_number)

        began = time.perf_counter()
        reader = ChainReader(w3, target.address, load_artifact("FlareCoordinator").abi, show_progress=False)
        events = reader.events(target.block, head)
        logs_only_s = time.perf_counter() - began

        source = ContentSource(fed.store)
        cold = run_audit(w3, target, source, model_dir=model_dir, model_search=[], show_progress=False)
        warm = run_audit(w3, target, source, model_dir=model_dir, model_search=[], show_progress=False)

        cids = [c for per_round in fed.round_cids.values() for c in per_round.values()]
        cids += [r.global_cid for r in cold.rounds if r.global_cid]
        began = time.perf_counter()
        total_bytes = 0
        for cid in cids:
            for block in iter_dag(fed.store.get_block, parse_cid(cid)):
                data = fed.store.block_path(block).read_bytes()
                hashlib.sha256(data).digest()
                total_bytes += len(data)
        sha_only_s = time.perf_counter() - began

    committed = sum(1 for r in cold.rounds if r.status == "committed")
    print(f"\nhistory: {args.rounds} rounds x {args.nodes} nodes (k={args.k}), {head - target.block} blocks, "
          f"{len(events)} events, {len(cids)} objects ({total_bytes / 1e6:.1f} MB), {committed} committed; "
          f"generated in {generate_s:.0f} s")
    print(f"audit verdict: {len(cold.failures)} failed, {len(cold.unverifiable)} unverifiable, "
          f"{len(cold.findings)} findings in all\n")
    rows = [["baseline: eth_getLogs + decode only", f"{logs_only_s:.2f}", ""],
            ["baseline: sha256 of every object byte", f"{sha_only_s:.2f}", ""]]
    for name in ("logs", "chain reads", "chain checks", "ipfs", "reproduce"):
        rows.append([f"audit phase: {name}", f"{cold.timings_s.get(name, 0.0):.2f}",
                     f"{warm.timings_s.get(name, 0.0):.2f}"])
    rows.append(["audit total", f"{sum(cold.timings_s.values()):.2f}", f"{sum(warm.timings_s.values()):.2f}"])
    rows.append(["audit per round", f"{sum(cold.timings_s.values()) / max(1, args.rounds):.3f}",
                 f"{sum(warm.timings_s.values()) / max(1, args.rounds):.3f}"])
    print(render_table(["what", "cold s", "warm s"], rows))
    return 0 if cold.ok else 1


if __name__ == "__main__":
    sys.exit(main())
