"""Render an ``AuditReport``: a terminal table, a JSON document, a self-contained HTML page.

The HTML page embeds its plots as base64 PNG (matplotlib, Agg backend) and its
styles inline, so it can be mailed or archived and opened offline: no script,
font or image is fetched from anywhere.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from flare_chain.audit.findings import CHECKS, FAIL, PASS, UNVERIFIABLE, Finding
from flare_chain.audit.runner import AuditReport
from flare_chain.cli.tables import render_table

__all__ = ["render_html", "render_text", "write_html", "write_json"]


def _short(address: str) -> str:
    return f"{address[:6]}…{address[-4:]}"


def render_text(report: AuditReport) -> str:
    """The terminal summary: the spec the rounds were held to, one row per round, every finding not a pass.

    The spec line comes first because every verdict below is relative to it: an operator reading
    "every check passed" must see which aggregator (and its parameters) the rounds were rebuilt with.
    """
    rows = [
        [r.round_id, r.status, len(r.submitters), len(r.accepted), len(r.committee), f"{r.approvals}/{r.needed}",
         f"{r.gas_used:,}", r.result.upper()]
        for r in report.rounds
    ]
    parts = [render_table(["round", "status", "submitted", "accepted", "seats", "approvals", "gas", "audit"], rows,
                          title=f"audit of {report.address} on chain {report.chain_id}, "
                                f"blocks {report.from_block}..{report.to_block}")]
    spec_lines = [f"federation {f.detail}" if f.detail.startswith("spec ") else f.detail
                  for f in report.findings if f.check == "federation-spec" and f.status == PASS]
    parts[:0] = spec_lines  # a failed or unverifiable spec is listed with the other findings below
    bad = [f for f in report.findings if f.status != PASS]
    counts = {s: sum(1 for f in report.findings if f.status == s) for s in (PASS, FAIL, UNVERIFIABLE)}
    parts.append(f"{counts[PASS]} check(s) passed, {counts[FAIL]} failed, {counts[UNVERIFIABLE]} unverifiable")
    if bad:
        parts.append("\n".join(f.line() for f in bad))
    parts.append("every check passed" if report.ok else "NOT a pass: " + (
        "checks failed" if report.failures else "some checks could not be made" if bad else "nothing was checked"))
    return "\n\n".join(parts) + "\n"


def write_json(report: AuditReport, path: Path) -> None:
    path.write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(report: AuditReport) -> dict[str, str]:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = [r.round_id for r in report.rounds]
    out: dict[str, str] = {}

    fig, ax = plt.subplots(figsize=(7, 3))
    before = [(r.round_id, r.loss_before) for r in report.rounds if r.loss_before is not None]
    after = [(r.round_id, r.loss_after) for r in report.rounds if r.loss_after is not None]
    if before:
        ax.plot(*zip(*before, strict=True), marker="o", label="global adapter at round start")
    if after:
        ax.plot(*zip(*after, strict=True), marker="s", label="after local training")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel("mean held-out loss")
    ax.set_title("Held-out loss reported in update manifests" if before or after
                 else "No manifest carries a held-out loss")
    if before or after:
        ax.legend()
    out["loss"] = _png(fig)

    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar(ids, [r.gas_used for r in report.rounds], color="#4c72b0")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel("gas used")
    ax.set_title("Gas per round (all transactions of the round, from receipts)")
    out["gas"] = _png(fig)

    nodes = sorted({n for r in report.rounds for n in (*r.submitters, *r.committee)}, key=str.lower)
    if nodes and ids:
        grid = [[0.0] * len(ids) for _ in nodes]
        for j, r in enumerate(report.rounds):
            for i, n in enumerate(nodes):
                grid[i][j] = 2.0 if n in r.accepted else 1.0 if n in r.submitters else 0.0
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(nodes) + 1.2))
        ax.imshow(grid, aspect="auto", cmap=matplotlib.colors.ListedColormap(["#eeeeee", "#f0a150", "#55a868"]),
                  vmin=0, vmax=2, interpolation="nearest")
        ax.set_yticks(range(len(nodes)), [_short(n) for n in nodes])
        ax.set_xticks(range(len(ids)), [str(i) for i in ids])
        ax.set_xlabel("round")
        ax.set_title("Participation: grey none, orange submitted, green accepted")
        out["participation"] = _png(fig)

        fig, ax = plt.subplots(figsize=(7, 0.35 * len(nodes) + 1.2))
        seats = [[1.0 if n in r.committee else 0.0 for r in report.rounds] for n in nodes]
        ax.imshow(seats, aspect="auto", cmap=matplotlib.colors.ListedColormap(["#eeeeee", "#4c72b0"]),
                  vmin=0, vmax=1, interpolation="nearest")
        ax.set_yticks(range(len(nodes)), [_short(n) for n in nodes])
        ax.set_xticks(range(len(ids)), [str(i) for i in ids])
        ax.set_xlabel("round")
        ax.set_title("Committee composition (blue: seated by VRF sortition)")
        out["committee"] = _png(fig)
    return out


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
h1{font-size:1.5em} table{border-collapse:collapse;margin:1em 0;max-width:100%}
td,th{border:1px solid #ccc;padding:3px 8px;overflow-wrap:anywhere}
th{background:#f4f4f4;text-align:left} .pass{color:#1a7f37} .fail{color:#c62828;font-weight:bold}
.unverifiable{color:#b26a00;font-weight:bold} .verdict{font-size:1.3em;padding:.5em 1em;display:inline-block}
.ok{background:#e6f4ea} .bad{background:#fde7e7} .warn{background:#fff4e0} img{max-width:100%} code{font-size:.9em}
"""


