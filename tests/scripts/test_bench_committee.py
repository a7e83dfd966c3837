"""scripts/bench_committee.py's on-chain section: real contracts, real proofs, checked against Python."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from flare_chain.committee import sortition

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_committee.py"
TINY_GRID = ["--sections", "chain", "--k", "10", "--chain-rounds", "2", "--chain-shares", "0.3",
             "--chain-splits", "3", "--chain-honest", "10"]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_committee", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _row(out: str) -> list[str]:
    """The one cell row of the on-chain table (honest 10, 30%, split 3)."""
    rows = [line.split() for line in out.splitlines() if line.split()[:3] == ["10", "30%", "3"]]
    assert len(rows) == 1, out
    return rows[0]


def test_tiny_grid_on_chain_agrees_with_python_and_prints_sane_shares(bench: ModuleType,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(TINY_GRID) == 0
    out = capsys.readouterr().out
    assert "0 mismatches" in out and "MISMATCH" not in out
    # 10 honest nodes of mean weight 0.7: some draw 0 (P(none does, in both rounds) ~ 1e-6)
    assert "1 claimed anyway and 1 were refused with CoordinatorNotSelected" in out
    row = _row(out)
    claims, weight_share, lead_share = int(row[3]), float(row[4]), float(row[8])
    assert claims > 0
    assert 0 <= weight_share <= 1 and 0 <= lead_share <= 1
    # the model column is committee_risk's, not a number of the bench's own
    risk = sortition.committee_risk(10, 0.3, threshold_bps=6666, min_committee=2)
    assert float(row[13]) == pytest.approx(risk.majority, abs=5e-4)


def test_seats_the_bench_claims_are_the_ones_the_client_computes(bench: ModuleType) -> None:
    fed = bench.chain_federation([200 * 10**18, 100 * 10**18], [350 * 10**18, 350 * 10**18], threshold_bps=6666,
                                 tag="test client")
    cell = bench.ChainCell()
    bench.chain_round(fed, k=8, threshold_bps=6666, zero_claims=0, cell=cell)
    round_id = fed.client.current_round()
    draws = {node.account.address: fed.client.draw_seat(node.account, round_id).weight for node in fed.nodes}
    seated = {node.account.address: fed.client.seat_weight(round_id, node.account.address) for node in fed.nodes}
    assert cell.mismatches == []
    assert seated == draws and sum(seated.values()) == cell.weight > 0
    attackers = [node.account.address for node in fed.nodes if node.attacker]
    assert cell.attacker_weight == sum(seated[a] for a in attackers)


@pytest.mark.parametrize("rule", ["seat_weight", "leader_score"])
def test_python_off_by_one_makes_the_bench_fail(bench: ModuleType, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch, rule: str) -> None:
    honest = getattr(sortition, rule)
    monkeypatch.setattr(sortition, rule, lambda *args: honest(*args) + 1)
    assert bench.main(TINY_GRID) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and " 0 mismatches" not in out


def test_unknown_section_is_refused(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.main(["--sections", "sim,chian"])
    assert exc.value.code == 2
    assert "unknown section(s) chian" in capsys.readouterr().err
