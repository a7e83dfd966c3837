"""Coordinate-wise trimmed mean on hand-made inputs with known answers."""

from __future__ import annotations

import pytest
import torch

from flare_chain.aggregation import ClientUpdate, TrimmedMean
from flare_chain.aggregation.trimmed_mean import trim_count
from flare_chain.errors import ConfigError


def _updates(values: list[float]) -> list[ClientUpdate]:
    return [
        ClientUpdate(node=f"0x{i:02x}", delta={"w": torch.tensor([v])}, sample_count=1)
        for i, v in enumerate(values)
    ]


def test_extremes_are_dropped() -> None:
    # Prepare: beta = 0.2 of 5 trims one value at each end -> mean(1, 2, 3) = 2
    updates = _updates([-100.0, 1.0, 2.0, 3.0, 100.0])
    # Execute
    out = TrimmedMean(beta=0.2).aggregate(updates)
    # Assert
    assert torch.equal(out["w"], torch.tensor([2.0]))


def test_trimming_is_per_coordinate() -> None:
    updates = [
        ClientUpdate(node=f"0x{i}", delta={"w": torch.tensor(v)}, sample_count=1)
        for i, v in enumerate([[1.0, 50.0], [2.0, 6.0], [100.0, 4.0]])
    ]
    assert torch.equal(TrimmedMean(beta=1 / 3).aggregate(updates)["w"], torch.tensor([2.0, 6.0]))


def test_zero_beta_is_the_plain_mean() -> None:
    assert torch.equal(TrimmedMean(beta=0.0).aggregate(_updates([1.0, 2.0, 6.0]))["w"], torch.tensor([3.0]))


def test_beta_below_one_over_n_trims_nothing() -> None:
    assert torch.equal(TrimmedMean(beta=0.1).aggregate(_updates([0.0, 0.0, 9.0]))["w"], torch.tensor([3.0]))


def test_sample_counts_are_ignored() -> None:
    updates = [
        ClientUpdate(node=f"0x{i}", delta={"w": torch.tensor([v])}, sample_count=c)
        for i, (v, c) in enumerate([(1.0, 1), (2.0, 1000), (4.0, 1), (100.0, 1)])
    ]
    assert torch.equal(TrimmedMean(beta=0.25).aggregate(updates)["w"], torch.tensor([3.0]))


def test_trim_count_is_robust_to_float_error() -> None:
    assert trim_count(100, 0.29) == 29
    assert trim_count(10, 0.3) == 3
    assert trim_count(7, 0.0) == 0


@pytest.mark.parametrize("beta", [0.5, 0.7, -0.1, float("nan"), True, "0.1"])
def test_invalid_beta_is_refused_with_the_parameter_named(beta: object) -> None:
    with pytest.raises(ConfigError, match=r"beta must be a fraction in \[0, 0.5\)"):
        TrimmedMean(beta=beta)  # type: ignore[arg-type]


def test_a_round_with_one_update_takes_that_update_in_every_tensor() -> None:
    gen = torch.Generator().manual_seed(4)
    delta = {"a.lora_A.weight": torch.randn(2, 5, generator=gen), "a.lora_B.weight": torch.randn(5, 2, generator=gen)}
    out = TrimmedMean(beta=0.2).aggregate([ClientUpdate(node="0x01", delta=delta, sample_count=4)])
    assert sorted(out) == sorted(delta)
    assert all(out[k].shape == delta[k].shape and torch.equal(out[k].to(delta[k].dtype), delta[k]) for k in delta)
