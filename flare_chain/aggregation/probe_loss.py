"""The probe-loss gate: drop updates that, applied alone, make the public probe text worse.

Sign-flipped and poisoned updates are hard to see in weight space once honest
updates stop pointing the same way (after a round or two of non-IID training
their pairwise cosines are near 0, so a negated honest update looks like one
more orthogonal update). Their effect on the *task* is not hidden: an honest
update lowers the loss on public text from the task, a negated one raises it
by the same first-order amount.

For each candidate the gate runs the model at ``global + Δ`` and at
``global − Δ`` on the round's probe windows (see
:mod:`flare_chain.lora.probe_corpus`) and takes half the per-window loss
difference,

    dᵥ = (L_w(g + Δ) − L_w(g − Δ)) / 2 ≈ ∇L_w(g)ᵀ Δ,

the first-order change of window w's loss along Δ. The second-order term
(the curvature that makes even an honest update's full step overshoot) is the
same at ``+Δ`` and ``−Δ`` and cancels. An update is *harmful* when the mean
of dᵥ is positive and at least ``z`` standard errors above 0 (a one-sided
test across windows), so an honest update that merely does not help the
probe is kept; with ``outlier_z`` set (the federation spec's
``probe_loss_outlier_z``, 3 by default) it must also lie that many spreads
above the round's median change, because on label-skewed federations honest
nodes that learn their own skills raise the probe loss on the others' (see
:func:`probe_decisions`).

Adaptive attacks (ALIE, min-max, a norm-matched poisoner) are built to sit
just inside the honest spread, so their change is often a little below 0:
"does not raise the loss" is too weak a bar when every honest update lowers
it. The gate therefore also compares each change with the round's own
spread: an update is an *outlier* when its change exceeds the round's median
change by more than ``spread_z`` times the larger of the robust spread of the
changes (1.4826 · MAD) and the update's own standard error. A minority
cannot move the median or the MAD far, and an honest update that helps less
than most is kept as long as its shortfall is within the honest spread.

The test only means something while the probe measures the task the honest
majority is learning. When it does not (a corpus from other domains than the
nodes', or nodes that have specialised so far that honest updates trade the
probe's text for their own), honest updates themselves raise the probe loss
and a negated one would lower it. So the gate acts only in rounds whose
median update *lowers* the probe loss; otherwise it rejects none and logs
why. Like the other statistical gates it assumes an honest majority.

Like every gate it is deterministic for a given machine: the window losses
come from the model in eval mode under a fixed thread count, and the
statistics are float64 in canonical node order.
"""

from __future__ import annotations

import logging
import math
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from flare_chain.aggregation.base import ClientUpdate
from flare_chain.aggregation.gates import Comparison, Gate, GateContext, GateDecision, reasons_of
from flare_chain.aggregation.robust import MAD_TO_SIGMA, median
from flare_chain.errors import ConfigError

__all__ = [
    "ProbeEffect",
    "ProbeEffectsGate",
    "ProbeInertGate",
    "ProbeLossGate",
    "ProbeSpreadGate",
    "WindowLosses",
    "effect_ratios",
    "harmful_updates",
    "in_candidate_order",
    "inert_decisions",
    "measures_the_task",
    "probe_decisions",
    "probe_effect",
    "rise_shares",
    "spread_decisions",
    "spread_excess",
    "spread_outliers",
    "typical_help",
]

log = logging.getLogger("flare_chain.aggregation")

WindowLosses = Callable[[Mapping[str, torch.Tensor]], np.ndarray]
"""Maps an adapter to the mean token loss of each probe window (float64, one entry per window)."""


@dataclass(frozen=True)
class ProbeEffect:
    """First-order change of the probe loss along one update, with its standard error across windows."""

    change: float
    stderr: float
    windows: int
    rms: float | None = None
    """Root mean square of the per-window changes: how much the update moves the probe at all, whichever way
    (None when not measured)."""
    per_window: tuple[float, ...] | None = None
    """The per-window changes themselves, in window order: what the update does to the probe, window by
    window (None when not measured or not finite)."""

    @property
    def z(self) -> float:
        """``change / stderr`` (±inf when the windows agree exactly, 0 when there is no change)."""
        if self.stderr > 0:
            return self.change / self.stderr
        return math.copysign(math.inf, self.change) if self.change else 0.0


