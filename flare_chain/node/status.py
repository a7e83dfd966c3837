"""What a node has done, read from its own files: the state database, the compressor folder, pulled adapters.

``flare-chain node status`` and the daemon's start-up line both come from here.
Nothing in this module talks to the chain or IPFS, so an operator can inspect a
node whose RPC endpoint is down, and a stopped node as well as a running one
(the state file is opened read-only; SQLite's WAL lets it be read while the
daemon writes). What the chain adds (each round's outcome, whether the node's
update made the accepted set) comes from ``flare_chain.node.status_chain`` and
is merged in by ``with_chain``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flare_chain.node.residual import INDEX_FILE
from flare_chain.node.state import NodeState, StepRecord, StepStatus

if TYPE_CHECKING:
    from flare_chain.node.status_chain import ChainView, RoundOnChain

__all__ = ["NodeStatus", "ResidualInfo", "RoundStatusView", "StepView", "read_status", "render_status", "resume_point",
           "with_chain"]

ROUND_STEPS = ("train", "pin", "submit", "claim", "propose", "vote", "pull")
"""A round's steps in order (the daemon's ``STEPS``; kept here so reading status never imports the daemon)."""


@dataclass(frozen=True)
class StepView:
    """One step of one round as an operator reads it."""

    step: str
    status: str
    tx_hash: str | None
    gas_used: int | None
    attempts: int
    last_error: str | None
    summary: str
    """The step's own result in words: losses, CID, vote and reason, skip reason."""
    detail: dict[str, Any]


@dataclass(frozen=True)
class RoundStatusView:
    round_id: int
    steps: list[StepView]
    accepted: bool | None
    """This node's vote on the round's proposal (True approve, False reject), None if it did not vote."""
    residual_rel_error: float | None
    """PowerSGD: share of this round's update (with the carried residual) held back for the next round."""
    adapter: str | None
    """The committed adapter pulled for this round (``CID -> folder``), None when none was pulled."""
    outcome: str = "unknown"
    """``open``, ``proposed``, ``committed``, ``failed``, ``not opened`` (from the chain), or from the pull step
    alone ``committed`` / ``failed``, else ``unknown``."""
    update_accepted: bool | None = None
    """Whether this node's update is in the round's accepted set (the proposal's, committed or not); None while
    nobody proposed or when neither the chain nor the state folder tells."""
    update: str = ""
    """The node's update in words: accepted, left out, not submitted, or what is not known and why."""
    source: str = "state folder"
    """Where ``outcome`` and ``update_accepted`` come from: ``chain`` or ``state folder``."""


@dataclass(frozen=True)
class ResidualInfo:
    committed_round: int
    bytes: int
    l2_norm: float | None


