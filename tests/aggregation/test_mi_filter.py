"""The mutual-information filter drops the candidate whose predictions disagree with the rest."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from flare_chain import attacks
from flare_chain.aggregation import (
    ClientUpdate,
    GateContext,
    MutualInformationFilter,
    nmi_outliers,
    seed_probe_windows,
)
from flare_chain.aggregation.mi_filter import agreement_scores, model_predictor, nmi_matrix
from flare_chain.errors import ConfigError

from ._rounds import global_adapter, honest_round


def _predictions(n: int, outliers: dict[int, float], seed: int = 0) -> dict[str, np.ndarray]:
    """n prediction vectors: a shared sequence with 5 % of positions changed; outliers change more."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 50, size=400)
    out = {}
    for i in range(n):
        p = base.copy()
        share = outliers.get(i, 0.05)
        idx = rng.random(400) < share
        p[idx] = rng.integers(0, 50, size=int(idx.sum()))
        out[f"node-{i:02d}"] = p
    return out


def test_known_outlier_is_dropped_with_a_reason() -> None:
    # Prepare: node-03 predicts at random on 90 % of positions
    preds = _predictions(8, {3: 0.9})
    # Execute
    verdicts = nmi_outliers(preds)
    # Assert
    assert list(verdicts) == ["node-03"]
    assert "agree with the others' far less than usual" in verdicts["node-03"]


def test_agreeing_candidates_are_all_kept() -> None:
    assert nmi_outliers(_predictions(8, {})) == {}


def test_nmi_matrix_is_symmetric_with_unit_diagonal_and_relabelling_invariant() -> None:
    a = np.array([0, 0, 1, 1, 2, 2])
    b = np.array([5, 5, 7, 7, 9, 9])  # a relabelled: NMI 1
    c = np.array([0, 1, 0, 1, 0, 1])  # independent of a: NMI 0
    m = nmi_matrix([a, b, c])
    assert np.allclose(m, m.T) and np.allclose(np.diag(m), 1.0)
    assert m[0, 1] == pytest.approx(1.0) and m[0, 2] == pytest.approx(0.0, abs=1e-12)
    assert agreement_scores(m) == pytest.approx([0.5, 0.5, 0.0], abs=1e-12)


def test_few_candidates_pass_unjudged() -> None:
    assert nmi_outliers(_predictions(3, {0: 1.0}), min_candidates=4) == {}


def test_filter_gate_builds_candidate_models_as_global_plus_update() -> None:
    # Prepare: a fake predictor that reads one entry of the candidate model
    seen: list[float] = []
    glob = global_adapter()
    key = sorted(glob)[0]

    def predictor(model: dict[str, torch.Tensor]) -> np.ndarray:
        seen.append(float(model[key][0, 0]))
        return np.zeros(10, dtype=np.int64)

    updates = honest_round(5)
    # Execute
    verdicts = MutualInformationFilter(predictor).screen(updates, GateContext(global_tensors=glob))
    # Assert
    assert verdicts == {}
    assert seen == pytest.approx([float(glob[key][0, 0] + u.delta[key][0, 0]) for u in updates])


def test_seed_probe_is_reproducible_printable_and_seed_dependent() -> None:
    a, b, c = seed_probe_windows(b"\x01" * 32), seed_probe_windows(b"\x01" * 32), seed_probe_windows(7)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (8, 64) and a.dtype == torch.int64
    assert bool(((a >= 32) & (a < 127) | (a == 10)).all())


def test_seed_probe_follows_its_documented_derivation() -> None:
    # Every committee member (and the auditor) must derive the same probe from the round seed, whatever
    # version it runs: bytes from SHA-256("flare-chain probe" ‖ seed ‖ counter as 8 big-endian bytes),
    # each mapped onto the 96 printable characters (95 visible, then newline). Spelled out here
    # independently of the module.
    seed = bytes(range(32))
    alphabet = [*range(32, 127), 10]
    stream = b"".join(hashlib.sha256(b"flare-chain probe" + seed + i.to_bytes(8, "big")).digest() for i in range(4))
    expected = torch.tensor([alphabet[b % 96] for b in stream[: 2 * 64]], dtype=torch.int64).reshape(2, 64)
    assert torch.equal(seed_probe_windows(seed, count=2, seq_len=64), expected)
    assert torch.equal(seed_probe_windows(int.from_bytes(seed, "big"), count=2, seq_len=64), expected)


