"""Omniscient attacks: crafted from the honest updates of the round.

These are the attacks of the robust-aggregation literature that assume the
colluders see every honest update of the round (or a good estimate of it:
in a federation whose updates are public on IPFS, a late submitter does).
Each returns the one vector the colluders send; the behaviour layer
(:mod:`flare_chain.attacks.behaviour`) adds each colluder's own disguise.

* :func:`alie` — "A Little Is Enough" (Baruch et al., 2019): per coordinate
  ``mean − z·std``, with the paper's ``z`` from :func:`alie_z`: far enough to
  bias the aggregate, close enough to sit inside the honest spread.
* :func:`ipm` — inner-product manipulation (Xie et al., 2020): ``−ε·mean``.
* :func:`min_max` / :func:`min_sum` — Shejwalkar & Houmansadr (2021):
  ``mean + γ·p`` for a perturbation ``p`` (``−std``, ``−sign(mean)`` or
  ``−mean/‖mean‖``) with the largest ``γ`` whose distance to the honest
  updates stays within what honest updates show among themselves (the largest
  distance for min-max, the largest sum of squared distances for min-sum).

Statistics are float64 over the flattened deltas (tensors by sorted name);
the standard deviation is the sample one (``n − 1``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from statistics import NormalDist
from typing import Literal

import torch

from flare_chain.attacks.deltas import Delta
from flare_chain.errors import ConfigError

__all__ = ["Perturbation", "alie", "alie_z", "ipm", "min_max", "min_sum", "perturbation"]

Perturbation = Literal["std", "sign", "unit"]


def _stack(honest: Sequence[Delta], minimum: int = 2) -> tuple[list[str], list[torch.Size], torch.Tensor]:
    if len(honest) < minimum:
        raise ConfigError(f"an omniscient attack needs at least {minimum} honest updates of the round, "
                          f"got {len(honest)}")
    keys = sorted(honest[0])
    shapes = [honest[0][k].shape for k in keys]
    rows = torch.stack([torch.cat([h[k].reshape(-1).to(torch.float64) for k in keys]) for h in honest])
    return keys, shapes, rows


def _unflatten(keys: list[str], shapes: list[torch.Size], flat: torch.Tensor) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    start = 0
    for key, shape in zip(keys, shapes, strict=True):
        size = math.prod(shape)
        out[key] = flat[start:start + size].reshape(shape).to(torch.float32).contiguous()
        start += size
    return out


def alie_z(nodes: int, attackers: int) -> float:
    """The paper's ``z_max``: ``Φ⁻¹((n − s)/n)`` with ``s = ⌊n/2 + 1⌋ − m`` supporters needed."""
    if not 0 < attackers < nodes:
        raise ConfigError(f"ALIE needs 0 < attackers < nodes, got {attackers} of {nodes}")
    supporters = math.floor(nodes / 2 + 1) - attackers
    share = (nodes - supporters) / nodes
    if not 0 < share < 1:
        # With a majority of attackers the bound is meaningless; any z works. Use the largest finite one.
        share = min(max(share, 1.0 / nodes), 1 - 1.0 / nodes)
    return NormalDist().inv_cdf(share)


def alie(honest: Sequence[Delta], z: float) -> dict[str, torch.Tensor]:
    """Per coordinate ``mean − z·std`` of the honest updates."""
    if not math.isfinite(z):
        raise ConfigError(f"ALIE z must be finite, got {z!r}")
    keys, shapes, rows = _stack(honest)
    return _unflatten(keys, shapes, rows.mean(dim=0) - z * rows.std(dim=0, unbiased=True))


def ipm(honest: Sequence[Delta], epsilon: float) -> dict[str, torch.Tensor]:
    """``−ε · mean`` of the honest updates."""
    if not epsilon > 0 or not math.isfinite(epsilon):
        raise ConfigError(f"IPM epsilon must be a finite number > 0, got {epsilon!r}")
    keys, shapes, rows = _stack(honest, minimum=1)
    return _unflatten(keys, shapes, -epsilon * rows.mean(dim=0))


def perturbation(rows: torch.Tensor, kind: Perturbation) -> torch.Tensor:
    """The direction ``p`` of min-max/min-sum over stacked honest rows ``[n, d]``."""
    mean = rows.mean(dim=0)
    if kind == "std":
        return -rows.std(dim=0, unbiased=True)
    if kind == "sign":
        return -torch.sign(mean)
    if kind == "unit":
        norm = float(mean.norm())
        return -mean / norm if norm > 0 else torch.zeros_like(mean)
    raise ConfigError(f"unknown perturbation {kind!r}; choose std, sign or unit")


def _largest_gamma(fits: Callable[[float], bool]) -> float:
    """The largest γ ≥ 0 with ``fits(γ)`` (a convex constraint, so the feasible set is an interval from 0)."""
    if not fits(0.0):
        return 0.0
    high = 1.0
    for _ in range(80):
        if not fits(high):
            break
        high *= 2.0
    else:
        return high
    low = 0.0
    for _ in range(60):
        mid = (low + high) / 2.0
        if fits(mid):
            low = mid
        else:
            high = mid
    return low


def _sq_distances(rows: torch.Tensor) -> torch.Tensor:
    gram = rows @ rows.T
    sq = torch.diagonal(gram)
    return (sq[:, None] + sq[None, :] - 2.0 * gram).clamp_min(0.0)


def min_max(honest: Sequence[Delta], kind: Perturbation = "std") -> dict[str, torch.Tensor]:
    """``mean + γ·p`` with the largest γ whose farthest honest update is no farther than any two honest ones."""
    keys, shapes, rows = _stack(honest)
    mean, p = rows.mean(dim=0), perturbation(rows, kind)
    bound = float(_sq_distances(rows).max())

    def fits(gamma: float) -> bool:
        return float(((rows - (mean + gamma * p)) ** 2).sum(dim=1).max()) <= bound

    return _unflatten(keys, shapes, mean + _largest_gamma(fits) * p)


def min_sum(honest: Sequence[Delta], kind: Perturbation = "std") -> dict[str, torch.Tensor]:
    """``mean + γ·p`` with the largest γ whose summed squared distance to the honest updates is no larger than
    any honest update's."""
    keys, shapes, rows = _stack(honest)
    mean, p = rows.mean(dim=0), perturbation(rows, kind)
    bound = float(_sq_distances(rows).sum(dim=1).max())

    def fits(gamma: float) -> bool:
        return float(((rows - (mean + gamma * p)) ** 2).sum()) <= bound

    return _unflatten(keys, shapes, mean + _largest_gamma(fits) * p)
