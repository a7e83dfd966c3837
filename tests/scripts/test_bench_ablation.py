"""scripts/bench_ablation.py: the ablation's bookkeeping (recall, FPR, kept, gate switches, the noise floor).

The lab is a one-parameter toy (every honest node pulls the weight towards 1,
the held-out loss is the squared distance from 1) and the "gates" reject any
update that moves the weight away from 1 when the probe-loss switch is on.
The toy stands in for the model at the boundary this test is not about; what
is checked is the table a reader judges the defences by.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from types import ModuleType

import pytest
import torch

from flare_chain.aggregation import ClientUpdate, FedAvg, apply_delta
from flare_chain.aggregation.anomaly import DuplicateGate
from flare_chain.aggregation.pipeline import GateSettings, run_gates
from tests.scripts._scripts import script_module

NODES = [f"node-{i:02d}" for i in range(5)]
Delta = dict[str, torch.Tensor]


@pytest.fixture(scope="module")
def ablation() -> Iterator[ModuleType]:
    with script_module("bench_ablation") as module:
        yield module


class ToyLab:
    """w starts at 0; honest training moves it half-way to 1 plus a small salt-dependent jitter."""

    node_names = NODES

    def __init__(self) -> None:
        self.start: Delta = {"w": torch.zeros(4)}
        self.salts: set[int] = set()

    def train_as(self, node: str, global_adapter: Delta, round_id: int, data: str, salt: int = 0) -> Delta:
        self.salts.add(salt)
        digest = hashlib.sha256(f"{node}:{round_id}:{salt}".encode()).digest()
        jitter = torch.tensor([b / 255 - 0.5 for b in digest[:4]]) * 0.02
        return {"w": 0.5 * (1 - global_adapter["w"]) + jitter}

    def loss(self, adapter: Delta) -> float:
        return float(((adapter["w"] - 1) ** 2).mean()) + 0.1

    def backdoor_success(self, adapter: Delta) -> float:
        return 0.0

    def sample_count(self) -> int:
        return 10


def toy_gates(settings: GateSettings | None):
    """FedAvg; with ``settings.probe_loss`` on, updates that move w away from 1 are rejected as probe_loss,
    and in the first round the last (honest) node is rejected too, a false positive."""

    def aggregate(current: Delta, updates: list[ClientUpdate]) -> tuple[Delta, list[tuple[str, str]]]:
        rejected = []
        if settings is not None and settings.probe_loss:
            rejected = [("probe_loss", u.node) for u in updates
                        if float(((u.delta["w"]) * (1 - current["w"])).sum()) < 0]
            if not current["w"].any():
                rejected.append(("probe_spread", NODES[-1]))
        out = {n for _, n in rejected}
        return apply_delta(current, FedAvg().aggregate([u for u in updates if u.node not in out])), rejected

    return aggregate


def _rows(ablation: ModuleType, lab: ToyLab, **kw) -> dict[tuple[str, float, str], dict]:
    rows = ablation.ablation_rows(lab, toy_gates, attacks=["sign_flip_nm"], fractions=[0.4], rounds=3, **kw)
    return {(r["attack"], r["fraction"], r["config"]): r for r in rows}


def test_each_gate_switch_is_its_own_row_and_removing_the_catching_gate_shows_its_value(ablation: ModuleType) -> None:
    rows = _rows(ablation, ToyLab())
    with_gates = rows[("sign_flip_nm", 0.4, "all_gates")]
    assert with_gates["recall"] == 1.0
    assert with_gates["fpr"] == pytest.approx(1 / 9)  # one of 3 honest nodes x 3 rounds
    assert with_gates["caught_by"] == "probe_loss:6 probe_spread:1"  # 2 attackers x 3 rounds; the honest one
    assert 0.95 < with_gates["gain_kept"] < 1.05  # near the honest-only run (one honest update short once)
    without = rows[("sign_flip_nm", 0.4, "no_probe_loss")]
    assert without["recall"] == 0.0 and without["gain_kept"] < 0.9
    assert rows[("sign_flip_nm", 0.4, "fedavg")]["gain_kept"] == pytest.approx(without["gain_kept"])
    for switch in ablation.GATE_SWITCHES:
        assert ("sign_flip_nm", 0.4, f"no_{switch}") in rows


def test_no_switches_leaves_only_the_three_reference_configurations(ablation: ModuleType) -> None:
    rows = _rows(ablation, ToyLab(), switches=())
    assert sorted(c for a, _, c in rows if a == "sign_flip_nm") == ["all_gates", "fedavg", "honest_only"]
    with pytest.raises(SystemExit, match="no_such_gate"):
        _rows(ablation, ToyLab(), switches=("no_such_gate",))


def test_reseeded_honest_runs_measure_the_noise_floor(ablation: ModuleType) -> None:
    lab = ToyLab()
    rows = _rows(ablation, lab, switches=(), reseeds=2)
    noise = [r for (a, _, _), r in rows.items() if a == ablation.NOISE]
    assert [r["config"] for r in noise] == ["honest_only_seed1", "honest_only_seed2"]
    assert lab.salts == {0, 1, 2}
    kept = [r["gain_kept"] for r in noise]
    # Other batches move the result a little, never by nothing and never like an attack does.
    assert all(k != 1.0 and abs(k - 1) < 0.05 for k in kept), kept
    assert all(math.isnan(r["recall"]) for r in noise)
    report = ablation.ablation_report(list(rows.values()), 3)
    assert "honest_only_seed2" in report


def test_summary_reads_one_line_per_attack_with_the_gated_and_plain_gain_kept(ablation: ModuleType) -> None:
    rows = ablation.ablation_rows(ToyLab(), toy_gates, attacks=["sign_flip_nm", "ipm_0.5"], fractions=[0.2, 0.4],
                                  rounds=3, switches=(), reseeds=1)
    by = {(r["attack"], r["fraction"], r["config"]): r for r in rows}
    summary = ablation.ablation_summary(rows).splitlines()
    assert summary[1].split()[:2] == ["attack", "|"] and summary[1].count("kept") == 2
    flips = next(line for line in summary if line.startswith("sign_flip_nm"))
    gated, plain = by[("sign_flip_nm", 0.4, "all_gates")], by[("sign_flip_nm", 0.4, "fedavg")]
    assert f"{gated['gain_kept']:.2f} ({plain['gain_kept']:.2f})" in flips.split("|")[2]
    assert plain["gain_kept"] < 0.9 < gated["gain_kept"]
    assert summary[-1].startswith("noise floor") and "20% " in summary[-1] and "40% " in summary[-1]


class DifferingLab(ToyLab):
    """Honest nodes whose updates differ as trained ones do (about half their norm apart), so the duplicate
    gate keeps them."""

    def train_as(self, node: str, global_adapter: Delta, round_id: int, data: str, salt: int = 0) -> Delta:
        digest = hashlib.sha256(f"{node}:{round_id}:{salt}".encode()).digest()
        spread = torch.tensor([b / 255 - 0.5 for b in digest[:4]]) * 0.5
        return {"w": (1 - global_adapter["w"]) * (0.5 + spread)}


def duplicate_gate_only(settings: GateSettings | None):
    """FedAvg behind the committee's own duplicate gate (at its default tolerance) when ``settings`` is set."""

    def aggregate(current: Delta, updates: list[ClientUpdate]) -> tuple[Delta, list[tuple[str, str]]]:
        gates = [DuplicateGate(GateSettings().duplicate_tolerance)] if settings is not None else []
        outcome = run_gates(updates, current, gates)
        return (apply_delta(current, FedAvg().aggregate(outcome.accepted)),
                [(v.gate, v.node) for v in outcome.rejections])

    return aggregate


