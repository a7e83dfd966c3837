"""Exact LoRA aggregation (mean of B·A, re-factored by SVD, residual carried; after FedEx-LoRA).

The crafted example, out = in = 2, rank 1, global factors zero, equal weights:

    client 1: B = [2, 0]ᵀ, A = [1, 0]  ->  B A = diag(2, 0)
    client 2: B = [0, 1]ᵀ, A = [0, 1]  ->  B A = diag(0, 1)
    true mean            = diag(1, 0.5)
    rank-1 exact         = diag(1, 0),   residual diag(0, 0.5),  rel. error 0.5 / √1.25
    factor-wise FedAvg   = [1, 0.5]ᵀ [0.5, 0.5] = [[0.5, 0.5], [0.25, 0.25]],  rel. error √(0.625 / 1.25) = √0.5
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flare_chain.aggregation import (
    ClientUpdate,
    ExactLoraAggregator,
    exact_lora,
    factorwise_fedavg_error,
    product_error,
)
from flare_chain.aggregation.exact_lora import lora_modules, lora_products, mean_lora_product
from flare_chain.errors import UpdateError

P = "base_model.model.model.layers.0.self_attn.q_proj."
A, B = P + "lora_A.weight", P + "lora_B.weight"


def _crafted() -> tuple[dict[str, torch.Tensor], list[ClientUpdate]]:
    glob = {A: torch.zeros(1, 2), B: torch.zeros(2, 1)}
    updates = [
        ClientUpdate(
            node="0x01",
            delta={A: torch.tensor([[1.0, 0.0]]), B: torch.tensor([[2.0], [0.0]])},
            sample_count=5,
        ),
        ClientUpdate(
            node="0x02",
            delta={A: torch.tensor([[0.0, 1.0]]), B: torch.tensor([[0.0], [1.0]])},
            sample_count=5,
        ),
    ]
    return glob, updates


def _random_round(
    seed: int, *, clients: int = 4, rank: int = 2, out: int = 12, fan_in: int = 10, shared_a: bool = False
) -> tuple[dict[str, torch.Tensor], list[ClientUpdate]]:
    gen = torch.Generator().manual_seed(seed)
    glob = {
        A: torch.randn(rank, fan_in, generator=gen),
        B: torch.randn(out, rank, generator=gen),
        "base_model.model.score.weight": torch.randn(3, generator=gen),
    }
    updates = []
    for i in range(clients):
        delta = {
            A: torch.zeros(rank, fan_in) if shared_a else 0.3 * torch.randn(rank, fan_in, generator=gen),
            B: 0.3 * torch.randn(out, rank, generator=gen),
            "base_model.model.score.weight": torch.randn(3, generator=gen),
        }
        updates.append(ClientUpdate(node=f"0x{i:02x}", delta=delta, sample_count=i + 1))
    return glob, updates


def test_crafted_example_rank_one_keeps_the_top_direction_and_carries_the_rest() -> None:
    # Prepare
    glob, updates = _crafted()
    # Execute
    result = ExactLoraAggregator().aggregate_adapters(glob, updates)
    # Assert
    assert torch.allclose(result.adapter[B], torch.tensor([[1.0], [0.0]]), atol=1e-7)
    assert torch.allclose(result.adapter[A], torch.tensor([[1.0, 0.0]]), atol=1e-7)
    assert torch.allclose(
        lora_products(result.residual)[P],
        torch.tensor([[0.0, 0.0], [0.0, 0.5]], dtype=torch.float64),
        atol=1e-7,
    )
    assert result.rel_error == pytest.approx(0.5 / math.sqrt(1.25), abs=1e-12)


def test_factorwise_fedavg_has_nonzero_error_on_the_crafted_example() -> None:
    glob, updates = _crafted()
    assert factorwise_fedavg_error(glob, updates) == pytest.approx(math.sqrt(0.5), abs=1e-12)


def test_exact_equals_the_true_mean_when_rank_suffices() -> None:
    # Prepare: clients share A (only B moves), so the mean of B·A has rank <= r
    glob, updates = _random_round(1, shared_a=True)
    # Execute
    result = ExactLoraAggregator().aggregate_adapters(glob, updates)
    # Assert
    target = mean_lora_product(glob, updates)[P]
    assert torch.allclose(lora_products(result.adapter)[P], target, atol=1e-5)
    assert result.rel_error < 1e-12
    assert result.residual[B].shape == (12, 0) and result.residual[A].shape == (0, 10)
    assert product_error(result.adapter, glob, updates) < 1e-6


def test_adapter_plus_residual_is_the_true_mean_when_rank_does_not_suffice() -> None:
    glob, updates = _random_round(2)
    result = ExactLoraAggregator().aggregate_adapters(glob, updates)
    target = mean_lora_product(glob, updates)[P]
    total = lora_products(result.adapter)[P] + lora_products(result.residual)[P]
    assert torch.allclose(total, target, atol=1e-5)
    assert result.rel_error > 0.01
    assert product_error(result.adapter, glob, updates) == pytest.approx(result.rel_error, rel=1e-5)
    # and it beats factor-wise FedAvg, which is not even the best rank-r answer
    assert result.rel_error < factorwise_fedavg_error(glob, updates)


def test_carried_residual_is_delivered_in_a_later_round() -> None:
    # Prepare: round 1 leaves diag(0, 0.5) behind; in round 2 both clients cancel diag(1, 0)
    glob, updates = _crafted()
    agg = ExactLoraAggregator()
    first = agg.aggregate_adapters(glob, updates)
    cancel = {A: torch.zeros(1, 2), B: -first.adapter[B]}
    round2 = [ClientUpdate(node=n, delta=cancel, sample_count=1) for n in ("0x01", "0x02")]
    # Execute
    second = agg.aggregate_adapters(first.adapter, round2, carried_residual=first.residual)
    # Assert: the carried part now fits in rank 1, so it lands in the adapter and nothing is left
    assert torch.allclose(
        lora_products(second.adapter)[P],
        torch.tensor([[0.0, 0.0], [0.0, 0.5]], dtype=torch.float64),
        atol=1e-6,
    )
    assert second.rel_error < 1e-12


def test_non_lora_tensors_get_the_weighted_mean_of_their_deltas() -> None:
    glob, updates = _random_round(3)
    result = ExactLoraAggregator().aggregate_adapters(glob, updates)
    key = "base_model.model.score.weight"
    total = sum(u.sample_count for u in updates)
    expected = glob[key].double() + sum(u.delta[key].double() * u.sample_count / total for u in updates)
    assert torch.allclose(result.adapter[key].double(), expected, atol=1e-6)


def test_a_factors_have_orthonormal_rows_even_when_products_vanish() -> None:
    # all-zero B: the product is 0, yet A keeps unit rows so training can still move B
    glob = {A: torch.zeros(2, 6), B: torch.zeros(5, 2)}
    updates = [ClientUpdate(node="0x01", delta={A: torch.ones(2, 6), B: torch.zeros(5, 2)}, sample_count=1)]
    result = ExactLoraAggregator().aggregate_adapters(glob, updates)
    a = result.adapter[A].double()
    assert torch.allclose(a @ a.T, torch.eye(2, dtype=torch.float64), atol=1e-6)
    assert torch.equal(result.adapter[B], torch.zeros(5, 2))
    assert result.rel_error == 0.0


def test_singular_vector_signs_are_fixed() -> None:
    glob, updates = _random_round(4)
    b = ExactLoraAggregator().aggregate_adapters(glob, updates).adapter[B]
    pivots = torch.argmax(b.abs(), dim=0)
    assert bool((b[pivots, torch.arange(b.shape[1])] > 0).all())


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), perm_seed=st.integers(0, 2**16))
def test_arrival_order_does_not_change_bytes(seed: int, perm_seed: int) -> None:
    glob, updates = _random_round(seed, clients=5)
    order = torch.randperm(5, generator=torch.Generator().manual_seed(perm_seed)).tolist()
    a = ExactLoraAggregator().aggregate_adapters(glob, updates)
    b = ExactLoraAggregator().aggregate_adapters(glob, [updates[i] for i in order])
    for key in a.adapter:
        assert a.adapter[key].numpy().tobytes() == b.adapter[key].numpy().tobytes()
    for key in a.residual:
        assert a.residual[key].numpy().tobytes() == b.residual[key].numpy().tobytes()


def test_product_error_agrees_with_a_dense_computation() -> None:
    glob, updates = _random_round(5)
    averaged = {
        k: glob[k] + sum(u.delta[k] * u.sample_count for u in updates) / sum(u.sample_count for u in updates)
        for k in glob
    }
    dense = lora_products(averaged)[P] - mean_lora_product(glob, updates)[P]
    expected = float(dense.norm() / mean_lora_product(glob, updates)[P].norm())
    assert factorwise_fedavg_error(glob, updates) == pytest.approx(expected, rel=1e-4)


def test_lora_factor_without_partner_is_refused() -> None:
    with pytest.raises(UpdateError, match=r"'x.lora_A.weight' has no matching 'x.lora_B.weight'"):
        lora_modules(["x.lora_A.weight", "y.bias"])


def test_updates_not_matching_the_global_adapter_are_refused() -> None:
    glob, updates = _crafted()
    with pytest.raises(UpdateError, match="do not match the global adapter"):
        ExactLoraAggregator().aggregate_adapters({**glob, "extra": torch.zeros(1)}, updates)


def test_malformed_carried_residual_is_refused_with_the_module_named() -> None:
    glob, updates = _crafted()
    with pytest.raises(UpdateError, match=rf"carried residual for '{P}' has shapes"):
        ExactLoraAggregator().aggregate_adapters(
            glob, updates, carried_residual={A: torch.ones(1, 3), B: torch.ones(2, 1)}
        )
    with pytest.raises(UpdateError, match="only one of lora_A/lora_B"):
        ExactLoraAggregator().aggregate_adapters(glob, updates, carried_residual={A: torch.ones(1, 2)})


# Issue 14 item 13: many clients take the sketched path (stacked rank k > 4 · (r + max(r, 10))).


def _many_clients(
    seed: int, *, spectrum: str, clients: int = 40, rank: int = 2, width: int = 96
) -> tuple[dict[str, torch.Tensor], list[ClientUpdate]]:
    """A round whose stacked rank (clients · rank = 80) is past the exact path's limit (4 · 12 = 48), below 96."""
    gen = torch.Generator().manual_seed(seed)
    glob = {A: torch.zeros(rank, width), B: torch.zeros(width, rank)}
    updates = []
    for i in range(clients):
        scale = 0.9**i if spectrum == "decaying" else 1.0
        delta = {
            A: torch.randn(rank, width, generator=gen),
            B: scale * torch.randn(width, rank, generator=gen),
        }
        if spectrum == "shared_a":
            delta[A] = torch.ones(rank, width) + torch.arange(rank * width).reshape(rank, width) / 10
        updates.append(ClientUpdate(node=f"0x{i:02x}", delta=delta, sample_count=1 + i % 5))
    return glob, updates


