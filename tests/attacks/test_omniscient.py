"""The omniscient attacks have the defining property of their paper, computed from the honest updates."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest
import torch

from flare_chain import attacks
from flare_chain.attacks.omniscient import perturbation
from flare_chain.errors import ConfigError

SHAPES = {"m.lora_A.weight": (4, 16), "m.lora_B.weight": (16, 4)}


def _honest(n: int = 6, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    common = {k: torch.randn(s, generator=gen) for k, s in SHAPES.items()}
    return [{k: common[k] + 0.5 * torch.randn(s, generator=gen) for k, s in SHAPES.items()} for _ in range(n)]


def _flat(d: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([d[k].to(torch.float64).reshape(-1) for k in sorted(d)])


def _rows(honest: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    return torch.stack([_flat(h) for h in honest])


@pytest.mark.parametrize(("nodes", "attackers", "share"), [(10, 4, 0.8), (10, 3, 0.7), (10, 2, 0.6), (20, 6, 0.75)])
def test_alie_z_is_the_papers_quantile(nodes: int, attackers: int, share: float) -> None:
    # s = floor(n/2 + 1) − m supporters; z = Φ⁻¹((n − s)/n)
    assert attacks.alie_z(nodes, attackers) == pytest.approx(NormalDist().inv_cdf(share))


def test_alie_is_mean_minus_z_std_per_coordinate() -> None:
    honest = _honest()
    rows = _rows(honest)
    out = _flat(attacks.alie(honest, 0.84))
    assert torch.allclose(out, rows.mean(0) - 0.84 * rows.std(0, unbiased=True), atol=1e-5)


@pytest.mark.parametrize("epsilon", [0.1, 0.5])
def test_ipm_is_minus_epsilon_times_the_honest_mean(epsilon: float) -> None:
    honest = _honest()
    assert torch.allclose(_flat(attacks.ipm(honest, epsilon)), -epsilon * _rows(honest).mean(0), atol=1e-6)


def _sq_dist(rows: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return ((rows - v) ** 2).sum(dim=1)


@pytest.mark.parametrize("kind", ["std", "sign", "unit"])
def test_min_max_stays_within_the_largest_honest_distance_with_the_largest_such_step(kind: str) -> None:
    # Prepare
    honest = _honest()
    rows = _rows(honest)
    bound = max(float(_sq_dist(rows, r).max()) for r in rows)
    mean, p = rows.mean(0), perturbation(rows, kind)  # type: ignore[arg-type]
    # Execute
    out = _flat(attacks.min_max(honest, kind))  # type: ignore[arg-type]
    # Assert: within the bound, on the ray mean + γ·p, and 1 % further would break it
    assert float(_sq_dist(rows, out).max()) <= bound * (1 + 1e-5)
    gamma = float((out - mean) @ p / (p @ p))
    assert gamma > 0 and torch.allclose(out, mean + gamma * p, atol=1e-4)
    assert float(_sq_dist(rows, mean + 1.01 * gamma * p).max()) > bound


@pytest.mark.parametrize("kind", ["std", "sign"])
def test_min_sum_keeps_its_summed_distance_within_the_honest_maximum_with_the_largest_step(kind: str) -> None:
    honest = _honest()
    rows = _rows(honest)
    bound = max(float(_sq_dist(rows, r).sum()) for r in rows)
    mean, p = rows.mean(0), perturbation(rows, kind)  # type: ignore[arg-type]
    out = _flat(attacks.min_sum(honest, kind))  # type: ignore[arg-type]
    assert float(_sq_dist(rows, out).sum()) <= bound * (1 + 1e-5)
    gamma = float((out - mean) @ p / (p @ p))
    assert gamma > 0 and float(_sq_dist(rows, mean + 1.01 * gamma * p).sum()) > bound


def test_min_sum_steps_no_further_than_min_max() -> None:
    honest = _honest(seed=3)
    mean = _rows(honest).mean(0)
    assert (_flat(attacks.min_sum(honest)) - mean).norm() <= (_flat(attacks.min_max(honest)) - mean).norm() + 1e-6


def test_omniscient_attacks_refuse_too_few_honest_updates_and_bad_parameters() -> None:
    with pytest.raises(ConfigError, match="at least 2 honest"):
        attacks.alie(_honest(1), 1.0)
    with pytest.raises(ConfigError, match="epsilon"):
        attacks.ipm(_honest(), -0.1)
    with pytest.raises(ConfigError, match="attackers"):
        attacks.alie_z(10, 0)
    with pytest.raises(ConfigError, match="finite"):
        attacks.alie(_honest(), math.inf)
