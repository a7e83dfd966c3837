"""Median and robust z-scores by hand: the statistic the norm, cosine, probe-loss and MI gates share."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest

from flare_chain.aggregation.robust import median, robust_z


@pytest.mark.parametrize(("values", "expected"), [
    ([7.0], 7.0),
    ([3.0, 1.0, 2.0], 2.0),  # odd count: the middle value
    ([4.0, 1.0, 3.0, 2.0], 2.5),  # even count: the mean of the middle two
    ([10.0, -5.0, 0.0, 1.0, 2.0, 3.0], 1.5),
])
def test_median_of_odd_and_even_counts(values: list[float], expected: float) -> None:
    assert median(values) == expected


def test_robust_z_by_hand_flags_the_outlier_and_not_the_spread() -> None:
    # centre 3; deviations 2, 1, 0, 1, 97 -> MAD 1; scale 1/Φ⁻¹(3/4) ≈ 1.4826 (MAD -> σ of a normal)
    scale = 1 / NormalDist().inv_cdf(0.75)
    z = robust_z([1.0, 2.0, 3.0, 4.0, 100.0])
    assert z == pytest.approx([-2 / scale, -1 / scale, 0.0, 1 / scale, 97 / scale], rel=1e-4)


def test_robust_z_below_the_centre_is_negative_and_the_floor_bounds_it() -> None:
    # centre 10, MAD 0 (three equal values): without a floor the departures are infinite, with one finite
    values = [10.0, 10.0, 10.0, 9.0, 12.0]
    assert robust_z(values) == [0.0, 0.0, 0.0, -math.inf, math.inf]
    assert robust_z(values, min_scale=0.5) == [0.0, 0.0, 0.0, -2.0, 4.0]


def test_robust_z_refuses_a_non_finite_value() -> None:
    with pytest.raises(ValueError, match="finite"):
        robust_z([1.0, math.nan, 2.0])


def test_median_of_nothing_is_an_error_not_a_number() -> None:
    with pytest.raises(ValueError, match="median of no values"):
        median([])
