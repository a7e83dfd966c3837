"""Wall time of one federation round on the devnet, split by phase, for 4, 16 and 32 nodes (tiny model).

For each size the script starts a fresh devnet with ``hardhat-free-devnet/start
--no-daemons`` (anvil when its npm package is installed, else the eth-tester
JSON-RPC server; the embedded IPFS RPC server; the deployed coordinator; N
funded, registered node keys), then builds the N node daemons exactly as
``flare-chain node run`` does (``build_daemon`` on a node TOML: keystore, RPC
chain client, IPFS endpoint client, state file), the owner opens one round,
and the script steps every daemon in turn, mining a block per pass. Each
phase is read from the nodes' own state files (the step rows' timings), so the
benchmark measures exactly what the daemon does, over real HTTP to a real
chain and IPFS endpoint:

    train      local LoRA fine-tune (train_lora), per node
    compress   PowerSGD with error feedback (the node's [compression] setting) and the wire encoding
    pin        adding the update folder through the IPFS endpoint
    submit     the durable submitUpdate: simulate, sign, store, broadcast, receipt
    committee  VRF draw and the seat-claim transaction (on-chain proof check)
    aggregate  the leader: fetch and verify every update, gates (MI filter included), FedAvg, pin
    vote       each member: fetch, re-run the gates and aggregation, evaluate, vote
    commit     each node: fetch the committed adapter (PEFT folder)

One process steps all nodes in turn (2 cores cannot run 32 training daemons
side by side without measuring the scheduler), so each phase's **sum over
nodes** is a machine's worth of work and the **mean per node** what one node
spends in it when nodes run in parallel.

    .venv/bin/python scripts/bench_round.py              # 4 16 32 nodes
    .venv/bin/python scripts/bench_round.py --nodes 4 8  # other sizes
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PHASES = ("train", "compress", "pin", "submit", "committee", "aggregate", "vote", "commit")
PASSWORD_ENV = "FLARE_DEVNET_PASSWORD"
NODE_TOML = """\
[node]
name = "{name}"
data_dir = "{run}/{name}"
keystore = "{run}/keys/{name}.json"
password_env = "{password_env}"

[chain]
rpc_url = "{rpc_url}"
deployment = "{run}/deployment.json"
poll_interval_s = 0.01

[ipfs]
endpoint = "{ipfs_url}"
retries = 4
backoff_s = 0.5

[model]
model_dir = "{model_dir}"

[data]
domain = "{domain}"

[training]
rank = 4
alpha = 8.0
learning_rate = 0.01
batch_size = 8
seq_len = 64
max_train_windows = 16
max_val_windows = 8
num_threads = 1
seed = {seed}

