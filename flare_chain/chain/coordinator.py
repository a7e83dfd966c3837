"""Python binding of FlareCoordinator: deploy it, send its transactions, read its state and events.

One ``CoordinatorClient`` wraps one deployed contract on one ``Web3``. Transaction
methods take the signing ``LocalAccount`` per call (a node signs for itself, the
operator for the owner calls) and return a ``TxResult``; reverts raise
``ChainError`` with the contract's custom error decoded. Event readers return the
typed records of ``flare_chain.chain.records`` and read logs from the deployment
block on, in chunks a public RPC endpoint accepts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import is_address, to_checksum_address
from web3 import Web3
from web3.logs import DISCARD

from flare_chain.chain.artifacts import ContractArtifact, load_artifact
from flare_chain.chain.records import (
    FailureReason,
    NodeInfo,
    NodeRegistration,
    Proposal,
    ProposalRejection,
    RoundInfo,
    RoundOpened,
    RoundOutcome,
    RoundStatus,
    SeatClaim,
    SortitionInfo,
    Submission,
    TxResult,
    Vote,
)
from flare_chain.chain.revert import ErrorDecoder
from flare_chain.chain.transactions import DEFAULT_GAS_MARGIN, call_view, send_transaction
from flare_chain.committee import sortition, vrf
from flare_chain.errors import ChainError, ConfigError

__all__ = [
    "CONTRACT_NAME",
    "DEFAULT_LEADER_BLOCKS",
    "DEFAULT_MAX_SAMPLE_COUNT",
    "DEFAULT_MIN_STAKE_WEI",
    "VOTE_GAS_FLOOR",
    "CoordinatorClient",
    "PublicKeyLike",
    "SeatDraw",
    "deploy_coordinator",
    "public_key_words",
    "sort_addresses",
]

CONTRACT_NAME = "FlareCoordinator"
DEFAULT_LOG_CHUNK_BLOCKS = 10_000
DEFAULT_LEADER_BLOCKS = 5
"""Blocks the leader has to propose before the next-ranked member may."""
DEFAULT_MIN_STAKE_WEI = 10**15
DEFAULT_MAX_SAMPLE_COUNT = 100_000
VOTE_GAS_FLOOR = 200_000
"""Least gas limit a vote is signed with. A vote estimated while the threshold is out of reach
takes the short path (about 60k gas), but another member's vote landing first in the same block
makes it the vote that commits (or fails) the round, which also copies the CID into storage and
emits the result (about 80k for a 36-byte CID, more for longer ones). Signed at the estimate, it
runs out of gas and the round can miss its threshold. 200k covers the commit path for the
longest CID the contract accepts (`tests/contracts/test_vote_gas.py`); unused gas is not paid."""
"""The default cap on the samples one submission may claim: its most aggregation weight."""
"""Smallest stake a node may register with unless the deployer says otherwise (0.001 ether)."""

PublicKeyLike = bytes | tuple[int, int]


def public_key_words(key: PublicKeyLike | LocalAccount) -> tuple[int, int]:
    """A secp256k1 public key as the contract's ``uint256[2]``: ``(x, y)``.

    Takes a ``LocalAccount`` (its key's public point), 33-byte compressed,
    64-byte raw ``x ‖ y`` or 65-byte uncompressed SEC 1 bytes, or an ``(x, y)``
    pair. Raises ConfigError when it is not a curve point.
    """
    if isinstance(key, LocalAccount):
        return vrf.decompress(vrf.public_key(bytes(key.key)))
    if isinstance(key, tuple):
        if len(key) != 2:
            raise ConfigError(f"public key pair must be (x, y), got {len(key)} values")
        return vrf.decompress(b"\x04" + key[0].to_bytes(32, "big") + key[1].to_bytes(32, "big"))
    raw = bytes(key)
    return vrf.decompress(b"\x04" + raw if len(raw) == 64 else raw)


@dataclass(frozen=True)
class SeatDraw:
    """A node's sortition draw for a round, computed locally before anything is sent.

    ``proof`` is the 81-byte VRF proof of the round's input under the node's key,
    ``output`` its 32-byte ``beta``; ``weight`` the seat weight the contract will
    give it (``sortition.seat_weight``; 0: no seat).
    """

    round_id: int
    node: str
    alpha: bytes
    proof: bytes
    output: bytes
    weight: int

    @property
    def selected(self) -> bool:
        """Whether the contract will seat the node (its weight is at least 1)."""
        return self.weight > 0


def sort_addresses(addresses: Iterable[str]) -> list[str]:
    """Checksummed ``addresses`` in the order the contract requires (ascending as uint160).

    Raises ConfigError on an invalid or repeated address, naming it.
    """
    seen: dict[int, str] = {}
    for address in addresses:
        if not is_address(address):
            raise ConfigError(f"address list holds {address!r}, which is not an Ethereum address")
        key = int(address, 16)
        if key in seen:
            raise ConfigError(f"address list names {to_checksum_address(address)} twice; list each node once")
        seen[key] = to_checksum_address(address)
    return [seen[k] for k in sorted(seen)]


class CoordinatorClient:
    """Talk to a deployed FlareCoordinator at ``address``.

    ``deployment_block`` bounds event scans from below (``deploy_coordinator`` sets
    it); ``log_chunk_blocks`` caps each ``eth_getLogs`` range.
    """

    def __init__(
        self,
        w3: Web3,
        address: str,
        *,
        deployment_block: int = 0,
        artifact: ContractArtifact | None = None,
        gas_margin: float = DEFAULT_GAS_MARGIN,
        log_chunk_blocks: int = DEFAULT_LOG_CHUNK_BLOCKS,
    ) -> None:
        if not is_address(address):
            raise ConfigError(f"coordinator address {address!r} is not an Ethereum address")
        if log_chunk_blocks < 1:
            raise ConfigError(f"log_chunk_blocks must be at least 1, got {log_chunk_blocks}")
        self._artifact = artifact or load_artifact(CONTRACT_NAME)
        self.w3 = w3
        self.address = to_checksum_address(address)
        self.deployment_block = deployment_block
        self.contract = w3.eth.contract(address=self.address, abi=self._artifact.abi)
        self._decoder = ErrorDecoder(self._artifact.abi)
        self._gas_margin = gas_margin
        self._log_chunk_blocks = log_chunk_blocks
        self._immutables: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"CoordinatorClient(address={self.address}, deployment_block={self.deployment_block})"

    # ------------------------------------------------------------------ transactions

    def _send(self, account: LocalAccount, fn_name: str, *args: Any, value_wei: int = 0, min_gas: int = 0
              ) -> TxResult:
        data = self.contract.encode_abi(fn_name, args=list(args))
        return send_transaction(
            self.w3,
            account,
            to=self.address,
            data=data,
            label=fn_name,
            decoder=self._decoder,
            value_wei=value_wei,
            gas_margin=self._gas_margin,
            min_gas=min_gas,
        )

    def register_node(
        self, account: LocalAccount, stake_wei: int, public_key: PublicKeyLike | None = None
    ) -> TxResult:
        """Register ``account`` once, depositing ``stake_wei`` (at least ``min_stake``), with its VRF key.

        ``public_key`` defaults to the account's own key, the only one the
        contract accepts (it must hash to the sender's address); passing another
        is for tests of that check. The node is eligible for rounds opened later.
        """
        if stake_wei < 0:
            raise ConfigError(f"stake_wei must not be negative, got {stake_wei}")
        words = public_key_words(account if public_key is None else public_key)
        return self._send(account, "registerNode", list(words), value_wei=stake_wei)

    def request_unbond(self, account: LocalAccount) -> TxResult:
        """Start ``account``'s exit: its stake leaves ``W`` for rounds opened from now on (see ``unbonding``)."""
        return self._send(account, "requestUnbond")

    def withdraw_stake(self, account: LocalAccount) -> TxResult:
        """Pay ``account``'s stake back once its unbonding delay has passed and its last round has ended."""
        return self._send(account, "withdrawStake")

    @property
    def log_chunk_blocks(self) -> int:
        """Blocks per ``eth_getLogs`` call this client makes (endpoints cap the range a call may span)."""
        return self._log_chunk_blocks

    def initialize_global_adapter(self, owner: LocalAccount, cid: bytes) -> TxResult:
        """Set the starting global adapter's binary CID (owner, once, before the first round)."""
        return self._send(owner, "initializeGlobalAdapter", bytes(cid))

    def set_federation_spec(self, owner: LocalAccount, cid: bytes) -> TxResult:
        """Fix the federation spec's binary CID (owner, once, before the first round)."""
        return self._send(owner, "setFederationSpec", bytes(cid))

    def open_round(
        self,
        owner: LocalAccount,
        submission_blocks: int,
        claim_blocks: int,
        proposal_blocks: int,
        voting_blocks: int,
        *,
        expected_committee_size: int = sortition.DEFAULT_EXPECTED_COMMITTEE_SIZE,
    ) -> tuple[int, TxResult]:
        """Open the next round (owner): phase lengths in blocks and the expected committee size ``k``.

        Returns ``(round_id, result)``.
        """
        result = self._send(
            owner,
            "openRound",
            submission_blocks,
            claim_blocks,
            proposal_blocks,
            voting_blocks,
            expected_committee_size,
        )
        events = self.contract.events.RoundOpened().process_receipt(result.receipt, errors=DISCARD)
        if not events:
            raise ChainError(f"openRound succeeded (tx {result.tx_hash}) but emitted no RoundOpened event")
        return int(events[0]["args"]["round"]), result

    def submit_update(
        self, account: LocalAccount, round_id: int, cid: bytes, sample_count: int, manifest_hash: bytes
    ) -> TxResult:
        """Submit ``account``'s update for the open round: binary CID, sample count, 32-byte manifest hash."""
        if len(manifest_hash) != 32:
            raise ConfigError(f"manifest_hash must be 32 bytes, got {len(manifest_hash)}")
        return self._send(account, "submitUpdate", round_id, bytes(cid), sample_count, bytes(manifest_hash))

    def claim_seed(self, round_id: int) -> bytes:
        """The seed ``round_id``'s seats and probe windows are drawn on (``sortition.claim_seed``).

        The round's seed mixed with the hash of its submission deadline block, read
        from the node (any block, unlike the contract's ``claimSeed``, which only
        reaches 256 blocks back). Raises ChainError before that block is mined.
        """
        info = self.round_info(round_id)
        if info.status == RoundStatus.NONE:
            raise ChainError(f"round {round_id} was never opened on {self.address}; it has no claim seed")
        deadline = int(info.submission_deadline)
        head = int(self.w3.eth.block_number)
        if head < deadline:
            raise ChainError(f"round {round_id}'s claim seed needs the hash of its submission deadline block "
                             f"{deadline}, and the chain is at block {head}; draw seats from block {deadline + 1}")
        block_hash = bytes(self.w3.eth.get_block(deadline)["hash"])  # type: ignore[arg-type]
        return sortition.claim_seed(info.seed, block_hash)

    def draw_seat(self, account: LocalAccount, round_id: int) -> SeatDraw:
        """Evaluate ``account``'s VRF on ``round_id``'s input and whether it wins a seat (sends nothing).

        Reads the round's claim seed (so only after its submission deadline) and
        sortition and the node's stake from the chain; the proof is made locally
        with the account's key.
        """
        alpha = sortition.vrf_alpha(int(self.w3.eth.chain_id), self.address, round_id, self.claim_seed(round_id))
        proof = vrf.prove(bytes(account.key), alpha)
        output = vrf.proof_to_hash(proof)
        info, node = self.sortition_info(round_id), self.node_info(account.address)
        exit_round, _ = self.unbonding(account.address)
        eligible = (node.registered and node.first_eligible_round <= round_id and info.total_stake > 0
                    and (exit_round == 0 or round_id < exit_round))
        weight = (
            sortition.seat_weight(output, info.expected_committee_size, node.stake, info.total_stake)
            if eligible else 0
        )
        return SeatDraw(round_id=round_id, node=account.address, alpha=alpha, proof=proof, output=output,
                        weight=weight)

    def claim_seat(self, account: LocalAccount, round_id: int, proof: bytes) -> TxResult:
        """Claim a seat on ``round_id``'s committee with an 81-byte VRF ``proof`` (claim window only).

        The ``fastVerify`` witnesses are computed here for the account's own key
        and the round's input as the contract builds it, so a proof made for
        another round, seed or key reaches the contract and fails its check.
        Raises ``InvalidProof`` for bytes that do not even decode as a proof.
        """
        alpha = sortition.vrf_alpha(int(self.w3.eth.chain_id), self.address, round_id, self.claim_seed(round_id))
        key = vrf.public_key(bytes(account.key))
        return self.claim_seat_with_params(
            account, round_id, vrf.compute_fast_verify_params(key, proof, alpha)
        )

    def claim_seat_with_params(
        self, account: LocalAccount, round_id: int, params: vrf.FastVerifyParams
    ) -> TxResult:
        """Send ``claimSeat`` with ready-made ``fastVerify`` arguments, as they are.

        ``claim_seat`` builds them from a proof; this takes them whole, so tools
        that already hold them (or tests that alter one field) send exactly
        what they pass, ``hash_roots`` included (an empty tuple is refused on
        chain). The key and message inside ``params`` are not sent: the
        contract uses the registered key and the round's own input.
        """
        return self._send(
            account,
            "claimSeat",
            round_id,
            list(params.proof_words()),
            list(params.u_point),
            list(params.v_components()),
            list(params.hash_roots),
        )

    def propose_aggregate(
        self,
        account: LocalAccount,
        round_id: int,
        cid: bytes,
        accepted: Sequence[str],
        *,
        sort: bool = True,
    ) -> TxResult:
        """Propose the aggregate's binary CID and the submitters it used (the member whose turn it is).

        Only the list's root and length go on chain (``protocol.accepted``); the
        list itself must be the ``accepted`` field of the manifest in the bundle
        ``cid`` names, where members and auditors read it. With ``sort=True``
        (the default) ``accepted`` is validated and put in canonical order before
        it is hashed; ``sort=False`` hashes it as given (a list no member will
        match). The contract reads the proposer's rank from its stored scores.
        """
        from flare_chain.protocol.accepted import list_hash

        nodes = sort_addresses(accepted) if sort else [to_checksum_address(a) for a in accepted]
        return self.propose_aggregate_root(account, round_id, cid, list_hash(nodes), len(nodes))

    def propose_aggregate_root(self, account: LocalAccount, round_id: int, cid: bytes, accepted_root: bytes,
                               accepted_count: int) -> TxResult:
        """Propose with the accepted list's root and length as given (``propose_aggregate`` computes them)."""
        return self._send(account, "proposeAggregate", round_id, bytes(cid), bytes(accepted_root), accepted_count)

    def vote(self, account: LocalAccount, round_id: int, approve: bool, *, attempt: int | None = None) -> TxResult:
        """Vote on the round's proposal (committee member, once per proposal), with at least ``VOTE_GAS_FLOOR`` gas.

        ``attempt`` names the proposal judged (``RoundInfo.rejected_proposals``
        when it was reviewed; default: the current one), so the vote cannot count
        on a later rank's proposal should it land after a rejection.
        """
        if attempt is None:
            attempt = self.round_info(round_id).rejected_proposals
        return self._send(account, "vote", round_id, attempt, approve, min_gas=VOTE_GAS_FLOOR)

    def finalize_round(self, account: LocalAccount, round_id: int) -> TxResult:
        """Fail a round whose proposal or vote deadline passed without a result (anyone)."""
        return self._send(account, "finalizeRound", round_id)

    # ------------------------------------------------------------------ views

    def _view(self, fn_name: str, *args: Any) -> Any:
        return call_view(getattr(self.contract.functions, fn_name)(*args), fn_name, self._decoder)

    def owner(self) -> str:
        return str(self._view("owner"))

    def current_round(self) -> int:
        """Latest opened round id (0 before the first round)."""
        return int(self._view("currentRound"))

    def global_adapter_cid(self) -> bytes:
        """Binary CID of the current global adapter (empty before initialisation)."""
        return bytes(self._view("globalAdapterCid"))

    def federation_spec_cid(self) -> bytes:
        """Binary CID of the federation spec (empty when the owner has not set one)."""
        return bytes(self._view("federationSpecCid"))

    def round_info(self, round_id: int) -> RoundInfo:
        """On-chain state of ``round_id`` (status NONE and zeros for a round never opened)."""
        (
            status,
            seed,
            sub_dl,
            claim_dl,
            prop_dl,
            vote_dl,
            size,
            weight,
            count,
            approvals,
            rejections,
            proposal_hash,
            turns_start,
            first_rank,
            rejected_proposals,
        ) = self._view("roundInfo", round_id)
        return RoundInfo(
            round_id=round_id,
            status=RoundStatus(status),
            seed=bytes(seed),
            submission_deadline=sub_dl,
            claim_deadline=claim_dl,
            proposal_deadline=prop_dl,
            vote_deadline=vote_dl,
            committee_size=size,
            committee_weight=weight,
            submission_count=count,
            approvals=approvals,
            rejections=rejections,
            proposal_hash=bytes(proposal_hash),
            turns_start=int(turns_start),
            first_rank=int(first_rank),
            rejected_proposals=int(rejected_proposals),
        )

    def submission_hash(self, round_id: int, node: str) -> bytes:
        """The 32-byte record stored for ``node``'s submission (zeros if none); see ``submission_record``."""
        return bytes(self._view("submissionHash", round_id, to_checksum_address(node)))

    def submission_record(self, cid: bytes, sample_count: int, manifest_hash: bytes) -> bytes:
        """What the contract stores for a submission with these fields (computed by the contract)."""
        return bytes(self._view("submissionRecord", bytes(cid), sample_count, bytes(manifest_hash)))

    def proposal_record(self, cid: bytes, accepted: Sequence[str]) -> bytes:
        """The proposal hash the contract stores for this CID and accepted list (hashed as given)."""
        nodes = [to_checksum_address(a) for a in accepted]
        return bytes(self._view("proposalRecord", bytes(cid), self.accepted_list_hash(nodes), len(nodes)))

    def accepted_list_hash(self, accepted: Sequence[str]) -> bytes:
        """The contract's ``acceptedListHash`` of ``accepted`` as given (``protocol.accepted_root`` sorts first)."""
        return bytes(self._view("acceptedListHash", [to_checksum_address(a) for a in accepted]))

    def is_registered(self, address: str) -> bool:
        return bool(self._view("isRegistered", to_checksum_address(address)))

    def node_info(self, address: str) -> NodeInfo:
        """Stake, first eligible round and registered VRF key of ``address`` (zeros if unregistered)."""
        stake, first, (x, y) = self._view("nodeInfo", to_checksum_address(address))
        return NodeInfo(
            node=to_checksum_address(address), stake=stake, first_eligible_round=first, public_key=(x, y)
        )

    def unbonding(self, address: str) -> tuple[int, int]:
        """``(exit_round, withdrawable_at_block)`` of ``address``; ``(0, 0)`` when it is not unbonding.

        The node sits on committees of rounds before ``exit_round`` only, and
        may withdraw from ``withdrawable_at_block`` once round ``exit_round − 1``
        has ended.
        """
        exit_round, withdrawable = self._view("unbondingInfo", to_checksum_address(address))
        return int(exit_round), int(withdrawable)

    def sortition_info(self, round_id: int) -> SortitionInfo:
        """Sortition of ``round_id``: total eligible stake, expected size ``k``, eligible nodes, seats and weight so far."""
        total, expected, eligible, seats, weight = self._view("sortitionInfo", round_id)
        return SortitionInfo(
            round_id=round_id,
            total_stake=total,
            expected_committee_size=expected,
            eligible_nodes=eligible,
            seats=seats,
            weight=weight,
        )

    def seat_weight(self, round_id: int, address: str) -> int:
        """The seat weight ``address`` holds on ``round_id``'s committee (0: no seat)."""
        weight, _ = self._view("seatOf", round_id, to_checksum_address(address))
        return int(weight)

    def seat_weight_of(self, round_id: int, address: str, output: bytes) -> int:
        """The weight the contract would give ``address`` for VRF ``output`` in ``round_id`` (0: none)."""
        return int(self._view("seatWeightOf", round_id, to_checksum_address(address), bytes(output)))

    def vrf_input(self, round_id: int) -> bytes:
        """The contract's VRF input ``alpha`` for ``round_id`` (see ``sortition.vrf_alpha``).

        Readable only while the contract can read the claim seed (from the block
        after the submission deadline, for 256 blocks); ``claim_seed`` works at any time.
        """
        return bytes(self._view("vrfInput", round_id))

    def is_committee_member(self, round_id: int, address: str) -> bool:
        """Whether ``address`` holds a seat on ``round_id``'s committee (may propose in turn and vote)."""
        return bool(self._view("isCommitteeMember", round_id, to_checksum_address(address)))

    def committee(self, round_id: int) -> list[str]:
        """The members of ``round_id``'s committee in ascending address order (from ``SeatClaimed``)."""
        return sort_addresses(seat.node for seat in self.seats(round_id))

    def leader_scores(self, round_id: int) -> dict[str, int]:
        """Member address -> leader score for ``round_id`` (from ``SeatClaimed``)."""
        return {seat.node: seat.leader_score for seat in self.seats(round_id)}

    def leader(self, round_id: int) -> str | None:
        """The member with the lowest leader score (rank 0); None while nobody is seated."""
        order = sortition.leader_order(self.leader_scores(round_id))
        return order[0] if order else None

    def proposer_order(self, round_id: int) -> list[str]:
        """Members in the order they may propose: lowest leader score first (ranks 0, 1, ...).

        Only the first ``sortition.PROPOSER_RANKS`` ever get a turn.
        """
        return sortition.leader_order(self.leader_scores(round_id))

    def proposer_scores(self, round_id: int) -> list[int]:
        """The contract's stored ``PROPOSER_RANKS`` lowest leader scores of ``round_id``, ascending.

        An entry of ``2**64 - 1`` is empty. The contract ranks a proposer by these alone.
        """
        return [int(score) for score in self._view("proposerScores", round_id)]

    def has_voted(self, round_id: int, address: str) -> bool:
        """Whether ``address`` voted on ``round_id``'s current proposal (a rejected one's votes do not count)."""
        return int(self._view("voteOf", round_id, to_checksum_address(address))) != 0

    def _immutable(self, fn_name: str) -> int:
        """A constructor parameter the contract stores ``immutable``: read once, then remembered."""
        if fn_name not in self._immutables:
            self._immutables[fn_name] = int(self._view(fn_name))
        return self._immutables[fn_name]

    def approval_threshold_bps(self) -> int:
        return self._immutable("approvalThresholdBps")

    def min_committee_size(self) -> int:
        return self._immutable("minCommitteeSize")

    def leader_blocks(self) -> int:
        """Blocks each proposer in rank order has before the next-ranked member may propose."""
        return self._immutable("leaderBlocks")

    def max_sample_count(self) -> int:
        """The most samples one submission may claim (the cap on one update's aggregation weight)."""
        return self._immutable("maxSampleCount")

    def min_stake(self) -> int:
        """Smallest stake (wei) a node may register with."""
        return int(self._view("minStake"))

    def total_stake(self) -> int:
        """Total stake of all registered nodes (wei): ``W`` of the next round to open."""
        return int(self._view("totalStake"))

    def node_count(self) -> int:
        """Number of registered nodes."""
        return int(self._view("nodeCount"))

    # ------------------------------------------------------------------ events

    def _logs(self, event_name: str, *, blocks: tuple[int, int] | None = None, **filters: Any) -> list[Any]:
        """``event_name``'s logs matching ``filters``, from the deployment block to the head or within ``blocks``."""
        event = getattr(self.contract.events, event_name)
        head = int(self.w3.eth.block_number) if blocks is None else min(blocks[1], int(self.w3.eth.block_number))
        logs: list[Any] = []
        start = self.deployment_block if blocks is None else max(blocks[0], self.deployment_block)
        while start <= head:
            end = min(start + self._log_chunk_blocks - 1, head)
            logs.extend(event.get_logs(argument_filters=filters or None, from_block=start, to_block=end))
            start = end + 1
        return sorted(logs, key=lambda log: (log["blockNumber"], log["logIndex"]))

    @staticmethod
    def _where(log: Any) -> dict[str, Any]:
        return {"block_number": int(log["blockNumber"]), "tx_hash": log["transactionHash"].to_0x_hex()}

    def registrations(self) -> list[NodeRegistration]:
        """Every ``NodeRegistered`` event, in chain order."""
        return [
            NodeRegistration(
                node=log["args"]["node"],
                stake=log["args"]["stake"],
                public_key=(log["args"]["publicKeyX"], log["args"]["publicKeyY"]),
                first_eligible_round=log["args"]["firstEligibleRound"],
                **self._where(log),
            )
            for log in self._logs("NodeRegistered")
        ]

    def seats(self, round_id: int) -> list[SeatClaim]:
        """Every seat claimed in ``round_id``, in chain order.

        Claims land only in the round's claim window (the blocks after the
        submission deadline up to the claim deadline), so only those blocks are
        read: the daemon asks for the proposer order on every tick of a round,
        and a scan from the deployment block would grow with the chain.
        """
        info = self.round_info(round_id)
        if info.claim_deadline == 0:  # never opened
            return []
        return [
            SeatClaim(
                round_id=round_id,
                node=log["args"]["node"],
                output=bytes(log["args"]["output"]),
                weight=log["args"]["weight"],
                leader_score=log["args"]["leaderScore"],
                **self._where(log),
            )
            for log in self._logs("SeatClaimed", blocks=(info.submission_deadline + 1, info.claim_deadline),
                                  round=round_id)
        ]

    def round_opened(self, round_id: int) -> RoundOpened | None:
        """The ``RoundOpened`` event of ``round_id``, or None if it never opened."""
        logs = self._logs("RoundOpened", round=round_id)
        if not logs:
            return None
        a = logs[0]["args"]
        return RoundOpened(
            round_id=round_id,
            seed=bytes(a["seed"]),
            global_cid=bytes(a["globalCid"]),
            submission_deadline=a["submissionDeadline"],
            claim_deadline=a["claimDeadline"],
            proposal_deadline=a["proposalDeadline"],
            vote_deadline=a["voteDeadline"],
            expected_committee_size=a["expectedCommitteeSize"],
            eligible_nodes=a["eligibleNodes"],
            total_stake=a["totalStake"],
            **self._where(logs[0]),
        )

    def submissions(self, round_id: int) -> list[Submission]:
        """Every update submitted in ``round_id``, in chain order."""
        return [
            Submission(
                round_id=round_id,
                node=log["args"]["node"],
                cid=bytes(log["args"]["cid"]),
                sample_count=log["args"]["sampleCount"],
                manifest_hash=bytes(log["args"]["manifestHash"]),
                **self._where(log),
            )
            for log in self._logs("UpdateSubmitted", round=round_id)
        ]

    def proposal(self, round_id: int, *, blocks: tuple[int, int] | None = None) -> Proposal | None:
        """The latest aggregate proposed in ``round_id`` (the one a commit or the current vote is on), or None.

        A round whose proposal was rejected and fell back to the next rank has
        more than one (``proposals``). ``blocks`` (first, last; inclusive) narrows
        the scan, e.g. to the current attempt's window from ``round_info``
        (``turns_start`` .. ``proposal_deadline``), for a caller that must answer quickly.
        """
        found = self.proposals(round_id, blocks=blocks)
        return found[-1] if found else None

    def proposals(self, round_id: int, *, blocks: tuple[int, int] | None = None) -> list[Proposal]:
        """Every aggregate proposed in ``round_id``, in chain order (one per attempt; see ``proposal_rejections``)."""
        return [
            Proposal(
                round_id=round_id,
                proposer=log["args"]["proposer"],
                global_cid=bytes(log["args"]["globalCid"]),
                accepted_root=bytes(log["args"]["acceptedRoot"]),
                accepted_count=int(log["args"]["acceptedCount"]),
                rank=log["args"]["rank"],
                **self._where(log),
            )
            for log in self._logs("AggregateProposed", blocks=blocks, round=round_id)
        ]

    def proposal_rejections(self, round_id: int) -> list[ProposalRejection]:
        """Every ``ProposalRejected`` of ``round_id``, in chain order: the fallbacks to the next rank."""
        return [
            ProposalRejection(
                round_id=round_id,
                rejected_rank=log["args"]["rejectedRank"],
                next_rank=log["args"]["nextRank"],
                turns_start=log["args"]["turnsStart"],
                proposal_deadline=log["args"]["proposalDeadline"],
                vote_deadline=log["args"]["voteDeadline"],
                **self._where(log),
            )
            for log in self._logs("ProposalRejected", round=round_id)
        ]

    def votes(self, round_id: int) -> list[Vote]:
        """Every vote cast in ``round_id``, in chain order."""
        return [
            Vote(
                round_id=round_id,
                voter=log["args"]["voter"],
                approve=log["args"]["approve"],
                weight=log["args"]["weight"],
                **self._where(log),
            )
            for log in self._logs("VoteCast", round=round_id)
        ]

    def round_outcome(self, round_id: int) -> RoundOutcome | None:
        """How ``round_id`` ended (``RoundCommitted`` or ``RoundFailed``), or None while it is undecided."""
        committed = self._logs("RoundCommitted", round=round_id)
        if committed:
            a = committed[0]["args"]
            return RoundOutcome(
                round_id=round_id,
                committed=True,
                global_cid=bytes(a["globalCid"]),
                approval_weight=a["approvalWeight"],
                committee_weight=a["committeeWeight"],
                failure_reason=None,
                **self._where(committed[0]),
            )
        failed = self._logs("RoundFailed", round=round_id)
        if failed:
            return RoundOutcome(
                round_id=round_id,
                committed=False,
                global_cid=None,
                approval_weight=None,
                committee_weight=None,
                failure_reason=FailureReason(failed[0]["args"]["reason"]),
                **self._where(failed[0]),
            )
        return None


def deploy_coordinator(
    w3: Web3,
    deployer: LocalAccount,
    *,
    approval_threshold_bps: int = 6666,
    min_committee_size: int = 2,
    leader_blocks: int = DEFAULT_LEADER_BLOCKS,
    min_stake_wei: int = DEFAULT_MIN_STAKE_WEI,
    max_sample_count: int = DEFAULT_MAX_SAMPLE_COUNT,
    gas_margin: float = DEFAULT_GAS_MARGIN,
) -> CoordinatorClient:
    """Deploy FlareCoordinator from the committed artifact; ``deployer`` becomes its owner.

    ``approval_threshold_bps`` in (0, 10000] is the share of the seated committee
    whose approvals commit a round (6666 = two thirds, rounded down so 2 of 3 and
    4 of 6 commit); ``min_committee_size`` is the fewest seats a round may go
    on with (the contract refuses one so small that a single seat could commit:
    ``min_committee_size · approval_threshold_bps`` must exceed 10000);
    ``leader_blocks`` ≥ 1 the blocks each proposer in rank order has before the
    next one may propose; ``min_stake_wei`` ≥ 1 the smallest stake a node may
    register with; ``max_sample_count`` ≥ 1 the most samples one submission may
    claim, which caps one update's aggregation weight.
    """
    if not 0 < approval_threshold_bps <= 10_000:
        raise ConfigError(f"approval_threshold_bps must be in (0, 10000], got {approval_threshold_bps}")
    if not 1 <= min_committee_size <= 0xFFFF:
        raise ConfigError(f"min_committee_size must be in [1, 65535], got {min_committee_size}")
    if not 1 <= leader_blocks < 2**64:
        raise ConfigError(f"leader_blocks must be at least 1, got {leader_blocks}")
    if not 1 <= min_stake_wei < 2**96:
        raise ConfigError(f"min_stake_wei must be in [1, 2^96), got {min_stake_wei}")
    if not 1 <= max_sample_count < 2**64:
        raise ConfigError(f"max_sample_count must be in [1, 2^64), got {max_sample_count}")
    artifact = load_artifact(CONTRACT_NAME)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    data = factory.constructor(
        approval_threshold_bps, min_committee_size, leader_blocks, min_stake_wei, max_sample_count
    ).data_in_transaction
    result = send_transaction(
        w3,
        deployer,
        to=None,
        data=data,
        label=f"deploy {CONTRACT_NAME}",
        decoder=ErrorDecoder(artifact.abi),
        gas_margin=gas_margin,
    )
    address = result.receipt["contractAddress"]
    if address is None:
        raise ChainError(f"deploying {CONTRACT_NAME} mined (tx {result.tx_hash}) without a contract address")
    return CoordinatorClient(
        w3, address, deployment_block=result.block_number, artifact=artifact, gas_margin=gas_margin
    )
