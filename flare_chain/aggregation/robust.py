"""Robust z-scores (median and MAD), the statistic the anomaly gates share.

``z_i = (x_i − median(x)) / (1.4826 · MAD(x))`` (Iglewicz & Hoaglin's modified
z-score; 1.4826 makes the MAD estimate a normal standard deviation). Unlike the
mean and standard deviation, median and MAD move little when a minority of
values is arbitrarily bad, so attackers cannot hide by inflating the spread.
``min_scale`` floors the spread: when honest values agree almost exactly
(MAD ≈ 0), a tiny honest departure must not look infinitely anomalous.
Computed in float64 with a sort, so the same values give the same scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["MAD_TO_SIGMA", "median", "robust_z"]

MAD_TO_SIGMA = 1.4826


def median(values: Sequence[float]) -> float:
    """The median (mean of the middle two for an even count); ValueError when empty."""
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(float(v) for v in values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def robust_z(values: Sequence[float], *, min_scale: float = 0.0) -> list[float]:
    """Modified z-score of every value; finite inputs only."""
    if any(not math.isfinite(v) for v in values):
        raise ValueError("robust_z needs finite values")
    centre = median(values)
    mad = median([abs(v - centre) for v in values])
    scale = max(MAD_TO_SIGMA * mad, min_scale)
    if scale == 0.0:
        return [0.0 if v == centre else math.copysign(math.inf, v - centre) for v in values]
    return [(v - centre) / scale for v in values]
