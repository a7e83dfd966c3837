"""A member on one CPU approves an honest exact-LoRA leader on another, and still refuses a tampered one.

The leader runs in a child process with ``ATEN_CPU_CAPABILITY=default`` and MKL held to SSE4.2 or AVX2 (an
older CPU's kernels; the member here uses the native ones, AVX-512 on the machine this was written on).
Exact LoRA's SVDs run in MKL's LAPACK, so their last bits, signs and rotations may differ, and with them the
bundle's CID: the member's :func:`~flare_chain.committee.aggregate.reproduce_aggregate` judges by how well the
proposal approximates the exact mean instead. A larger synthetic round takes the sketched (float32) path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from flare_chain.aggregation import ClientUpdate
from flare_chain.aggregation.exact_lora import ExactResult, approximation_gap
from flare_chain.chain import Submission
from flare_chain.committee.aggregate import CheckedUpdate, build_aggregate, reproduce_aggregate
from flare_chain.ipfs import ContentStore
from flare_chain.lora.adapter import initial_adapter
from flare_chain.node.bundles import fetch_global_bundle, pin_global_bundle
from flare_chain.node.participant import initial_global_manifest
from flare_chain.protocol.spec import AggregatorSpec

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("_exact_leader_child.py")
SPEC = AggregatorSpec(name="exact_lora", exact_residual_rank=6)
OTHER_CPUS = [{"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
              {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}]
P = "base_model.model.model.layers.0.self_attn.q_proj."


def _leader(job: Path, out: Path, settings: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.update(settings)
    run = subprocess.run([sys.executable, str(CHILD), str(job), str(out)], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(out.read_text())


def _synthetic(path: Path) -> tuple[dict[str, torch.Tensor], list[ClientUpdate]]:
    """40 clients of rank 4 on a 300 x 200 module: k = 160 > 4·w = 56, so the aggregate is sketched."""
    gen = torch.Generator().manual_seed(7)
    glob = {P + "lora_A.weight": torch.randn(4, 200, generator=gen), P + "lora_B.weight": torch.randn(300, 4,
                                                                                                    generator=gen)}
    clients = [ClientUpdate(node=f"c{i:02d}", delta={k: 0.3 * torch.randn(v.shape, generator=gen)
                                                     for k, v in glob.items()}, sample_count=1 + i)
               for i in range(40)]
    save_file({**{f"global|{k}": v for k, v in glob.items()},
               **{f"{c.node}|{k}": v for c in clients for k, v in c.delta.items()}}, str(path))
    return glob, clients


def _updates(previous) -> list[CheckedUpdate]:
    """Five random first-round deltas (k = 20 <= min(out, in) = 32: the exact SVD path)."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for i in range(5):
        node = f"0x{i + 1:040x}"
        delta = {k: 0.1 * torch.randn(v.shape, generator=gen) for k, v in previous.tensors.items()}
        manifest = previous.manifest.model_copy(update={"kind": "delta", "round": 1, "node": node,
                                                        "sample_count": 10 + i})
        sub = Submission(round_id=1, node=node, cid=b"\x01\x55", sample_count=10 + i, manifest_hash=bytes(32),
                         block_number=1, tx_hash="0x")
        out.append(CheckedUpdate(submission=sub, delta=delta, manifest=manifest))
    return out


@pytest.mark.parametrize("other_cpu", OTHER_CPUS, ids=["sse42-default", "avx2"])
def test_a_member_approves_an_exact_leader_on_another_cpu_and_refuses_a_tampered_one(
        tmp_path: Path, tiny_model_dir: Path, tiny_train_params, other_cpu: dict[str, str]) -> None:
    store = ContentStore(tmp_path / "ipfs")
    gen = torch.Generator().manual_seed(1)
    tensors = {k: (v if "lora_A" in k else 0.05 * torch.randn(v.shape, generator=gen))
               for k, v in initial_adapter(tiny_model_dir, tiny_train_params, seed=0).items()}
    start_cid = pin_global_bundle(store, tensors, initial_global_manifest(tiny_model_dir, tiny_train_params, tensors),
                                  tiny_model_dir, tiny_train_params)
    start = fetch_global_bundle(store, start_cid)
    updates = _updates(start)
    save_file({f"{u.submission.node}|{k}": v for u in updates for k, v in u.delta.items()}, str(tmp_path / "d.st"))
    glob, clients = _synthetic(tmp_path / "synthetic.st")
    job = tmp_path / "job.json"
    job.write_text(json.dumps({
        "store": str(store.root), "model_dir": str(tiny_model_dir), "params": tiny_train_params.model_dump_json(),
        "aggregator": SPEC.model_dump_json(), "previous_cid": start_cid, "deltas": str(tmp_path / "d.st"),
        "samples": {u.submission.node: u.submission.sample_count for u in updates},
        "synthetic": str(tmp_path / "synthetic.st"), "synthetic_out": str(tmp_path / "synthetic-out.st")}))

    out = _leader(job, tmp_path / "out.json", other_cpu)

    # The member, natively: the other CPU's bundle stands, whether or not its bytes came out the same.
    mine = build_aggregate(store, 1, start, updates, tiny_model_dir, tiny_train_params, max_sample_count=10**6,
                           aggregator=SPEC.build(), pin=False)
    _, reason = reproduce_aggregate(store, 1, start, updates, tiny_model_dir, tiny_train_params,
                                    proposed_cid=out["cid"], max_sample_count=10**6, aggregator=SPEC.build())
    assert reason is None, reason
    print(f"{other_cpu}: leader's CID {'equals' if out['cid'] == mine.cid else 'differs from'} the member's")

    # ... and the same leader's bundle with one module's B moved by 2% does not.
    theirs = fetch_global_bundle(store, out["cid"])
    key = sorted(k for k in theirs.tensors if k.endswith("lora_B.weight"))[-1]
    forged = pin_global_bundle(store, {**theirs.tensors, key: theirs.tensors[key] * 1.02}, theirs.manifest,
                               tiny_model_dir, tiny_train_params, residual=theirs.residual)
    _, reason = reproduce_aggregate(store, 1, start, updates, tiny_model_dir, tiny_train_params,
                                    proposed_cid=forged, max_sample_count=10**6, aggregator=SPEC.build())
    assert reason is not None and "worse" in reason

    # The sketched path (float32 products, whose kernels differ most between CPUs) stays inside the tolerance.
    other = load_file(str(tmp_path / "synthetic-out.st"))
    adapter = {k[len("adapter|"):]: v for k, v in other.items() if k.startswith("adapter|")}
    residual = {k[len("residual|"):]: v for k, v in other.items() if k.startswith("residual|")}
    own: ExactResult = SPEC.build().aggregate_adapters(glob, clients)  # type: ignore[union-attr]
    _, gap = approximation_gap(glob, clients, None, own, adapter, residual)
    assert gap <= SPEC.exact_tolerance / 10, gap
    moved = {**adapter, P + "lora_B.weight": adapter[P + "lora_B.weight"] * 1.02}
    assert approximation_gap(glob, clients, None, own, moved, residual)[1] > SPEC.exact_tolerance
    same = all(torch.equal(adapter[k], own.adapter[k]) for k in adapter)
    print(f"sketched path: gap {gap:.3g} (tolerance {SPEC.exact_tolerance:g}); bytes {'equal' if same else 'differ'}")