def probe_effect(plus: np.ndarray, minus: np.ndarray) -> ProbeEffect:
    """:class:`ProbeEffect` from per-window losses at ``g + Δ`` and ``g − Δ`` (same windows, same order)."""
    a = np.asarray(plus, dtype=np.float64).reshape(-1)
    b = np.asarray(minus, dtype=np.float64).reshape(-1)
    if a.shape != b.shape or a.size == 0:
        raise ConfigError(f"probe losses must be two equal, non-empty lists; got {a.size} and {b.size} windows")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        # A finite update that drives the loss to Inf/NaN is as harmful as it gets.
        return ProbeEffect(change=math.inf, stderr=0.0, windows=int(a.size), rms=math.inf)
    d = (a - b) / 2.0
    stderr = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else math.inf
    return ProbeEffect(change=float(d.mean()), stderr=stderr, windows=int(d.size),
                       rms=float(math.sqrt(float((d * d).mean()))), per_window=tuple(float(v) for v in d))


def harmful_updates(effects: Mapping[str, ProbeEffect], *, z: float = 3.0, min_candidates: int = 5,
                    spread_z: float | None = None, outlier_z: float | None = None,
                    rise_share: float | None = None) -> dict[str, str]:
    """``{node: reason}`` for updates whose probe effect is significantly harmful; pure and deterministic.

    ``spread_z`` (None: off) adds the comparison with the round's spread (see the module docstring);
    ``outlier_z`` and ``rise_share`` (None: off) are the probe-loss rule's own extra conditions (see
    :func:`probe_decisions`).

    Returns ``{}`` below ``min_candidates`` updates, and when the median
    update does not lower the probe loss (see the module docstring).
    """
    out = reasons_of(probe_decisions(effects, z=z, min_candidates=min_candidates, outlier_z=outlier_z,
                                     rise_share=rise_share))
    if spread_z is not None:
        for node, reason in reasons_of(spread_decisions(effects, spread_z=spread_z,
                                                        min_candidates=min_candidates)).items():
            out.setdefault(node, reason)
    return out


def spread_outliers(effects: Mapping[str, ProbeEffect], spread_z: float) -> dict[str, float]:
    """``{node: excess}`` for changes more than ``spread_z`` spreads above the round's median change."""
    return {n: e for n, e in spread_excess(effects).items() if e > spread_z}


def typical_help(effects: Mapping[str, ProbeEffect]) -> float:
    """How much the round's typical helping update lowers the probe loss: the median ``|change|`` over the
    finite changes below 0 (0.0 when none lowers it)."""
    helping = [-e.change for e in effects.values() if math.isfinite(e.change) and e.change < 0]
    return median(helping) if helping else 0.0


def rise_shares(effects: Mapping[str, ProbeEffect]) -> dict[str, float]:
    """``{node: change / typical_help}``: how much of a typical helping update's gain each update undoes
    (inf for a non-finite change, 0 when no update helps)."""
    helps = typical_help(effects)
    out = {}
    for n, e in effects.items():
        if not math.isfinite(e.change):
            out[n] = math.inf
        else:
            out[n] = e.change / helps if helps > 0 else 0.0
    return out


def measures_the_task(effects: Mapping[str, ProbeEffect]) -> Comparison:
    """The precondition of every probe rule: the round's median update lowers the probe loss
    (``probe_median_change`` < 0), so the probe measures what the honest majority learns."""
    typical = float(np.median([e.change for e in effects.values()]))  # an order statistic: no order to fix
    return Comparison("probe_median_change", typical, 0.0, rejects=typical < 0)