def _exact_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exact_lora, "sketch_width", lambda rank, fan_out, fan_in: 10**9)


@pytest.mark.parametrize("spectrum", ["flat", "decaying"])
def test_sketched_truncation_error_is_within_one_percent_of_the_exact_one(
    spectrum: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    glob, updates = _many_clients(11, spectrum=spectrum)
    # Execute
    sketched = ExactLoraAggregator().aggregate_adapters(glob, updates)
    _exact_path(monkeypatch)
    exact = ExactLoraAggregator().aggregate_adapters(glob, updates)
    # Assert: the exact path really ran (a residual of k − r triplets; the sketch's is [L, −B']), and the sketch is as good within 1%
    assert exact.residual[B].shape[1] == 80 - 2 and sketched.residual[B].shape[1] == 80 + 2
    err_sketched = product_error(sketched.adapter, glob, updates)
    err_exact = product_error(exact.adapter, glob, updates)
    assert err_exact <= err_sketched <= 1.01 * err_exact


def test_sketched_adapter_plus_residual_is_the_true_mean() -> None:
    glob, updates = _many_clients(12, spectrum="flat")
    result = ExactLoraAggregator().aggregate_adapters(glob, updates)
    target = mean_lora_product(glob, updates)[P]
    total = lora_products(result.adapter)[P] + lora_products(result.residual)[P]
    assert torch.allclose(total, target, atol=1e-4 * float(target.abs().max()))
    assert result.rel_error == pytest.approx(product_error(result.adapter, glob, updates), rel=1e-5)
    a = result.adapter[A].double()
    assert torch.allclose(a @ a.T, torch.eye(2, dtype=torch.float64), atol=1e-6)


def test_sketched_path_is_exact_when_rank_suffices() -> None:
    # every client sends the same A, so the mean of B·A has rank <= r and the sketch must find all of it
    glob, updates = _many_clients(13, spectrum="shared_a")
    result = ExactLoraAggregator().aggregate_adapters(glob, updates)
    assert result.rel_error < 1e-6
    assert product_error(result.adapter, glob, updates) < 1e-6


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), perm_seed=st.integers(0, 2**16))
def test_sketched_bytes_do_not_depend_on_the_run_or_the_arrival_order(seed: int, perm_seed: int) -> None:
    glob, updates = _many_clients(seed, spectrum="decaying", clients=30)
    order = torch.randperm(30, generator=torch.Generator().manual_seed(perm_seed)).tolist()
    a = ExactLoraAggregator().aggregate_adapters(glob, updates)
    b = ExactLoraAggregator().aggregate_adapters(glob, [updates[i] for i in order])
    assert a.residual[B].shape[1] == 30 * 2 + 2  # the sketched path ran
    for out_a, out_b in ((a.adapter, b.adapter), (a.residual, b.residual)):
        assert list(out_a) == list(out_b)
        for key in out_a:
            assert out_a[key].numpy().tobytes() == out_b[key].numpy().tobytes()


