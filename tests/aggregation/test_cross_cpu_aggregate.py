"""Decode → FedAvg → apply gives the same bits under every ATEN_CPU_CAPABILITY (members must reach one CID)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from flare_chain.aggregation import ClientUpdate, FedAvg, apply_delta
from flare_chain.compression import PowerSGDConfig, compress, decode, decompress, encode

REPO = Path(__file__).resolve().parents[2]

# Runs in a child: read the encoded updates, aggregate as a committee member does, print the result's digest.
CHILD = """
import hashlib, json, sys
from pathlib import Path
import torch
from safetensors.torch import load_file
from flare_chain.aggregation import ClientUpdate, FedAvg, apply_delta
from flare_chain.compression import decode, decompress
folder = Path(sys.argv[1])
job = json.loads((folder / "job.json").read_text())
updates = [ClientUpdate(node, decompress(decode((folder / f"{node}.bin").read_bytes())), count)
           for node, count in job["counts"].items()]
out = apply_delta(load_file(str(folder / "global.safetensors")), FedAvg().aggregate(updates))
digest = hashlib.sha256(b"".join(k.encode() + out[k].numpy().tobytes() for k in sorted(out))).hexdigest()
print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "digest": digest}))
"""


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    return hashlib.sha256(b"".join(k.encode() + tensors[k].numpy().tobytes() for k in sorted(tensors))).hexdigest()


def _capabilities() -> list[str | None]:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return ["default", *(["avx2"] if "avx2" in flags else []), None]


def test_decoded_fedavg_is_bit_identical_across_cpu_capabilities(tmp_path: Path) -> None:
    # Prepare: six updates whose entries span six orders of magnitude (so sums of factor products are inexact
    # and their order would show), compressed at rank 8 into bf16 (three nodes) and fp16 (three) factors,
    # encoded as nodes send them.
    gen = torch.Generator().manual_seed(5)
    shapes = {"a.lora_A.weight": (64, 384), "a.lora_B.weight": (384, 64), "b.lora_A.weight": (64, 512)}
    counts = {}
    for i in range(6):
        delta = {k: torch.randn(s, generator=gen) * 10.0 ** torch.randint(-6, 0, s, generator=gen).float()
                 for k, s in shapes.items()}
        sent, _ = compress(delta, PowerSGDConfig(rank=8, dtype="bfloat16" if i < 3 else "float16"))
        assert sent.low_rank, "the test must exercise the low-rank reconstruction"
        node = f"0x{i + 1:040x}"
        (tmp_path / f"{node}.bin").write_bytes(encode(sent))
        counts[node] = 10 + 7 * i
    start = {k: torch.randn(s, generator=gen) * 0.01 for k, s in shapes.items()}
    save_file(start, str(tmp_path / "global.safetensors"))
    (tmp_path / "job.json").write_text(json.dumps({"counts": counts}))
    here = apply_delta(start, FedAvg().aggregate([
        ClientUpdate(n, decompress(decode((tmp_path / f"{n}.bin").read_bytes())), c) for n, c in counts.items()]))

    # Execute: the same aggregation in children forced onto each CPU kernel set.
    seen = {}
    for capability in _capabilities():
        env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
        if capability is not None:
            env["ATEN_CPU_CAPABILITY"] = capability
        run = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], env=env, capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        out = json.loads(run.stdout.strip().splitlines()[-1])
        seen[out["capability"]] = out["digest"]

    # Assert: at least two different kernel sets ran, and every one produced this process's bits.
    assert len(seen) >= 2, seen
    assert set(seen.values()) == {_digest(here)}, seen