def probe_decisions(
    effects: Mapping[str, ProbeEffect], *, z: float = 3.0, min_candidates: int = 5, outlier_z: float | None = None,
    rise_share: float | None = None,
) -> list[GateDecision]:
    """The probe-loss rule, one decision per node (case-insensitive node order), with what it rests on.

    An update is rejected when all three hold: the round's median change is
    below 0 (``probe_median_change`` < 0: the probe measures the task), its own
    change is above 0 (``probe_change``) and its z is at least ``z``
    (``probe_z``). With ``outlier_z`` set, a fourth: its change also lies
    more than ``outlier_z`` spreads above the round's median change
    (``probe_spread_excess``, :func:`spread_excess`). Why: on label-skewed
    federations the probe corpus covers every node's skills, and an honest
    node that learns its own two skills may raise the loss on the other six
    more than it lowers it on its own (measured: 3 of 6 demo nodes in round 3,
    4 of 10 benchmark nodes in round 2, each significantly above 0), while the
    round as a whole still lowers it. Such a change sits inside the round's
    honest spread; a sign flip of a helping update, or a poisoned one, sits far
    above it.

    With ``rise_share`` set, another way to stand out: its change undoes at
    least that share of what the round's typical helping update gains
    (``probe_rise_share``, :func:`rise_shares`); with both set (the spec's
    defaults, 3 spreads or 0.75 of a gain) either suffices.
    A negated honest update undoes about a whole one; an honest skewed node's
    rise measured at most 0.39 of it on the skills task's response-scored
    probe over three rounds (0.67 when the probe scored whole texts). Not
    later: at the benchmark's full local budget, from round 7 on, the two
    nodes that alone hold a skill pair undo up to 4.2 of it at z up to 5.3 and
    are rejected (7 of 120 honest node-rounds over 12 rounds, README "Longer
    runs"), and no per-update statistic measured tells them from the sign
    flips this rule misses there. Unlike the spread, this
    reference holds against 40 % attackers: their flips inflate the round's MAD
    (at 2 of 5 they sat 0.7–2.4 spreads above the median and passed) but are not
    among the updates that help. Below ``min_candidates`` updates every
    decision is an exact pass.
    """
    nodes = sorted(effects, key=str.lower)
    if len(nodes) < min_candidates:
        return [GateDecision(ProbeLossGate.name, n, None) for n in nodes]
    active = measures_the_task(effects)
    typical = active.value
    if not active.rejects:
        # A normal outcome once nodes specialise (not an operator problem): an info line, not a warning.
        log.info("probe-loss gate: the round's median update does not lower the probe loss (%+.4f nats/token); "
                    "the probe corpus does not measure what this round's nodes learn, so none is rejected on it",
                    typical)
    excess = spread_excess(effects) if outlier_z is not None else {}
    shares = rise_shares(effects) if rise_share is not None else {}
    out: list[GateDecision] = []
    for n in nodes:
        e = effects[n]
        tests: tuple[Comparison, ...] = (active, Comparison("probe_change", e.change, 0.0, rejects=e.change > 0),
                                         Comparison("probe_z", e.z, z, rejects=e.z >= z))
        tests += _stands_out(excess.get(n), outlier_z, shares.get(n), rise_share)
        reason = None
        if all(t.rejects for t in tests):
            beyond = "" if outlier_z is None else f", {excess[n]:.1f} spreads above the round's (threshold {outlier_z:g})"
            if rise_share is not None:
                beyond += (f"{' or' if outlier_z is not None else ','} undoing {shares[n]:.2f} of a typical "
                           f"helping update's gain (threshold {rise_share:g})")
            reason = (f"applied alone, it raises the loss on the federation's public probe text "
                      f"(first-order change {e.change:+.4f} nats/token over {e.windows} windows, "
                      f"{e.z:.1f} standard errors above 0, threshold {z:g}; the round's median update changes it by "
                      f"{typical:+.4f}{beyond}): it works against the task, as a sign-flipped or poisoned update does")
        out.append(GateDecision(ProbeLossGate.name, n, reason, tests))
    return out