def test_real_model_filter_drops_a_boosted_update(tiny_model_dir, tiny_train_params) -> None:
    # Prepare: four small honest updates and one ×300 update on the tiny reference model
    from flare_chain.lora.adapter import initial_adapter

    start = initial_adapter(tiny_model_dir, tiny_train_params, seed=0)
    gen = torch.Generator().manual_seed(0)
    direction = {k: torch.randn(v.shape, generator=gen) * 0.02 for k, v in start.items()}
    updates = [ClientUpdate(node=f"n{i}", sample_count=1,
                            delta={k: d + torch.randn(d.shape, generator=gen) * 0.002 for k, d in direction.items()})
               for i in range(5)]
    updates[4] = ClientUpdate(node="n4", sample_count=1, delta=attacks.scale(updates[4].delta, 300.0))
    predictor = model_predictor(tiny_model_dir, tiny_train_params, seed_probe_windows(1, count=4, seq_len=32))
    # Execute
    gate = MutualInformationFilter(predictor)
    verdicts = gate.screen(updates, GateContext(global_tensors=start))
    again = gate.screen(updates, GateContext(global_tensors=start))
    # Assert
    assert list(verdicts) == ["n4"] and verdicts == again


def test_a_model_that_predicts_one_token_almost_everywhere_is_not_an_outlier() -> None:
    # Prepare: a small model predicts token 7 everywhere; one honest node differs on 3 of 400 positions,
    # which plain NMI would score 0 against every constant labelling. One node predicts another token.
    preds = {f"node-{i:02d}": np.full(400, 7) for i in range(5)}
    preds["node-01"][[10, 200, 390]] = 3
    preds["node-04"] = np.full(400, 9)
    # Execute
    verdicts = nmi_outliers(preds)
    # Assert: only the node that agrees nowhere is dropped
    assert set(verdicts) == {"node-04"}
    assert nmi_matrix([preds["node-00"], preds["node-01"]])[0, 1] == pytest.approx(397 / 400)


def test_exactly_min_candidates_are_judged() -> None:
    preds = _predictions(4, {1: 0.9})
    assert list(nmi_outliers(preds, min_candidates=4)) == ["node-01"]
    assert nmi_outliers(preds, min_candidates=5) == {}


def test_the_filter_gate_judges_exactly_min_candidates() -> None:
    # Prepare: the predictor hands out the prepared predictions in the order the gate asks (canonical order)
    preds = list(_predictions(4, {1: 0.9}).values())
    updates = honest_round(4)

    def gate(min_candidates: int) -> MutualInformationFilter:
        served = iter(preds)
        return MutualInformationFilter(lambda _model: next(served), min_candidates=min_candidates)

    # Execute / Assert
    ctx = GateContext(global_tensors=global_adapter())
    assert list(gate(4).screen(updates, ctx)) == [updates[1].node]
    assert gate(5).screen(updates, ctx) == {}


def test_the_helper_and_the_gate_judge_a_round_of_four_alike_with_their_defaults() -> None:
    # An auditor's script calling the pure helper must judge as the committee's gate does, defaults included
    preds = _predictions(4, {1: 0.9})
    served = iter(preds.values())
    gate = MutualInformationFilter(lambda _model: next(served))
    updates = honest_round(4)

    assert list(nmi_outliers(preds)) == ["node-01"]
    assert list(gate.screen(updates, GateContext(global_tensors=global_adapter()))) == [updates[1].node]


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_a_threshold_that_is_not_a_finite_positive_number_is_refused(bad: float) -> None:
    # A threshold of 0 would reject every update whose agreement is merely below the round's median: half the round
    with pytest.raises(ConfigError, match="MI filter threshold must be a finite number > 0"):
        MutualInformationFilter(lambda _model: np.zeros(4, dtype=np.int64), threshold=bad)
    assert MutualInformationFilter(lambda _model: np.zeros(4, dtype=np.int64), threshold=1e-9).threshold == 1e-9
