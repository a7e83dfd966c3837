"""``flare-chain audit`` end to end: exit codes, JSON and a self-contained HTML report seen in Chromium."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from flare_chain.audit.report import render_html
from flare_chain.cli import audit as audit_cli
from flare_chain.cli.main import main
from flare_chain.errors import ConfigError
from flare_chain.node.bundles import MANIFEST_FILE

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture
def cli_args(fresh, tmp_path, monkeypatch) -> Iterator[list[str]]:
    # The CLI points logging at the stderr of its run; put pytest's handlers back afterwards.
    root, ours = logging.getLogger(), logging.getLogger("flare_chain")
    saved = (root.handlers[:], root.level, ours.level)
    fresh.fed.run_round()
    monkeypatch.setattr(audit_cli, "connect", lambda url, timeout_s: fresh.fed.coordinator.w3)
    target = fresh.fed.target
    deployment = tmp_path / "deployment.json"
    deployment.write_text(json.dumps({"chain_id": target.chain_id, "address": target.address,
                                      "block": target.block, "deployment_tx": target.deployment_tx,
                                      "block_hash": target.block_hash}))
    yield ["audit", "--deployment", str(deployment), "--model-dir", str(fresh.fed.model_dir)]
    root.handlers[:], _, _ = saved
    root.setLevel(saved[1])
    ours.setLevel(saved[2])


def test_audit_command_exits_0_and_writes_reports_for_a_clean_history(fresh, cli_args, tmp_path, capsys) -> None:
    out_json, out_html = tmp_path / "audit.json", tmp_path / "audit.html"

    status = main([*cli_args, "--store", str(fresh.fed.store.root), "--json", str(out_json), "--html", str(out_html)])

    assert status == 0, capsys.readouterr().out
    printed = capsys.readouterr().out
    assert "every check passed" in printed and "PASS" in printed
    doc = json.loads(out_json.read_text())
    assert doc["ok"] is True and [r["round_id"] for r in doc["rounds"]] == [1, 2]
    assert doc["counts"]["fail"] == 0 and doc["counts"]["pass"] > 20
    html = out_html.read_text()
    assert "every check passed" in html
    # self-contained: no external fetches, plots inline
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html)
    assert html.count("data:image/png;base64,") == 4


def test_audit_command_names_each_finding_and_exits_nonzero(fresh, cli_args, tmp_path, capsys) -> None:
    store = fresh.store_copy(tmp_path / "tampered")
    node = fresh.fed.nodes[0].address
    leaf = next(e.cid for e in store.ls(fresh.fed.round_cids[2][node]) if e.name == MANIFEST_FILE)
    store.block_path(leaf).write_bytes(b'{"forged": true}')

    out_json = tmp_path / "audit.json"
    status = main([*cli_args, "--store", str(store.root), "--rounds", "2", "--json", str(out_json)])

    printed = capsys.readouterr().out
    assert status == audit_cli.EXIT_FINDINGS
    doc = json.loads(out_json.read_text())
    assert [r["round_id"] for r in doc["rounds"]] == [2]
    # round 1 is context only: round 2's seed and starting adapter still check out against it
    assert {f["check"]: f["status"] for f in doc["findings"] if f["check"] in ("seed-chain", "global-chain")} == {
        "seed-chain": "pass", "global-chain": "pass"}
    assert re.search(rf"FAIL\s+cid-bytes\s+round 2 {node}", printed), printed
    assert "1 failed" in printed or "failed" in printed


@pytest.mark.parametrize(("rpc_flag", "expected"), [
    ([], "http://127.0.0.1:18545"),  # the deployment file's rpc_url, not the default port
    (["--rpc", "http://127.0.0.1:28545"], "http://127.0.0.1:28545"),  # an explicit --rpc wins
])
def test_audit_reads_the_rpc_url_from_the_deployment_file_unless_told(
    fresh, cli_args, tmp_path, monkeypatch, capsys, rpc_flag, expected
) -> None:
    deployment = Path(cli_args[2])
    doc = json.loads(deployment.read_text())
    deployment.write_text(json.dumps({**doc, "rpc_url": "http://127.0.0.1:18545"}))
    used = []
    monkeypatch.setattr(audit_cli, "connect", lambda url, timeout_s: used.append(url) or fresh.fed.coordinator.w3)

    status = main([*cli_args, "--store", str(fresh.fed.store.root), "--no-reproduce", *rpc_flag])

    assert used == [expected]
    assert status == audit_cli.EXIT_UNVERIFIABLE, capsys.readouterr().out  # --no-reproduce: chain checks only


def test_rounds_option_parses_ranges() -> None:
    assert audit_cli.parse_rounds("2..4") == range(2, 5)
    assert audit_cli.parse_rounds("3") == range(3, 4)
    assert audit_cli.parse_rounds("5..").start == 5
    with pytest.raises(ConfigError, match=r"A\.\.B"):
        audit_cli.parse_rounds("x..y")


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def test_html_report_renders_in_headless_chromium(fresh, tmp_path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium on PATH; `make setup` installs it with apt-get where apt is available")
    fresh.fed.run_round()
    store = fresh.store_copy(tmp_path / "partial")
    gone = fresh.fed.round_cids[2][fresh.fed.nodes[3].address]
    store.block_path(next(e.cid for e in store.ls(gone) if e.name == MANIFEST_FILE)).unlink()
    report = fresh.audit(store)
    page = tmp_path / "audit.html"
    page.write_text(render_html(report))
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "audit_report.png"
    shot.unlink(missing_ok=True)

    run = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,2200",
         f"--screenshot={shot}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)},
    )

    assert run.returncode == 0, run.stderr[-2000:]
    dom = run.stdout
    assert "unverifiable" in dom and 'id="verdict"' in dom
    assert dom.count("<img") == 4
    print(f"audit report screenshot: {shot}")
    assert shot.is_file() and shot.stat().st_size > 20_000
