"""``flare-chain demo`` end to end through the command line, on the tiny model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flare_chain.cli.main import main

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_demo_prints_round_tables_and_summary(tmp_path: Path, tiny_model_dir: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--nodes", "2", "--rounds", "2", "--committee", "8", "--model-dir", str(tiny_model_dir),
                 "--work-dir", str(tmp_path), "--max-train-windows", "32", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count("committed CID: bafy") == 2
    assert "round 1: committed" in out and "round 2: committed" in out
    # the VRF committee: 2 equal stakes with k=8 draw Poisson(4) seat weights each; the leader proposes
    assert len(re.findall(r"committee \([12] of 2 seated, weight \d+, lowest leader score leads\): node-", out)) == 2
    assert out.count("(leader) proposed") == 2 and "leader, proposed" in out
    assert "rank 1" in out and "0x" in out
    summary = out[out.index("summary:"):]
    assert "committee" in summary and "proposer" in summary
    assert "lower than the base model" in out


def test_demo_rejects_a_bad_setting_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--nodes", "1", "--work-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "nodes" in err and "Traceback" not in err


def test_demo_rejects_a_minimum_committee_above_k_with_one_line(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--committee", "3", "--min-committee", "4", "--work-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "min_committee_size=4" in err and "expected_committee_size=3" in err and "Traceback" not in err


def test_demo_rejects_a_missing_model_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--model-dir", str(tmp_path / "nope"), "--work-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0
    assert "nope" in err and "Traceback" not in err


def test_demo_refuses_a_bad_data_line_with_one_line_before_building_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "node-1.jsonl").write_text('{"text": "fine"}\n')
    (data / "node-2.jsonl").write_text('{"instruction": "Add one.", "output": "2"}\n' * 16 + '{"instruction": "x"}\n')
    code = main(["demo", "--data", str(data), "--work-dir", str(tmp_path / "work"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 7
    assert f'{data / "node-2.jsonl"} line 17: field "output" is missing' in err and "Traceback" not in err
    assert not (tmp_path / "work").exists()
