"""Plain-text tables for terminal summaries (no colour codes, so logs stay clean)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the federation imports torch; rendering a report must not need it
    from flare_chain.federation import FederationReport, NodeRoundReport, RoundReport

__all__ = ["render_round", "render_summary", "render_table", "short_hex"]


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, title: str | None = None) -> str:
    """Render rows under headers with columns padded to fit; numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(_is_number(r[i]) for r in cells[1:]) and len(cells) > 1 for i in range(len(headers))]

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric, strict=True))

    rule = "  ".join("-" * w for w in widths)
    lines = ([title] if title else []) + [fmt(cells[0]), rule] + [fmt(r) for r in cells[1:]]
    return "\n".join(line.rstrip() for line in lines)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").rstrip("%x"))
    except ValueError:
        return text in ("", "-")
    return True


def short_hex(data: bytes, digits: int = 8) -> str:
    """``0x`` and the first ``digits`` hex digits of ``data``, with an ellipsis: enough to tell outputs apart."""
    return f"0x{data.hex()[:digits]}…"


def _role(report: RoundReport, node: NodeRoundReport) -> str:
    if not node.seated:
        return "-"
    roles = ["leader" if node.rank == 0 else f"rank {node.rank}"]
    if report.proposer == node.name:
        roles.append("proposed")
    return ", ".join(roles)


def render_round(report: RoundReport) -> str:
    """One round: outcome, committee (seats, VRF outputs, leader, proposer) and a row per node."""
    seated = ", ".join(f"{n.name} {short_hex(n.vrf_output)}" for n in report.committee) or "nobody"
    if report.proposer is None:
        proposed = "no proposal"
    elif report.proposer == report.leader:
        proposed = f"{report.proposer} (leader) proposed"
    else:
        proposed = f"{report.proposer} (rank {report.proposer_rank}) proposed after leader {report.leader} stayed silent"
    outcome = report.status.name.lower()
    if report.failure_reason is not None:
        outcome += f" ({report.failure_reason.name.lower().replace('_', ' ')})"
    title = (f"\nround {report.round_id}: {outcome}, {report.submissions} submissions, {report.accepted} accepted, "
             f"approval weight {report.approvals}/{report.committee_weight}, gas {report.gas_used:,}, "
             f"{report.seconds:.0f} s\n"
             f"committee ({report.committee_size} of {len(report.nodes)} seated, weight {report.committee_weight}, "
             f"lowest leader score leads): "
             f"{seated}; {proposed}\n"
             f"committed CID: {report.committed_cid or '(none: previous adapter kept)'}\n"
             f"global adapter held-out loss (union of nodes' held-out sets): {report.global_loss:.4f}")
    return render_table(
        ["node", "domain", "samples", "loss before", "local after", "global after", "VRF output", "seat", "vote",
         "submit gas"],
        [[n.name, n.domain, n.sample_count, f"{n.loss_before:.4f}", f"{n.loss_local:.4f}", f"{n.loss_after:.4f}",
          short_hex(n.vrf_output), _role(report, n), {True: "yes", False: "no", None: "-"}[n.vote], n.gas_used]
         for n in report.nodes],
        title=title,
    )


def render_summary(result: FederationReport) -> str:
    """Every round in one table: outcome, committee size, proposer, gas and the global loss against the base.

    When local-only training was measured, two more rows: the mean and the best
    node trained alone for as many rounds, on the same held-out set.
    """
    def vs_base(loss: float) -> str:
        return f"{100 * (loss / result.base_loss - 1):+.1f}%"

    alone: list[list[object]] = []
    mean = result.local_only_loss
    if mean is not None:
        best = min(result.local_only, key=lambda name: result.local_only[name])
        alone = [["local-only", "mean of nodes", "-", "-", "-", "-", "-", f"{mean:.4f}", vs_base(mean)],
                 ["local-only", f"best ({best})", "-", "-", "-", "-", "-", f"{result.local_only[best]:.4f}",
                  vs_base(result.local_only[best])]]
    return render_table(
        ["round", "status", "committee", "proposer", "submissions", "accepted", "gas used", "global loss", "vs base"],
        [["base", "-", "-", "-", "-", "-", "-", f"{result.base_loss:.4f}", "0.0%"],
         *([r.round_id, r.status.name.lower(), r.committee_size, r.proposer or "-", r.submissions, r.accepted,
            f"{r.gas_used:,}", f"{r.global_loss:.4f}", vs_base(r.global_loss)]
           for r in result.rounds),
         *alone],
        title=f"summary: chain {result.chain_id}, coordinator {result.contract}, model {result.model_dir}",
    )
