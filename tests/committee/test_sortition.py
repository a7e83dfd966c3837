"""flare_chain.committee.sortition: the contract's numbers, the weight distribution, the committee risk.

Seat weights and the VRF input are compared with a deployed FlareCoordinator on
eth-tester (``seatWeightOf``, ``vrfInput``); the weight distribution and its
split-invariance are checked over thousands of real VRF outputs; ``committee_risk``
against a computation that shares none of its code (the Poisson-mixture
decomposition).
"""

from __future__ import annotations

import math

import pytest
from eth_account import Account
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flare_chain.chain import advance_blocks, deploy_coordinator, fund_accounts, in_process_chain
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
def test_seat_weight_equals_the_contracts_seatWeightOf(chain, stakes, k):
    # Prepare: nodes registered with the drawn stakes, then a round opened with k.
    w3, owner, nodes, coordinator, snapshot = chain
    w3.provider.ethereum_tester.revert_to_snapshot(snapshot)
    for node, stake in zip(nodes, stakes, strict=False):
        coordinator.register_node(node, stake)
    round_id, _ = coordinator.open_round(owner, 2, 3, 2, 2, expected_committee_size=k)
    advance_blocks(w3, coordinator.round_info(round_id).submission_deadline - w3.eth.block_number)  # draws need it

    # Execute / Assert: the nodes' real outputs and a few edge outputs
    total = sum(stakes)
    assert coordinator.sortition_info(round_id).total_stake == total
    for node, stake in zip(nodes, stakes, strict=False):
        draw = coordinator.draw_seat(node, round_id)
        for output in (draw.output, bytes(32), b"\xff" * 32):
            on_chain = coordinator.seat_weight_of(round_id, node.address, output)
            assert on_chain == sortition.seat_weight(output, k, stake, total)


def test_vrf_alpha_equals_the_contracts_vrfInput(chain):
    w3, owner, nodes, coordinator, snapshot = chain
    w3.provider.ethereum_tester.revert_to_snapshot(snapshot)
    coordinator.register_node(nodes[0], 10**18)
    coordinator.register_node(nodes[1], 10**18)
    round_id, _ = coordinator.open_round(owner, 2, 3, 2, 2, expected_committee_size=3)
    info = coordinator.round_info(round_id)
    advance_blocks(w3, info.submission_deadline + 1 - w3.eth.block_number)
    deadline_hash = bytes(w3.eth.get_block(info.submission_deadline)["hash"])

    alpha = sortition.vrf_alpha(w3.eth.chain_id, coordinator.address, round_id,
                                sortition.claim_seed(info.seed, deadline_hash))

    assert alpha == coordinator.vrf_input(round_id)
    assert len(alpha) == sortition.ALPHA_LEN == 116


# -- the rule itself ----------------------------------------------------------------------------


def test_weight_zero_means_no_seat_and_a_zero_stake_never_sits():
    assert sortition.seat_weight(bytes(32), 10, 0, 1000) == 0
    assert not sortition.is_selected(b"\xff" * 32, 10, 0, 1000)
    assert sortition.selection_probability(10, 100, 1000) == pytest.approx(1 - math.exp(-1))
    # a fixed-point mean below 2^-64 floors to 0: no seat whatever the output
    assert sortition.poisson_mean(1, 1, 2**95) == 0


def test_exp_minus_one_constant_is_floor_of_e_to_minus_one_times_2_to_64():
    from decimal import Decimal, getcontext

    getcontext().prec = 60
    assert int(Decimal(-1).exp() * Decimal(2) ** 64) == sortition.EXP_MINUS_ONE


@pytest.mark.parametrize(
    ("k", "stake", "total", "fragment"),
    [(0, 1, 1, "committee size"), (2**16, 1, 1, "committee size"), (5, 2, 1, "stake"), (5, 0, 0, "stake")],
)
def test_bad_weights_raise_ConfigError(k, stake, total, fragment):
    with pytest.raises(ConfigError, match=fragment):
        sortition.seat_weight(bytes(32), k, stake, total)


def test_vrf_alpha_rejects_a_bad_seed_or_address():
    with pytest.raises(ConfigError, match="32 bytes"):
        sortition.vrf_alpha(1, "0x" + "11" * 20, 1, b"short")
    with pytest.raises(ConfigError, match="not an Ethereum address"):
        sortition.vrf_alpha(1, "0x1234", 1, bytes(32))


def test_leader_score_is_the_least_of_one_draw_per_unit_of_weight():
    output = keccak(b"some output")
    scores = [sortition.leader_score(output, w) for w in range(1, 6)]
    assert scores == sorted(scores, reverse=True)  # more units can only lower the minimum
    assert all(score < 2**224 for score in scores)
    with pytest.raises(ConfigError, match="weight"):
        sortition.leader_score(output, 0)


def test_leader_order_and_rank_follow_the_scores():
    a, b = "0x" + "01" * 20, "0x" + "02" * 20
    scores = {a: 5, b: 3}
    assert sortition.leader_order(scores) == [b, a]
    assert sortition.rank_of(scores, b) == 0
    assert sortition.rank_of(scores, a) == 1


