"""Anomaly gates: updates whose size or direction is far from the round's majority.

* :class:`NormAnomalyGate` — robust z-score of the log L2 norm of each update.
  Logs, because scaling attacks multiply a norm: ×10 is as far from ×1 as ×0.1.
  Catches scaling, large-noise and all-zero (free-riding) updates.
* :class:`DirectionAnomalyGate` — robust z-score of each update's cosine
  similarity with the coordinate-wise median of all candidates (which a
  minority cannot drag away), and the cosine's sign. Catches sign flips and
  updates pointing against the round at an honest size; only the low side is
  an anomaly, and an update that still has a positive component along the
  round's median (an honest node whose data differ) is not one.
* :class:`DuplicateGate` — honest nodes train on different data and never
  send identical updates, nor updates within a few per cent of each other;
  several such updates are a colluding group that sends one crafted vector
  (each copy with its own tiny noise, to get past a bit-exact check).

Statistics are computed in float64 over the candidates in canonical order, so
the verdicts are reproducible. Below ``min_candidates`` updates a median and a
MAD say little; the anomaly gates then pass everything (the policy gate still
applies).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import torch

from flare_chain.aggregation.base import ClientUpdate
from flare_chain.aggregation.gates import Comparison, Gate, GateContext, GateDecision, reasons_of
from flare_chain.aggregation.median import coordinate_median
from flare_chain.aggregation.robust import robust_z
from flare_chain.errors import ConfigError

__all__ = ["DirectionAnomalyGate", "DuplicateGate", "NormAnomalyGate", "update_norm"]


def update_norm(update: ClientUpdate) -> float:
    """L2 norm of the whole update (all tensors, sorted by name), float64."""
    total = 0.0
    for key in sorted(update.delta):
        total += float((update.delta[key].to(torch.float64) ** 2).sum())
    return math.sqrt(total)


def _check(threshold: float, min_candidates: int) -> None:
    if not threshold > 0 or not math.isfinite(threshold):
        raise ConfigError(f"anomaly threshold must be a finite number > 0, got {threshold!r}")
    if min_candidates < 3:
        raise ConfigError(f"min_candidates must be >= 3 for a median/MAD to mean anything, got {min_candidates}")


class NormAnomalyGate(Gate):
    """Reject updates whose log-norm has a robust z-score beyond ``±threshold``.

    ``min_log_scale`` floors the spread (in natural-log units; 0.1 ≈ 10 %), so
    honest nodes with nearly equal norms do not flag each other.
    """

    name = "norm"

    def __init__(self, threshold: float = 3.5, *, min_log_scale: float = 0.1, min_candidates: int = 5) -> None:
        _check(threshold, min_candidates)
        self.threshold = float(threshold)
        self.min_log_scale = float(min_log_scale)
        self.min_candidates = int(min_candidates)

    def screen(self, candidates: Sequence[ClientUpdate], context: GateContext) -> dict[str, str]:
        return reasons_of(self.assess(candidates, context))

    def assess(self, candidates: Sequence[ClientUpdate], context: GateContext) -> list[GateDecision]:
        """All-zero updates are rejected exactly; the others by ``|robust z| > threshold`` (statistic ``norm_z``)."""
        norms = {u.node: update_norm(u) for u in candidates}
        decided: dict[str, GateDecision] = {}
        for node, norm in norms.items():
            if norm == 0.0:
                decided[node] = GateDecision(self.name, node, "update is all zeros (no training contributed)")
        live = [n for n in norms if n not in decided]
        if len(live) >= self.min_candidates:
            logs = [math.log(norms[n]) for n in live]
            centre = math.exp(sorted(logs)[len(logs) // 2])
            for node, z in zip(live, robust_z(logs, min_scale=self.min_log_scale), strict=True):
                test = Comparison("norm_z", abs(z), self.threshold, rejects=abs(z) > self.threshold)
                reason = (f"update norm {norms[node]:.4g} is {norms[node] / centre:.3g}× the round's median "
                          f"(robust z {z:+.1f}, threshold ±{self.threshold:g})") if test.rejects else None
                decided[node] = GateDecision(self.name, node, reason, (test,))
        return [decided.get(u.node) or GateDecision(self.name, u.node, None) for u in candidates]


class DirectionAnomalyGate(Gate):
    """Reject updates that point *against* the round: cosine with the coordinate-wise median both a low
    outlier (robust z below ``−threshold``) and below ``max_cosine``.

    ``min_scale`` floors the spread of the cosines. Why two conditions: the z
    alone measured how far a cosine sits from the others', and on label-skewed
    federations an honest node whose skills no other node shares sits far
    below a tight cluster (the demo's node-4: cosine +0.35 against a median
    of +0.59 and a spread floored at 0.05, robust z −4.7) while still
    pulling the same way as the round (every honest cosine measured on the
    skills task was positive, the lowest +0.32). A sign flip, at any norm,
    turns its cosine negative. ``max_cosine`` (0 by default; None: the z
    alone, the rule before issue 15) is where "against" begins. Min-max and
    ALIE along −std sit *above* the honest cosines (the honest mean
    dominates them), so neither rule of this gate ever caught them; the
    duplicate and probe gates do. Attacks that keep a positive cosine are
    left to the probe gates, which measure harm instead of geometry.
    """

    name = "direction"

    def __init__(self, threshold: float = 3.5, *, min_scale: float = 0.05, min_candidates: int = 5,
                 max_cosine: float | None = 0.0) -> None:
        _check(threshold, min_candidates)
        if max_cosine is not None and not -1.0 <= max_cosine <= 1.0:
            raise ConfigError(f"direction max_cosine must be within [-1, 1] or None, got {max_cosine!r}")
        self.threshold = float(threshold)
        self.min_scale = float(min_scale)
        self.min_candidates = int(min_candidates)
        self.max_cosine = None if max_cosine is None else float(max_cosine)

    def cosines(self, candidates: Sequence[ClientUpdate]) -> list[float]:
        """Cosine of each candidate with the coordinate-wise median of all of them (float64)."""
        dots = [0.0] * len(candidates)
        sq = [0.0] * len(candidates)
        ref_sq = 0.0
        for key in sorted(candidates[0].delta):
            stacked = torch.stack([u.delta[key].reshape(-1).to(torch.float64) for u in candidates])
            ref = coordinate_median(stacked)
            ref_sq += float((ref * ref).sum())
            d = stacked @ ref
            row_sq = (stacked * stacked).sum(dim=1)
            for i in range(len(candidates)):
                dots[i] += float(d[i])
                sq[i] += float(row_sq[i])
        out = []
        for dot, total in zip(dots, sq, strict=True):
            den = math.sqrt(total) * math.sqrt(ref_sq)
            out.append(dot / den if den > 0 else 0.0)
        return out

    def screen(self, candidates: Sequence[ClientUpdate], context: GateContext) -> dict[str, str]:
        return reasons_of(self.assess(candidates, context))

    def assess(self, candidates: Sequence[ClientUpdate], context: GateContext) -> list[GateDecision]:
        """Rejected when the cosine's robust z is below ``−threshold`` (statistic ``direction_z``) and, with
        ``max_cosine`` set, the cosine itself is below it (statistic ``direction_cosine``)."""
        if len(candidates) < self.min_candidates:
            return [GateDecision(self.name, u.node, None) for u in candidates]
        cos = self.cosines(candidates)
        centre = sorted(cos)[len(cos) // 2]
        out: list[GateDecision] = []
        for update, c, z in zip(candidates, cos, robust_z(cos, min_scale=self.min_scale), strict=True):
            tests = [Comparison("direction_z", z, -self.threshold, rejects=z < -self.threshold)]
            if self.max_cosine is not None:
                tests.append(Comparison("direction_cosine", c, self.max_cosine, rejects=c < self.max_cosine))
            rejected = all(t.rejects for t in tests)
            against = "" if self.max_cosine is None else f", below {self.max_cosine:+g}"
            reason = (f"update points away from the round's median update (cosine {c:+.3f}{against}, "
                      f"median cosine {centre:+.3f}, robust z {z:+.1f}, threshold −{self.threshold:g})"
                      ) if rejected else None
            out.append(GateDecision(self.name, update.node, reason, tuple(tests)))
        return out


def _digest(update: ClientUpdate) -> str:
    h = hashlib.sha256()
    for key in sorted(update.delta):
        t = update.delta[key].detach().cpu().contiguous()
        h.update(key.encode() + b"\0" + str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def relative_distance(a: ClientUpdate, b: ClientUpdate) -> float:
    """``‖Δa − Δb‖ / max(‖Δa‖, ‖Δb‖)`` in float64 (0 when both are zero)."""
    diff = sum(float(((a.delta[k].to(torch.float64) - b.delta[k].to(torch.float64)) ** 2).sum()) for k in sorted(a.delta))
    scale = max(update_norm(a), update_norm(b))
    return math.sqrt(diff) / scale if scale > 0 else 0.0


def close_pairs(candidates: Sequence[ClientUpdate], bound: float) -> list[tuple[int, int]]:
    """Index pairs ``i < j`` whose relative distance may be at most ``bound``: a float32 Gram-matrix screen.

    The screen errs by ~1e-6 relative, far less than the margin of 0.01 it
    adds; every pair it returns is then measured exactly in float64
    (:func:`relative_distance`), so the verdicts depend on float64 values only,
    at a fraction of the cost of a float64 Gram matrix of full-size updates.
    """
    n = len(candidates)
    gram = torch.zeros(n, n, dtype=torch.float64)
    for key in sorted(candidates[0].delta):
        x = torch.stack([u.delta[key].reshape(-1).to(torch.float32) for u in candidates])
        gram += (x @ x.T).to(torch.float64)
    sq = torch.diagonal(gram).clamp_min(0.0)
    dist = (sq[:, None] + sq[None, :] - 2.0 * gram).clamp_min(0.0).sqrt()
    scale = torch.maximum(sq[:, None], sq[None, :]).sqrt()
    limit = bound + 0.01
    return [(i, j) for i in range(n) for j in range(i + 1, n)
            if float(scale[i, j]) == 0.0 or float(dist[i, j]) <= limit * float(scale[i, j])]


class DuplicateGate(Gate):
    """Reject every update that is bit-identical to, or within ``tolerance`` relative distance of, another's.

    The relative distance is ``‖Δᵢ − Δⱼ‖ / max(‖Δᵢ‖, ‖Δⱼ‖)``. Updates trained
    on different data sit near 1 (their cosines are small); two within 0.1
    (cosine above 0.995) are one vector sent twice. ``tolerance = 0`` keeps
    only the bit-exact check.
    """

    name = "duplicate"

    def __init__(self, tolerance: float = 0.1) -> None:
        if not 0 <= tolerance < 1 or not math.isfinite(tolerance):
            raise ConfigError(f"duplicate tolerance must be in [0, 1), got {tolerance!r}")
        self.tolerance = float(tolerance)

    def screen(self, candidates: Sequence[ClientUpdate], context: GateContext) -> dict[str, str]:
        groups: dict[str, list[str]] = {}
        for update in candidates:
            groups.setdefault(_digest(update), []).append(update.node)
        out: dict[str, str] = {}
        for nodes in groups.values():
            if len(nodes) > 1:
                for node in nodes:
                    others = [n for n in nodes if n != node]
                    out[node] = (f"update is bit-identical to that of {len(others)} other node(s) "
                                 f"({', '.join(others[:3])}); independent training never collides")
        if self.tolerance == 0 or len(candidates) < 2:
            return out
        near: dict[int, list[tuple[float, str]]] = {}
        for i, j in close_pairs(candidates, self.tolerance):
            d = relative_distance(candidates[i], candidates[j])
            if d <= self.tolerance:
                near.setdefault(i, []).append((d, candidates[j].node))
                near.setdefault(j, []).append((d, candidates[i].node))
        for i, update in enumerate(candidates):
            if update.node in out or i not in near:
                continue
            close = sorted(near[i], key=lambda t: (t[0], t[1].lower()))
            if close:
                nearest = min(close)
                out[update.node] = (f"update is within {nearest[0]:.2g} relative distance of {len(close)} other "
                                    f"node(s)' ({', '.join(n for _, n in close[:3])}; tolerance "
                                    f"{self.tolerance:g}); independent training never comes this close")
        return out