@dataclass(frozen=True)
class NodeStatus:
    state_file: str
    node: str | None
    chain_id: str | None
    contract: str | None
    updated_s_ago: float | None
    registration: StepView | None
    rounds: list[RoundStatusView] = field(default_factory=list)
    residual: ResidualInfo | None = None
    resume: str = ""
    chain: str = "not asked"
    """What the chain query found: ``chain <url> at block N``, or ``chain unreachable: …``."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def _summary(rec: StepRecord) -> str:
    d = rec.detail
    if rec.status in (StepStatus.SKIPPED, StepStatus.FAILED) and d.get("reason"):
        return str(d["reason"])
    if rec.step == "train" and "val_loss_before" in d:
        text = (f"{d.get('sample_count', '?')} windows, held-out loss {float(d['val_loss_before']):.4f} -> "
                f"{float(d['val_loss_after']):.4f}")
        if "powersgd_rel_error" in d:
            text += f", PowerSGD error {float(d['powersgd_rel_error']):.3f}"
        return text
    if rec.step == "pin" and "cid" in d:
        return f"update {d['cid']}"
    if rec.step == "claim" and "output" in d:
        return f"VRF output {str(d['output'])[:12]}…"
    if rec.step == "propose" and "cid" in d:
        return f"aggregate {d['cid']} ({d.get('accepted', '?')} accepted, {d.get('rejected', '?')} rejected)"
    if rec.step == "vote" and "approve" in d:
        return f"{'yes' if d['approve'] else 'no'}: {d.get('reason', '')}"
    if rec.step == "pull" and "cid" in d:
        return f"{d['cid']} -> {d.get('dir', '?')}"
    if d.get("found_on_chain"):
        return "found on-chain (done before a restart)"
    return ""


def _view(rec: StepRecord) -> StepView:
    gas = rec.detail.get("gas_used")
    return StepView(step=rec.step, status=rec.status.value, tx_hash=rec.tx_hash or rec.detail.get("tx_hash"),
                    gas_used=None if gas is None else int(gas), attempts=rec.attempts,
                    last_error=rec.detail.get("last_error"), summary=_summary(rec), detail=rec.detail)


def resume_point(records: list[StepRecord]) -> str:
    """Where a (re)started node picks up, in words: the first unfinished step of its newest round."""
    rounds = sorted({r.round_id for r in records if r.round_id > 0})
    registered = any(r.round_id == 0 and r.step == "register" and r.status.is_final for r in records)
    if not rounds:
        return "no round recorded yet; " + ("registered, waiting for a round to open" if registered
                                            else "registration first")
    last = rounds[-1]
    by_step = {r.step: r for r in records if r.round_id == last}
    for step in ROUND_STEPS:
        rec = by_step.get(step)
        if rec is None or not rec.status.is_final:
            how = "not started" if rec is None else (
                f"stored transaction {rec.tx_hash} to re-send or confirm" if rec.tx_hash else rec.status.value)
            return f"round {last}, step {step} ({how})"
    return f"round {last} finished; waiting for round {last + 1}"


def _residual(compressor_dir: Path) -> ResidualInfo | None:
    index = compressor_dir / INDEX_FILE
    try:
        raw = json.loads(index.read_text(encoding="utf-8"))
        path = compressor_dir / str(raw["file"])
        size = path.stat().st_size
    except (OSError, ValueError, KeyError, TypeError):
        return None
    norm: float | None = None
    try:
        import numpy as np
        from safetensors.numpy import load_file

        squares = sum(float(np.square(t.astype(np.float64)).sum()) for t in load_file(str(path)).values())
        norm = squares ** 0.5
    except Exception:  # a state the daemon would refuse anyway (it names the file then); size still helps
        norm = None
    return ResidualInfo(committed_round=int(raw.get("round", 0)), bytes=size, l2_norm=norm)


def read_status(data_dir: Path, *, now: float | None = None) -> NodeStatus:
    """Everything ``node status`` shows, from ``data_dir`` alone; ConfigError when the node never started there."""
    state_path = Path(data_dir) / "state.sqlite"
    state = NodeState(state_path, read_only=True)
    try:
        records = state.steps()
        meta = {k: state.get_meta(k) for k in ("node", "chain_id", "contract")}
    finally:
        state.close()
    newest = max((r.updated_at for r in records), default=None)
    registration = next((_view(r) for r in records if r.round_id == 0 and r.step == "register"), None)
    rounds: list[RoundStatusView] = []
    for round_id in sorted({r.round_id for r in records if r.round_id > 0}):
        recs = {r.step: r for r in records if r.round_id == round_id}
        steps = [_view(recs[s]) for s in ROUND_STEPS if s in recs]
        steps += [_view(r) for s, r in recs.items() if s not in ROUND_STEPS]
        vote = recs.get("vote")
        approve = vote.detail.get("approve") if vote is not None and vote.status == StepStatus.DONE else None
        train = recs.get("train")
        error = train.detail.get("powersgd_rel_error") if train is not None else None
        pull = recs.get("pull")
        adapter = (f"{pull.detail['cid']} -> {pull.detail.get('dir', '?')}"
                   if pull is not None and pull.status == StepStatus.DONE and "cid" in pull.detail else None)
        outcome, update_accepted = _outcome_from_state(recs)
        rounds.append(RoundStatusView(round_id=round_id, steps=steps,
                                      accepted=None if approve is None else bool(approve),
                                      residual_rel_error=None if error is None else float(error), adapter=adapter,
                                      outcome=outcome, update_accepted=update_accepted,
                                      update=_update_from_state(recs, outcome, update_accepted)))
    clock = time.time() if now is None else now
    return NodeStatus(state_file=str(state_path), node=meta["node"], chain_id=meta["chain_id"],
                      contract=meta["contract"], updated_s_ago=None if newest is None else max(0.0, clock - newest),
                      registration=registration, rounds=rounds, residual=_residual(Path(data_dir) / "compressor"),
                      resume=resume_point(records))


def _outcome_from_state(recs: dict[str, StepRecord]) -> tuple[str, bool | None]:
    """The round's outcome and the update's acceptance as far as the pull step recorded them."""
    pull = recs.get("pull")
    if pull is None or not pull.status.is_final:
        return "unknown", None
    accepted = pull.detail.get("update_accepted")
    if pull.status == StepStatus.DONE:
        return "committed", None if accepted is None else bool(accepted)
    reason = str(pull.detail.get("reason", ""))
    return ("failed" if reason.startswith("round failed") else "unknown"), None if accepted is None else bool(accepted)


def _submitted(recs: dict[str, StepRecord]) -> bool | None:
    submit = recs.get("submit")
    if submit is None or not submit.status.is_final:
        return None
    return submit.status == StepStatus.DONE


def _update_from_state(recs: dict[str, StepRecord], outcome: str, accepted: bool | None) -> str:
    submitted = _submitted(recs)
    if submitted is False:
        return "not submitted"
    if accepted is True:
        return f"accepted (in the {outcome} round's accepted set)"
    if accepted is False:
        return "left out of the accepted set"
    if submitted is None:
        return "not submitted yet"
    return "submitted; the state folder does not say whether it was accepted"


def _update_from_chain(seen: RoundOnChain) -> str:
    if seen.update_accepted is True:
        return f"accepted: in the {seen.outcome} proposal's accepted set ({seen.accepted_count} updates)"
    if seen.update_accepted is False and seen.submitted:
        return (f"left out: submitted, but not in the {seen.outcome} proposal's accepted set "
                f"({seen.accepted_count} updates)")
    if seen.update_accepted is False:
        return f"not submitted; the {seen.outcome} proposal accepted {seen.accepted_count} other updates"
    if seen.accepted_count is not None:
        return (f"{'submitted' if seen.submitted else 'not submitted'}; the {seen.outcome} proposal accepted "
                f"{seen.accepted_count} updates (its list is in the proposed adapter's manifest; this node reads "
                "it when it pulls a committed adapter)")
    if seen.outcome in ("open", "not opened"):
        return "submitted; no proposal yet" if seen.submitted else "not submitted (yet)"
    return f"{'submitted' if seen.submitted else 'not submitted'}; the round {seen.outcome} without a proposal"


def with_chain(status: NodeStatus, view: ChainView) -> NodeStatus:
    """``status`` with each round's outcome and acceptance taken from ``view`` where the chain answered.

    Rounds the chain did not answer for keep what the state folder knows, and
    their ``update`` text says the chain could not be asked.
    """
    rounds = []
    for rnd in status.rounds:
        seen = view.rounds.get(rnd.round_id)
        if seen is not None and seen.update_accepted is None and seen.accepted_count is not None:
            # the chain has the list's root and count; whether this node is on it, the pulled manifest said
            seen = replace(seen, update_accepted=rnd.update_accepted)
        if seen is not None:
            rnd = replace(rnd, outcome=seen.outcome, update_accepted=seen.update_accepted,
                          update=_update_from_chain(seen), source="chain")
        elif not view.reachable and rnd.update_accepted is None:
            rnd = replace(rnd, update=f"{rnd.update} (chain unreachable)")
        rounds.append(rnd)
    return replace(status, rounds=rounds, chain=view.note)


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def render_status(status: NodeStatus, *, name: str) -> str:
    """The text form of ``node status``: a header, the registration, one table per round, the residual."""
    from flare_chain.cli.tables import render_table

    lines = [f"node {name} {status.node or '(address not recorded yet)'}; state {status.state_file}",
             f"chain {status.chain_id or '?'}, coordinator {status.contract or '?'}; last update {_ago(status.updated_s_ago)}",
             f"resumes at: {status.resume}", f"outcomes from: {status.chain}"]
    reg = status.registration
    if reg is not None:
        lines.append(f"registration: {reg.status}" + (f", tx {reg.tx_hash}" if reg.tx_hash else "")
                     + (f", gas {reg.gas_used:,}" if reg.gas_used is not None else "")
                     + (f", last error: {reg.last_error}" if reg.last_error and reg.status != "done" else ""))
    else:
        lines.append("registration: not attempted yet")
    for rnd in status.rounds:
        headers = ["step", "state", "tx", "gas", "tries", "result", "last error"]
        rows = [[v.step, v.status, v.tx_hash or "-", "-" if v.gas_used is None else f"{v.gas_used:,}",
                 v.attempts or "-", v.summary or "-", (v.last_error or "-")[:120]] for v in rnd.steps]
        vote = {True: "voted to approve", False: "voted to reject", None: "no vote"}[rnd.accepted]
        residual = "-" if rnd.residual_rel_error is None else f"{rnd.residual_rel_error:.3f} of the update held back"
        title = (f"\nround {rnd.round_id}: {rnd.outcome} ({rnd.source}); own update: {rnd.update}\n"
                 f"  {vote}; residual {residual}; adapter pulled: {rnd.adapter or 'none'}")
        lines.append(render_table(headers, rows, title=title))
    if not status.rounds:
        lines.append("no rounds recorded yet")
    res = status.residual
    if res is not None:
        norm = "?" if res.l2_norm is None else f"{res.l2_norm:.6g}"
        lines.append(f"\ncompressor residual: committed after round {res.committed_round}, {res.bytes:,} bytes, "
                     f"L2 norm {norm}")
    return "\n".join(lines)
