"""The round state machine on-chain matches a plain Python model under random action sequences.

Hypothesis drives submissions, seat claims, proposals (by leaders, by members whose
turn has not come, and by fallback ranks after a rejected proposal), votes (a rejection
reopens the round for the next rank), finalization, new rounds and the passing of blocks, by random
actors (4 staked validators, each drawing a Poisson(k/4) seat weight, so nearly always
seated and with differing weights; a participant whose tiny stake practically never draws a
seat; an unregistered outsider). The model draws each seat's weight and leader score with
the Python sortition from the round's total stake as the model counts it, and counts votes
and the minimum committee by those weights. Before each action the model predicts success
or the exact custom error; after it, the contract's round state and global adapter must
equal the model's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from eth_utils import keccak
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from flare_chain.chain import RoundStatus, advance_blocks
from flare_chain.chain.coordinator import DEFAULT_MAX_SAMPLE_COUNT
from flare_chain.committee import sortition, vrf
from flare_chain.errors import ChainError
from flare_chain.protocol import accepted_root

BPS = 10_000
# Actor indices: 0-3 validators, 4 participant, 5 outsider; validators drawn more often so rounds progress.
ACTORS = st.sampled_from([0, 1, 2, 3, 0, 1, 2, 3, 4, 5])
PHASE = st.integers(1, 8)
MIN_CLAIM_BLOCKS = 3  # FlareCoordinator.phaseBounds()
MAX_SAMPLES = DEFAULT_MAX_SAMPLE_COUNT  # the fixture deploys with the default cap
UNBONDING_BLOCKS = 64  # FlareCoordinator.UNBONDING_BLOCKS
APPROVE = st.sampled_from([True, True, True, False])  # lean towards commits


@dataclass
class ModelRound:
    submission_deadline: int
    claim_deadline: int
    proposal_deadline: int
    vote_deadline: int
    total_stake: int
    status: RoundStatus = RoundStatus.OPEN
    submitted: dict[str, int] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)  # seated member -> seat weight
    scores: dict[str, int] = field(default_factory=dict)  # seated member -> leader score
    proposal_cid: bytes | None = None
    votes: dict[str, bool] = field(default_factory=dict)  # on the current proposal only
    turns_start: int = 0  # first block of the current attempt's proposer turns (0: the claim deadline + 1)
    first_rank: int = 0
    proposer_rank: int = 0
    rejected_proposals: int = 0

    def __post_init__(self) -> None:
        self.turns_start = self.turns_start or self.claim_deadline + 1

    def contract_rank(self, member: str) -> int:
        """The rank the contract gives: counted over its stored PROPOSER_RANKS lowest scores only."""
        return min(sortition.rank_of(self.scores, member), sortition.PROPOSER_RANKS)

    def reject(self, block: int) -> None:
        """The contract's fallback: the next rank with fresh windows, or Failed when no rank is left."""
        next_rank = self.proposer_rank + 1
        if next_rank >= sortition.PROPOSER_RANKS or next_rank >= len(self.weights):
            self.status = RoundStatus.FAILED
            return
        proposal_blocks = self.proposal_deadline + 1 - self.turns_start
        voting_blocks = self.vote_deadline - self.proposal_deadline
        self.turns_start = block + 1
        self.proposal_deadline = self.turns_start + proposal_blocks - 1
        self.vote_deadline = self.proposal_deadline + voting_blocks
        self.first_rank, self.rejected_proposals = next_rank, self.rejected_proposals + 1
        self.status, self.votes, self.proposal_cid = RoundStatus.OPEN, {}, None

    @property
    def committee_weight(self) -> int:
        return sum(self.weights.values())

    @property
    def approvals(self) -> int:
        return sum(self.weights[a] for a, yes in self.votes.items() if yes)

    @property
    def rejections(self) -> int:
        return sum(self.weights[a] for a, yes in self.votes.items() if not yes)


