"""Coordinate-wise median on hand-made inputs with known answers."""

from __future__ import annotations

import pytest
import torch

from flare_chain.aggregation import ClientUpdate, CoordinateMedian
from flare_chain.aggregation.median import coordinate_median
from flare_chain.errors import UpdateError


def _update(node: str, values: list[float], samples: int = 1) -> ClientUpdate:
    return ClientUpdate(node=node, delta={"w": torch.tensor(values)}, sample_count=samples)


def test_median_of_one_two_hundred_is_two() -> None:
    # Prepare
    updates = [_update("0x01", [1.0]), _update("0x02", [2.0]), _update("0x03", [100.0])]
    # Execute
    out = CoordinateMedian().aggregate(updates)
    # Assert
    assert torch.equal(out["w"], torch.tensor([2.0]))


def test_median_is_taken_per_coordinate() -> None:
    updates = [_update("0x01", [1.0, 30.0]), _update("0x02", [2.0, -5.0]), _update("0x03", [100.0, 7.0])]
    assert torch.equal(CoordinateMedian().aggregate(updates)["w"], torch.tensor([2.0, 7.0]))


def test_even_count_takes_the_mean_of_the_middle_two() -> None:
    updates = [_update(f"0x0{i}", [v]) for i, v in enumerate([1.0, 2.0, 3.0, 100.0])]
    assert torch.equal(CoordinateMedian().aggregate(updates)["w"], torch.tensor([2.5]))


def test_sample_counts_do_not_sway_the_median() -> None:
    # a node claiming a million samples gets one vote like everyone else
    updates = [_update("0x01", [1.0], 1), _update("0x02", [2.0], 1), _update("0x03", [100.0], 1_000_000)]
    assert torch.equal(CoordinateMedian().aggregate(updates)["w"], torch.tensor([2.0]))


def test_minority_of_huge_values_cannot_move_it_outside_honest_range() -> None:
    honest = [_update(f"0x0{i}", [0.9 + 0.05 * i]) for i in range(4)]
    attackers = [_update(f"0xf{i}", [1e9]) for i in range(3)]
    value = CoordinateMedian().aggregate(honest + attackers)["w"].item()
    assert 0.9 <= value <= 1.05


def test_helper_works_on_stacked_tensors() -> None:
    assert torch.equal(
        coordinate_median(torch.tensor([[3.0], [1.0], [2.0]])), torch.tensor([2.0], dtype=torch.float64)
    )


def test_nan_update_is_refused_before_the_median() -> None:
    with pytest.raises(UpdateError, match=r"0x02.*NaN"):
        CoordinateMedian().aggregate([_update("0x01", [1.0]), _update("0x02", [float("nan")])])


def test_a_round_with_one_update_takes_that_update_in_every_tensor() -> None:
    # A round whose gates left a single update: the median is that update, tensor by tensor, in its shapes
    gen = torch.Generator().manual_seed(3)
    delta = {"a.lora_A.weight": torch.randn(2, 5, generator=gen), "a.lora_B.weight": torch.randn(5, 2, generator=gen)}
    out = CoordinateMedian().aggregate([ClientUpdate(node="0x01", delta=delta, sample_count=4)])
    assert sorted(out) == sorted(delta)
    assert all(out[k].shape == delta[k].shape and torch.equal(out[k].to(delta[k].dtype), delta[k]) for k in delta)