[compression]
rank = {compression_rank}
"""


def _tiny_model() -> Path:
    from flare_chain.lora.reference import ReferenceSpec, ensure_reference_model

    tiny = ReferenceSpec(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=128,
                         pretrain_steps=40, batch_size=8, seq_len=64, warmup_steps=4)
    return ensure_reference_model(spec=tiny, show_progress=False)


def _write_configs(folder: Path, run: Path, n: int, state: dict[str, Any], model_dir: Path, rank: int) -> list[Path]:
    from flare_chain.lora.domains import available_domains

    domains = available_domains()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        name = f"node-{i + 1:02d}"
        path = folder / f"{name}.toml"
        path.write_text(NODE_TOML.format(
            name=name, run=run, password_env=PASSWORD_ENV, rpc_url=state.get("rpc_url", ""),
            ipfs_url=state.get("ipfs_url", ""), model_dir=model_dir, domain=domains[i % len(domains)], seed=i,
            compression_rank=rank))
        paths.append(path)
    return paths


def _devnet(action: str, run: Path, *extra: str) -> None:
    script = REPO / "hardhat-free-devnet" / action
    done = subprocess.run([str(script), "--run-dir", str(run), *extra], capture_output=True, text=True,
                          check=False, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"devnet {action} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def bench(n: int, model_dir: Path, committee: int, chain: str, rank: int) -> dict[str, Any]:
    """One round with ``n`` daemons on a fresh devnet; per-phase seconds from the nodes' state files."""
    from flare_chain.chain.deployment import connect_rpc, open_deployment
    from flare_chain.cli.node import build_daemon
    from flare_chain.ipfs import KuboClient
    from flare_chain.lora.params import LoraTrainParams
    from flare_chain.lora.probe_corpus import reference_probe_texts
    from flare_chain.node.config import load_node_config
    from flare_chain.node.keys import load_account
    from flare_chain.node.localnet import Net, drive, open_round
    from flare_chain.node.owner import ensure_global_adapter, pin_initial_adapter

    password = os.environ.setdefault(PASSWORD_ENV, "flare-devnet-only-password")
    with tempfile.TemporaryDirectory(prefix=f"bench-round-{n}-") as tmp:
        root = Path(tmp)
        run, nodes_dir = root / "run", root / "nodes"
        _write_configs(nodes_dir, run, n, {}, model_dir, rank)  # the devnet reads only [node].name here
        _devnet("start", run, "--nodes-dir", str(nodes_dir), "--chain", chain, "--chain-port", "0", "--ipfs-port",
                "0", "--block-time", "0", "--no-daemons", "--rounds", "0")
        daemons: list[Any] = []
        try:
            state = json.loads((run / "devnet.json").read_text())
            configs = _write_configs(nodes_dir, run, n, state, model_dir, rank)
            w3 = connect_rpc(state["rpc_url"])
            _deployment, coordinator = open_deployment(w3, run / "deployment.json")
            owner = load_account(run / "keys" / "owner.json", password)
            daemons = [build_daemon(load_node_config(p, env={}), show_progress=False) for p in configs]
            with KuboClient(state["ipfs_url"]) as ipfs:
                params = LoraTrainParams(rank=4, alpha=8)
                ensure_global_adapter(coordinator, owner, lambda: pin_initial_adapter(
                    ipfs, model_dir, params, probe_corpus=reference_probe_texts()))
            net = Net(w3, coordinator, owner, [d.account for d in daemons], daemons[0].store, model_dir, params,
                      [], root, daemons=daemons)
            for d in daemons:
                d.tick()  # registration: already on-chain from the devnet; the node records it
            round_id = open_round(net, expected_committee_size=min(committee, n))
            began = time.perf_counter()
            passes = drive(net, round_id, max_passes=600)
            wall = time.perf_counter() - began
            per: dict[str, list[float]] = {p: [] for p in PHASES}
            for d in daemons:
                rows = {r.step: r for r in d.state.steps(round_id)}
                train = rows["train"].detail
                per["train"].append(train["seconds"])
                per["compress"].append(train.get("compress_seconds", 0.0))
                per["pin"].append(rows["pin"].detail["seconds"])
                per["submit"].append(rows["submit"].detail["seconds"])
                if rows["claim"].status.value == "done":
                    per["committee"].append(rows["claim"].seconds)
                if rows.get("propose") is not None and rows["propose"].status.value == "done":
                    per["aggregate"].append(rows["propose"].detail.get("aggregate_seconds", 0.0))
                if rows.get("vote") is not None and rows["vote"].status.value == "done":
                    per["vote"].append(rows["vote"].detail.get("review_seconds", 0.0) + rows["vote"].seconds)
                per["commit"].append(rows["pull"].detail["seconds"])
            info = coordinator.round_info(round_id)
            return {"nodes": n, "chain": state["chain"], "committee": info.committee_size,
                    "status": info.status.name, "passes": passes, "wall_s": wall,
                    "errors": [e for _, e in net.errors],
                    "sum_s": {p: sum(v) for p, v in per.items()},
                    "mean_s": {p: (sum(v) / len(v) if v else 0.0) for p, v in per.items()},
                    "count": {p: len(v) for p, v in per.items()}}
        finally:
            for d in daemons:
                d.state.close()
            _devnet("stop", run)


def table(results: list[dict[str, Any]]) -> str:
    base = results[0]
    head = "| phase | " + " | ".join(f"n={r['nodes']} sum s (×{base['nodes']}) | mean/node s" for r in results) + " |"
    lines = [head, "|---" * (1 + 2 * len(results)) + "|"]
    for p in PHASES:
        cells = []
        for r in results:
            s, b = r["sum_s"][p], base["sum_s"][p]
            ratio = f"{s / b:.1f}" if b else "-"
            cells += [f"{s:.2f} (×{ratio})", f"{r['mean_s'][p]:.3f}"]
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    walls = []
    for r in results:
        walls += [f"{r['wall_s']:.1f} (×{r['wall_s'] / base['wall_s']:.1f})", f"k={r['committee']}"]
    lines.append("| round wall | " + " | ".join(walls) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[4, 16, 32])
    parser.add_argument("--committee", type=int, default=8, help="expected committee size k (capped at n)")
    parser.add_argument("--chain", choices=("auto", "anvil", "eth-tester"), default="auto",
                        help="the devnet's chain (auto: anvil when installed)")
    parser.add_argument("--compression-rank", type=int, default=2, help="the nodes' PowerSGD rank (0: off)")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(1)
    model_dir = _tiny_model()
    results = []
    for n in args.nodes:
        r = bench(n, model_dir, args.committee, args.chain, args.compression_rank)
        print(f"n={n}: {r['status']} on {r['chain']} in {r['wall_s']:.1f}s ({r['passes']} passes), "
              f"committee {r['committee']}, {len(r['errors'])} retried error(s)", file=sys.stderr, flush=True)
        results.append(r)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
