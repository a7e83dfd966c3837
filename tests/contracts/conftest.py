"""Shared fixtures for FlareCoordinator tests: one in-process chain per module, reset per test.

The costly part (chain, funding, deployment, registration) runs once per module;
``_fresh_state`` snapshots eth-tester before each test and reverts after it, so
every test starts from the same registered-but-no-rounds state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3

from flare_chain.chain import (
    CoordinatorClient,
    advance_blocks,
    deploy_coordinator,
    fund_accounts,
    in_process_chain,
)
from flare_chain.committee import sortition
from flare_chain.errors import ChainError

INITIAL_CID = b"\x01\x55\x12\x20" + keccak(text="initial adapter")
THRESHOLD_BPS = 6667  # committee of 4: 3 approvals commit, 2 rejections fail
MIN_COMMITTEE = 2
LEADER_BLOCKS = 3
MIN_STAKE = 10**9
MEMBER_STAKE = 10**18
# k = 100 with four members of 1 ether: each member's seat weight is Poisson(25), so it is
# unseated with p = e^-25 ≈ 10^-11 per round (draws change every run: the chain's prevrandao
# and the deadline block's hash do); the participant's stake (MIN_STAKE) gives it a chance of
# about 100·10^9/(4·10^18) = 2.5·10^-8 per round, so it never sits in practice.
EXPECTED_SIZE = 100


def account(label: str) -> LocalAccount:
    """A deterministic test key, so addresses (and their sort order) are stable across runs."""
    return Account.from_key(keccak(text=f"flare-chain test {label}"))


def cid(label: str) -> bytes:
    """A CIDv1-shaped (raw, sha2-256) 36-byte binary CID derived from ``label``."""
    return b"\x01\x55\x12\x20" + keccak(text=label)


@dataclass
class Network:
    w3: Web3
    coordinator: CoordinatorClient
    owner: LocalAccount
    validators: list[LocalAccount]  # registered with MEMBER_STAKE: seated in every round
    participant: LocalAccount  # registered with MIN_STAKE: practically never seated
    outsider: LocalAccount  # funded, never registered
    initial_cid: bytes = INITIAL_CID
    threshold_bps: int = THRESHOLD_BPS
    min_committee: int = MIN_COMMITTEE
    leader_blocks: int = LEADER_BLOCKS
    min_stake: int = MIN_STAKE
    member_stake: int = MEMBER_STAKE
    expected_size: int = EXPECTED_SIZE

    # Test modules cannot import this conftest (importlib mode), so helpers hang off the fixture.
    cid = staticmethod(cid)
    account = staticmethod(account)

    def head(self) -> int:
        return int(self.w3.eth.block_number)

    def next_tx_in_block(self, block: int) -> None:
        """Mine until the next transaction lands in ``block`` (eth-tester mines one block per tx)."""
        advance_blocks(self.w3, block - 1 - self.head())

    def pending_prevrandao(self) -> bytes:
        """The ``block.prevrandao`` the next transaction will see.

        eth-tester executes transactions against a pending header and only draws the
        block's reported ``mixHash`` when it seals it, so the reported value is not
        what the EVM saw; read the pending header instead.
        """
        return bytes(self.w3.provider.ethereum_tester.backend.chain.header.mix_hash)

    def open_round(
        self, submission: int = 10, claim: int = 6, proposal: int = 8, voting: int = 5, k: int = EXPECTED_SIZE
    ) -> int:
        round_id, _ = self.coordinator.open_round(
            self.owner, submission, claim, proposal, voting, expected_committee_size=k
        )
        return round_id

    def by_address(self, address: str) -> LocalAccount:
        everyone = [self.owner, *self.validators, self.participant, self.outsider]
        return next(a for a in everyone if a.address == address)

    def to_claims(self, round_id: int) -> None:
        """Mine to the first block of the claim window."""
        self.next_tx_in_block(self.coordinator.round_info(round_id).submission_deadline + 1)

    def to_proposals(self, round_id: int) -> None:
        """Mine to the first block after the claim deadline (the leader's turn)."""
        self.next_tx_in_block(self.coordinator.round_info(round_id).claim_deadline + 1)

    def seat(self, round_id: int, members: Sequence[LocalAccount] | None = None) -> None:
        """Move to the claim window (if before it) and claim a seat for each of ``members``."""
        if self.head() < self.coordinator.round_info(round_id).submission_deadline:
            self.to_claims(round_id)
        for member in self.validators if members is None else members:
            draw = self.coordinator.draw_seat(member, round_id)
            assert draw.selected, f"{member.address} unexpectedly not selected"
            self.coordinator.claim_seat(member, round_id, draw.proof)

    def weights(self, round_id: int) -> dict[str, int]:
        """Seated member -> seat weight, recomputed from its VRF output with the Python sortition."""
        info = self.coordinator.sortition_info(round_id)
        return {
            seat.node: sortition.seat_weight(seat.output, info.expected_committee_size,
                                             self.coordinator.node_info(seat.node).stake, info.total_stake)
            for seat in self.coordinator.seats(round_id)
        }

    def approve_until_final(self, round_id: int) -> None:
        """Approve ``round_id``'s proposal with each validator in turn until the round is final."""
        for voter in self.validators:
            if self.coordinator.round_info(round_id).status.is_final:
                return
            self.coordinator.vote(voter, round_id, True)

    def needed(self, committee_weight: int) -> int:
        """Least approval weight that commits a committee of ``committee_weight`` at this threshold."""
        return -(-self.threshold_bps * committee_weight // 10_000)

    def leader(self, round_id: int) -> LocalAccount:
        return self.by_address(self.coordinator.proposer_order(round_id)[0])

    def seated_round(self, members: Sequence[LocalAccount] | None = None, **phases: int) -> int:
        """A round opened, every validator (or ``members``) seated, at the leader's first block."""
        round_id = self.open_round(**phases)
        self.seat(round_id, members)
        self.to_proposals(round_id)
        return round_id


def build_network(threshold_bps: int = THRESHOLD_BPS, min_committee: int = MIN_COMMITTEE) -> Network:
    """A fresh chain with the coordinator deployed (keyword arguments only), four validators and the participant."""
    w3 = in_process_chain()
    owner = account("owner")
    validators = [account(f"validator {i}") for i in range(4)]
    participant, outsider = account("participant"), account("outsider")
    fund_accounts(w3, [owner, *validators, participant, outsider], 10**20)
    coordinator = deploy_coordinator(
        w3,
        owner,
        approval_threshold_bps=threshold_bps,
        min_committee_size=min_committee,
        leader_blocks=LEADER_BLOCKS,
        min_stake_wei=MIN_STAKE,
    )
    for v in validators:
        coordinator.register_node(v, MEMBER_STAKE)
    coordinator.register_node(participant, MIN_STAKE)
    coordinator.initialize_global_adapter(owner, INITIAL_CID)
    return Network(w3, coordinator, owner, validators, participant, outsider, threshold_bps=threshold_bps,
                   min_committee=min_committee)


@pytest.fixture(scope="module")
def network() -> Network:
    return build_network()


@pytest.fixture(scope="module")
def unanimous_network() -> Network:
    """10000 bps (every seat must approve); a deployment needs min committee >= 2 for it."""
    return build_network(threshold_bps=10_000, min_committee=2)


@pytest.fixture(scope="module")
def half_network() -> Network:
    """5000 bps (half the seats commit); a deployment needs min committee >= 3 for it."""
    return build_network(threshold_bps=5000, min_committee=3)


_NETWORK_FIXTURES = ("network", "unanimous_network", "half_network")


@pytest.fixture(autouse=True)
def _fresh_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """Snapshot every chain the test uses before it runs and revert them after it."""
    testers = [request.getfixturevalue(name).w3.provider.ethereum_tester
               for name in _NETWORK_FIXTURES if name in request.fixturenames]
    snapshots = [tester.take_snapshot() for tester in testers]
    yield
    for tester, snapshot in zip(testers, snapshots, strict=True):
        tester.revert_to_snapshot(snapshot)


@pytest.fixture
def reverts() -> Callable[..., AbstractContextManager[None]]:
    """``with reverts("CoordinatorX", arg1, arg2): ...`` asserts the exact custom error and arguments."""

    @contextmanager
    def _reverts(error_name: str, *error_args: object) -> Iterator[None]:
        with pytest.raises(ChainError) as info:
            yield
        assert info.value.error_name == error_name, str(info.value)
        assert info.value.error_args == error_args, str(info.value)
        assert error_name in str(info.value)

    return _reverts