def _stands_out(excess: float | None, outlier_z: float | None, share: float | None, rise_share: float | None
                ) -> tuple[Comparison, ...]:
    """The extra condition of :func:`probe_decisions`: none, the spread test, the share test, or (both set)
    either of them, as one comparison of the larger of the two values over its threshold (``probe_standout``
    ≥ 1), because a decision's comparisons are a conjunction."""
    ways: list[tuple[str, float, float]] = []
    for name, value, threshold in (("probe_spread_excess", excess, outlier_z), ("probe_rise_share", share, rise_share)):
        if threshold is None:
            continue
        if value is None:
            raise ConfigError(f"probe-loss rule: {name} has a threshold but was not measured (a caller bug)")
        ways.append((name, value, threshold))
    if not ways:
        return ()
    if len(ways) == 1:
        name, value, threshold = ways[0]
        # The spread test alone keeps its strict comparison (the rule before the share was added).
        rejects = value > threshold if name == "probe_spread_excess" else value >= threshold
        return (Comparison(name, value, threshold, rejects=rejects),)
    standout = max(value / threshold for _, value, threshold in ways)
    return (Comparison("probe_standout", standout, 1.0, rejects=standout >= 1.0),)


class ProbeLossGate(Gate):
    """The probe-loss test as a gate; ``window_losses`` runs a candidate adapter on the probe (injected I/O)."""

    name = "probe_loss"

    def __init__(self, window_losses: WindowLosses, *, z: float = 3.0, min_candidates: int = 5,
                 outlier_z: float | None = None, rise_share: float | None = None) -> None:
        if not z > 0 or not math.isfinite(z):
            raise ConfigError(f"probe-loss gate threshold must be a finite number > 0, got {z!r}")
        if outlier_z is not None and (not outlier_z > 0 or not math.isfinite(outlier_z)):
            raise ConfigError(f"probe-loss outlier threshold must be a finite number > 0 or None, got {outlier_z!r}")
        if rise_share is not None and (not rise_share > 0 or not math.isfinite(rise_share)):
            raise ConfigError(f"probe-loss rise share must be a finite number > 0 or None, got {rise_share!r}")
        self.window_losses = window_losses
        self.z = float(z)
        self.outlier_z = None if outlier_z is None else float(outlier_z)
        self.rise_share = None if rise_share is None else float(rise_share)
        self.min_candidates = int(min_candidates)
        self._effects: dict[str, ProbeEffect] = {}

    def effects(self, candidates: Sequence[ClientUpdate], context: GateContext) -> dict[str, ProbeEffect]:
        """Each candidate's :class:`ProbeEffect` (two probe runs per candidate, kept for the spread gate).

        A gate chain is built per round, so a node's effect is computed once per round.
        """
        out: dict[str, ProbeEffect] = {}
        for update in candidates:
            if update.node not in self._effects:
                plus = self.window_losses(context.candidate(update.delta, 1.0))
                minus = self.window_losses(context.candidate(update.delta, -1.0))
                self._effects[update.node] = probe_effect(plus, minus)
            out[update.node] = self._effects[update.node]
        return out

    def screen(self, candidates: Sequence[ClientUpdate], context: GateContext) -> dict[str, str]:
        return reasons_of(self.assess(candidates, context))

    def assess(self, candidates: Sequence[ClientUpdate], context: GateContext) -> list[GateDecision]:
        """:func:`probe_decisions` on every candidate's effect, in candidate order."""
        return in_candidate_order(self.name, candidates, self.min_candidates, lambda: probe_decisions(
            self.effects(candidates, context), z=self.z, min_candidates=self.min_candidates,
            outlier_z=self.outlier_z, rise_share=self.rise_share))