def test_a_carried_residual_past_the_module_dimension_is_compressed_by_the_exact_path() -> None:
    # Prepare: round 1 is sketched and leaves a residual of rank 80 + 2; round 2 stacks 80 + 82 > 96
    glob, updates = _many_clients(14, spectrum="flat")
    agg = ExactLoraAggregator()
    first = agg.aggregate_adapters(glob, updates)
    # Execute
    second = agg.aggregate_adapters(first.adapter, updates, carried_residual=first.residual)
    # Assert: the exact path ran (at most min(out, in) − r triplets kept) and still loses nothing
    assert first.residual[B].shape[1] == 82
    assert second.residual[B].shape[1] <= 96 - 2
    target = lora_products(first.residual)[P] + mean_lora_product(first.adapter, updates)[P]
    total = lora_products(second.adapter)[P] + lora_products(second.residual)[P]
    assert torch.allclose(total, target, atol=1e-4 * float(target.abs().max()))


def _full_rank_round(rank: int, fan_out: int = 3, fan_in: int = 2) -> tuple[dict[str, torch.Tensor], list[ClientUpdate]]:
    gen = torch.Generator().manual_seed(rank)
    glob = {A: torch.randn(rank, fan_in, generator=gen), B: torch.randn(fan_out, rank, generator=gen)}
    updates = [
        ClientUpdate(node=f"0x{i:02x}", sample_count=1,
                     delta={A: torch.randn(rank, fan_in, generator=gen), B: torch.randn(fan_out, rank, generator=gen)})
        for i in range(2)
    ]
    return glob, updates


