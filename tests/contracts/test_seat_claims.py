"""Seat claims and proposer turns on FlareCoordinator: every way a claim or a proposal can be wrong.

A claim carries a VRF proof the contract verifies against the sender's registered key
and the round's own input (chain id, contract, round, seed). Each altered field, each
proof made for something else, and each claim by the wrong node or at the wrong time
must revert with its own custom error and arguments. The proposer's turn follows the
members' leader scores (keccak of the VRF output): the lowest first, the next one ``leaderBlocks`` later.
"""

from __future__ import annotations

import dataclasses
import hashlib
from enum import IntEnum

import pytest
from eth_utils import keccak

from flare_chain.chain import RoundStatus
from flare_chain.committee import secp256k1 as ec
from flare_chain.committee import sortition, vrf
from flare_chain.committee.vrf import FastVerifyParams, InvalidProof, compute_fast_verify_params
from flare_chain.errors import ChainError

MANIFEST = keccak(text="manifest")


class Operand(IntEnum):
    """Mirror of ``VRFVerifier.Operand`` (errors carry it as a uint8)."""

    PUBLIC_KEY = 0
    GAMMA = 1
    U_POINT = 2
    SH = 3
    C_GAMMA = 4


def _alpha(network, round_id: int, seed: bytes | None = None) -> bytes:
    c = network.coordinator
    return sortition.vrf_alpha(
        network.w3.eth.chain_id, c.address, round_id, c.claim_seed(round_id) if seed is None else seed
    )


def _honest(network, node, round_id: int, proof: bytes) -> FastVerifyParams:
    """Witnesses computed honestly for ``proof`` under ``node``'s key and the round's real input."""
    return compute_fast_verify_params(vrf.public_key(bytes(node.key)), proof, _alpha(network, round_id))


def _recomputed_challenge(network, node, round_id: int, params: FastVerifyParams) -> int:
    """The challenge the contract recomputes: H from the registered key and the round's input."""
    h = vrf.hash_to_curve(vrf.public_key(bytes(node.key)), _alpha(network, round_id))
    v = ec.add(params.s_h, ec.neg(params.c_gamma))
    assert v is not None
    return vrf._hash_points(h, params.gamma, params.u_point, v)


def _off_curve(x: int, y: int) -> tuple[int, int]:
    assert not ec.is_on_curve((x, y))
    return (x, y)


@pytest.fixture
def claim_round(network):
    """Round 1 open with validator 0's submission, at the first block of the claim window."""
    round_id = network.open_round(submission=4, claim=8, proposal=12, voting=5)
    network.coordinator.submit_update(network.validators[0], round_id, network.cid("u0"), 10, MANIFEST)
    network.to_claims(round_id)
    return round_id


@pytest.fixture
def honest(network, claim_round):
    """Validator 0's honest draw and ``fastVerify`` arguments for the claim round."""
    node = network.validators[0]
    draw = network.coordinator.draw_seat(node, claim_round)
    assert draw.selected
    return node, draw, _honest(network, node, claim_round, draw.proof)


# ---------------------------------------------------------------- one field altered