def _finding_row(f: Finding) -> str:
    e = html.escape
    return (f"<tr><td class='{f.status}'>{e(f.status)}</td><td>{e(f.check)}</td>"
            f"<td>{'' if f.round is None else f.round}</td><td><code>{e(f.node or '')}</code></td>"
            f"<td>{e(f.detail)}</td></tr>")


def render_html(report: AuditReport) -> str:
    """The whole report as one HTML document with inline styles and inline PNG plots."""
    e = html.escape
    fails, unver = report.failures, report.unverifiable
    if fails:
        verdict, css = f"{len(fails)} finding(s): the history does not check out", "bad"
    elif unver:
        verdict, css = f"{len(unver)} check(s) unverifiable: missing data, not passed", "warn"
    elif not report.ok:
        verdict, css = "nothing was checked: not a pass", "warn"
    else:
        verdict, css = "every check passed", "ok"
    rows = "".join(
        f"<tr><td>{r.round_id}</td><td>{e(r.status)}</td><td>{len(r.submitters)}</td><td>{len(r.accepted)}</td>"
        f"<td>{len(r.committee)}</td><td>{r.approvals}/{r.needed}</td><td>{r.gas_used:,}</td>"
        f"<td><code>{e(r.global_cid or '')}</code></td><td class='{r.result}'>{e(r.result)}</td></tr>"
        for r in report.rounds
    )
    problems = [f for f in report.findings if f.status != PASS]
    problem_rows = "".join(_finding_row(f) for f in problems) or "<tr><td colspan=5>none</td></tr>"
    per_check = "".join(
        f"<tr><td>{e(name)}</td><td>{e(text)}</td>"
        + "".join(f"<td class='{s}'>{sum(1 for f in report.findings if f.check == name and f.status == s)}</td>"
                  for s in (PASS, FAIL, UNVERIFIABLE))
        + "</tr>"
        for name, text in CHECKS.items()
    )
    plots = _plots(report)
    figures = "".join(f"<h3>{e(title)}</h3><img alt='{e(title)}' src='{plots[key]}'>"
                      for key, title in (("loss", "Held-out loss"), ("participation", "Participation and acceptance"),
                                         ("committee", "Committee composition"), ("gas", "Gas per round"))
                      if key in plots)
    timings = ", ".join(f"{k} {v:.2f} s" for k, v in report.timings_s.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>flare-chain audit {e(report.address)}</title>
<style>{_STYLE}</style></head><body>
<h1>flare-chain audit</h1>
<p>Coordinator <code>{e(report.address)}</code> on chain {report.chain_id}, blocks
{report.from_block}..{report.to_block}, {len(report.rounds)} round(s). Phases: {e(timings)}.</p>
<p class="verdict {css}" id="verdict">{e(verdict)}</p>
<h2>Findings</h2>
<table id="findings"><tr><th>status</th><th>check</th><th>round</th><th>node</th><th>detail</th></tr>
{problem_rows}</table>
<h2>Rounds</h2>
<table><tr><th>round</th><th>status</th><th>submitted</th><th>accepted</th><th>seats</th><th>approvals/needed</th>
<th>gas</th><th>committed adapter</th><th>audit</th></tr>{rows}</table>
<h2>Checks</h2>
<table><tr><th>check</th><th>what it asserts</th><th>pass</th><th>fail</th><th>unverifiable</th></tr>{per_check}</table>
<h2>Plots</h2>{figures}
</body></html>
"""


def write_html(report: AuditReport, path: Path) -> None:
    path.write_text(render_html(report), encoding="utf-8")