def test_rank_equal_to_min_out_in_is_aggregated_exactly() -> None:
    # Prepare: rank 2 = min(out 3, in 2), so the rank-2 factors hold the full mean and nothing is left over
    glob, updates = _full_rank_round(2)
    # Execute
    result = ExactLoraAggregator().aggregate_adapters(glob, updates)
    # Assert
    expected = mean_lora_product(glob, updates)[P]
    assert torch.allclose(lora_products(result.adapter)[P].to(torch.float64), expected, atol=1e-5)
    assert result.rel_error == pytest.approx(0.0, abs=1e-6)


def test_rank_above_min_out_in_is_refused_with_the_module_named() -> None:
    glob, updates = _full_rank_round(3)  # rank 3 > min(out 3, in 2)
    with pytest.raises(UpdateError, match=rf"LoRA rank 3 of '{P}' exceeds min\(out, in\) = 2"):
        ExactLoraAggregator().aggregate_adapters(glob, updates)


@pytest.mark.parametrize(
    ("res_a", "res_b"),
    [
        ((1, 3), (2, 1)),  # A's fan-in is 3, the module's is 2
        ((1, 2), (3, 1)),  # B's fan-out is 3, the module's is 2
        ((1, 2), (2, 2)),  # A holds 1 direction, B holds 2
        ((2,), (2, 1)),  # A is not a matrix
        ((1, 2), (2,)),  # B is not a matrix
    ],
)
def test_each_carried_residual_shape_mismatch_is_refused(res_a: tuple[int, ...], res_b: tuple[int, ...]) -> None:
    glob, updates = _crafted()  # out = in = 2
    with pytest.raises(UpdateError, match=rf"carried residual for '{P}' has shapes"):
        ExactLoraAggregator().aggregate_adapters(
            glob, updates, carried_residual={A: torch.ones(res_a), B: torch.ones(res_b)}
        )


