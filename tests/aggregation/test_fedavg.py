"""FedAvg on hand-made inputs with known answers."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flare_chain.aggregation import ClientUpdate, FedAvg, apply_delta
from flare_chain.errors import UpdateError


def _update(node: str, value: float, samples: int) -> ClientUpdate:
    return ClientUpdate(node=node, delta={"w": torch.full((2, 2), value), "b": torch.tensor([value])}, sample_count=samples)


def test_weighted_mean_uses_sample_counts() -> None:
    # Prepare: 1 sample says 1.0, 3 samples say 5.0 -> (1*1 + 3*5)/4 = 4.0
    updates = [_update("0xaa", 1.0, 1), _update("0xbb", 5.0, 3)]
    # Execute
    out = FedAvg().aggregate(updates)
    # Assert
    assert torch.equal(out["w"], torch.full((2, 2), 4.0))
    assert torch.equal(out["b"], torch.tensor([4.0]))
    assert list(out) == ["b", "w"]


def test_equal_counts_give_plain_mean() -> None:
    out = FedAvg().aggregate([_update("0x01", -2.0, 7), _update("0x02", 4.0, 7)])
    assert torch.equal(out["w"], torch.full((2, 2), 1.0))


def test_arrival_order_does_not_change_bytes() -> None:
    gen = torch.Generator().manual_seed(0)
    updates = [
        ClientUpdate(node=f"0x{i:02x}", delta={"w": torch.randn(8, 8, generator=gen)}, sample_count=i + 1)
        for i in range(5)
    ]
    forward = FedAvg().aggregate(updates)
    backward = FedAvg().aggregate(list(reversed(updates)))
    assert forward["w"].numpy().tobytes() == backward["w"].numpy().tobytes()


def test_mismatched_shapes_are_rejected_with_node_named() -> None:
    bad = ClientUpdate(node="0xbad", delta={"w": torch.zeros(3, 2), "b": torch.zeros(1)}, sample_count=1)
    with pytest.raises(UpdateError, match=r"0xbad.*tensor w has shape \(3, 2\)"):
        FedAvg().aggregate([_update("0xaa", 1.0, 1), bad])


def test_nan_update_is_rejected() -> None:
    with pytest.raises(UpdateError, match="NaN or Inf"):
        FedAvg().aggregate([_update("0xaa", 1.0, 1), _update("0xbb", float("nan"), 1)])


def test_duplicate_node_is_rejected() -> None:
    with pytest.raises(UpdateError, match="same node"):
        FedAvg().aggregate([_update("0xAA", 1.0, 1), _update("0xaa", 2.0, 1)])


def test_empty_round_is_rejected() -> None:
    with pytest.raises(UpdateError, match="no updates"):
        FedAvg().aggregate([])


def test_apply_delta_adds_and_keeps_dtype() -> None:
    base = {"w": torch.ones(2, dtype=torch.float32)}
    out = apply_delta(base, {"w": torch.tensor([0.5, -1.0])})
    assert out["w"].dtype == torch.float32
    assert torch.equal(out["w"], torch.tensor([1.5, 0.0]))


@settings(max_examples=50, deadline=None)
@given(
    values=st.lists(st.floats(-100, 100, allow_nan=False), min_size=1, max_size=6),
    counts=st.lists(st.integers(1, 1000), min_size=6, max_size=6),
)
def test_result_lies_within_the_range_of_inputs(values: list[float], counts: list[int]) -> None:
    updates = [_update(f"0x{i:02x}", v, counts[i]) for i, v in enumerate(values)]
    out = FedAvg().aggregate(updates)["b"].item()
    assert min(values) - 1e-4 <= out <= max(values) + 1e-4


@pytest.mark.parametrize("delta", [{"w": torch.ones(2, 3)}, {"w": torch.ones(2, 3), "v": torch.ones(4), "x": torch.ones(1)}],
                         ids=["missing", "extra"])
def test_an_update_with_other_tensors_is_refused_naming_the_node_and_the_difference(delta) -> None:
    ok = ClientUpdate(node="0xaaa", sample_count=1, delta={"w": torch.ones(2, 3), "v": torch.ones(4)})
    other = ClientUpdate(node="0xbad", sample_count=1, delta=delta)
    with pytest.raises(UpdateError, match=r"0xbad has different tensors than 0xaaa .*same LoRA targets"):
        FedAvg().aggregate([ok, other])


def test_an_aggregate_of_another_shape_than_the_global_adapter_is_refused_and_names_the_tensor() -> None:
    base = {"w": torch.zeros(2, 3), "v": torch.zeros(4)}
    with pytest.raises(UpdateError, match=r"aggregate tensor w has shape \(3, 2\), global has \(2, 3\)"):
        apply_delta(base, {"w": torch.ones(3, 2), "v": torch.ones(4)})
    assert apply_delta(base, {"w": torch.ones(2, 3), "v": torch.ones(4)})["w"].sum() == 6  # matching: applied
