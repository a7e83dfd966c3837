"""flare_chain.committee.sortition: the contract's numbers, the selection rate, the committee risk.

The threshold and the VRF input are compared with a deployed FlareCoordinator on
eth-tester (``selectionThreshold``, ``vrfInput``); the selection rate is checked
over thousands of real VRF outputs; ``committee_risk`` against computations that
share none of its code (subset enumeration, and the Poisson-mixture decomposition).
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
from eth_account import Account
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flare_chain.chain import deploy_coordinator, fund_accounts, in_process_chain
from flare_chain.committee import sortition, vrf
from flare_chain.errors import ConfigError

# -- against the contract -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def chain():
    """A coordinator (min stake 1 wei, minimum committee 2) and a snapshot before any registration."""
    w3 = in_process_chain()
    owner = Account.from_key(keccak(text="sortition tests owner"))
    nodes = [Account.from_key(keccak(text=f"sortition tests node {i}")) for i in range(3)]
    fund_accounts(w3, [owner, *nodes], 10**23)
    coordinator = deploy_coordinator(w3, owner, min_committee_size=2, min_stake_wei=1)
    coordinator.initialize_global_adapter(owner, b"\x01\x55\x12\x20" + keccak(b"genesis"))
    return w3, owner, nodes, coordinator, w3.provider.ethereum_tester.take_snapshot()


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    stakes=st.lists(st.integers(1, 10**22), min_size=2, max_size=3),  # a round needs min_committee nodes
    k=st.one_of(st.integers(2, 30), st.integers(2, 1000)),  # the contract bounds k to [min committee, 1000]
)
def test_threshold_equals_the_contracts_selectionThreshold(chain, stakes, k):
    # Prepare: nodes registered with the drawn stakes, then a round opened with k.
    w3, owner, nodes, coordinator, snapshot = chain
    w3.provider.ethereum_tester.revert_to_snapshot(snapshot)
    for node, stake in zip(nodes, stakes, strict=False):
        coordinator.register_node(node, stake)
    round_id, _ = coordinator.open_round(owner, 2, 3, 2, 2, expected_committee_size=k)

    # Execute / Assert
    total = sum(stakes)
    assert coordinator.sortition_info(round_id).total_stake == total
    for node, stake in zip(nodes, stakes, strict=False):
        on_chain = coordinator.selection_threshold(round_id, node.address)
        assert on_chain == sortition.threshold(k, stake, total)
        assert on_chain == min(k * stake * 2**256 // total, 2**256 - 1)


def test_vrf_alpha_equals_the_contracts_vrfInput(chain):
    w3, owner, nodes, coordinator, snapshot = chain
    w3.provider.ethereum_tester.revert_to_snapshot(snapshot)
    coordinator.register_node(nodes[0], 10**18)
    coordinator.register_node(nodes[1], 10**18)
    round_id, _ = coordinator.open_round(owner, 2, 3, 2, 2, expected_committee_size=3)
    seed = coordinator.round_info(round_id).seed

    alpha = sortition.vrf_alpha(w3.eth.chain_id, coordinator.address, round_id, seed)

    assert alpha == coordinator.vrf_input(round_id)
    assert len(alpha) == sortition.ALPHA_LEN == 116
    # A round never opened has a zero seed in both.
    assert coordinator.vrf_input(99) == sortition.vrf_alpha(
        w3.eth.chain_id, coordinator.address, 99, bytes(32)
    )


# -- the rule itself ----------------------------------------------------------------------------


def test_a_node_holding_at_least_W_over_k_is_always_selected():
    assert sortition.threshold(10, 100, 1000) == 2**256 - 1
    assert sortition.threshold(10, 99, 1000) == 99 * 2**256 // 100
    assert sortition.is_selected(2**256 - 2, 10, 100, 1000)
    assert not sortition.is_selected(0, 10, 100, 1000)  # output 0 means "no seat" on chain
    assert sortition.selection_probability(10, 100, 1000) == 1.0


@pytest.mark.parametrize(
    ("k", "stake", "total", "fragment"),
    [(0, 1, 1, "committee size"), (2**16, 1, 1, "committee size"), (5, 2, 1, "stake"), (5, 0, 0, "stake")],
)
def test_bad_weights_raise_ConfigError(k, stake, total, fragment):
    with pytest.raises(ConfigError, match=fragment):
        sortition.threshold(k, stake, total)


def test_vrf_alpha_rejects_a_bad_seed_or_address():
    with pytest.raises(ConfigError, match="32 bytes"):
        sortition.vrf_alpha(1, "0x" + "11" * 20, 1, b"short")
    with pytest.raises(ConfigError, match="not an Ethereum address"):
        sortition.vrf_alpha(1, "0x1234", 1, bytes(32))


def test_leader_order_and_rank_follow_the_hash_of_the_outputs_not_the_outputs():
    # keccak(uint256(5)) < keccak(uint256(3)) although 5 > 3: the lower output does not lead.
    a, b = "0x" + "01" * 20, "0x" + "02" * 20
    outputs = {a: (5).to_bytes(32, "big"), b: (3).to_bytes(32, "big")}
    assert sortition.leader_score(outputs[a]) < sortition.leader_score(outputs[b])
    assert sortition.leader_order(outputs) == [a, b]
    assert sortition.rank_of(outputs, a) == 0
    assert sortition.rank_of(outputs, b) == 1


def test_every_seat_leads_equally_often_whatever_its_threshold():
    # Prepare: one member seated under a tiny threshold (small stake), one under the full range.
    # Ranked by raw output the small stake would lead ~always; ranked by score, half the time.
    small_bound, rounds = 2**240, 4000
    led = 0
    for i in range(rounds):
        small = int.from_bytes(keccak(b"small %d" % i), "big") % small_bound
        large = int.from_bytes(keccak(b"large %d" % i), "big")
        outputs = {"0x" + "01" * 20: small.to_bytes(32, "big"), "0x" + "02" * 20: large.to_bytes(32, "big")}
        led += sortition.leader_order(outputs)[0] == "0x" + "01" * 20
    # Assert: within 4 standard deviations of 1/2 (sd = sqrt(0.25/4000) ≈ 0.0079)
    assert abs(led / rounds - 0.5) < 0.032


def test_selection_frequency_over_many_keys_matches_min_1_k_w_over_W():
    # Prepare: 5,008 keys in three stake classes, W = 24,000; with k = 600 a stake-1 node wins
    # with p = 0.025, a stake-4 node with p = 0.1 and a stake-2,000 node always (k·w ≥ W).
    k, alpha = 600, keccak(b"frequency round") * 3 + b"\x00" * 20
    classes = {1: 4_000, 4: 1_000, 2_000: 8}  # stake -> number of nodes
    total = sum(stake * count for stake, count in classes.items())
    selected: dict[int, int] = dict.fromkeys(classes, 0)
    index = 0

    # Execute: real VRF outputs of real keys
    for stake, count in classes.items():
        for _ in range(count):
            index += 1
            beta = vrf.proof_to_hash(vrf.prove(keccak(b"key %d" % index), alpha))
            selected[stake] += sortition.is_selected(beta, k, stake, total)

    # Assert: each class within 4.5 standard deviations of its binomial mean (false alarm < 1e-4)
    means = {}
    for stake, count in classes.items():
        p = sortition.selection_probability(k, stake, total)
        assert p == min(1.0, k * stake / total)
        mean, sd = count * p, math.sqrt(count * p * (1 - p))
        means[stake] = mean
        assert abs(selected[stake] - mean) <= 4.5 * sd + 1e-9, (stake, selected[stake], mean, sd)
    assert selected[2_000] == 8  # p = 1: every one of them
    assert means[1] == pytest.approx(100) and means[4] == pytest.approx(100)


# -- committee risk -----------------------------------------------------------------------------


def _enumerated(
    nodes: int, bad: int, p: Fraction, threshold_bps: int, min_committee: int
) -> dict[str, Fraction]:
    """The four probabilities by walking every subset of seated nodes (exact rationals)."""
    out = dict.fromkeys(["majority", "capture", "blocking", "too_small"], Fraction(0))
    for seated in itertools.product([False, True], repeat=nodes):
        weight = math.prod(p if s else 1 - p for s in seated)
        a = sum(seated[:bad])
        h = sum(seated[bad:])
        if a + h < max(1, min_committee):
            out["too_small"] += weight
            continue
        out["majority"] += weight * (a > h)
        out["capture"] += weight * (a * 10_000 >= threshold_bps * (a + h))
        out["blocking"] += weight * (h * 10_000 < threshold_bps * (a + h))
    return out


@pytest.mark.parametrize(
    ("nodes", "share", "k", "threshold_bps", "min_committee"),
    [(8, 0.25, 4, 6666, 1), (10, 0.3, 5, 6667, 3), (9, 1 / 3, 9, 5000, 2), (7, 0.0, 2, 6666, 1)],
)
def test_committee_risk_with_equal_stakes_matches_subset_enumeration(
    nodes, share, k, threshold_bps, min_committee
):
    risk = sortition.committee_risk(
        k, share, threshold_bps=threshold_bps, min_committee=min_committee, nodes=nodes
    )
    exact = _enumerated(nodes, round(share * nodes), Fraction(k, nodes), threshold_bps, min_committee)
    for name, value in exact.items():
        assert getattr(risk, name) == pytest.approx(float(value), abs=1e-12), name


@pytest.mark.parametrize(("k", "share"), [(10, 0.2), (20, 0.3), (5, 0.45), (30, 0.2)])
def test_committee_risk_poisson_matches_the_seat_count_mixture(k, share):
    # Seats N ~ Poisson(k) and, given N, attacker seats ~ Binomial(N, share): an independent
    # decomposition of the same model.
    risk = sortition.committee_risk(k, share, threshold_bps=6666, min_committee=1)
    majority = capture = blocking = 0.0
    too_small = math.exp(-k)
    for n in range(1, int(k + 15 * math.sqrt(k) + 40)):
        pn = math.exp(n * math.log(k) - k - math.lgamma(n + 1))
        for a in range(n + 1):
            pa = pn * math.comb(n, a) * share**a * (1 - share) ** (n - a)
            majority += pa * (a > n - a)
            capture += pa * (a * 10_000 >= 6666 * n)
            blocking += pa * ((n - a) * 10_000 < 6666 * n)
    assert risk.majority == pytest.approx(majority, rel=1e-9, abs=1e-15)
    assert risk.capture == pytest.approx(capture, rel=1e-9, abs=1e-15)
    assert risk.blocking == pytest.approx(blocking, rel=1e-9, abs=1e-15)
    assert risk.too_small == pytest.approx(too_small, rel=1e-9)


@settings(max_examples=30, deadline=None)
@given(k=st.integers(1, 40), low=st.floats(0, 1), high=st.floats(0, 1))
def test_more_attacker_stake_never_lowers_its_odds(k, low, high):
    low, high = sorted((low, high))
    a, b = sortition.committee_risk(k, low), sortition.committee_risk(k, high)
    assert a.majority <= b.majority + 1e-12
    assert a.capture <= b.capture + 1e-12
    assert a.blocking <= b.blocking + 1e-12
    assert a.capture <= a.majority + 1e-12 <= a.blocking + 2e-12  # capture ⊂ majority ⊂ blocking at 2/3


def test_committee_risk_rejects_bad_parameters():
    with pytest.raises(ConfigError, match="attacker_share"):
        sortition.committee_risk(10, 1.5)
    with pytest.raises(ConfigError, match="k must be positive"):
        sortition.committee_risk(0, 0.2)
