"""``flare-chain demo`` end to end through the command line, on the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

from flare_chain.cli.main import main

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_demo_prints_round_tables_and_summary(tmp_path: Path, tiny_model_dir: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--nodes", "2", "--rounds", "2", "--model-dir", str(tiny_model_dir),
                 "--work-dir", str(tmp_path), "--max-train-windows", "32", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count("committed CID: bafy") == 2
    assert "round 1: committed" in out and "round 2: committed" in out
    assert "lower than the base model" in out


def test_demo_rejects_a_bad_setting_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--nodes", "1", "--work-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "nodes" in err and "Traceback" not in err


def test_demo_rejects_a_missing_model_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--model-dir", str(tmp_path / "nope"), "--work-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0
    assert "nope" in err and "Traceback" not in err
