"""Local DP in production: nodes clip and noise before pinning, and the committee refuses what cannot be that."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flare_chain.aggregation import GateSettings
from flare_chain.aggregation.privacy import l2_norm, local_dp_norm_bound, privatize_update
from flare_chain.chain import Submission
from flare_chain.committee.aggregate import check_submissions
from flare_chain.ipfs import ContentStore, cid_to_bytes
from flare_chain.lora.adapter import initial_adapter
from flare_chain.node.bundles import GlobalAdapter, pin_update_bundle
from flare_chain.node.participant import initial_global_manifest
from flare_chain.protocol.spec import PrivacySpec

DP = PrivacySpec(enabled=True, clip_norm=0.5, noise_multiplier=0.8)
OFF = GateSettings(norm=False, direction=False, probe_loss=False, mutual_information=False, duplicates=False)


@pytest.mark.parametrize(("dimension", "clip", "multiplier"), [(16, 1.0, 0.5), (2048, 0.5, 0.8), (50_000, 2.0, 1.5)])
def test_honest_privatized_updates_stay_under_the_bound(dimension: int, clip: float, multiplier: float) -> None:
    bound = local_dp_norm_bound(clip, multiplier, dimension)
    for seed in range(40):
        delta = {"w": torch.randn(dimension, generator=torch.Generator().manual_seed(seed)) * 10}
        assert l2_norm(privatize_update(delta, clip, multiplier, seed=1000 + seed)) <= bound
    # an unclipped delta 10x the clip, noised the same way, is over it
    big = {"w": torch.full((dimension,), 10 * clip / dimension ** 0.5 + multiplier * clip * 2)}
    assert l2_norm(big) > bound


def test_the_bound_grows_with_noise_and_dimension() -> None:
    assert local_dp_norm_bound(1.0, 0.0, 10_000) == 1.0
    assert local_dp_norm_bound(1.0, 1.0, 100) < local_dp_norm_bound(1.0, 1.0, 400) < local_dp_norm_bound(1.0, 2.0, 400)


def test_the_committee_refuses_an_update_that_skipped_clipping(tmp_path: Path, tiny_model_dir: Path,
                                                                 tiny_train_params) -> None:
    store = ContentStore(tmp_path / "ipfs", durable=False)
    start = initial_adapter(tiny_model_dir, tiny_train_params, seed=0)
    base = initial_global_manifest(tiny_model_dir, tiny_train_params, start)
    previous = GlobalAdapter(cid="bafy-round-0", tensors=start, manifest=base)
    gen = torch.Generator().manual_seed(3)
    raw = {k: torch.randn(v.shape, generator=gen) for k, v in sorted(start.items())}  # norm ≈ √d ≫ the clip
    honest = privatize_update(raw, DP.clip_norm, DP.noise_multiplier, seed=11)
    cheat = {k: v.clone() for k, v in raw.items()}  # sent as trained: neither clipped nor noised
    subs = []
    for i, delta in enumerate((honest, cheat)):
        node = f"0x{i + 1:040x}"
        manifest = base.model_copy(update={"kind": "delta", "round": 1, "node": node, "sample_count": 10})
        cid, digest = pin_update_bundle(store, delta, manifest)
        subs.append(Submission(round_id=1, node=node, cid=cid_to_bytes(cid), sample_count=10, manifest_hash=digest,
                               block_number=1, tx_hash="0x"))
    accepted, rejected = check_submissions(store, 1, subs, previous, gates=OFF, privacy=DP)
    assert [u.submission.node for u in accepted] == [subs[0].node]
    assert [(r.node, r.gate) for r in rejected] == [(subs[1].node, "privacy")]
    assert "exceeds" in rejected[0].reason and "clipped to 0.5" in rejected[0].reason
    # the same updates without DP in the spec: nothing to refuse on norm grounds
    accepted, rejected = check_submissions(store, 1, subs, previous, gates=OFF)
    assert len(accepted) == 2 and not rejected
