"""scripts/bench_committee.py's on-chain section: real contracts, real proofs, checked against Python."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest

from flare_chain.committee import sortition
from tests.scripts._scripts import script_module

TINY_GRID = ["--sections", "chain", "--k", "10", "--chain-rounds", "2", "--chain-shares", "0.3",
             "--chain-splits", "3", "--chain-honest", "10"]


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    with script_module("bench_committee") as module:
        yield module


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


def test_simulated_cell_measures_the_contract_rules_within_their_range(bench: ModuleType) -> None:
    import random

    cell = bench.simulate(0.1, 100, 4, k=20, rounds=600, threshold_bps=6666, rng=random.Random(5))
    risk = sortition.committee_risk(20, 0.1, threshold_bps=6666, min_committee=bench.least_min_committee(6666))
    judged = bench.judge_cell(cell, 0.1, risk.capture)
    assert cell.rounds == 600 and cell.committees == 600  # k = 20 always reaches weight 2
    assert "OFF" not in judged.verdicts, judged
    assert 0.07 < judged.weight_share < 0.13 and cell.weight > 10_000


def test_simulated_cell_flags_a_leader_rule_that_favours_one_stake_size(bench: ModuleType,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The first design ranked by the raw VRF output: the bench must call that leader share OFF, not ok."""
    import random

    monkeypatch.setattr(sortition, "leader_score", lambda output, weight: output >> 192)
    cell = bench.simulate(0.1, 100, 4, k=20, rounds=600, threshold_bps=6666, rng=random.Random(5))
    judged = bench.judge_cell(cell, 0.1, 0.0)
    assert judged.verdicts[1] == "OFF", judged
    assert judged.verdicts[0] != "OFF"  # the weights are untouched


def test_lead_precision_sizes_cells_by_their_share(bench: ModuleType) -> None:
    import argparse
    import math

    def half_width(share: float, n: int) -> float:
        return 2.576 * math.sqrt((1 - share) / (share * n))

    args = argparse.Namespace(rounds=100, lead_precision=0.04)
    for share in (0.1, 0.4):
        n = bench.rounds_for(share, args)
        assert half_width(share, n) <= 0.04 < half_width(share, n - 1)  # the least that reaches the precision
    assert bench.rounds_for(0.1, args) > 5 * bench.rounds_for(0.4, args)
    assert bench.rounds_for(0.4, argparse.Namespace(rounds=100, lead_precision=None)) == 100


def test_owner_grinding_on_chain_opens_in_the_block_it_picked(bench: ModuleType,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The owner tries 4 opening blocks by snapshot and opens in the best; the chain's seed must be the one it saw."""
    assert bench.main(["--sections", "owner-chain", "--grind", "4", "--k", "8", "--chain-rounds", "2",
                       "--chain-shares", "0.3", "--chain-splits", "2", "--chain-honest", "6"]) == 0
    out = capsys.readouterr().out
    assert "0 mismatches" in out and "MISMATCH" not in out
    row = next(line.split() for line in out.splitlines() if line.split()[:3] == ["6", "30%", "2"])
    round_seed_share, claim_seed_share = float(row[3]), float(row[4])
    assert 0 < round_seed_share <= 1 and 0 <= claim_seed_share <= 1


def test_owner_grinding_picks_the_heaviest_seed_for_the_attacker(bench: ModuleType,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fed = bench.chain_federation([300 * 10**18], [350 * 10**18, 350 * 10**18], threshold_bps=6666, tag="test grind")
    tried: list[int] = []
    weights_on = bench._weights_on

    def spy(fed_: object, round_id: int, seed: bytes, k: int, total: int) -> tuple[int, int]:
        got = weights_on(fed_, round_id, seed, k, total)
        tried.append(got[0])
        return got  # type: ignore[no-any-return]

    monkeypatch.setattr(bench, "_weights_on", spy)
    cell = bench.ChainCell()
    bench.chain_round(fed, k=8, threshold_bps=6666, zero_claims=0, cell=cell, grind=6)
    assert len(tried) == 6 and cell.mismatches == []
    assert cell.ground_attacker_weight == max(tried)