def _altered_cases():
    """(name, how to alter the params, the expected error given the honest params)."""

    def gamma_x(p):
        return dataclasses.replace(p, gamma=_off_curve(p.gamma[0] + 1, p.gamma[1]))

    def gamma_y(p):
        return dataclasses.replace(p, gamma=_off_curve(p.gamma[0], p.gamma[1] + 1))

    yield "gamma-x", gamma_x, lambda p: ("VRFVerifierNotOnCurve", Operand.GAMMA, p.gamma[0] + 1, p.gamma[1])
    yield "gamma-y", gamma_y, lambda p: ("VRFVerifierNotOnCurve", Operand.GAMMA, p.gamma[0], p.gamma[1] + 1)
    yield (
        "gamma-negated",
        lambda p: dataclasses.replace(p, gamma=ec.neg(p.gamma)),
        lambda p: ("VRFVerifierWitnessMismatch", Operand.C_GAMMA, *p.c_gamma),
    )
    yield (
        "c",
        lambda p: dataclasses.replace(p, c=p.c ^ 1),
        lambda p: ("VRFVerifierWitnessMismatch", Operand.U_POINT, *p.u_point),
    )
    yield (
        "s",
        lambda p: dataclasses.replace(p, s=p.s ^ 1),
        lambda p: ("VRFVerifierWitnessMismatch", Operand.U_POINT, *p.u_point),
    )
    yield (
        "u-x",
        lambda p: dataclasses.replace(p, u_point=_off_curve(p.u_point[0] + 1, p.u_point[1])),
        lambda p: ("VRFVerifierNotOnCurve", Operand.U_POINT, p.u_point[0] + 1, p.u_point[1]),
    )
    yield (
        "u-y",
        lambda p: dataclasses.replace(p, u_point=_off_curve(p.u_point[0], p.u_point[1] + 1)),
        lambda p: ("VRFVerifierNotOnCurve", Operand.U_POINT, p.u_point[0], p.u_point[1] + 1),
    )
    yield (
        "u-negated",
        lambda p: dataclasses.replace(p, u_point=ec.neg(p.u_point)),
        lambda p: ("VRFVerifierWitnessMismatch", Operand.U_POINT, *ec.neg(p.u_point)),
    )
    yield (
        "sH-x",
        lambda p: dataclasses.replace(p, s_h=_off_curve(p.s_h[0] + 1, p.s_h[1])),
        lambda p: ("VRFVerifierNotOnCurve", Operand.SH, p.s_h[0] + 1, p.s_h[1]),
    )
    yield (
        "sH-y",
        lambda p: dataclasses.replace(p, s_h=_off_curve(p.s_h[0], p.s_h[1] + 1)),
        lambda p: ("VRFVerifierNotOnCurve", Operand.SH, p.s_h[0], p.s_h[1] + 1),
    )
    yield (
        "sH-negated",
        lambda p: dataclasses.replace(p, s_h=ec.neg(p.s_h)),
        lambda p: ("VRFVerifierWitnessMismatch", Operand.SH, *ec.neg(p.s_h)),
    )
    yield (
        "cGamma-x",
        lambda p: dataclasses.replace(p, c_gamma=_off_curve(p.c_gamma[0] + 1, p.c_gamma[1])),
        lambda p: ("VRFVerifierNotOnCurve", Operand.C_GAMMA, p.c_gamma[0] + 1, p.c_gamma[1]),
    )
    yield (
        "cGamma-y",
        lambda p: dataclasses.replace(p, c_gamma=_off_curve(p.c_gamma[0], p.c_gamma[1] + 1)),
        lambda p: ("VRFVerifierNotOnCurve", Operand.C_GAMMA, p.c_gamma[0], p.c_gamma[1] + 1),
    )
    yield (
        "cGamma-negated",
        lambda p: dataclasses.replace(p, c_gamma=ec.neg(p.c_gamma)),
        lambda p: ("VRFVerifierWitnessMismatch", Operand.C_GAMMA, *ec.neg(p.c_gamma)),
    )


ALTERED = list(_altered_cases())


@pytest.mark.parametrize(("alter", "error"), [c[1:] for c in ALTERED], ids=[c[0] for c in ALTERED])
def test_claim_with_one_proof_or_witness_field_altered_reverts_with_its_error(
    network, reverts, claim_round, honest, alter, error
):
    node, _, params = honest

    with reverts(*error(params)):
        network.coordinator.claim_seat_with_params(node, claim_round, alter(params))

    assert not network.coordinator.is_committee_member(claim_round, node.address)


@pytest.mark.parametrize("field", ["gamma", "c", "s"], ids=["gamma-replaced", "c-changed", "s-changed"])
def test_claim_with_an_altered_proof_and_its_own_honest_witnesses_fails_the_challenge(
    network, reverts, claim_round, honest, field
):
    # The witnesses are true products for the altered proof, so only the challenge can catch it.
    node, _, params = honest
    gamma, c, s = params.gamma, params.c, params.s
    if field == "gamma":
        gamma = ec.mul(2, gamma)
    elif field == "c":
        c ^= 1
    else:
        s ^= 1
    altered = ec.compress(gamma) + c.to_bytes(16, "big") + s.to_bytes(32, "big")
    witnesses = _honest(network, node, claim_round, altered)

    with reverts(
        "VRFVerifierChallengeMismatch", _recomputed_challenge(network, node, claim_round, witnesses), c
    ):
        network.coordinator.claim_seat(node, claim_round, altered)


