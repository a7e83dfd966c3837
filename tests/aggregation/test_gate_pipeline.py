"""Each gate rejects what it exists to catch, with a recorded reason, and passes honest rounds."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flare_chain import attacks
from flare_chain.aggregation import (
    ClientUpdate,
    DirectionAnomalyGate,
    DuplicateGate,
    FedAvg,
    GateContext,
    GateSettings,
    NormAnomalyGate,
    TensorPolicyGate,
    build_gates,
    run_gates,
)
from flare_chain.aggregation.robust import robust_z
from flare_chain.errors import ConfigError

from ._rounds import global_adapter, honest_round

CTX = GateContext(global_tensors=global_adapter())


def _replace(updates: list[ClientUpdate], i: int, delta: dict[str, torch.Tensor]) -> list[ClientUpdate]:
    out = list(updates)
    out[i] = ClientUpdate(node=updates[i].node, delta=delta, sample_count=updates[i].sample_count)
    return out


def test_honest_round_passes_every_gate() -> None:
    # Prepare
    updates = honest_round()
    # Execute
    outcome = run_gates(updates, global_adapter(), build_gates())
    # Assert
    assert outcome.rejections == []
    assert outcome.accepted_nodes == [u.node for u in updates]


@pytest.mark.parametrize(
    ("attack", "fragment"),
    [
        (attacks.non_finite, "contains NaN"),
        (lambda d: attacks.non_finite(d, value=math.inf), "contains Inf"),
        (attacks.wrong_shape, "has shape"),
        (lambda d: {k: v.to(torch.float64) for k, v in d.items()}, "dtype torch.float64"),
        (lambda d: {k: v for k, v in d.items() if "lora_A" not in k}, "missing tensor"),
        (lambda d: {**d, "extra.weight": torch.zeros(2)}, "unexpected tensor"),
    ],
)
def test_tensor_policy_gate_rejects_malformed_updates_with_reason(attack, fragment: str) -> None:
    updates = honest_round(4)
    bad = _replace(updates, 2, attack(updates[2].delta))
    outcome = run_gates(bad, global_adapter(), [TensorPolicyGate()])
    assert [(r.gate, r.node) for r in outcome.rejections] == [("policy", updates[2].node)]
    assert fragment in outcome.rejections[0].reason
    assert len(outcome.accepted) == 3


def test_size_and_value_bounds_are_enforced() -> None:
    updates = honest_round(3)
    big = _replace(updates, 0, attacks.scale(updates[0].delta, 1000.0))
    verdicts = TensorPolicyGate(max_abs_value=1.0).screen(big, CTX)
    assert list(verdicts) == [updates[0].node] and "over the bound" in verdicts[updates[0].node]
    verdicts = TensorPolicyGate(max_update_bytes=100).screen(updates, CTX)
    assert len(verdicts) == 3 and "bytes, over the bound of 100" in verdicts[updates[1].node]


@pytest.mark.parametrize("factor", [10.0, 100.0, 0.01])
def test_norm_gate_rejects_scaled_updates(factor: float) -> None:
    updates = honest_round()
    bad = _replace(_replace(updates, 1, attacks.scale(updates[1].delta, factor)), 7,
                   attacks.scale(updates[7].delta, factor))
    verdicts = NormAnomalyGate().screen(bad, CTX)
    assert sorted(verdicts) == [updates[1].node, updates[7].node]
    assert "× the round's median" in verdicts[updates[1].node]


def test_norm_gate_rejects_noise_and_all_zero_updates() -> None:
    updates = honest_round()
    bad = _replace(updates, 3, attacks.gaussian_noise(updates[3].delta, seed=1))
    bad = _replace(bad, 4, {k: torch.zeros_like(v) for k, v in updates[4].delta.items()})
    verdicts = NormAnomalyGate().screen(bad, CTX)
    assert sorted(verdicts) == [updates[3].node, updates[4].node]
    assert "all zeros" in verdicts[updates[4].node]


def test_anomaly_gates_pass_everything_below_min_candidates() -> None:
    updates = honest_round(4)
    bad = _replace(updates, 0, attacks.scale(updates[0].delta, 100.0))
    assert NormAnomalyGate(min_candidates=5).screen(bad, CTX) == {}
    assert DirectionAnomalyGate(min_candidates=5).screen(bad, CTX) == {}


def test_direction_gate_rejects_sign_flips_at_forty_percent() -> None:
    updates = honest_round()
    bad = updates
    for i in (0, 3, 5, 8):
        bad = _replace(bad, i, attacks.sign_flip(updates[i].delta))
    verdicts = DirectionAnomalyGate().screen(bad, CTX)
    assert sorted(verdicts) == sorted(updates[i].node for i in (0, 3, 5, 8))
    assert "points away" in verdicts[updates[0].node]


def test_duplicate_gate_rejects_colluders_sending_identical_updates() -> None:
    updates = honest_round()
    crafted = attacks.colluding_update([u.delta for u in updates[3:]])
    bad = _replace(_replace(_replace(updates, 0, crafted), 1, crafted), 2, crafted)
    verdicts = DuplicateGate().screen(bad, CTX)
    assert sorted(verdicts) == [updates[0].node, updates[1].node, updates[2].node]
    assert "bit-identical to that of 2 other node(s)" in verdicts[updates[0].node]


def test_pipeline_records_the_first_gate_that_rejects_each_update() -> None:
    updates = honest_round()
    bad = _replace(updates, 0, attacks.non_finite(updates[0].delta))
    bad = _replace(bad, 1, attacks.scale(updates[1].delta, 100.0))
    bad = _replace(bad, 2, attacks.sign_flip(updates[2].delta))
    outcome = run_gates(bad, global_adapter(), build_gates())
    got = {(r.gate, r.node) for r in outcome.rejections}
    assert got == {("policy", updates[0].node), ("norm", updates[1].node), ("direction", updates[2].node)}
    assert len(outcome.accepted) == 7


def test_gate_settings_reject_bad_values() -> None:
    with pytest.raises(ValueError):
        GateSettings(norm_threshold=-1)
    with pytest.raises(ConfigError):
        NormAnomalyGate(threshold=0)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), perm_seed=st.integers(0, 2**16))
def test_pipeline_is_deterministic_and_order_free(seed: int, perm_seed: int) -> None:
    # Prepare: a round with a scaled and a flipped attacker, shuffled arrival order
    updates = honest_round(8, seed=seed)
    bad = _replace(_replace(updates, 2, attacks.scale(updates[2].delta, 10.0)), 5,
                   attacks.sign_flip(updates[5].delta))
    order = torch.randperm(len(bad), generator=torch.Generator().manual_seed(perm_seed)).tolist()
    shuffled = [bad[i] for i in order]
    # Execute
    first = run_gates(bad, global_adapter(), build_gates())
    second = run_gates(shuffled, global_adapter(), build_gates())
    agg1, agg2 = FedAvg().aggregate(first.accepted), FedAvg().aggregate(second.accepted)
    # Assert
    assert first.accepted_nodes == second.accepted_nodes
    assert first.rejections == second.rejections
    assert all(agg1[k].numpy().tobytes() == agg2[k].numpy().tobytes() for k in agg1)


def test_robust_z_ignores_a_minority_of_huge_values() -> None:
    z = robust_z([1.0, 1.1, 0.9, 1.0, 1e9])
    assert abs(z[0]) < 1 and z[-1] > 1e6
    assert robust_z([2.0, 2.0, 2.0, 3.0]) == [0.0, 0.0, 0.0, math.inf]


def _update_bytes(update: ClientUpdate) -> int:
    return sum(t.numel() * t.element_size() for t in update.delta.values())


def test_tensor_policy_gate_allows_exactly_max_update_bytes_and_rejects_one_byte_less_room() -> None:
    updates = honest_round(3)
    size = _update_bytes(updates[0])
    assert TensorPolicyGate(max_update_bytes=size).screen(updates, CTX) == {}
    verdicts = TensorPolicyGate(max_update_bytes=size - 1).screen(updates, CTX)
    assert sorted(verdicts) == sorted(u.node for u in updates)
    assert f"update holds {size} bytes, over the bound of {size - 1}" in verdicts[updates[0].node]


def test_tensor_policy_gate_rejects_an_update_claiming_zero_samples() -> None:
    updates = honest_round(3)
    zero = [*updates[:2], ClientUpdate(node=updates[2].node, delta=updates[2].delta, sample_count=0)]
    assert TensorPolicyGate().screen(zero, CTX) == {updates[2].node: "claims 0 samples; must be > 0"}


def test_norm_gate_judges_a_round_of_exactly_min_candidates() -> None:
    updates = honest_round(5)
    bad = _replace(updates, 2, attacks.scale(updates[2].delta, 100.0))
    assert list(NormAnomalyGate(min_candidates=5).screen(bad, CTX)) == [updates[2].node]
    assert NormAnomalyGate(min_candidates=6).screen(bad, CTX) == {}


def test_direction_gate_judges_a_round_of_exactly_min_candidates() -> None:
    updates = honest_round(5)
    bad = _replace(updates, 2, attacks.sign_flip(updates[2].delta))
    assert list(DirectionAnomalyGate(min_candidates=5).screen(bad, CTX)) == [updates[2].node]
    assert DirectionAnomalyGate(min_candidates=6).screen(bad, CTX) == {}


def test_duplicate_gate_rejects_a_pair_of_identical_updates() -> None:
    updates = honest_round()
    bad = _replace(updates, 6, updates[4].delta)
    verdicts = DuplicateGate().screen(bad, CTX)
    assert sorted(verdicts) == [updates[4].node, updates[6].node]
    assert "bit-identical to that of 1 other node(s)" in verdicts[updates[6].node]


def test_tensor_policy_gate_allows_an_entry_at_exactly_max_abs_value() -> None:
    updates = honest_round(3)
    peak = max(float(t.abs().max()) for t in updates[0].delta.values())
    others = max(float(t.abs().max()) for u in updates[1:] for t in u.delta.values())
    bound = max(peak, others)
    assert TensorPolicyGate(max_abs_value=bound).screen(updates, CTX) == {}
    below = float(torch.nextafter(torch.tensor(bound, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)))
    assert len(TensorPolicyGate(max_abs_value=below).screen(updates, CTX)) == 1


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"max_update_bytes": 0}, "max_update_bytes must be >= 1, got 0"),
    ({"max_abs_value": 0.0}, "max_abs_value must be > 0 or None, got 0.0"),
    ({"max_abs_value": -1.0}, "max_abs_value must be > 0 or None, got -1.0"),
])
def test_tensor_policy_gate_refuses_bounds_that_would_reject_every_update(kwargs, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        TensorPolicyGate(**kwargs)


def test_tensor_policy_gate_takes_the_smallest_valid_bounds() -> None:
    # One byte and a tiny magnitude are legal (if useless) bounds: they reject, they do not refuse to build
    gate = TensorPolicyGate(max_update_bytes=1, max_abs_value=0.5)
    assert (gate.max_update_bytes, gate.max_abs_value) == (1, 0.5)
    assert len(gate.screen(honest_round(3), CTX)) == 3


def test_tensor_policy_gate_accepts_an_update_of_a_single_sample() -> None:
    updates = honest_round(3)
    one = [*updates[:2], ClientUpdate(node=updates[2].node, delta=updates[2].delta, sample_count=1)]
    assert TensorPolicyGate().screen(one, CTX) == {}


def test_tensor_policy_gate_built_alone_has_the_bounds_the_settings_document() -> None:
    # A gate built without settings (an auditor's script) must screen like the pipeline's default gate
    settings_default = GateSettings()
    gate = TensorPolicyGate()
    assert (gate.max_update_bytes, gate.max_abs_value) == (settings_default.max_update_bytes,
                                                           settings_default.max_abs_value)


@pytest.mark.parametrize("gate", [NormAnomalyGate, DirectionAnomalyGate])
def test_anomaly_gates_take_three_candidates_as_the_least_and_refuse_fewer(gate) -> None:
    # A median and MAD over fewer than three values cannot single out one: 3 is the smallest setting an
    # operator may choose, 2 is refused naming the bound.
    assert gate(min_candidates=3).min_candidates == 3
    with pytest.raises(ConfigError, match="min_candidates must be >= 3"):
        gate(min_candidates=2)
