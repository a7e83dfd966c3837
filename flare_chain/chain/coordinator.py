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
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import is_address, to_checksum_address
from web3 import Web3
from web3.logs import DISCARD

from flare_chain.chain.artifacts import ContractArtifact, load_artifact
from flare_chain.chain.records import (
    FailureReason,
    NodeRegistration,
    Proposal,
    RoundInfo,
    RoundOpened,
    RoundOutcome,
    RoundStatus,
    Submission,
    TxResult,
    Vote,
)
from flare_chain.chain.revert import ErrorDecoder
from flare_chain.chain.transactions import DEFAULT_GAS_MARGIN, call_view, send_transaction
from flare_chain.errors import ChainError, ConfigError

__all__ = ["CONTRACT_NAME", "CoordinatorClient", "deploy_coordinator", "sort_addresses"]

CONTRACT_NAME = "FlareCoordinator"
DEFAULT_LOG_CHUNK_BLOCKS = 10_000


def sort_addresses(addresses: Iterable[str]) -> list[str]:
    """Checksummed ``addresses`` in the order the contract requires (ascending as uint160).

    Raises ConfigError on an invalid or repeated address, naming it.
    """
    seen: dict[int, str] = {}
    for address in addresses:
        if not is_address(address):
            raise ConfigError(f"accepted list holds {address!r}, which is not an Ethereum address")
        key = int(address, 16)
        if key in seen:
            raise ConfigError(
                f"accepted list names {to_checksum_address(address)} twice; list each node once"
            )
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

    def __repr__(self) -> str:
        return f"CoordinatorClient(address={self.address}, deployment_block={self.deployment_block})"

    # ------------------------------------------------------------------ transactions

    def _send(self, account: LocalAccount, fn_name: str, *args: Any) -> TxResult:
        data = self.contract.encode_abi(fn_name, args=list(args))
        return send_transaction(
            self.w3,
            account,
            to=self.address,
            data=data,
            label=fn_name,
            decoder=self._decoder,
            gas_margin=self._gas_margin,
        )

    def register_node(self, account: LocalAccount, validator: bool = True) -> TxResult:
        """Register ``account`` once; a validator judges rounds opened after this."""
        return self._send(account, "registerNode", validator)

    def initialize_global_adapter(self, owner: LocalAccount, cid: bytes) -> TxResult:
        """Set the starting global adapter's binary CID (owner, once, before the first round)."""
        return self._send(owner, "initializeGlobalAdapter", bytes(cid))

    def open_round(
        self, owner: LocalAccount, submission_blocks: int, proposal_blocks: int, voting_blocks: int
    ) -> tuple[int, TxResult]:
        """Open the next round (owner); phase lengths in blocks. Returns ``(round_id, result)``."""
        result = self._send(owner, "openRound", submission_blocks, proposal_blocks, voting_blocks)
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

    def propose_aggregate(
        self, account: LocalAccount, round_id: int, cid: bytes, accepted: Sequence[str], *, sort: bool = True
    ) -> TxResult:
        """Propose the aggregate's binary CID and the submitters it used (committee member).

        With ``sort=True`` (the default) ``accepted`` is validated and put in the
        ascending order the contract requires; ``sort=False`` sends it untouched.
        """
        nodes = sort_addresses(accepted) if sort else [to_checksum_address(a) for a in accepted]
        return self._send(account, "proposeAggregate", round_id, bytes(cid), nodes)

    def vote(self, account: LocalAccount, round_id: int, approve: bool) -> TxResult:
        """Vote on the round's proposal (committee member, once)."""
        return self._send(account, "vote", round_id, approve)

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

    def round_info(self, round_id: int) -> RoundInfo:
        """On-chain state of ``round_id`` (status NONE and zeros for a round never opened)."""
        (status, seed, sub_dl, prop_dl, vote_dl, size, count, approvals, rejections, proposal_hash) = (
            self._view("roundInfo", round_id)
        )
        return RoundInfo(
            round_id=round_id,
            status=RoundStatus(status),
            seed=bytes(seed),
            submission_deadline=sub_dl,
            proposal_deadline=prop_dl,
            vote_deadline=vote_dl,
            committee_size=size,
            submission_count=count,
            approvals=approvals,
            rejections=rejections,
            proposal_hash=bytes(proposal_hash),
        )

    def submission_hash(self, round_id: int, node: str) -> bytes:
        """The 32-byte record stored for ``node``'s submission (zeros if none); see ``submission_record``."""
        return bytes(self._view("submissionHash", round_id, to_checksum_address(node)))

    def submission_record(self, cid: bytes, sample_count: int, manifest_hash: bytes) -> bytes:
        """What the contract stores for a submission with these fields (computed by the contract)."""
        return bytes(self._view("submissionRecord", bytes(cid), sample_count, bytes(manifest_hash)))

    def proposal_record(self, cid: bytes, accepted: Sequence[str]) -> bytes:
        """The proposal hash the contract stores for this CID and accepted list."""
        return bytes(self._view("proposalRecord", bytes(cid), [to_checksum_address(a) for a in accepted]))

    def is_registered(self, address: str) -> bool:
        return bool(self._view("isRegistered", to_checksum_address(address)))

    def is_committee_member(self, round_id: int, address: str) -> bool:
        """Whether ``address`` may propose and vote in ``round_id`` (False for unopened rounds)."""
        return bool(self._view("isCommitteeMember", round_id, to_checksum_address(address)))

    def has_voted(self, round_id: int, address: str) -> bool:
        return int(self._view("voteOf", round_id, to_checksum_address(address))) != 0

    def approval_threshold_bps(self) -> int:
        return int(self._view("approvalThresholdBps"))

    def min_committee_size(self) -> int:
        return int(self._view("minCommitteeSize"))

    def validator_count(self) -> int:
        """Validators registered so far: the committee size of the next round to open."""
        return int(self._view("validatorCount"))

    # ------------------------------------------------------------------ events

    def _logs(self, event_name: str, **filters: Any) -> list[Any]:
        event = getattr(self.contract.events, event_name)
        head = int(self.w3.eth.block_number)
        logs: list[Any] = []
        start = self.deployment_block
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
                validator=log["args"]["validator"],
                first_eligible_round=log["args"]["firstEligibleRound"],
                **self._where(log),
            )
            for log in self._logs("NodeRegistered")
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
            proposal_deadline=a["proposalDeadline"],
            vote_deadline=a["voteDeadline"],
            committee_size=a["committeeSize"],
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

    def proposal(self, round_id: int) -> Proposal | None:
        """The aggregate proposed in ``round_id``, or None if nobody proposed."""
        logs = self._logs("AggregateProposed", round=round_id)
        if not logs:
            return None
        a = logs[0]["args"]
        return Proposal(
            round_id=round_id,
            proposer=a["proposer"],
            global_cid=bytes(a["globalCid"]),
            accepted=tuple(a["accepted"]),
            accepted_samples=a["acceptedSamples"],
            **self._where(logs[0]),
        )

    def votes(self, round_id: int) -> list[Vote]:
        """Every vote cast in ``round_id``, in chain order."""
        return [
            Vote(
                round_id=round_id,
                voter=log["args"]["voter"],
                approve=log["args"]["approve"],
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
                approvals=a["approvals"],
                committee_size=a["committeeSize"],
                failure_reason=None,
                **self._where(committed[0]),
            )
        failed = self._logs("RoundFailed", round=round_id)
        if failed:
            return RoundOutcome(
                round_id=round_id,
                committed=False,
                global_cid=None,
                approvals=None,
                committee_size=None,
                failure_reason=FailureReason(failed[0]["args"]["reason"]),
                **self._where(failed[0]),
            )
        return None


def deploy_coordinator(
    w3: Web3,
    deployer: LocalAccount,
    *,
    approval_threshold_bps: int = 6667,
    min_committee_size: int = 1,
    gas_margin: float = DEFAULT_GAS_MARGIN,
) -> CoordinatorClient:
    """Deploy FlareCoordinator from the committed artifact; ``deployer`` becomes its owner.

    ``approval_threshold_bps`` in (0, 10000] is the committee share whose approvals
    commit a round (6667 ≈ two thirds); ``min_committee_size`` ≥ 1 is the smallest
    committee a round may open with.
    """
    if not 0 < approval_threshold_bps <= 10_000:
        raise ConfigError(f"approval_threshold_bps must be in (0, 10000], got {approval_threshold_bps}")
    if not 1 <= min_committee_size <= 0xFFFF:
        raise ConfigError(f"min_committee_size must be in [1, 65535], got {min_committee_size}")
    artifact = load_artifact(CONTRACT_NAME)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    data = factory.constructor(approval_threshold_bps, min_committee_size).data_in_transaction
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
