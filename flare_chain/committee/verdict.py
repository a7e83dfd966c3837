"""Is the leader's accepted set defensible? The one rule members and the auditor apply.

A member does not re-derive the accepted set bit for bit: its gate
statistics come from its own CPU or GPU and differ from the leader's in the
last bits, so a statistic at its threshold could flip the verdict. Instead it
re-runs the gates *following* the leader's accepted set ``A``:

* a node in ``A`` must be passable at every gate: each decision either passes
  on the member's machine, or one of the comparisons it rests on lies on its
  passing side or within the tolerance band of its threshold;
* a node outside ``A`` must be rejectable at some gate: all of that gate's
  comparisons lie on the rejecting side or within the band. The member removes
  it at the first such gate (where the leader most likely did; an update
  within the band at two gates in one round is not worth telling apart), so
  the candidates the later gates see are the leader's;
* exact decisions (fetch, manifest policy, tensor policy, duplicates, a count
  too small for statistics) must agree exactly.

The set is defensible when every node passes these tests; the member then
aggregates the leader's set (not its own) and requires the same CID. Bands
per statistic live in the gate settings
(:class:`~flare_chain.aggregation.tolerance.ToleranceBands`), shared by the
whole committee.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from flare_chain.aggregation.gates import GateDecision
from flare_chain.aggregation.tolerance import ToleranceBands, in_band

__all__ = ["FollowLeader", "SetVerdict", "may_pass", "may_reject"]


def may_pass(decision: GateDecision, bands: ToleranceBands) -> bool:
    """The leader may have passed this candidate: passed here, or some comparison passes or lies in its band."""
    if not decision.rejected:
        return True
    return any(not c.rejects or in_band(c, bands) for c in decision.comparisons)


def may_reject(decision: GateDecision, bands: ToleranceBands) -> bool:
    """The leader may have rejected this candidate here: rejected here, or every comparison rejects or lies in its
    band (an exact pass, with no comparisons, may not be rejected)."""
    if decision.rejected:
        return True
    return bool(decision.comparisons) and all(c.rejects or in_band(c, bands) for c in decision.comparisons)


def _near(decision: GateDecision, bands: ToleranceBands) -> str:
    near = [c for c in decision.comparisons if in_band(c, bands)]
    return ", ".join(f"{c.statistic} {c.value:.6g} vs threshold {c.threshold:g}" for c in near)


@dataclass(frozen=True)
class SetVerdict:
    """The outcome: ``disputes`` (``(node, why)``: what makes the set indefensible) and ``tolerated`` (band
    calls that went the leader's way where this machine's own strict decision differs)."""

    disputes: list[tuple[str, str]] = field(default_factory=list)
    tolerated: list[str] = field(default_factory=list)

    @property
    def defensible(self) -> bool:
        return not self.disputes

    def summary(self) -> str:
        """One line for a log or a vote record."""
        if self.disputes:
            more = f" (+{len(self.disputes) - 1} more)" if len(self.disputes) > 1 else ""
            return f"accepted set not defensible: {self.disputes[0][1]}{more}"
        if self.tolerated:
            return f"accepted set defensible; within tolerance: {'; '.join(self.tolerated)}"
        return "accepted set matches the gates"


class FollowLeader:
    """A ``settle`` rule for :func:`~flare_chain.aggregation.pipeline.run_gates` that follows the accepted set.

    Call :meth:`verdict` once the gates have run.
    """

    def __init__(self, accepted: Collection[str], bands: ToleranceBands) -> None:
        self.accepted = {a.lower() for a in accepted}
        self._named = {a.lower(): a for a in accepted}
        self.bands = bands
        self._disputes: list[tuple[str, str]] = []
        self._tolerated: list[str] = []
        self._seen: set[str] = set()

    def saw(self, node: str) -> bool:
        """Whether any gate decision on ``node`` went through this rule."""
        return node.lower() in self._seen

    def __call__(self, decisions: Sequence[GateDecision]) -> Mapping[str, str]:
        leaving: dict[str, str] = {}
        for d in decisions:
            self._seen.add(d.node.lower())
            if d.node.lower() in self.accepted:
                if d.rejected and may_pass(d, self.bands):
                    self._tolerated.append(f"{d.node} kept at {d.gate} ({_near(d, self.bands)})")
                elif d.rejected:
                    self._disputes.append((d.node, f"includes {d.node}, rejected by the {d.gate} gate "
                                                   f"outside its tolerance band: {d.reason}"))
                continue  # kept, so later gates see the leader's candidates
            if d.rejected:
                leaving[d.node] = str(d.reason)
            elif may_reject(d, self.bands):
                self._tolerated.append(f"{d.node} left out at {d.gate} ({_near(d, self.bands)})")
                leaving[d.node] = f"left out as the leader did: {d.gate} statistic within tolerance ({_near(d, self.bands)})"
        return leaving

    def verdict(self, passing: Collection[str], excluded_early: Mapping[str, str]) -> SetVerdict:
        """Close the review: ``passing`` are the nodes still in after every gate, ``excluded_early`` the nodes
        left out before the gates ran (bytes, manifest policy) with the reason."""
        disputes = list(self._disputes)
        passing_lower = {p.lower() for p in passing}
        for node in sorted(passing, key=str.lower):
            if node.lower() not in self.accepted:
                disputes.append((node, f"excludes {node}, whose update passes the gates"))
        early = {n.lower(): (n, r) for n, r in excluded_early.items()}
        for a in sorted(self.accepted):
            if a in passing_lower:
                continue
            if a in early:
                node, reason = early[a]
                disputes.append((node, f"includes {node}, rejected before the gates ({reason})"))
            else:
                disputes.append((self._named[a], f"includes {self._named[a]}, which submitted nothing this round"))
        return SetVerdict(disputes=disputes, tolerated=list(self._tolerated))