def test_colluders_that_add_more_noise_than_the_duplicate_tolerance_get_past_the_duplicate_gate(
        ablation: ModuleType) -> None:
    # Prepare: two of five colluders sending −mean(honest), with the default noise and with 30 % each
    lab = DifferingLab()
    quiet = ablation.attacked_round(lab, lab.start, 1, "near_duplicate", NODES[:2])
    noisy = ablation.attacked_round(lab, lab.start, 1, "near_duplicate", NODES[:2], colluder_noise=0.3)

    def apart(a: Delta, b: Delta) -> float:
        return float((a["w"] - b["w"]).norm() / max(a["w"].norm(), b["w"].norm()))

    # Execute + Assert: the noise reaches the colluders only, and the run passes it on to them
    assert apart(quiet[NODES[0]], quiet[NODES[1]]) < 1e-5
    assert apart(noisy[NODES[0]], noisy[NODES[1]]) > GateSettings().duplicate_tolerance
    assert all(torch.equal(quiet[n]["w"], noisy[n]["w"]) for n in NODES[2:])
    recall = {}
    for noise in (ablation.COLLUDER_NOISE, 0.3):
        rows = ablation.ablation_rows(lab, duplicate_gate_only, attacks=["near_duplicate"], fractions=[0.4],
                                      rounds=2, switches=(), colluder_noise=noise)
        recall[noise] = next(r["recall"] for r in rows if r["config"] == "all_gates")
    assert recall == {ablation.COLLUDER_NOISE: 1.0, 0.3: 0.0}


def test_the_twin_switch_turns_off_the_twin_gate_alone(ablation: ModuleType) -> None:
    # The twin gate has a tolerance, not a boolean switch; removing it must leave the other probe gates on.
    configs = ablation.configs(lambda settings: settings, switches=ablation.GATE_SWITCHES)
    no_twin, defaults = configs["no_probe_twin"], GateSettings()
    assert no_twin.probe_loss_twin_tolerance is None and defaults.probe_loss_twin_tolerance is not None
    assert no_twin.model_copy(update={"probe_loss_twin_tolerance": defaults.probe_loss_twin_tolerance}) == defaults
    assert configs["no_probe_loss"].probe_loss is False
