"""Issue 14 item 12: the blocked sort gives the bits of the old full ``torch.sort``, for the median and trimmed mean.

The references below are the implementations the blocked ones replaced,
verbatim: a strided ``torch.sort`` of the stacked updates along dim 0.
"""

from __future__ import annotations

import pytest
import torch

from flare_chain.aggregation import order_stats
from flare_chain.aggregation.median import coordinate_median, median_of
from flare_chain.aggregation.order_stats import sorted_blocks
from flare_chain.aggregation.trimmed_mean import trim_count, trimmed_mean, trimmed_mean_of


def _reference_median(stacked: torch.Tensor) -> torch.Tensor:
    ordered, _ = torch.sort(stacked.to(torch.float64), dim=0)
    n = ordered.shape[0]
    if n % 2:
        return ordered[n // 2].clone()
    return (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def _reference_trimmed_mean(stacked: torch.Tensor, beta: float) -> torch.Tensor:
    ordered, _ = torch.sort(stacked.to(torch.float64), dim=0)
    n = ordered.shape[0]
    k = trim_count(n, beta)
    acc = torch.zeros(ordered.shape[1:], dtype=torch.float64)
    for i in range(k, n - k):
        acc += ordered[i]
    return acc / (n - 2 * k)


def _stacked(seed: int, n: int, shape: tuple[int, ...], kind: str) -> torch.Tensor:
    """n updates: float32 continuous values, heavy ties, ties with signed zeros, or float64 of wide magnitudes.

    Sums of float32 values are exact in float64, so only the float64 kind
    shows whether survivors are added in the old order.
    """
    gen = torch.Generator().manual_seed(seed)
    if kind == "continuous":
        return torch.randn((n, *shape), generator=gen)
    if kind == "float64_wide":
        scale = 10.0 ** torch.randint(-8, 9, (n, *shape), generator=gen).to(torch.float64)
        return torch.randn((n, *shape), generator=gen, dtype=torch.float64) * scale
    if kind == "ties":
        return torch.randint(-2, 3, (n, *shape), generator=gen).to(torch.float32) * 0.25
    values = torch.tensor([-0.0, 0.0, 1e-30, -1e-30, 3e7, -3e7, 1.0, 1.0 + 2**-23], dtype=torch.float32)
    return values[torch.randint(0, len(values), (n, *shape), generator=gen)]


def _bits(t: torch.Tensor) -> bytes:
    return t.contiguous().numpy().tobytes()


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of a few coordinates, so every test crosses block edges and ends on a partial block."""
    monkeypatch.setattr(order_stats, "BLOCK_VALUES", 37)


KINDS = ["continuous", "ties", "signed_zeros", "float64_wide"]


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10, 33, 100])
def test_median_is_bit_identical_to_the_full_sort(kind: str, n: int) -> None:
    for seed in range(3):
        # Prepare
        stacked = _stacked(seed, n, (13, 5), kind)
        # Execute
        got = coordinate_median(stacked)
        # Assert
        assert got.shape == (13, 5) and got.dtype == torch.float64
        assert _bits(got) == _bits(_reference_median(stacked))


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("n", "beta"),
    [(1, 0.0), (2, 0.49), (3, 1 / 3), (4, 0.25), (5, 0.4), (5, 0.39), (10, 0.1), (10, 0.3), (33, 0.2),
     (100, 0.0), (100, 0.2), (100, 0.29), (100, 0.49)],
)
def test_trimmed_mean_is_bit_identical_to_the_full_sort(kind: str, n: int, beta: float) -> None:
    for seed in range(3):
        stacked = _stacked(seed, n, (13, 5), kind)
        got = trimmed_mean(stacked, beta)
        assert got.shape == (13, 5) and got.dtype == torch.float64
        assert _bits(got) == _bits(_reference_trimmed_mean(stacked, beta))


def test_signed_zero_median_keeps_the_sign_the_full_sort_gives() -> None:
    # Prepare: the middle of (-0, +0, +0) and of (+0, -0, -0) depends on which zero the sort keeps
    stacked = torch.tensor([[-0.0, 0.0], [0.0, -0.0], [0.0, -0.0]])
    # Execute
    got = coordinate_median(stacked)
    # Assert
    assert _bits(got) == _bits(_reference_median(stacked))


def test_blocks_cover_every_coordinate_once_and_sort_each_row(small_blocks: None) -> None:
    rows = [torch.randn(100, generator=torch.Generator().manual_seed(i)) for i in range(5)]
    seen: list[int] = []
    for cut, block in sorted_blocks(rows):
        seen += list(range(cut.start, cut.stop))
        assert block.shape == (cut.stop - cut.start, 5) and block.dtype == torch.float32
        expected = torch.sort(torch.stack([r[cut] for r in rows], dim=1), dim=1).values
        assert torch.equal(block, expected)
    assert seen == list(range(100))


def test_block_size_does_not_change_a_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = list(_stacked(7, 9, (300,), "continuous"))
    wide_median, wide_trim = median_of(rows), trimmed_mean_of(rows, 0.2)
    monkeypatch.setattr(order_stats, "BLOCK_VALUES", 50)
    assert _bits(median_of(rows)) == _bits(wide_median)
    assert _bits(trimmed_mean_of(rows, 0.2)) == _bits(wide_trim)


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize("n", [1, 5, 33, 40])
def test_each_block_fills_the_memory_budget_and_stays_within_it(n: int) -> None:
    # The promise behind the blocks: one block of about BLOCK_VALUES values in memory, not all n updates;
    # a block holds at least one coordinate even when n alone is over the budget (n = 40 > 37)
    rows = [torch.randn(60, generator=torch.Generator().manual_seed(i)) for i in range(n)]
    per_block = max(1, order_stats.BLOCK_VALUES // n)
    sizes = [cut.stop - cut.start for cut, _ in sorted_blocks(rows)]
    assert sizes[:-1] == [per_block] * (len(sizes) - 1) and 0 < sizes[-1] <= per_block
    assert all(size * n <= max(order_stats.BLOCK_VALUES, n) for size in sizes)
