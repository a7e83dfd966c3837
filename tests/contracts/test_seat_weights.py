"""Seat weights and leader scores: the contract's fixed-point Poisson draw and the Python one agree.

``seatWeight`` and ``leaderScore`` are pure functions of the contract; the node
predicts its weight and rank with ``flare_chain.committee.sortition``, so the two
must agree bit for bit on every input, including the chunked means of large
stakes, tiny means that round to zero, and the whole 256-bit output range.
"""

from __future__ import annotations

import math
import random

import pytest

from flare_chain.committee import sortition


def _cases(rng: random.Random, count: int) -> list[tuple[bytes, int, int, int]]:
    cases = []
    for _ in range(count):
        total = rng.randrange(1, 2**96)
        stake = rng.choice([total, rng.randrange(0, total + 1), total // rng.randrange(1, 10_000)])
        k = rng.choice([1, 3, 20, 64, rng.randrange(1, 1001)])
        cases.append((rng.randbytes(32), k, stake, total))
    return cases


def test_contract_and_python_draw_the_same_weight_and_score_on_random_inputs(network):
    fns = network.coordinator.contract.functions
    rng = random.Random(12)
    for output, k, stake, total in _cases(rng, 60):
        weight = sortition.seat_weight(output, k, stake, total)
        assert fns.seatWeight(output, k, stake, total).call() == weight, (output.hex(), k, stake, total)
        if weight:
            assert fns.leaderScore(output, weight).call() == sortition.leader_score(output, weight)


def test_extreme_outputs_give_the_extreme_weights(network):
    fns = network.coordinator.contract.functions
    for output in (b"\x00" * 32, b"\xff" * 32):
        for k, stake, total in ((20, 1, 4), (1000, 2**96 - 1, 2**96 - 1), (1, 1, 2**96 - 1)):
            assert fns.seatWeight(output, k, stake, total).call() == sortition.seat_weight(output, k, stake, total)
    # a mean that floors to zero in 2^-64 units never seats
    assert sortition.seat_weight(b"\x00" * 32, 1, 1, 2**70) == 0


@pytest.mark.parametrize("mean", [0.05, 1.0, 5.0, 23.5])
def test_weights_follow_poisson_with_the_stake_proportional_mean(mean):
    total = 10**24
    k = 40
    stake = round(mean * total / k)
    rng = random.Random(int(mean * 100))
    draws = [sortition.seat_weight(rng.randbytes(32), k, stake, total) for _ in range(4000)]
    average = sum(draws) / len(draws)
    # the sample mean of 4000 Poisson(mean) draws is within 5 standard errors of the mean
    assert abs(average - mean) < 5 * math.sqrt(mean / len(draws))
    zero_share = draws.count(0) / len(draws)
    assert abs(zero_share - math.exp(-mean)) < 5 * math.sqrt(math.exp(-mean) * (1 - math.exp(-mean)) / len(draws)) + 1e-3
