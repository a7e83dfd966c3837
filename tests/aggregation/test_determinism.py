"""Issue 4 item 7: the same accepted updates give byte-identical aggregates, in any arrival order."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flare_chain.aggregation import (
    Aggregator,
    ClientUpdate,
    CoordinateMedian,
    FedAvg,
    Krum,
    MultiKrum,
    TrimmedMean,
)

AGGREGATORS: list[Aggregator] = [
    FedAvg(),
    CoordinateMedian(),
    TrimmedMean(beta=0.2),
    Krum(num_byzantine=1),
    MultiKrum(num_byzantine=1),
    MultiKrum(num_byzantine=1, num_selected=2, weighted=False),
]


def _round(seed: int, n: int) -> list[ClientUpdate]:
    gen = torch.Generator().manual_seed(seed)
    return [
        ClientUpdate(
            node=f"0x{i:040x}",
            delta={
                "l.lora_A.weight": torch.randn(2, 7, generator=gen),
                "l.lora_B.weight": torch.randn(5, 2, generator=gen),
            },
            sample_count=1 + i % 3,
        )
        for i in range(n)
    ]


def _bytes(out: dict[str, torch.Tensor]) -> list[tuple[str, bytes]]:
    return [(k, v.numpy().tobytes()) for k, v in out.items()]


@pytest.mark.parametrize("aggregator", AGGREGATORS, ids=lambda a: f"{a.name}")
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(5, 8), perm_seed=st.integers(0, 2**16))
def test_permuted_updates_give_identical_bytes(
    aggregator: Aggregator, seed: int, n: int, perm_seed: int
) -> None:
    # Prepare
    updates = _round(seed, n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(perm_seed)).tolist()
    # Execute
    a = aggregator.aggregate(updates)
    b = aggregator.aggregate([updates[i] for i in order])
    # Assert
    assert _bytes(a) == _bytes(b)
    assert list(a) == sorted(a)
    assert all(v.dtype == torch.float32 for v in a.values())


@pytest.mark.parametrize("aggregator", AGGREGATORS, ids=lambda a: f"{a.name}")
def test_identical_updates_aggregate_to_themselves(aggregator: Aggregator) -> None:
    base = _round(0, 1)[0].delta
    updates = [ClientUpdate(node=f"0x{i:02x}", delta=base, sample_count=i + 1) for i in range(5)]
    out = aggregator.aggregate(updates)
    for key, value in base.items():
        assert torch.allclose(out[key], value, atol=1e-6)