def test_claim_without_hash_roots_reverts_with_VRFVerifierHashRootCount(
    network, reverts, claim_round, honest
):
    node, _, params = honest
    with reverts("VRFVerifierHashRootCount", 0, 256):
        network.coordinator.claim_seat_with_params(
            node, claim_round, dataclasses.replace(params, hash_roots=())
        )


def test_claim_with_a_wrong_hash_root_reverts_with_VRFVerifierHashRootInvalid(
    network, reverts, claim_round, honest
):
    node, _, params = honest
    roots = params.hash_roots
    bad_last = (*roots[:-1], roots[-1] + 1)
    with reverts("VRFVerifierHashRootInvalid", len(roots) - 1, roots[-1] + 1):
        network.coordinator.claim_seat_with_params(
            node, claim_round, dataclasses.replace(params, hash_roots=bad_last)
        )
    # Claiming another try count: a failed try passed off as the point, or the point as a failed try.
    other_count = roots[:1] if len(roots) > 1 else (*roots, 0)
    with reverts("VRFVerifierHashRootInvalid", 0, roots[0]):
        network.coordinator.claim_seat_with_params(
            node, claim_round, dataclasses.replace(params, hash_roots=other_count)
        )


# ---------------------------------------------------------------- proofs made for something else


def _first_bad_root(node, round_alpha: bytes, roots: tuple[int, ...]) -> tuple[int, int]:
    """Where the contract's hash-to-curve check fails ``roots`` made for another input: (ctr, root)."""
    prefix = bytes([vrf.SUITE, 0x01]) + vrf.public_key(bytes(node.key)) + round_alpha
    p = ec.P
    for ctr, root in enumerate(roots):
        x = int.from_bytes(hashlib.sha256(prefix + bytes([ctr])).digest(), "big")
        rhs = (x**3 + 7) % p
        wanted = rhs if ctr == len(roots) - 1 else (p - rhs) % p
        if x >= p or root >= p or root * root % p != wanted:
            return ctr, root
    raise AssertionError("the roots pass for the round's input")


def _for_other_input(network, node, round_id: int, alpha: bytes, reverts, claim) -> None:
    """A proof of ``alpha`` (not the round's input) fails whatever witnesses come with it."""
    proof = vrf.prove(bytes(node.key), alpha)
    own = compute_fast_verify_params(vrf.public_key(bytes(node.key)), proof, alpha)
    round_witnesses = _honest(network, node, round_id, proof)
    # All witnesses for the proof's own input: the hash-to-curve roots are for another H.
    with reverts(
        "VRFVerifierHashRootInvalid", *_first_bad_root(node, _alpha(network, round_id), own.hash_roots)
    ):
        network.coordinator.claim_seat_with_params(claim, round_id, own)
    # The round's roots but the proof's own s·H: s·H was computed with the wrong H.
    mixed = dataclasses.replace(own, hash_roots=round_witnesses.hash_roots)
    with reverts("VRFVerifierWitnessMismatch", Operand.SH, *own.s_h):
        network.coordinator.claim_seat_with_params(claim, round_id, mixed)
    # Witnesses honest for the round's input (what claim_seat sends): the challenge differs.
    with reverts(
        "VRFVerifierChallengeMismatch",
        _recomputed_challenge(network, node, round_id, round_witnesses),
        round_witnesses.c,
    ):
        network.coordinator.claim_seat(claim, round_id, proof)


def test_proof_for_another_round_reverts(network, reverts, claim_round):
    node = network.validators[0]
    _for_other_input(network, node, claim_round, _alpha(network, claim_round + 1, network.coordinator.claim_seed(claim_round)), reverts, node)


def test_proof_for_another_seed_reverts(network, reverts, claim_round):
    node = network.validators[0]
    _for_other_input(
        network, node, claim_round, _alpha(network, claim_round, keccak(b"other")), reverts, node
    )


def test_proof_for_another_contract_or_chain_reverts(network, reverts, claim_round):
    node, c = network.validators[0], network.coordinator
    seed = c.claim_seed(claim_round)
    other_chain = sortition.vrf_alpha(network.w3.eth.chain_id + 1, c.address, claim_round, seed)
    _for_other_input(network, node, claim_round, other_chain, reverts, node)


