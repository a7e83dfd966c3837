"""DP: clipping bounds each update, noise is reproducible, and the accountant's ε behaves."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flare_chain.aggregation import ClientUpdate, DPFedAvg, PrivacyAccountant, clip_update, privatize_update
from flare_chain.errors import ConfigError


def _norm(tensors: dict[str, torch.Tensor]) -> float:
    return math.sqrt(sum(float((v.to(torch.float64) ** 2).sum()) for v in tensors.values()))


@settings(max_examples=30, deadline=None)
@given(scale=st.floats(1e-4, 1e4), clip=st.floats(1e-3, 10.0), seed=st.integers(0, 1000))
def test_clipped_update_never_exceeds_the_bound_and_keeps_its_direction(scale: float, clip: float,
                                                                        seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    delta = {"a": torch.randn(3, 5, generator=gen) * scale, "b": torch.randn(7, generator=gen) * scale}
    clipped, before = clip_update(delta, clip)
    assert _norm(clipped) <= clip * (1 + 1e-9)
    assert before == pytest.approx(_norm(delta))
    if before <= clip:
        assert all(torch.equal(clipped[k], delta[k].to(torch.float64)) for k in delta)
    cos = sum(float((clipped[k] * delta[k].to(torch.float64)).sum()) for k in delta) / (_norm(clipped) * before)
    assert cos == pytest.approx(1.0)


def test_dp_fedavg_noise_is_seeded_and_scaled_to_clip_over_n() -> None:
    updates = [ClientUpdate(node=f"n{i}", sample_count=1, delta={"w": torch.full((20000,), 10.0)}) for i in range(4)]
    agg = DPFedAvg(clip_norm=1.0, noise_multiplier=2.0, seed=7)
    a, b = agg.aggregate(updates), agg.aggregate(list(reversed(updates)))
    assert torch.equal(a["w"], b["w"])  # committee members recompute the same noisy aggregate
    clipped_mean = 1.0 / math.sqrt(20000)
    noise = a["w"].to(torch.float64) - clipped_mean
    assert float(noise.std()) == pytest.approx(agg.noise_std(4), rel=0.03)
    assert agg.noise_std(4) == pytest.approx(0.5)
    assert not torch.equal(a["w"], DPFedAvg(1.0, 2.0, seed=8).aggregate(updates)["w"])


def test_local_privatization_clips_then_adds_noise() -> None:
    out = privatize_update({"w": torch.full((10000,), 5.0)}, clip_norm=1.0, noise_multiplier=0.0, seed=0)
    assert _norm(out) == pytest.approx(1.0, rel=1e-6)


def test_epsilon_matches_the_rdp_accountant_and_grows_with_rounds() -> None:
    acc = PrivacyAccountant(noise_multiplier=1.0, target_delta=1e-5)
    # One Gaussian mechanism with σ = 1 at δ = 1e-5: dp-accounting 0.5's RdpAccountant gives ε ≈ 4.73,
    # below the classical RDP bound min_α α/(2σ²) + log(1/δ)/(α − 1) ≈ 5.30 (Mironov 2017).
    first = acc.step()
    classical = min(a / 2 + math.log(1e5) / (a - 1) for a in [1 + x / 10 for x in range(1, 400)])
    assert first == pytest.approx(4.7285, abs=1e-3)
    assert first < classical
    eps = [acc.epsilon_after(r) for r in (1, 2, 5, 10)]
    assert eps == sorted(eps) and len(set(eps)) == 4
    assert acc.epsilon_after(0) == 0.0
    assert PrivacyAccountant(4.0).epsilon_after(5) < PrivacyAccountant(1.0).epsilon_after(5)
    assert PrivacyAccountant(1.0, sampling_probability=0.1).epsilon_after(5) < eps[2]


def test_bad_privacy_settings_are_refused() -> None:
    # the message states the bound the operator must meet: a clip norm of 0 is not allowed, noise 0 is
    with pytest.raises(ConfigError, match=r"clip_norm must be a finite number > 0, got 0.0"):
        DPFedAvg(clip_norm=0.0, noise_multiplier=1.0)
    with pytest.raises(ConfigError, match=r"noise_multiplier must be a finite number >= 0, got -1.0"):
        DPFedAvg(clip_norm=1.0, noise_multiplier=-1.0)
    for delta in (0.0, 1.0, 1.5):  # δ is a probability strictly between 0 and 1
        with pytest.raises(ConfigError, match="target_delta must be in"):
            PrivacyAccountant(1.0, target_delta=delta)
    with pytest.raises(ConfigError, match="sampling_probability must be in"):
        PrivacyAccountant(1.0, sampling_probability=0.0)
    assert PrivacyAccountant(1.0, sampling_probability=1.0).epsilon_after(1) > 0


def test_dp_fedavg_without_noise_is_the_equal_weight_mean_of_the_clipped_updates() -> None:
    # One update over the clip bound, two under it, of different sizes: the aggregate is their
    # clipped mean, whatever their order (noise_multiplier 0 leaves the mean itself visible).
    deltas = [torch.full((4,), 3.0), torch.tensor([0.1, -0.2, 0.3, 0.0]), torch.tensor([-0.25, 0.0, 0.0, 0.5])]
    updates = [ClientUpdate(node=f"n{i}", sample_count=10 * (i + 1), delta={"w": d}) for i, d in enumerate(deltas)]
    clipped = [d.to(torch.float64) * min(1.0, 1.0 / float(d.to(torch.float64).norm())) for d in deltas]
    expected = sum(clipped) / 3
    for order in (updates, updates[::-1]):
        out = DPFedAvg(clip_norm=1.0, noise_multiplier=0.0, seed=1).aggregate(order)["w"]
        assert torch.allclose(out.to(torch.float64), expected, rtol=0, atol=1e-7)  # float32 out


def test_noise_may_be_seeded_with_a_full_256_bit_round_seed() -> None:
    # The round's on-chain seed is 256 bits; the generator takes 63, so the seed is reduced, not refused,
    # and the draw is the same on every committee member.
    seed = int.from_bytes(hashlib.sha256(b"round 7 seed").digest(), "big")
    agg = DPFedAvg(clip_norm=1.0, noise_multiplier=1.0, seed=seed)
    updates = [ClientUpdate(node="n0", sample_count=1, delta={"w": torch.zeros(1000)})]
    first, again = agg.aggregate(updates)["w"], agg.aggregate(updates)["w"]
    assert torch.equal(first, again)
    assert float(first.to(torch.float64).std()) == pytest.approx(1.0, rel=0.1)
