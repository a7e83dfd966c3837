"""Each update-level attack does what a malicious node would, reproducibly, and leaves the honest input alone."""

from __future__ import annotations

import math

import pytest
import torch

from flare_chain import attacks
from flare_chain.errors import ConfigError


def _delta(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"m.lora_A.weight": torch.randn(4, 16, generator=gen), "m.lora_B.weight": torch.randn(16, 4, generator=gen)}


def _norm(d: dict[str, torch.Tensor]) -> float:
    return math.sqrt(sum(float((v.double() ** 2).sum()) for v in d.values()))


def test_sign_flip_negates_and_does_not_touch_the_input() -> None:
    delta = _delta()
    copy = {k: v.clone() for k, v in delta.items()}
    out = attacks.sign_flip(delta)
    assert all(torch.equal(out[k], -copy[k]) and torch.equal(delta[k], copy[k]) for k in delta)


@pytest.mark.parametrize("factor", [10.0, 100.0])
def test_scaling_multiplies_the_norm(factor: float) -> None:
    assert _norm(attacks.scale(_delta(), factor)) == pytest.approx(factor * _norm(_delta()), rel=1e-6)


def test_noise_is_seeded_and_sized_relative_to_the_delta() -> None:
    delta = _delta()
    a, b = attacks.gaussian_noise(delta, seed=3), attacks.gaussian_noise(delta, seed=3)
    assert all(torch.equal(a[k], b[k]) for k in a)
    noise = {k: a[k] - delta[k] for k in a}
    rms = _norm(delta) / math.sqrt(128)
    assert _norm(noise) / math.sqrt(128) == pytest.approx(10 * rms, rel=0.2)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_plants_the_value(value: float) -> None:
    out = attacks.non_finite(_delta(), value=value)
    first = out[sorted(out)[0]].view(-1)[0]
    assert math.isnan(first) if math.isnan(value) else float(first) == value
    with pytest.raises(ConfigError):
        attacks.non_finite(_delta(), value=1.0)


def test_wrong_shape_changes_exactly_one_tensor() -> None:
    out = attacks.wrong_shape(_delta())
    assert tuple(out["m.lora_A.weight"].shape) == (4, 17)
    assert tuple(out["m.lora_B.weight"].shape) == (16, 4)


def test_data_poisoning_keeps_the_characters_and_line_structure_but_scrambles_them() -> None:
    texts = ["def add(a, b):\n    return a + b\n", "import os\nprint(os.sep)"]
    poisoned = attacks.poison_texts(texts, seed=1)
    assert poisoned == attacks.poison_texts(texts, seed=1)
    for clean, bad in zip(texts, poisoned, strict=True):
        assert sorted(clean) == sorted(bad) and clean.count("\n") == bad.count("\n")
    assert poisoned != texts


def test_colluders_send_one_crafted_update_opposing_the_honest_mean_at_an_honest_size() -> None:
    honest = [_delta(i) for i in range(5)]
    for h in honest:  # give the honest updates a common direction
        h["m.lora_A.weight"] += 3.0
    crafted = attacks.colluding_update(honest)
    mean = {k: torch.stack([h[k] for h in honest]).mean(0) for k in crafted}
    dot = sum(float((crafted[k] * mean[k]).sum()) for k in crafted)
    assert dot < 0
    norms = sorted(_norm(h) for h in honest)
    assert _norm(crafted) == pytest.approx(norms[2], rel=1e-5)


def test_every_named_delta_attack_runs() -> None:
    for name, attack in attacks.DELTA_ATTACKS.items():
        out = attack(_delta())
        assert set(out) == set(_delta()), name


def test_relative_noise_makes_copies_distinct_by_about_the_requested_share_of_the_norm() -> None:
    delta = _delta()
    a = attacks.with_relative_noise(delta, 1e-3, seed=1)
    b = attacks.with_relative_noise(delta, 1e-3, seed=2)
    assert any(not torch.equal(a[k], b[k]) for k in a)
    gap = _norm({k: a[k] - delta[k] for k in a}) / _norm(delta)
    assert gap == pytest.approx(1e-3, rel=0.2)
    assert attacks.with_relative_noise(delta, 1e-3, seed=1)["m.lora_A.weight"].equal(a["m.lora_A.weight"])


def test_rescale_to_hits_the_target_norm() -> None:
    assert _norm(attacks.rescale_to(_delta(), 2.5)) == pytest.approx(2.5, rel=1e-6)


@pytest.mark.parametrize("factor", [1.0, math.sqrt(2.0), 0.3])
def test_adapter_negation_leaves_the_same_model_at_plus_and_minus_delta(factor: float) -> None:
    # Prepare: a global adapter with a learned product B·A
    g = _delta(7)
    # Execute
    d = attacks.adapter_negation(g, factor)
    plus = (g["m.lora_B.weight"] + d["m.lora_B.weight"]) @ (g["m.lora_A.weight"] + d["m.lora_A.weight"])
    minus = (g["m.lora_B.weight"] - d["m.lora_B.weight"]) @ (g["m.lora_A.weight"] - d["m.lora_A.weight"])
    # Assert: the same product either way, the learned one scaled by 1 − s²
    learned = g["m.lora_B.weight"] @ g["m.lora_A.weight"]
    assert torch.allclose(plus, minus, atol=1e-5)
    assert torch.allclose(plus, (1 - factor**2) * learned, atol=1e-4)