def test_proof_under_another_key_reverts_with_VRFVerifierChallengeMismatch(network, reverts, claim_round):
    # Validator 1's valid proof of this very round, sent by validator 0 (verified under 0's key).
    thief, victim = network.validators[0], network.validators[1]
    stolen = network.coordinator.draw_seat(victim, claim_round).proof
    witnesses = _honest(network, thief, claim_round, stolen)

    with reverts(
        "VRFVerifierChallengeMismatch",
        _recomputed_challenge(network, thief, claim_round, witnesses),
        witnesses.c,
    ):
        network.coordinator.claim_seat(thief, claim_round, stolen)

    assert not network.coordinator.is_committee_member(claim_round, thief.address)


def test_claim_by_an_unregistered_key_reverts_with_CoordinatorNotRegistered(network, reverts, claim_round):
    outsider = network.outsider
    proof = vrf.prove(bytes(outsider.key), _alpha(network, claim_round))
    with reverts("CoordinatorNotRegistered", outsider.address):
        network.coordinator.claim_seat(outsider, claim_round, proof)


def test_output_drawing_weight_zero_reverts_with_CoordinatorNotSelected(network, reverts, claim_round):
    c, node = network.coordinator, network.participant
    draw = c.draw_seat(node, claim_round)
    assert not draw.selected and draw.weight == 0
    assert c.seat_weight_of(claim_round, node.address, draw.output) == 0
    assert c.seat_weight_of(claim_round, node.address, b"\xff" * 32) == 0  # a tiny stake: weight 0 nearly always
    assert vrf.verify(vrf.public_key(bytes(node.key)), draw.proof, draw.alpha) == draw.output  # a valid proof

    with reverts("CoordinatorNotSelected", claim_round, draw.output):
        c.claim_seat(node, claim_round, draw.proof)


def test_second_claim_by_the_same_node_reverts_with_CoordinatorAlreadySeated(
    network, reverts, claim_round, honest
):
    node, draw, _ = honest
    network.coordinator.claim_seat(node, claim_round, draw.proof)
    with reverts("CoordinatorAlreadySeated", claim_round, node.address):
        network.coordinator.claim_seat(node, claim_round, draw.proof)
    assert network.coordinator.sortition_info(claim_round).seats == 1


def test_claim_before_the_window_reverts_with_CoordinatorOutsideClaimWindow(network, reverts):
    c, node = network.coordinator, network.validators[0]
    round_id = network.open_round(submission=4, claim=3)
    info = c.round_info(round_id)
    network.next_tx_in_block(info.submission_deadline)
    # nobody can draw yet (the claim seed needs the deadline block's hash), so the claim is made on the
    # round seed; the window is checked before the proof
    with pytest.raises(ChainError, match="claim seed needs the hash"):
        c.draw_seat(node, round_id)
    alpha = _alpha(network, round_id, info.seed)
    params = compute_fast_verify_params(vrf.public_key(bytes(node.key)), vrf.prove(bytes(node.key), alpha), alpha)
    with reverts(
        "CoordinatorOutsideClaimWindow", round_id, info.submission_deadline + 1, info.claim_deadline
    ):
        c.claim_seat_with_params(node, round_id, params)


def test_claim_after_the_window_reverts_with_CoordinatorOutsideClaimWindow(network, reverts, claim_round):
    c, node = network.coordinator, network.validators[0]
    info = c.round_info(claim_round)
    proof = c.draw_seat(node, claim_round).proof
    network.next_tx_in_block(info.claim_deadline)
    c.claim_seat(network.validators[1], claim_round, c.draw_seat(network.validators[1], claim_round).proof)
    with reverts(
        "CoordinatorOutsideClaimWindow", claim_round, info.submission_deadline + 1, info.claim_deadline
    ):
        c.claim_seat(node, claim_round, proof)


def test_claim_for_a_round_never_opened_reverts_with_CoordinatorRoundNotOpen(network, reverts, claim_round):
    node = network.validators[0]
    alpha = _alpha(network, claim_round + 1, network.coordinator.claim_seed(claim_round))
    proof = vrf.prove(bytes(node.key), alpha)
    with reverts("CoordinatorRoundNotOpen", claim_round + 1, RoundStatus.NONE):
        network.coordinator.claim_seat_with_params(
            node, claim_round + 1, compute_fast_verify_params(vrf.public_key(bytes(node.key)), proof, alpha))
    # the client, which needs the round's claim seed, refuses before sending anything
    with pytest.raises(ChainError, match="never opened"):
        network.coordinator.claim_seat(node, claim_round + 1, proof)