def spread_decisions(effects: Mapping[str, ProbeEffect], *, spread_z: float, min_candidates: int = 5
                     ) -> list[GateDecision]:
    """The spread rule, one decision per node: rejected when the probe measures the task (median change < 0)
    and the node's change lies more than ``spread_z`` spreads above the median (see :func:`spread_excess`)."""
    nodes = sorted(effects, key=str.lower)
    if len(nodes) < min_candidates:
        return [GateDecision(ProbeSpreadGate.name, n, None) for n in nodes]
    active = measures_the_task(effects)
    typical = active.value
    excess = spread_excess(effects)
    out: list[GateDecision] = []
    for n in nodes:
        e = effects[n]
        tests = (active, Comparison("probe_spread_excess", excess[n], spread_z, rejects=excess[n] > spread_z))
        reason = None
        if all(t.rejects for t in tests):
            reason = (f"applied alone, it helps the public probe text far less than the round's other updates "
                      f"(first-order change {e.change:+.4f} nats/token vs the round's median {typical:+.4f}: "
                      f"{excess[n]:.1f} spreads above it, threshold {spread_z:g}): an update crafted to sit just "
                      f"inside the honest spread, or trained on poisoned data")
        out.append(GateDecision(ProbeSpreadGate.name, n, reason, tests))
    return out


def spread_excess(effects: Mapping[str, ProbeEffect]) -> dict[str, float]:
    """``{node: excess}``: how many spreads each change lies above the round's median change.

    The spread of node i is ``max(1.4826 · MAD(changes), stderr_i)``: the round's robust spread, floored by how
    precisely this update's change is known. Non-finite changes get 0 (the probe-loss gate already judges them).
    """
    nodes = sorted(effects, key=str.lower)
    changes = [effects[n].change for n in nodes]
    finite = [c for c in changes if math.isfinite(c)]
    if len(finite) < 3:
        return {n: 0.0 for n in nodes}
    centre = median(finite)
    mad = MAD_TO_SIGMA * median([abs(c - centre) for c in finite])
    out: dict[str, float] = {}
    for n, c in zip(nodes, changes, strict=True):
        if not math.isfinite(c):
            out[n] = 0.0
            continue
        stderr = effects[n].stderr
        scale = max(mad, stderr if math.isfinite(stderr) else 0.0)
        out[n] = (c - centre) / scale if scale > 0 else (math.inf if c > centre else 0.0)
    return out


class ProbeEffectsGate(Gate):
    """A test on the effects its :class:`ProbeLossGate` computed this round (no model runs of its own)."""

    def __init__(self, probe: ProbeLossGate, *, min_candidates: int = 5) -> None:
        self.probe = probe
        self.min_candidates = int(min_candidates)

    @abstractmethod
    def decide(self, effects: Mapping[str, ProbeEffect]) -> list[GateDecision]:
        """One decision per node of ``effects``."""

    def screen(self, candidates: Sequence[ClientUpdate], context: GateContext) -> dict[str, str]:
        return reasons_of(self.assess(candidates, context))

    def assess(self, candidates: Sequence[ClientUpdate], context: GateContext) -> list[GateDecision]:
        """:meth:`decide` on the candidates' effects, in candidate order."""
        return in_candidate_order(self.name, candidates, self.min_candidates,
                                   lambda: self.decide(self.probe.effects(candidates, context)))


class ProbeSpreadGate(ProbeEffectsGate):
    """The probe spread test as a gate (:func:`spread_decisions`)."""

    name = "probe_spread"

    def __init__(self, probe: ProbeLossGate, *, spread_z: float = 3.5, min_candidates: int = 5) -> None:
        if not spread_z > 0 or not math.isfinite(spread_z):
            raise ConfigError(f"probe-loss spread threshold must be a finite number > 0, got {spread_z!r}")
        super().__init__(probe, min_candidates=min_candidates)
        self.spread_z = float(spread_z)

    def decide(self, effects: Mapping[str, ProbeEffect]) -> list[GateDecision]:
        return spread_decisions(effects, spread_z=self.spread_z, min_candidates=self.min_candidates)