class CoordinatorModel(RuleBasedStateMachine):
    network = None  # set by the test before running
    base_snapshot = None

    def __init__(self) -> None:
        super().__init__()
        net = self.network
        net.w3.provider.ethereum_tester.revert_to_snapshot(self.base_snapshot)
        self.c = net.coordinator
        self.actors = [*net.validators, net.participant, net.outsider]
        # Seat weights are drawn by the model (Python sortition) from these stakes; the outsider
        # never registered.
        self.stakes = {v.address: net.member_stake for v in net.validators}
        self.stakes[net.participant.address] = net.min_stake
        self.registered = set(self.stakes)
        self.threshold = net.threshold_bps
        self.min_committee = net.min_committee
        self.leader_blocks = net.leader_blocks
        self.rounds: dict[int, ModelRound] = {}
        self.current = 0
        self.global_cid = net.initial_cid
        self.step = 0
        # Stake lifecycle: node -> first round it is no longer eligible for, and its unbond block.
        self.exit_round: dict[str, int] = {}
        self.unbonded_at: dict[str, int] = {}

    # -------------------------------------------------------------- helpers

    def _next_block(self) -> int:
        return int(self.network.w3.eth.block_number) + 1

    def _expect(self, expected_error: str | None, action) -> bool:
        """Run ``action``; assert it succeeds or fails exactly as the model predicted."""
        event(expected_error or "success")
        if expected_error is None:
            action()
            return True
        with pytest.raises(ChainError) as info:
            action()
        assert info.value.error_name == expected_error, str(info.value)
        return False

    def _active(self) -> set[str]:
        """Registered nodes that have not asked to unbond: the ones counted in the next round's W."""
        return self.registered - set(self.exit_round)

    def _eligible(self, node: str, round_id: int) -> bool:
        """Whether ``node`` may sit on ``round_id``'s committee (every registered node here was there from round 1)."""
        return node in self.registered and round_id < self.exit_round.get(node, 2**64)

    def _round(self) -> ModelRound | None:
        return self.rounds.get(self.current)

    def _fresh_cid(self) -> bytes:
        self.step += 1
        return self.network.cid(f"state machine {self.step}")

    # -------------------------------------------------------------- rules

    @initialize(submission=PHASE, claim=PHASE, proposal=PHASE, voting=PHASE)
    def first_round(self, submission: int, claim: int, proposal: int, voting: int) -> None:
        self.open_round(submission, claim, proposal, voting)

    # Preconditions keep most steps meaningful; the rules still predict every error they can hit
    # (membership, deadlines, turns, duplicates), and the revert tests cover the rest one by one.
    @precondition(lambda self: self._round() is None or self._round().status.is_final)
    @rule(submission=PHASE, claim=PHASE, proposal=PHASE, voting=PHASE)
    def open_round(self, submission: int, claim: int, proposal: int, voting: int) -> None:
        r = self._round()
        if r is not None and not r.status.is_final:
            error = "CoordinatorPreviousRoundNotFinalized"
        elif claim < MIN_CLAIM_BLOCKS:  # the owner may not shorten the claim window below the bound
            error = "CoordinatorPhaseOutOfBounds"
        elif len(self._active()) < self.min_committee:  # unbonded nodes left too few to seat a committee
            error = "CoordinatorTooFewNodes"
        else:
            error = None
        block = self._next_block()
        k = self.network.expected_size
        if self._expect(
            error,
            lambda: self.c.open_round(
                self.network.owner, submission, claim, proposal, voting, expected_committee_size=k
            ),
        ):
            self.current += 1
            sub = block + submission
            self.rounds[self.current] = ModelRound(
                sub, sub + claim, sub + claim + proposal, sub + claim + proposal + voting,
                total_stake=sum(self.stakes[a] for a in self._active()),
            )

    @rule(actor=ACTORS, samples=st.one_of(st.integers(1, 1000),
                                          st.sampled_from([MAX_SAMPLES, MAX_SAMPLES + 1, 2**64 - 1])))
    def submit(self, actor: int, samples: int) -> None:
        node, r, block = self.actors[actor], self._round(), self._next_block()
        if node.address not in self._active():  # never registered, or leaving
            error = "CoordinatorNotRegistered"
        elif r is None or r.status not in (RoundStatus.OPEN, RoundStatus.PROPOSED):
            error = "CoordinatorRoundNotOpen"
        elif block > r.submission_deadline:
            error = "CoordinatorLateSubmission"
        elif samples > MAX_SAMPLES:  # one node's weight is capped whatever it declares
            error = "CoordinatorSampleCountAboveCap"
        elif node.address in r.submitted:
            error = "CoordinatorDuplicateSubmission"
        else:
            error = None
        cid = self._fresh_cid()
        if self._expect(error, lambda: self.c.submit_update(node, self.current, cid, samples, keccak(cid))):
            r.submitted[node.address] = samples

    @precondition(lambda self: self._round() is not None and self._round().status is RoundStatus.OPEN)
    @rule(actor=ACTORS)
    def claim(self, actor: int) -> None:
        node, r = self.actors[actor], self._round()
        if self.network.head() < r.submission_deadline:
            # the claim seed mixes in the submission deadline block's hash: nobody can draw before that block
            with pytest.raises(ChainError, match="claim seed needs the hash"):
                self.c.draw_seat(node, self.current)
            event("draw refused before the seed exists")
            return
        draw = self.c.draw_seat(node, self.current) if node.address in self.registered else None
        eligible = self._eligible(node.address, self.current)
        weight = (sortition.seat_weight(draw.output, self.network.expected_size, self.stakes[node.address],
                                        r.total_stake) if draw is not None and eligible else 0)
        block = self._next_block()
        if node.address not in self.registered:
            error = "CoordinatorNotRegistered"
        elif not r.submission_deadline < block <= r.claim_deadline:
            error = "CoordinatorOutsideClaimWindow"
        elif not self._eligible(node.address, self.current):
            error = "CoordinatorNotEligible"
        elif node.address in r.weights:
            error = "CoordinatorAlreadySeated"
        elif weight == 0:
            error = "CoordinatorNotSelected"
        else:
            error = None
        if draw is not None:
            assert draw.weight == weight
        proof = draw.proof if draw is not None else bytes(81)
        if node.address not in self.registered:
            alpha = sortition.vrf_alpha(self.network.w3.eth.chain_id, self.c.address, self.current,
                                        self.c.claim_seed(self.current))
            proof = vrf.prove(bytes(node.key), alpha)
        if self._expect(error, lambda: self.c.claim_seat(node, self.current, proof)):
            r.weights[node.address] = weight
            r.scores[node.address] = sortition.leader_score(draw.output, weight)
            assert self.c.seat_weight(self.current, node.address) == weight
            event(f"seats {len(r.weights)}")
            event(f"weight {min(weight, 10)}")

    @precondition(lambda self: self._round() is not None and self._round().status is RoundStatus.OPEN)
    @rule(actor=ACTORS, data=st.data())
    def propose(self, actor: int, data: st.DataObject) -> None:
        proposer, r, block = self.actors[actor], self._round(), self._next_block()
        # Mostly accept (a subset of) the real submitters; sometimes slip in anyone.
        submitters = sorted(r.submitted)
        picked = (
            set(data.draw(st.sets(st.sampled_from(submitters), max_size=len(submitters))))
            if submitters
            else set()
        )
        picked |= {self.actors[i].address for i in data.draw(st.sets(st.integers(0, 5), max_size=1))}
        if not picked:
            picked = {self.actors[data.draw(st.integers(0, 5))].address}
        accepted = sorted(picked, key=lambda a: int(a, 16))
        if proposer.address not in r.weights:
            error = "CoordinatorNotCommitteeMember"
        elif block <= r.claim_deadline:
            error = "CoordinatorClaimsStillOpen"
        elif block > r.proposal_deadline:
            error = "CoordinatorProposalClosed"
        elif r.committee_weight < self.min_committee:
            error = "CoordinatorCommitteeTooSmall"
        elif not r.first_rank <= r.contract_rank(proposer.address) < sortition.PROPOSER_RANKS:
            error = "CoordinatorRankHasNoTurn"  # had its turn before a rejection, or past the last rank
        elif r.contract_rank(proposer.address) - r.first_rank > (block - r.turns_start) // self.leader_blocks:
            error = "CoordinatorNotLeader"
        else:  # a list naming non-submitters is stored (as a hash) and judged by members and the audit
            error = None
        cid = self._fresh_cid()
        if self._expect(error, lambda: self.c.propose_aggregate(proposer, self.current, cid, accepted)):
            r.status, r.proposal_cid = RoundStatus.PROPOSED, cid
            r.proposer_rank = r.contract_rank(proposer.address)
            proposal = self.c.proposal(self.current)
            assert (proposal.accepted_root, proposal.accepted_count) == (accepted_root(accepted), len(accepted))
            assert self.c.round_info(self.current).proposal_hash == self.c.proposal_record(cid, accepted)
            assert proposal.rank == r.proposer_rank
            event(f"proposed by rank {proposal.rank}")
            if r.rejected_proposals:
                event(f"fallback proposal {r.rejected_proposals + 1}")

    @rule(actor=ACTORS, approve=APPROVE)
    def vote(self, actor: int, approve: bool) -> None:
        voter, r, block = self.actors[actor], self._round(), self._next_block()
        if r is None or voter.address not in r.weights:
            error = "CoordinatorNotCommitteeMember"
        elif r.status is not RoundStatus.PROPOSED:
            error = "CoordinatorNoProposal"
        elif block > r.vote_deadline:
            error = "CoordinatorVoteClosed"
        elif voter.address in r.votes:
            error = "CoordinatorDuplicateVote"
        else:
            error = None
        if self._expect(error, lambda: self.c.vote(voter, self.current, approve)):
            r.votes[voter.address] = approve
            size = r.committee_weight
            needed = self.threshold * size
            if r.approvals * BPS >= needed:
                r.status, self.global_cid = RoundStatus.COMMITTED, r.proposal_cid
                event("round committed")
            elif (size - r.rejections) * BPS < needed:
                r.reject(block)
                event("round rejected" if r.status is RoundStatus.FAILED else "proposal rejected, fallback")

    @precondition(lambda self: self._round() is not None and self._round().status is RoundStatus.PROPOSED)
    @rule(ballots=st.lists(st.tuples(ACTORS, APPROVE), min_size=2, max_size=5, unique_by=lambda b: b[0]))
    def vote_in_turn(self, ballots: list[tuple[int, bool]]) -> None:
        """Several votes back to back, so committees can reach a decision within short windows."""
        for actor, approve in ballots:
            self.vote(actor, approve)

    @rule(actor=ACTORS)
    def finalize(self, actor: int) -> None:
        r, block = self._round(), self._next_block()
        open_ = r is not None and r.status is RoundStatus.OPEN
        if open_ and block > r.claim_deadline and r.committee_weight < self.min_committee:
            error = None
            event("committee too small")
        elif (open_ and block > r.proposal_deadline) or (
            r is not None and r.status is RoundStatus.PROPOSED and block > r.vote_deadline
        ):
            error = None
        else:
            error = "CoordinatorNothingToFinalize"
        if self._expect(error, lambda: self.c.finalize_round(self.actors[actor], self.current)):
            r.status = RoundStatus.FAILED

    @rule(blocks=st.integers(1, 4))
    def advance(self, blocks: int) -> None:
        advance_blocks(self.network.w3, blocks)

    @rule()
    def wait_out_unbonding(self) -> None:
        advance_blocks(self.network.w3, UNBONDING_BLOCKS)

    @rule(actor=ACTORS)
    def unbond(self, actor: int) -> None:
        node = self.actors[actor]
        if node.address not in self.registered:
            error = "CoordinatorNotRegistered"
        elif node.address in self.exit_round:
            error = "CoordinatorAlreadyUnbonding"
        else:
            error = None
        block = self._next_block()
        if self._expect(error, lambda: self.c.request_unbond(node)):
            self.exit_round[node.address] = self.current + 1
            self.unbonded_at[node.address] = block
            assert self.c.unbonding(node.address) == (self.current + 1, block + UNBONDING_BLOCKS)

    @rule(actor=ACTORS)
    def withdraw(self, actor: int) -> None:
        node, block = self.actors[actor], self._next_block()
        last = self.exit_round.get(node.address, 0) - 1
        if node.address not in self.exit_round:
            error = "CoordinatorNotUnbonding"
        elif block < self.unbonded_at[node.address] + UNBONDING_BLOCKS:
            error = "CoordinatorUnbondingNotOver"
        elif last != 0 and not self.rounds[last].status.is_final:  # it may still be seated there
            error = "CoordinatorStillEligible"
        else:
            error = None
        if self._expect(error, lambda: self.c.withdraw_stake(node)):
            del self.exit_round[node.address], self.unbonded_at[node.address]
            self.registered.discard(node.address)

    # -------------------------------------------------------------- invariant

    @invariant()
    def chain_matches_model(self) -> None:
        assert self.c.current_round() == self.current
        assert self.c.global_adapter_cid() == self.global_cid
        r = self._round()
        if r is None:
            return
        info = self.c.round_info(self.current)
        assert info.status is r.status
        assert (
            info.submission_deadline,
            info.claim_deadline,
            info.proposal_deadline,
            info.vote_deadline,
            info.turns_start,
            info.first_rank,
            info.rejected_proposals,
        ) == (
            r.submission_deadline,
            r.claim_deadline,
            r.proposal_deadline,
            r.vote_deadline,
            r.turns_start,
            r.first_rank,
            r.rejected_proposals,
        )
        assert (info.submission_count, info.approvals, info.rejections) == (
            len(r.submitted),
            r.approvals,
            r.rejections,
        )
        assert (info.committee_size, info.committee_weight) == (len(r.weights), r.committee_weight)
        # The contract holds exactly the stakes not yet paid back, and W counts only active nodes.
        stakes = {a: self.c.node_info(a).stake for a in self.registered}
        assert self.network.w3.eth.get_balance(self.c.address) == sum(stakes.values())
        assert self.c.total_stake() == sum(stakes[a] for a in self._active())


@pytest.mark.slow
def test_round_state_machine_matches_python_model(network):
    CoordinatorModel.network = network
    CoordinatorModel.base_snapshot = network.w3.provider.ethereum_tester.take_snapshot()
    run_state_machine_as_test(
        CoordinatorModel,
        settings=settings(
            max_examples=10,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