def test_client_refuses_bytes_that_are_not_a_proof_before_sending(network, claim_round):
    with pytest.raises(InvalidProof, match="81"):
        network.coordinator.claim_seat(network.validators[0], claim_round, b"\x02" * 80)


# ---------------------------------------------------------------- proposer turns


@pytest.fixture
def seated(network, claim_round):
    """All four validators seated in the claim round, at the first block after the claim deadline."""
    network.seat(claim_round)
    network.to_proposals(claim_round)
    return claim_round


def test_non_leader_proposing_too_early_reverts_with_CoordinatorNotLeader(network, reverts, seated):
    c = network.coordinator
    order = c.proposer_order(seated)
    claim_deadline = c.round_info(seated).claim_deadline
    for rank in (1, 3):
        member = network.by_address(order[rank])
        turn = claim_deadline + 1 + rank * network.leader_blocks
        with reverts("CoordinatorNotLeader", seated, member.address, rank, turn):
            c.propose_aggregate(member, seated, network.cid("early"), [network.validators[0].address])


def test_next_ranked_member_may_propose_once_the_leader_had_leaderBlocks(network, reverts, seated):
    # Prepare: the leader stays silent through its leaderBlocks.
    c = network.coordinator
    order = c.proposer_order(seated)
    second = network.by_address(order[1])
    turn = c.round_info(seated).claim_deadline + 1 + network.leader_blocks
    network.next_tx_in_block(turn - 1)
    with reverts("CoordinatorNotLeader", seated, second.address, 1, turn):
        c.propose_aggregate(second, seated, network.cid("early"), [network.validators[0].address])

    # Execute: one block later it is the second's turn too (the reverted call mined nothing).
    network.next_tx_in_block(turn)
    c.propose_aggregate(second, seated, network.cid("fallback"), [network.validators[0].address])

    # Assert
    proposal = c.proposal(seated)
    assert (proposal.proposer, proposal.rank) == (second.address, 1)
    assert c.round_info(seated).status is RoundStatus.PROPOSED


def test_leader_keeps_its_turn_after_the_fallback_opens(network, seated):
    c = network.coordinator
    network.next_tx_in_block(c.round_info(seated).claim_deadline + 1 + 2 * network.leader_blocks)
    c.propose_aggregate(
        network.leader(seated), seated, network.cid("late leader"), [network.validators[0].address]
    )
    assert c.proposal(seated).rank == 0


def test_a_proposal_carries_no_committee_list_and_its_rank_comes_from_the_stored_scores(network, seated):
    # The contract ranks the proposer by the round's stored lowest scores: the rank in the event is the
    # proposer's position among every seat's score, however large the committee.
    c = network.coordinator
    scores = sorted(s.leader_score for s in c.seats(seated))
    assert c.proposer_scores(seated) == scores[:4] + [2**64 - 1] * (4 - len(scores[:4]))
    second = network.by_address(c.proposer_order(seated)[1])
    network.next_tx_in_block(c.round_info(seated).turns_start + network.leader_blocks)
    c.propose_aggregate(second, seated, network.cid("a"), [network.validators[0].address])
    assert c.proposal(seated).rank == 1


def test_seats_are_read_from_the_claim_window_only(network, seated, monkeypatch):
    """The daemon reads the proposer order every tick: the scan covers the round's claim window, not the chain."""
    c = network.coordinator
    expected = c.seats(seated)
    info = c.round_info(seated)
    scanned: list[tuple[int, int] | None] = []
    logs = c._logs

    def spy(event_name, *, blocks=None, **filters):
        scanned.append(blocks)
        return logs(event_name, blocks=blocks, **filters)

    monkeypatch.setattr(c, "_logs", spy)
    assert c.seats(seated) == expected and len(expected) == len(network.validators)
    assert scanned == [(info.submission_deadline + 1, info.claim_deadline)]
    assert c.seats(seated + 1) == []  # a round never opened has no seats, and nothing is scanned
    assert len(scanned) == 1