def test_a_well_shaped_carried_residual_of_two_directions_is_accepted() -> None:
    glob, updates = _crafted()
    result = ExactLoraAggregator().aggregate_adapters(
        glob, updates, carried_residual={A: torch.ones(2, 2), B: torch.ones(2, 2)}
    )
    assert set(result.adapter) == {A, B}


@pytest.mark.parametrize("clients", [3, 40])  # 3: exact SVD path; 40 (k = 80 > 4·w = 56): the sketched path
def test_a_residual_bound_keeps_the_strongest_residual_directions(clients: int) -> None:
    # Prepare: the unbounded residual of the same round, as a dense matrix, and its best rank-m approximation
    glob, updates = _random_round(11, clients=clients, rank=2, out=120, fan_in=100)
    full = ExactLoraAggregator().aggregate_adapters(glob, updates)
    dense = lora_products(full.residual)[P]
    u, s, vh = torch.linalg.svd(dense)
    best = (u[:, :3] * s[:3]) @ vh[:3]
    # Execute
    bounded = ExactLoraAggregator(max_residual_rank=3).aggregate_adapters(glob, updates)
    # Check: the adapter is the same rank-r part; the residual keeps 3 directions, as good as the strongest ones
    # (the sketch, like the aggregate's, comes within 1% of the best rank-3 error)
    assert bounded.residual[A].shape == (3, 100) and bounded.residual[B].shape == (120, 3)
    assert torch.allclose(lora_products(bounded.adapter)[P], lora_products(full.adapter)[P], atol=1e-5)
    kept = lora_products(bounded.residual)[P]
    assert float((dense - kept).norm()) <= 1.01 * float((dense - best).norm())
    assert float(kept.norm()) >= 0.9 * float(best.norm())  # it kept something: the top, not nothing
    nothing = ExactLoraAggregator(max_residual_rank=0).aggregate_adapters(glob, updates)
    assert nothing.residual[A].shape == (0, 100)


@pytest.mark.parametrize("clients", [3, 40])
def test_approximation_gap_ignores_signs_and_rotations_but_not_changed_numbers(clients: int) -> None:
    glob, updates = _random_round(12, clients=clients, rank=2, out=120, fan_in=100)
    ref = ExactLoraAggregator(max_residual_rank=4).aggregate_adapters(glob, updates)
    q, _ = torch.linalg.qr(torch.randn(2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    turned = {**ref.adapter, A: (q.T @ ref.adapter[A].double()).float(), B: (ref.adapter[B].double() @ q).float()}
    flipped = {A: -ref.residual[A], B: -ref.residual[B]}

    assert exact_lora.approximation_gap(glob, updates, None, ref, turned, flipped)[1] < 1e-9
    moved = {**ref.adapter, B: ref.adapter[B] * 1.01}
    assert exact_lora.approximation_gap(glob, updates, None, ref, moved, ref.residual) == (P, pytest.approx(1e-4,
                                                                                                          rel=0.2))
