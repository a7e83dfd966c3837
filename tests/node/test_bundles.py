"""Update bundles on IPFS: plain and PowerSGD-compressed, read back exactly; the committee gates them."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from flare_chain import attacks
from flare_chain.chain import Submission
from flare_chain.committee.aggregate import check_submissions
from flare_chain.compression import PowerSGDCompressor, PowerSGDConfig
from flare_chain.errors import UpdateError
from flare_chain.ipfs import ContentStore, cid_to_bytes
from flare_chain.lora.files import Manifest, tensor_shapes
from flare_chain.node.bundles import (
    CID_VERSION,
    COMPRESSED_DELTA_FILE,
    MANIFEST_FILE,
    GlobalAdapter,
    fetch_update_bundle,
    manifest_hash,
    pin_update_bundle,
)

SHAPES = {"m.lora_A.weight": (4, 64), "m.lora_B.weight": (64, 4), "n.lora_A.weight": (4, 64),
          "n.lora_B.weight": (64, 4)}


def _delta(seed: int, common_seed: int = 0) -> dict[str, torch.Tensor]:
    common = torch.Generator().manual_seed(common_seed)
    own = torch.Generator().manual_seed(1000 + seed)
    return {k: (torch.randn(s, generator=common) + 0.3 * torch.randn(s, generator=own)) * 1e-2
            for k, s in sorted(SHAPES.items())}


def _manifest(delta: dict[str, torch.Tensor], node: str = "0x" + "11" * 20, round_id: int = 1,
              samples: int = 10) -> Manifest:
    return Manifest(kind="delta", base_model_id="ref", base_model_sha256="ab" * 32, rank=4, alpha=8.0,
                    target_modules=["m", "n"], sample_count=samples, shapes=tensor_shapes(delta),
                    round=round_id, node=node)


@pytest.fixture()
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "ipfs")


def test_uncompressed_bundle_reads_back_unchanged(store: ContentStore) -> None:
    delta = _delta(0)
    cid, digest = pin_update_bundle(store, delta, _manifest(delta))
    got, manifest = fetch_update_bundle(store, cid, digest, expected_shapes=SHAPES)
    assert all(torch.equal(got[k], delta[k]) for k in delta)
    assert "powersgd_rank" not in manifest.metrics


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_compressed_bundle_decompresses_exactly_what_was_sent(store: ContentStore, dtype: str) -> None:
    # Prepare
    delta = _delta(0)
    sender = PowerSGDCompressor(PowerSGDConfig(rank=1, dtype=dtype))
    mirror = PowerSGDCompressor(PowerSGDConfig(rank=1, dtype=dtype))
    # Execute
    cid, digest = pin_update_bundle(store, delta, _manifest(delta), compressor=sender)
    got, manifest = fetch_update_bundle(store, cid, digest, expected_shapes=SHAPES)
    # Assert: the reader gets bit for bit what the sender's error feedback accounted as sent
    sent = mirror.step(delta).sent
    assert all(torch.equal(got[k], sent[k]) for k in sent)
    assert manifest.dtype == dtype and manifest.metrics["powersgd_rank"] == 1.0
    assert 0 < manifest.metrics["powersgd_rel_error"] < 1
    assert manifest.metrics["powersgd_encoded_bytes"] < manifest.metrics["powersgd_fp32_bytes"] / 2
    assert torch.equal(sender.error["m.lora_A.weight"], mirror.error["m.lora_A.weight"])


def test_compressed_bundle_whose_manifest_misstates_the_rank_is_refused(store: ContentStore) -> None:
    delta = _delta(0)
    data, info = PowerSGDCompressor(PowerSGDConfig(rank=1)).encode(delta)
    metrics = {**info.as_metrics(), "powersgd_rank": 2.0}
    manifest = _manifest(delta).model_copy(update={"dtype": "float16", "metrics": metrics})
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / COMPRESSED_DELTA_FILE).write_bytes(data)
        (Path(tmp) / MANIFEST_FILE).write_bytes(manifest.to_bytes())
        cid = store.add_directory(Path(tmp), cid_version=CID_VERSION, pin=True)
    with pytest.raises(UpdateError, match="rank 1, the manifest says rank 2"):
        fetch_update_bundle(store, cid, manifest_hash(manifest.to_bytes()), expected_shapes=SHAPES)


def test_committee_gates_a_compressed_round_and_records_each_rejection(store: ContentStore) -> None:
    # Prepare: 7 honest compressed updates, one ×100 and one sign-flipped, one with a wrong sample count
    glob = {k: torch.zeros(s) for k, s in sorted(SHAPES.items())}
    ref = _manifest(glob).model_copy(update={"kind": "adapter", "node": None, "round": 0, "sample_count": 0})
    previous = GlobalAdapter(cid="bafy-prev", tensors=glob, manifest=ref)
    subs = []
    for i in range(10):
        node = f"0x{i + 1:040x}"
        delta = _delta(i)
        if i == 1:
            delta = attacks.scale(delta, 100.0)
        if i == 2:
            delta = attacks.sign_flip(delta)
        manifest = _manifest(delta, node=node)
        cid, digest = pin_update_bundle(store, delta, manifest,
                                        compressor=PowerSGDCompressor(PowerSGDConfig(rank=2)))
        subs.append(Submission(round_id=1, node=node, cid=cid_to_bytes(cid), sample_count=11 if i == 3 else 10,
                               manifest_hash=digest, block_number=1, tx_hash="0x"))
    # Execute
    accepted, rejected = check_submissions(store, 1, list(reversed(subs)), previous)
    # Assert
    assert {(r.gate, r.node) for r in rejected} == {
        ("norm", subs[1].node), ("direction", subs[2].node), ("policy", subs[3].node)}
    assert [u.submission.node for u in accepted] == [s.node for i, s in enumerate(subs) if i not in (1, 2, 3)]
    assert all(r.reason for r in rejected)
