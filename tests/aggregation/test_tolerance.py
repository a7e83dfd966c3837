"""Tolerance bands: how far from a gate's threshold a member still defers to the leader's side."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from flare_chain.aggregation.gates import Comparison
from flare_chain.aggregation.tolerance import Band, ToleranceBands, in_band
from flare_chain.errors import ConfigError


def _at(value: float, threshold: float, statistic: str = "probe_z") -> Comparison:
    return Comparison(statistic=statistic, value=value, threshold=threshold, rejects=value > threshold)


def test_the_width_is_the_absolute_part_plus_the_relative_part_of_the_threshold() -> None:
    band = Band(absolute=0.1, relative=0.2)
    assert band.width(3.0) == pytest.approx(0.1 + 0.2 * 3.0)
    assert band.width(-3.0) == pytest.approx(0.7)  # |threshold|: a negative threshold widens it the same


def test_a_value_is_in_band_up_to_the_width_on_either_side_and_out_past_it() -> None:
    bands = ToleranceBands(probe_z=Band(absolute=0.1, relative=0.2))  # width 0.7 at threshold 3
    assert in_band(_at(3.0 + 0.69, 3.0), bands) and in_band(_at(3.0 - 0.69, 3.0), bands)
    assert not in_band(_at(3.0 + 0.71, 3.0), bands) and not in_band(_at(3.0 - 0.71, 3.0), bands)
    exact = ToleranceBands(norm_z=Band(absolute=0.5))  # the edge itself counts as in band (binary-exact values)
    assert in_band(_at(2.5, 2.0, "norm_z"), exact) and in_band(_at(1.5, 2.0, "norm_z"), exact)


@pytest.mark.parametrize(("value", "threshold"), [(math.nan, 3.0), (math.inf, 3.0), (3.0, math.nan), (3.0, math.inf),
                                                  (-math.inf, -math.inf)])
def test_a_non_finite_value_or_threshold_is_never_in_band(value: float, threshold: float) -> None:
    # a NaN statistic must not be waved through as "close enough" on any member
    wide = ToleranceBands(probe_z=Band(absolute=10.0, relative=0.5))
    assert not in_band(_at(value, threshold), wide)


def test_each_statistic_uses_its_own_band_and_an_unknown_one_is_refused() -> None:
    bands = ToleranceBands(norm_z=Band(absolute=0.5), probe_z=Band(absolute=0.0))
    assert in_band(_at(2.4, 2.0, "norm_z"), bands) and not in_band(_at(2.4, 2.0, "probe_z"), bands)
    with pytest.raises(ConfigError, match="no tolerance band for gate statistic 'krum_score'"):
        in_band(_at(1.0, 1.0, "krum_score"), bands)


def test_bands_are_bounded_and_finite() -> None:
    for bad in ({"absolute": -0.1}, {"absolute": 10.5}, {"relative": 0.51}, {"absolute": math.inf},
                {"absolute": math.nan}, {"relative": math.nan}):
        with pytest.raises(ValidationError):
            Band(**bad)


def test_bands_cannot_be_changed_in_place() -> None:
    # they travel inside the gate settings the federation spec pins by CID: a member must not drift from them
    bands = ToleranceBands()
    with pytest.raises(ValidationError):
        bands.norm_z = Band(absolute=5.0)  # type: ignore[misc]
    with pytest.raises(ValidationError):
        bands.norm_z.absolute = 5.0  # type: ignore[misc]
