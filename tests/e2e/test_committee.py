"""The VRF committee in a real round: silent leaders, too-small committees, seats nobody won.

The in-process chain draws a fresh prevrandao secret every run, so the seats
differ each time; stake skew makes each scenario hold with overwhelming
probability for any seed, not only for the one the chain happens to produce.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from flare_chain.chain import FailureReason, RoundStatus, advance_blocks
from flare_chain.errors import ChainError, IntegrityError
from flare_chain.federation import Federation, FederationConfig, run_round, setup_federation
from flare_chain.node.bundles import GlobalAdapter, with_accepted_list
from flare_chain.node.daemon import Daemon
from flare_chain.node.localnet import restart_as

pytestmark = [pytest.mark.e2e]

WHALE, MINNOW = 10**18, 10**15


def _fed(tmp_path: Path, model_dir: Path, params, **settings: object) -> Federation:
    return setup_federation(FederationConfig(nodes=3, rounds=1, work_dir=tmp_path, model_dir=model_dir,
                                             train=params, show_progress=False, **settings))


class SilentLeader(Daemon):
    """Never proposes while it is the leader; behaves honestly in every other part of the round."""

    def build_proposal(self, round_id: int, previous: GlobalAdapter):
        if self.coordinator.leader(round_id) == self.address:
            return "silent as leader (test)"
        return super().build_proposal(round_id, previous)


@pytest.mark.slow
def test_silent_leader_is_replaced_by_the_next_ranked_member_and_the_round_commits(
        tmp_path: Path, tiny_model_dir: Path, tiny_train_params) -> None:
    # Prepare: k=30 of 3 equal stakes (Poisson(10) weight each) seats everyone; every node would keep
    # silent as leader
    fed = _fed(tmp_path, tiny_model_dir, tiny_train_params, expected_committee_size=30)
    for i in range(len(fed.daemons)):
        restart_as(fed.net, i, SilentLeader)
    before = fed.coordinator.global_adapter_cid()
    # Execute
    report = run_round(fed)
    # Assert
    assert report.status == RoundStatus.COMMITTED
    assert report.committee_size == 3 and report.leader is not None
    assert report.proposer == report.committee[1].name != report.leader
    proposal = fed.coordinator.proposal(report.round_id)
    info = fed.coordinator.round_info(report.round_id)
    assert proposal is not None and proposal.rank == report.proposer_rank == 1
    # it waited out the leader's turn of leader_blocks blocks
    assert proposal.block_number >= info.claim_deadline + 1 + fed.config.leader_blocks
    assert fed.coordinator.global_adapter_cid() != before


@pytest.mark.slow
def test_round_with_a_committee_below_the_minimum_fails_and_the_previous_adapter_stays(
        tmp_path: Path, tiny_model_dir: Path, tiny_train_params) -> None:
    # Prepare: the node holding ~99.8% of the stake is offline for the claim window; the other two draw
    # Poisson(2·0.001) seat weights, so the committee's weight is short of the minimum of 2 with
    # probability above 1 - 10^-5 whatever the seed
    fed = _fed(tmp_path, tiny_model_dir, tiny_train_params, stakes_wei=(WHALE, MINNOW, MINNOW),
               expected_committee_size=2, min_committee_size=2)
    # offline for the claim window: its operator runs it with participate = false (trains and submits only)
    restart_as(fed.net, 0, settings=dataclasses.replace(fed.daemons[0].settings, participate=False))
    before = fed.coordinator.global_adapter_cid()
    # Execute
    report = run_round(fed)
    # Assert
    assert report.status == RoundStatus.FAILED
    assert report.failure_reason == FailureReason.COMMITTEE_TOO_SMALL
    assert report.committee_weight < 2 and "node-1" not in [n.name for n in report.committee]
    assert report.proposer is None and report.committed_cid is None and report.approvals == 0
    assert fed.coordinator.proposal(report.round_id) is None
    assert fed.coordinator.global_adapter_cid() == before
    assert report.global_loss == pytest.approx(fed.base_loss, abs=0.05)  # the round-0 adapter is still in use
    # the federation goes on: the next round opens from the kept adapter
    round_id, _ = fed.coordinator.open_round(fed.owner, 10, 10, 10, 10, expected_committee_size=2)
    assert fed.coordinator.round_opened(round_id).global_cid == before


def test_unselected_node_cannot_claim_a_seat_and_non_members_cannot_vote(
        tmp_path: Path, tiny_model_dir: Path, tiny_train_params) -> None:
    # Prepare: two whales and a minnow; k=16 gives each whale a Poisson(8) weight (seated but for
    # p = e^-8 ≈ 3·10^-4), the minnow Poisson(0.008) (seated with p ≈ 0.8%)
    fed = _fed(tmp_path, tiny_model_dir, tiny_train_params, stakes_wei=(WHALE, WHALE, MINNOW),
               expected_committee_size=16, min_committee_size=2)
    c, (whale_a, whale_b, minnow) = fed.coordinator, fed.participants
    round_id, _ = c.open_round(fed.owner, 10, 10, 10, 10, expected_committee_size=16)
    info = c.round_info(round_id)
    c.submit_update(whale_a.account, round_id, c.global_adapter_cid(), 1, b"\0" * 32)  # content is not judged here
    advance_blocks(c.w3, info.submission_deadline - c.w3.eth.block_number)
    # Execute / Assert: the minnow's honest proof is verified, but its output draws weight 0
    draw = minnow.draw_seat(round_id)
    assert not draw.selected
    assert minnow.claim_seat(round_id, draw) is None  # the participant does not even send it
    with pytest.raises(ChainError) as refused:
        c.claim_seat(minnow.account, round_id, draw.proof)
    assert refused.value.error_name == "CoordinatorNotSelected"
    assert refused.value.error_args[1] == draw.output
    assert whale_a.claim_seat(round_id) is not None and whale_b.claim_seat(round_id) is not None
    assert c.committee(round_id) == sorted([whale_a.address, whale_b.address], key=lambda a: int(a, 16))
    advance_blocks(c.w3, info.claim_deadline - c.w3.eth.block_number)
    leader = next(p for p in (whale_a, whale_b) if p.address == c.leader(round_id))
    c.propose_aggregate(leader.account, round_id, c.global_adapter_cid(), [whale_a.address])
    with pytest.raises(ChainError) as outsider:
        c.vote(minnow.account, round_id, True)
    assert outsider.value.error_name == "CoordinatorNotCommitteeMember"
    assert minnow.vote_if_member(round_id, whale_a.pull_global(), tolerance=0.02) is None
    c.vote(whale_a.account, round_id, False)  # may reject the proposal (and reopen the round for rank 1)
    assert [v.voter for v in c.votes(round_id)] == [whale_a.address]



class ListLiar(Daemon):
    """As leader, proposes the honest aggregate's CID with the root of a shorter list than its manifest holds."""

    def build_proposal(self, round_id: int, previous: GlobalAdapter):
        made = super().build_proposal(round_id, previous)
        if isinstance(made, str) or self.coordinator.leader(round_id) != self.address:
            return made
        aggregate, rejected = made
        return dataclasses.replace(aggregate, accepted=aggregate.accepted[:-1]), rejected  # one node fewer on-chain


@pytest.mark.slow
def test_a_proposal_whose_root_is_not_its_published_list_is_voted_down_and_the_next_rank_commits(
        tmp_path: Path, tiny_model_dir: Path, tiny_train_params) -> None:
    # The chain keeps only the accepted list's root; the list is in the aggregate's manifest. A leader whose root
    # and manifest disagree (here: an honest aggregate, a root leaving one node out) must not get a commit.
    fed = _fed(tmp_path, tiny_model_dir, tiny_train_params, expected_committee_size=30)
    for i in range(len(fed.daemons)):
        restart_as(fed.net, i, ListLiar)
    report = run_round(fed)
    c = fed.coordinator
    proposals = c.proposals(report.round_id)
    assert report.status == RoundStatus.COMMITTED
    assert [p.rank for p in proposals] == [0, 1] and len(c.proposal_rejections(report.round_id)) == 1
    assert proposals[0].accepted_count == 2 and proposals[1].accepted_count == 3
    assert with_accepted_list(fed.store, proposals[1]).accepted is not None
    with pytest.raises(IntegrityError, match="names 3 node"):
        with_accepted_list(fed.store, proposals[0])
