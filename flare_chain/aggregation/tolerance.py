"""Tolerance bands: how close to its threshold a gate statistic may lie and still go either way.

A committee member recomputes every gate statistic on its own hardware. Norms
and cosines are float64 sums whose order depends on the CPU's vector width;
probe losses and MI predictions come from float32 model runs whose kernels
differ between CPUs (``ATEN_CPU_CAPABILITY``) and between CPU and GPU. So a
statistic that lands within a few ulps (or, for the model runs, a few
millionths) of its threshold may fall on one side for the leader and on the
other for a member. Within a band around the threshold either decision is
accepted as the leader's to make (:mod:`flare_chain.committee.verdict`);
outside it, the member's statistic must be on the leader's side.

Each band is ``absolute + relative · |threshold|`` in the statistic's own
units. The sizes (:class:`ToleranceBands` defaults) are set from what can
differ between machines, with a wide margin, and kept far below what the
gates measure, because the band is the leader's discretion: a leader may
include or exclude an update whose statistic lies in it.

* ``norm_z``, ``direction_z``, ``direction_cosine`` — robust z of float64
  norms and cosines of the same float32 tensors, and the cosine itself.
  Reordered float64 sums move them by ~1e-13 relative, the z by less than
  1e-11; the band is 1e-6.
* ``probe_median_change``, ``probe_change`` — first-order probe-loss change
  in nats/token, a difference of two float32 model runs. Kernels of different
  CPUs move window losses by ~1e-6 nats; the band is 1e-4 (the gate acts on
  changes of 1e-3 and more).
* ``probe_z`` — change over its standard error, so the 1e-6 wobble can move
  it by a few hundredths when the standard error is small; the band is 0.1
  standard errors (threshold 3).
* ``probe_spread_excess``, ``probe_rise_share``, ``probe_standout`` — a
  change over the round's spread (band 0.1 spreads, threshold 3), over the
  typical helping update's gain (band 0.01, threshold 0.75), and the larger
  of the two over its threshold (band 0.03, threshold 1).
* ``probe_effect_ratio`` — the root mean square of an update's per-window
  changes over the round's median one (band 0.005, threshold 0.1; inert
  updates measure ~0.01, honest ones far above the threshold).
* ``probe_twin_distance`` — the relative distance of two updates' per-window
  changes, or of their patterns across windows, whichever is larger (band
  0.002, default threshold 0.1): the 1e-6 nats of kernel wobble on changes of
  1e-3 and more move it by ~1e-4 at most; noised colluders measured 0.01-0.07,
  honest pairs 0.16 and up.
* ``mi_z`` — robust z of NMI agreement of argmax predictions: a near-tie
  logit that flips on another machine changes one prediction of ~500 and the z
  by ~0.02; the band is 0.25 (about ten flips; threshold 3.5).

Gate model runs use float32 on every device (no bf16 autocast), so these
bands hold between CPUs and GPUs alike; bf16 would need bands as wide as the
signals the gates look for.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from flare_chain.aggregation.gates import Comparison
from flare_chain.errors import ConfigError

__all__ = ["Band", "ToleranceBands", "in_band"]


class Band(BaseModel):
    """``absolute + relative · |threshold|``: how far from the threshold a value still counts as either side."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    absolute: float = Field(0.0, ge=0, le=10, allow_inf_nan=False)
    relative: float = Field(0.0, ge=0, le=0.5, allow_inf_nan=False)

    def width(self, threshold: float) -> float:
        return self.absolute + self.relative * abs(threshold)


class ToleranceBands(BaseModel):
    """One :class:`Band` per statistic kind; part of the gate settings, so the whole committee shares it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    norm_z: Band = Band(absolute=1e-6)
    direction_z: Band = Band(absolute=1e-6)
    direction_cosine: Band = Band(absolute=1e-6)
    probe_median_change: Band = Band(absolute=1e-4)
    probe_change: Band = Band(absolute=1e-4)
    probe_z: Band = Band(absolute=0.1)
    probe_spread_excess: Band = Band(absolute=0.1)
    probe_rise_share: Band = Band(absolute=0.01)
    probe_standout: Band = Band(absolute=0.03)
    probe_effect_ratio: Band = Band(absolute=0.005)
    probe_twin_distance: Band = Band(absolute=0.002)
    mi_z: Band = Band(absolute=0.25)

    def band(self, statistic: str) -> Band:
        """The band of ``statistic``; ConfigError for a kind no band is set for (a gate newer than the settings)."""
        band = getattr(self, statistic, None) if statistic in type(self).model_fields else None
        if not isinstance(band, Band):
            raise ConfigError(f"no tolerance band for gate statistic {statistic!r}; add it to the gate settings' "
                              f"bands ({', '.join(type(self).model_fields)})")
        return band


def in_band(comparison: Comparison, bands: ToleranceBands) -> bool:
    """True when ``comparison.value`` lies within its statistic's band of the threshold (never for non-finite)."""
    if not (math.isfinite(comparison.value) and math.isfinite(comparison.threshold)):
        return False
    width = bands.band(comparison.statistic).width(comparison.threshold)
    return abs(comparison.value - comparison.threshold) <= width
