"""Wall time of one federation round, split by phase, for 4, 16 and 32 nodes (tiny model, in-process).

Runs the real daemons (``flare_chain.node.daemon``) of an in-process localnet
(``flare_chain.node.localnet``): eth-tester running the compiled coordinator,
the embedded content store, the tiny reference model of the tests. One process
steps every node in turn, so each phase's figure is the **sum over nodes** of
the time they spent in it (a machine's worth of work), next to the **mean per
node** (what one node waits in a real deployment where nodes run in parallel).
Each phase is read from the nodes' own state files (the step rows' timings), so
the benchmark measures exactly what the daemon does:

    train      local LoRA fine-tune (train_lora), per node
    compress   PowerSGD (rank 4, fp16) of the node's delta and its wire encoding,
               measured here on each node's delta (the daemon submits dense deltas)
    pin        adding the update folder to the store
    submit     the durable submitUpdate: simulate, sign, store, broadcast, receipt
    committee  VRF draw and the seat-claim transaction (on-chain proof check)
    aggregate  the leader: fetch and verify every update, gates, FedAvg, pin
    vote       each member: recompute the aggregate, evaluate it, vote
    commit     each node: fetch the committed adapter (PEFT folder)

    .venv/bin/python scripts/bench_round.py              # 4 16 32 nodes
    .venv/bin/python scripts/bench_round.py --nodes 4 8  # other sizes

Training and review dominate and grow linearly with n; the chain and store
parts are small, with aggregation growing with the number of updates fetched.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from safetensors.torch import load_file

from flare_chain.compression import PowerSGDConfig, compress, encode
from flare_chain.lora.params import LoraTrainParams
from flare_chain.lora.reference import ReferenceSpec, ensure_reference_model
from flare_chain.node.localnet import drive, make_net, open_round, register_all

PHASES = ("train", "compress", "pin", "submit", "committee", "aggregate", "vote", "commit")
TINY = ReferenceSpec(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=128,
                     pretrain_steps=40, batch_size=8, seq_len=64, warmup_steps=4)
PARAMS = LoraTrainParams(rank=4, alpha=8, learning_rate=1e-2, batch_size=8, seq_len=64, max_train_windows=16,
                         max_val_windows=8, num_threads=1)


def _compress_seconds(folder: Path) -> float:
    delta = load_file(str(folder / "delta.safetensors"))
    began = time.perf_counter()
    update, _q = compress(delta, PowerSGDConfig(rank=4, dtype="float16"))
    encode(update)
    return time.perf_counter() - began


def bench(nodes: int, model_dir: Path, committee: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix=f"bench-round-{nodes}-") as tmp:
        net = make_net(Path(tmp), model_dir, PARAMS, nodes=nodes)
        try:
            register_all(net)
            round_id = open_round(net, expected_committee_size=min(committee, nodes))
            began = time.perf_counter()
            passes = drive(net, round_id, max_passes=400)
            wall = time.perf_counter() - began
            per: dict[str, list[float]] = {p: [] for p in PHASES}
            for d in net.daemons:
                rows = {r.step: r for r in d.state.steps(round_id)}
                per["train"].append(rows["train"].detail["seconds"])
                per["compress"].append(_compress_seconds(d.state.path.parent / "rounds" / f"round-{round_id}"
                                                         / "update"))
                per["pin"].append(rows["pin"].detail["seconds"])
                per["submit"].append(rows["submit"].detail["seconds"])
                if rows["claim"].status.value == "done":
                    per["committee"].append(rows["claim"].seconds)
                if rows.get("propose") is not None and rows["propose"].status.value == "done":
                    per["aggregate"].append(rows["propose"].detail.get("aggregate_seconds", 0.0))
                if rows.get("vote") is not None and rows["vote"].status.value == "done":
                    per["vote"].append(rows["vote"].detail.get("review_seconds", 0.0) + rows["vote"].seconds)
                per["commit"].append(rows["pull"].detail["seconds"])
            info = net.coordinator.round_info(round_id)
            return {"nodes": nodes, "committee": info.committee_size, "status": info.status.name, "passes": passes,
                    "wall_s": wall, "sum_s": {p: sum(v) for p, v in per.items()},
                    "mean_s": {p: (sum(v) / len(v) if v else 0.0) for p, v in per.items()},
                    "count": {p: len(v) for p, v in per.items()}}
        finally:
            for d in net.daemons:
                d.state.close()


def table(results: list[dict[str, object]]) -> str:
    base = results[0]
    head = "| phase | " + " | ".join(f"n={r['nodes']} sum s (×{base['nodes']}) | mean/node s" for r in results) + " |"
    lines = [head, "|---" * (1 + 2 * len(results)) + "|"]
    for p in PHASES:
        cells = []
        for r in results:
            s, b = r["sum_s"][p], base["sum_s"][p]  # type: ignore[index]
            ratio = f"{s / b:.1f}" if b else "-"
            cells += [f"{s:.2f} (×{ratio})", f"{r['mean_s'][p]:.3f}"]  # type: ignore[index]
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    walls = []
    for r in results:
        walls += [f"{r['wall_s']:.1f} (×{r['wall_s'] / base['wall_s']:.1f})", f"k={r['committee']}"]  # type: ignore[operator]
    lines.append("| round wall | " + " | ".join(walls) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[4, 16, 32])
    parser.add_argument("--committee", type=int, default=8, help="expected committee size k (capped at n)")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(1)
    model_dir = ensure_reference_model(spec=TINY, show_progress=False)
    results = []
    for n in args.nodes:
        r = bench(n, model_dir, args.committee)
        print(f"n={n}: {r['status']} in {r['wall_s']:.1f}s ({r['passes']} passes), committee {r['committee']}",
              file=sys.stderr, flush=True)
        results.append(r)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
