"""The committee's exact-LoRA aggregate: a PEFT adapter whose bundle also pins the residual it carries.

What a member, the next leader and the auditor rely on: the residual is read
back from the committed bundle (so everyone carries the same one), the
adapter folder still loads with PEFT, a malformed residual is refused with
one line naming the file, and a proposal is judged by how well it
approximates the exact mean (sign flips and rotations of the SVD pass,
changed numbers and foreign files do not).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from flare_chain.aggregation import FedAvg
from flare_chain.aggregation.exact_lora import ExactLoraAggregator, lora_modules, lora_products
from flare_chain.chain import Submission
from flare_chain.committee.aggregate import CheckedUpdate, build_aggregate, reproduce_aggregate
from flare_chain.errors import IntegrityError
from flare_chain.ipfs import ContentStore
from flare_chain.lora.adapter import initial_adapter
from flare_chain.lora.peft_files import ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, adapter_safetensors_bytes
from flare_chain.node.bundles import (
    EXACT_RESIDUAL_FILE,
    GLOBAL_MANIFEST_FILE,
    GlobalAdapter,
    fetch_global_bundle,
    pin_global_bundle,
)
from flare_chain.node.participant import initial_global_manifest
from flare_chain.protocol.spec import AggregatorSpec

CAP = 10**6
SPEC = AggregatorSpec(name="exact_lora", exact_residual_rank=6)


@pytest.fixture()
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "ipfs", durable=False)


@pytest.fixture()
def start(store: ContentStore, tiny_model_dir: Path, tiny_train_params) -> GlobalAdapter:
    """Round 0 as the federation pins it: random A, and B nonzero so that products differ from round to round."""
    gen = torch.Generator().manual_seed(1)
    tensors = {k: (v if "lora_A" in k else 0.05 * torch.randn(v.shape, generator=gen))
               for k, v in initial_adapter(tiny_model_dir, tiny_train_params, seed=0).items()}
    manifest = initial_global_manifest(tiny_model_dir, tiny_train_params, tensors)
    cid = pin_global_bundle(store, tensors, manifest, tiny_model_dir, tiny_train_params)
    return fetch_global_bundle(store, cid)


def _updates(previous: GlobalAdapter, round_id: int, count: int = 3, seed: int = 0) -> list[CheckedUpdate]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(count):
        node = f"0x{i + 1:040x}"
        delta = {k: 0.1 * torch.randn(v.shape, generator=gen) for k, v in previous.tensors.items()}
        manifest = previous.manifest.model_copy(update={"kind": "delta", "round": round_id, "node": node,
                                                        "sample_count": 10 + i})
        sub = Submission(round_id=round_id, node=node, cid=b"\x01\x55", sample_count=10 + i,
                         manifest_hash=bytes(32), block_number=1, tx_hash="0x")
        out.append(CheckedUpdate(submission=sub, delta=delta, manifest=manifest))
    return out


def _aggregate(store, previous, updates, model_dir, params, *, pin=True, spec=SPEC):
    return build_aggregate(store, 1, previous, updates, model_dir, params, max_sample_count=CAP,
                           aggregator=spec.build(), pin=pin)


def _folder(tmp_path: Path, store: ContentStore, cid: str, name: str) -> Path:
    folder = tmp_path / name
    fetch_global_bundle(store, cid, out_dir=folder)
    return folder


def test_the_residual_is_pinned_with_the_adapter_which_peft_still_loads(store, start, tiny_model_dir,
                                                                        tiny_train_params, tmp_path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    updates = _updates(start, 1)
    result = _aggregate(store, start, updates, tiny_model_dir, tiny_train_params)
    fetched = fetch_global_bundle(store, result.cid)

    assert {e.name for e in store.ls(result.cid)} == {ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE,
                                                      GLOBAL_MANIFEST_FILE, EXACT_RESIDUAL_FILE}
    assert result.residual is not None and fetched.residual.keys() == result.residual.keys()
    assert all(torch.equal(fetched.residual[k], result.residual[k]) for k in result.residual)
    prefixes, _ = lora_modules(fetched.residual)
    ranks = [fetched.residual[p + "lora_A.weight"].shape[0] for p in prefixes]
    assert max(ranks) == SPEC.exact_residual_rank  # 3 clients x rank 4 = 12 directions, 4 kept, 6 carried
    assert fetched.manifest.shapes == start.manifest.shapes  # the adapter itself stays rank r

    folder = _folder(tmp_path, store, result.cid, "adapter")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, str(folder))
    loaded = {n: p for n, p in model.named_parameters() if "lora_" in n}
    key = sorted(k for k in result.adapter if k.endswith("lora_B.weight"))[0]
    name = next(n for n in loaded if n.replace(".default", "") == key)
    assert torch.equal(loaded[name].detach(), result.adapter[key])


def test_the_next_round_carries_the_residual_read_from_the_committed_bundle(store, start, tiny_model_dir,
                                                                           tiny_train_params) -> None:
    first = _aggregate(store, start, _updates(start, 1), tiny_model_dir, tiny_train_params)
    committed = fetch_global_bundle(store, first.cid)
    updates = _updates(committed, 2, seed=5)

    carried = _aggregate(store, committed, updates, tiny_model_dir, tiny_train_params, pin=False)
    forgotten = GlobalAdapter(cid=committed.cid, tensors=committed.tensors, manifest=committed.manifest)
    without = _aggregate(store, forgotten, updates, tiny_model_dir, tiny_train_params, pin=False)

    assert carried.cid != without.cid
    # With the residual, B·A + residual of round 2 holds more of the carried part: compare with the full target.
    ref = ExactLoraAggregator().aggregate_adapters(committed.tensors, [
        u_ for u_ in _client(updates)], committed.residual)  # unbounded: the exact target's best rank-r part
    target = lora_products(ref.adapter)
    err_with = sum(float((lora_products(carried.adapter)[p] - target[p]).norm()) for p in target)
    err_without = sum(float((lora_products(without.adapter)[p] - target[p]).norm()) for p in target)
    assert err_with < err_without


def _client(updates):
    from flare_chain.aggregation import ClientUpdate

    return [ClientUpdate(node=u.submission.node, delta=u.delta, sample_count=u.submission.sample_count)
            for u in updates]


def test_an_adapter_from_another_aggregator_carries_an_empty_residual(store, start, tiny_model_dir,
                                                                      tiny_train_params) -> None:
    fedavg = build_aggregate(store, 1, start, _updates(start, 1), tiny_model_dir, tiny_train_params,
                             max_sample_count=CAP, aggregator=FedAvg())
    assert EXACT_RESIDUAL_FILE not in {e.name for e in store.ls(fedavg.cid)}
    assert fetch_global_bundle(store, fedavg.cid).residual == {} and start.residual == {}


def _repin(tmp_path: Path, store: ContentStore, cid: str, residual: dict[str, torch.Tensor] | None,
           extra: str | None = None) -> str:
    """The bundle ``cid`` with its residual file replaced (or removed), plus an optional foreign file."""
    folder = _folder(tmp_path, store, cid, f"repin-{len(list(tmp_path.iterdir()))}")
    (folder / EXACT_RESIDUAL_FILE).unlink(missing_ok=True)
    if residual is not None:
        (folder / EXACT_RESIDUAL_FILE).write_bytes(adapter_safetensors_bytes(residual))
    if extra is not None:
        (folder / extra).write_text("not part of a flare-chain bundle")
    new = store.add_directory(folder, cid_version=1, pin=True)
    shutil.rmtree(folder)
    return new


@pytest.mark.parametrize("damage", ["nan", "shape", "stray_key", "one_factor"])
def test_a_malformed_residual_is_one_integrity_error_naming_the_file(store, start, tiny_model_dir, tiny_train_params,
                                                                     tmp_path, damage) -> None:
    result = _aggregate(store, start, _updates(start, 1), tiny_model_dir, tiny_train_params)
    assert result.residual is not None
    bad = dict(result.residual)
    key_a = sorted(k for k in bad if k.endswith("lora_A.weight"))[0]
    if damage == "nan":
        bad[key_a] = bad[key_a].clone()
        bad[key_a][0, 0] = float("nan")
    elif damage == "shape":
        bad[key_a] = torch.zeros(bad[key_a].shape[0], bad[key_a].shape[1] + 1)
    elif damage == "stray_key":
        bad["base_model.model.lm_head.lora_A.weight"] = torch.zeros(1, 3)
    else:
        del bad[key_a]
    cid = _repin(tmp_path, store, result.cid, bad)

    with pytest.raises(IntegrityError, match=EXACT_RESIDUAL_FILE) as info:
        fetch_global_bundle(store, cid)
    assert "\n" not in str(info.value)


def _judge(store, start, updates, model_dir, params, proposed_cid, spec=SPEC):
    return reproduce_aggregate(store, 1, start, updates, model_dir, params, proposed_cid=proposed_cid,
                               max_sample_count=CAP, aggregator=spec.build())[1]


def _rotated(adapter: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """``B Q, Qᵀ A`` per module with Q a random orthogonal matrix times signs: the same products, other bytes.

    What another CPU's SVD may return for the same mean (sign flips, or vectors rotated inside near-equal
    singular values).
    """
    gen = torch.Generator().manual_seed(seed)
    prefixes, _ = lora_modules(adapter)
    out = dict(adapter)
    for p in prefixes:
        a, b = adapter[p + "lora_A.weight"].double(), adapter[p + "lora_B.weight"].double()
        q, _ = torch.linalg.qr(torch.randn(a.shape[0], a.shape[0], generator=gen, dtype=torch.float64))
        out[p + "lora_A.weight"] = (q.T @ a).float()
        out[p + "lora_B.weight"] = (b @ q).float()
    return out


def test_a_member_approves_an_honest_proposal_whose_svd_came_out_rotated(store, start, tiny_model_dir,
                                                                          tiny_train_params) -> None:
    updates = _updates(start, 1)
    honest = _aggregate(store, start, updates, tiny_model_dir, tiny_train_params)
    assert honest.residual is not None
    assert _judge(store, start, updates, tiny_model_dir, tiny_train_params, honest.cid) is None

    other_cpu = pin_global_bundle(store, _rotated(honest.adapter, 3), honest.manifest, tiny_model_dir,
                                  tiny_train_params, residual=_rotated(honest.residual, 4))
    assert other_cpu != honest.cid
    assert _judge(store, start, updates, tiny_model_dir, tiny_train_params, other_cpu) is None


@pytest.mark.parametrize("tamper", ["adapter", "residual", "dropped_residual", "rank_above_bound"])
def test_a_member_rejects_a_tampered_exact_proposal(store, start, tiny_model_dir, tiny_train_params,
                                                    tamper) -> None:
    updates = _updates(start, 1)
    honest = _aggregate(store, start, updates, tiny_model_dir, tiny_train_params)
    assert honest.residual is not None
    adapter, residual = dict(honest.adapter), dict(honest.residual)
    prefixes, _ = lora_modules(residual)
    p = prefixes[-1]  # one module of many: a per-module check, not a total that dilutes it
    if tamper == "adapter":
        adapter[p + "lora_B.weight"] = adapter[p + "lora_B.weight"] * 1.05
    elif tamper == "residual":
        residual[p + "lora_B.weight"] = residual[p + "lora_B.weight"] * 1.5
    elif tamper == "dropped_residual":
        residual[p + "lora_A.weight"] = residual[p + "lora_A.weight"][:0]
        residual[p + "lora_B.weight"] = residual[p + "lora_B.weight"][:, :0]
    else:  # a residual one direction over the spec's bound, which the members carry into every later round
        residual = ExactLoraAggregator(max_residual_rank=SPEC.exact_residual_rank + 1).aggregate_adapters(
            start.tensors, _client(updates), None).residual
    forged = pin_global_bundle(store, adapter, honest.manifest, tiny_model_dir, tiny_train_params, residual=residual)

    reason = _judge(store, start, updates, tiny_model_dir, tiny_train_params, forged)

    assert reason is not None and forged in reason
    if tamper in ("adapter", "residual", "dropped_residual"):
        assert p in reason and "approximates the exact mean worse" in reason
    else:
        assert "above the bound" in reason


@pytest.mark.parametrize("forgery", ["foreign_file", "no_residual", "manifest"])
def test_a_member_rejects_an_exact_bundle_that_is_not_the_canonical_one(store, start, tiny_model_dir,
                                                                        tiny_train_params, tmp_path,
                                                                        forgery) -> None:
    updates = _updates(start, 1)
    honest = _aggregate(store, start, updates, tiny_model_dir, tiny_train_params)
    assert honest.residual is not None
    if forgery == "foreign_file":
        forged = _repin(tmp_path, store, honest.cid, honest.residual, extra="README.txt")
    elif forgery == "no_residual":
        forged = _repin(tmp_path, store, honest.cid, None)
    else:
        manifest = honest.manifest.model_copy(update={"metrics": {"accepted_updates": 2.0}})
        forged = pin_global_bundle(store, honest.adapter, manifest, tiny_model_dir, tiny_train_params,
                                   residual=honest.residual)

    reason = _judge(store, start, updates, tiny_model_dir, tiny_train_params, forged)

    assert reason is not None and forged in reason


def test_the_spec_builds_exact_lora_with_its_bounds() -> None:
    from pydantic import ValidationError

    built = AggregatorSpec(name="exact_lora", exact_residual_rank=3, exact_tolerance=1e-7).build()
    assert isinstance(built, ExactLoraAggregator)
    assert built.max_residual_rank == 3 and built.tolerance == 1e-7
    for bad in ({"exact_residual_rank": -1}, {"exact_residual_rank": 1025}, {"exact_tolerance": 0.0},
                {"exact_tolerance": 0.5}):
        with pytest.raises(ValidationError):
            AggregatorSpec(name="exact_lora", **bad)
