"""The behaviour registry: one name per attack, omniscience explicit, colluders disguised but reproducible."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from flare_chain import attacks
from flare_chain.attacks import BEHAVIOURS, AttackSettings, RoundView, behaviour
from flare_chain.attacks.behaviour import DILUTION_SHARE
from flare_chain.errors import ConfigError

SHAPES = {"m.lora_A.weight": (4, 16), "m.lora_B.weight": (16, 4)}


def _delta(seed: int, scale: float = 1.0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: scale * torch.randn(s, generator=gen) for k, s in SHAPES.items()}


def _norm(d: dict[str, torch.Tensor]) -> float:
    return math.sqrt(sum(float((v.double() ** 2).sum()) for v in d.values()))


def _view(seed: int, *, omniscient: bool, own_scale: float = 1.0) -> RoundView:
    honest = [_delta(100 + i) for i in range(6)]
    return RoundView(own=_delta(seed, own_scale), global_tensors=_delta(50), nodes=10, attackers=4, seed=seed,
                     honest=honest if omniscient else ())


def test_the_issue_attacks_are_all_registered_and_omniscience_is_declared() -> None:
    wanted = {"alie", "alie_nm", "ipm_0.1", "ipm_0.5", "minmax_std", "minmax_sign", "minsum_std", "minsum_sign",
              "near_duplicate", "sign_flip_nm", "label_poison", "backdoor"}
    assert wanted <= set(BEHAVIOURS)
    for name in ("alie", "ipm_0.5", "minmax_std", "minsum_sign", "near_duplicate"):
        assert BEHAVIOURS[name].omniscient, name
    assert not BEHAVIOURS["sign_flip"].omniscient and not BEHAVIOURS["backdoor"].omniscient
    assert BEHAVIOURS["backdoor"].trains_on == "backdoor" and BEHAVIOURS["label_poison"].trains_on == "label_poison"


@pytest.mark.parametrize("name", sorted(BEHAVIOURS))
def test_every_behaviour_crafts_an_update_of_the_right_names_reproducibly(name: str) -> None:
    b = behaviour(name)
    view = _view(3, omniscient=b.omniscient)
    out, again = b.craft(view), b.craft(view)
    assert set(out) == set(SHAPES)
    assert all(torch.equal(out[k], again[k]) or name in ("nan", "inf") for k in out)


def test_an_omniscient_behaviour_without_the_honest_updates_fails_with_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="honest"):
        behaviour("alie").craft(_view(1, omniscient=False))


def test_colluders_send_one_vector_each_with_its_own_tiny_noise() -> None:
    b = behaviour("alie")
    a, c = b.craft(_view(1, omniscient=True)), b.craft(_view(2, omniscient=True))
    gap = _norm({k: a[k] - c[k] for k in a}) / _norm(a)
    assert 0 < gap < 1e-5  # not bit-identical, yet one vector
    honest = _view(1, omniscient=True).honest
    expected = attacks.alie(honest, attacks.alie_z(10, 4))
    assert _norm({k: a[k] - expected[k] for k in a}) / _norm(expected) < 1e-5


@pytest.mark.parametrize("name", ["alie_nm", "sign_flip_nm", "near_duplicate", "adapter_negation_nm", "dilution"])
def test_norm_matched_behaviours_send_the_median_honest_norm(name: str) -> None:
    view = _view(1, omniscient=True, own_scale=7.0)
    honest_norms = sorted(_norm(dict(h)) for h in view.honest)
    assert _norm(behaviour(name).craft(view)) == pytest.approx(honest_norms[3], rel=1e-4)


def test_diluting_nodes_keep_a_sliver_of_their_own_update_each_under_its_own_noise() -> None:
    # Prepare: two diluting nodes with the same own update (large tensors: random directions are near-orthogonal)
    gen = torch.Generator().manual_seed(9)
    big = [{"m.lora_A.weight": torch.randn(64, 256, generator=gen)} for _ in range(6)]
    views = [RoundView(own=big[0], global_tensors=big[1], nodes=10, attackers=4, seed=seed, honest=big[1:])
             for seed in (1, 2)]
    # Execute
    first, second = (behaviour("dilution").craft(v) for v in views)

    # Assert: each points 0.15 / sqrt(1 + 0.15²) along its own update, and the two are far apart (no duplicate)
    def cosine(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
        return sum(float((a[k].double() * b[k].double()).sum()) for k in a) / (_norm(a) * _norm(b))

    expected = DILUTION_SHARE / math.sqrt(1 + DILUTION_SHARE**2)
    for out in (first, second):
        assert cosine(out, views[0].own) == pytest.approx(expected, abs=0.05)
    assert _norm({k: first[k] - second[k] for k in first}) / _norm(first) > 0.5


def test_attack_settings_validate_the_name_and_the_noise() -> None:
    assert AttackSettings(kind="minmax_std").behaviour.name == "minmax_std"
    with pytest.raises(ConfigError, match="unknown attack 'alie2'"):
        AttackSettings(kind="alie2")
    with pytest.raises(ValidationError):
        AttackSettings(kind="alie", relative_noise=2.0)