def test_each_unit_of_weight_leads_equally_often():
    # Prepare: a member of weight 1 against one of weight 3: the heavy one should lead 3/4 of rounds.
    rounds, led = 4000, 0
    for i in range(rounds):
        light = sortition.leader_score(keccak(b"light %d" % i), 1)
        heavy = sortition.leader_score(keccak(b"heavy %d" % i), 3)
        led += heavy < light
    # Assert: within 4 standard deviations of 3/4 (sd = sqrt(3/16/4000) ≈ 0.0068)
    assert abs(led / rounds - 0.75) < 0.028


def _weights(k: int, stakes: list[int], total: int, alpha: bytes, first_key: int) -> list[int]:
    """Total weight of one owner whose stake is split as ``stakes``, per round, over real VRF outputs."""
    return [
        sum(sortition.seat_weight(vrf.proof_to_hash(vrf.prove(keccak(b"key %d %d" % (first_key, i)), alpha)),
                                  k, stake, total) for i, stake in enumerate(stakes))
        for alpha in [alpha + bytes([r]) for r in range(150)]
    ]


def test_splitting_stake_leaves_an_owners_weight_distribution_unchanged():
    # Prepare: 30% of W held as one node or split over 10 unequal nodes; k = 20, so the owner's
    # weight should be Poisson(6) either way: mean 6, variance 6, P(0) = e^-6.
    k, total, base = 20, 10**6, keccak(b"split round")
    whole = _weights(k, [300_000], total, base, 1)
    split = _weights(k, [10_000, 20_000, 30_000, 40_000, 50_000, 50_000, 30_000, 20_000, 25_000, 25_000],
                     total, base, 2)

    # Assert: both samples' means within 4.5 standard errors of 6, and their variances near 6
    for sample in (whole, split):
        mean = sum(sample) / len(sample)
        variance = sum((x - mean) ** 2 for x in sample) / (len(sample) - 1)
        assert abs(mean - 6) < 4.5 * math.sqrt(6 / len(sample)), mean
        assert 3.5 < variance < 9, variance


# -- committee risk -----------------------------------------------------------------------------


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
    assert risk.leader == pytest.approx(share * (1 - too_small), rel=1e-9)


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


@pytest.mark.parametrize(("k", "share"), [(4, 0.3), (20, 0.1)])
def test_committee_risk_at_the_contracts_threshold_bounds(k, share):
    # The contract accepts every threshold in [1, 10000] bps; bench_committee.py passes the operator's
    # value through, so both ends must be analysed, not refused. Attacker and honest seat weights are
    # independent Poisson(k*share) and Poisson(k*(1-share)), which gives closed forms at the ends.
    p_no_attacker = math.exp(-k * share)
    p_no_honest = math.exp(-k * (1 - share))
    one_bps = sortition.committee_risk(k, share, threshold_bps=1)
    # at 1 bps a single seat of weight commits: any attacker seat captures, only a committee with no
    # honest seat blocks
    assert one_bps.capture == pytest.approx(1 - p_no_attacker, rel=1e-9)
    assert one_bps.blocking == pytest.approx(p_no_honest - math.exp(-k), rel=1e-9)
    unanimous = sortition.committee_risk(k, share, threshold_bps=10_000)
    # at 10000 bps the attacker captures only an all-attacker committee, and any attacker seat blocks
    assert unanimous.capture == pytest.approx(p_no_honest * (1 - p_no_attacker), rel=1e-9)
    assert unanimous.blocking == pytest.approx(1 - p_no_attacker, rel=1e-9)
    for outside in (0, 10_001):
        with pytest.raises(ConfigError, match="threshold_bps"):
            sortition.committee_risk(k, share, threshold_bps=outside)


def test_the_largest_uniform_draw_stops_where_the_pmf_underflows_and_outweighs_no_lower_draw() -> None:
    # Rounded down, the cdf never reaches 2^64 - 1: for the top draws the inverse CDF ends where the pmf term
    # underflows to 0, as the contract's loop does. A loop that ran on would hang the node drawing that output.
    import signal

    def stuck(signum, frame):
        raise AssertionError("the inverse CDF of the largest draw did not finish within 5 s")

    one = sortition.FIXED_ONE
    previous = signal.signal(signal.SIGALRM, stuck)
    try:
        for lam in (one // 10, one, 5 * one, 16 * one):
            signal.setitimer(signal.ITIMER_REAL, 5)
            top = sortition._poisson_inverse(2**64 - 1, lam)
            signal.setitimer(signal.ITIMER_REAL, 0)
            mean = lam / one
            assert sortition._poisson_inverse(2**64 - 2**40, lam) <= top < mean + 12 * math.sqrt(mean) + 30
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_the_rounds_command_and_the_owner_settings_open_rounds_with_the_one_default_k() -> None:
    # The committee-risk table and the --committee-size help rest on k = DEFAULT_EXPECTED_COMMITTEE_SIZE; an owner
    # driving rounds from Python (DriverSettings, CoordinatorClient.open_round) must get the k the CLI gives
    import inspect

    from flare_chain.chain.coordinator import CoordinatorClient
    from flare_chain.cli.parser import build_parser
    from flare_chain.node.owner import DriverSettings

    args = build_parser().parse_args(["rounds", "drive", "--deployment", "d.json", "--keystore", "k.json",
                                      "--password-env", "PW"])
    client_default = inspect.signature(CoordinatorClient.open_round).parameters["expected_committee_size"].default
    assert args.committee_size == DriverSettings().expected_committee_size == client_default