def in_candidate_order(gate: str, candidates: Sequence[ClientUpdate], min_candidates: int,
                        decide: Callable[[], list[GateDecision]]) -> list[GateDecision]:
    """``decide()``'s decisions re-ordered as ``candidates``; every candidate passes, unmeasured, below
    ``min_candidates`` (the model runs behind ``decide`` are then skipped: too few effects to judge by)."""
    if len(candidates) < min_candidates:
        return [GateDecision(gate, u.node, None) for u in candidates]
    by_node = {d.node: d for d in decide()}
    return [by_node[u.node] for u in candidates]


def effect_ratios(effects: Mapping[str, ProbeEffect]) -> dict[str, float]:
    """``{node: rms / median rms}``: how much each update moves the probe's windows, either way, against the
    round's typical update (nan where not measured or when the round's median is 0; inf for a non-finite
    change, which the probe-loss gate judges)."""
    measured = [e.rms for e in effects.values() if e.rms is not None and math.isfinite(e.rms)]
    centre = median(measured) if len(measured) >= 3 else 0.0
    out: dict[str, float] = {}
    for n, e in effects.items():
        if e.rms is None or centre <= 0:
            out[n] = math.nan
        else:
            out[n] = e.rms / centre if math.isfinite(e.rms) else math.inf
    return out


def inert_decisions(effects: Mapping[str, ProbeEffect], *, min_ratio: float, min_candidates: int = 5
                    ) -> list[GateDecision]:
    """The inert-update rule, one decision per node: rejected when the probe measures the task (median change
    < 0) and the update moves the probe's windows less than ``min_ratio`` of the round's typical update
    (``probe_effect_ratio``, :func:`effect_ratios`).

    Why: an update with no first-order effect on any window dilutes the round's progress by its weight and
    evades every test of harm, whose statistics it sets to 0. Adapter negation does this by construction
    (its ``global ± Δ`` are the same model; with norm-matched scale and 20 % noise per colluder it escaped
    the duplicate gate and cost 12 % of the gain at 40 %), and so does a free rider's vector orthogonal to the
    task. A diluting node (a sliver of its own update hidden in noise, at an honest norm) comes close: random
    directions in adapter space barely move the probe, so its windows moved 0.18-0.51 as far as the round's
    typical update's on the 10-node benchmark, against 0.54 and up for 445 honest node-rounds. An honest
    update always moves some windows: its own skills fall, the others' rise.
    """
    nodes = sorted(effects, key=str.lower)
    if len(nodes) < min_candidates:
        return [GateDecision(ProbeInertGate.name, n, None) for n in nodes]
    active = measures_the_task(effects)
    ratios = effect_ratios(effects)
    out: list[GateDecision] = []
    for n in nodes:
        r = ratios[n]
        if math.isnan(r):
            out.append(GateDecision(ProbeInertGate.name, n, None))
            continue
        tests = (active, Comparison("probe_effect_ratio", r, min_ratio, rejects=r < min_ratio))
        reason = None
        if all(t.rejects for t in tests):
            reason = (f"applied alone, it barely moves the loss on any of the public probe's {effects[n].windows} "
                      f"windows (root mean square of its first-order changes {r:.3f} of the round's typical "
                      f"update's, threshold {min_ratio:g}): it adds weight to the average without adding "
                      f"learning, as an adapter negation (the same model at global ± update) or a free rider does")
        out.append(GateDecision(ProbeInertGate.name, n, reason, tests))
    return out


class ProbeInertGate(ProbeEffectsGate):
    """The inert-update test as a gate (:func:`inert_decisions`)."""

    name = "probe_inert"

    def __init__(self, probe: ProbeLossGate, *, min_ratio: float = 0.3, min_candidates: int = 5) -> None:
        if not 0 < min_ratio < 1 or not math.isfinite(min_ratio):
            raise ConfigError(f"probe-loss minimum effect ratio must be within (0, 1), got {min_ratio!r}")
        super().__init__(probe, min_candidates=min_candidates)
        self.min_ratio = float(min_ratio)

    def decide(self, effects: Mapping[str, ProbeEffect]) -> list[GateDecision]:
        return inert_decisions(effects, min_ratio=self.min_ratio, min_candidates=self.min_candidates)
