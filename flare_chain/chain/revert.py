"""Turn revert data into ``ChainError``s that name the contract's custom error and the fix.

Solidity custom errors arrive as 4-byte selector + ABI-encoded arguments. The
decoder is built from a contract ABI's ``error`` entries (plus the built-in
``Error(string)`` and ``Panic(uint256)``), so it works for any compiled contract.
Where the revert data comes from depends on the endpoint: JSON-RPC nodes (anvil,
geth) hand it over as hex in ``ContractLogicError.data``; eth-tester only puts the
bytes' ``repr`` into the exception message, so that is parsed as well.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address

from flare_chain.chain.records import RoundStatus
from flare_chain.errors import ChainError

__all__ = ["DecodedError", "ErrorDecoder", "revert_data_from_exception"]

_ERROR_STRING = {"type": "error", "name": "Error", "inputs": [{"name": "message", "type": "string"}]}
_PANIC = {"type": "error", "name": "Panic", "inputs": [{"name": "code", "type": "uint256"}]}
_ENUMS: dict[str, type[RoundStatus]] = {"enum FlareCoordinator.RoundStatus": RoundStatus}

# What the caller should do about each coordinator error; appended to the message.
_HINTS: dict[str, str] = {
    "OwnableUnauthorizedAccount": "only the contract owner may call this; send it from the deployer account",
    "CoordinatorAlreadyRegistered": "this address is already registered; registration happens once",
    "CoordinatorNotRegistered": "register the node first (register_node, with a stake and its public key)",
    "CoordinatorStakeTooLow": "send at least min_stake wei with the registration",
    "CoordinatorStakeOverflow": "the total stake would not fit 96 bits; register with a smaller stake",
    "CoordinatorKeyNotSender": "register the sender's own public key: its address is the last 20 bytes of keccak(x || y)",
    "CoordinatorInvalidCidLength": "pass the binary CID (2..64 bytes), not its text form",
    "CoordinatorGlobalAdapterAlreadyInitialized": "the global adapter is set once; later ones come from rounds",
    "CoordinatorFederationSpecAlreadySet": "the federation spec is set once; deploy a new coordinator for another spec",
    "CoordinatorFederationSpecAfterFirstRound": "set the federation spec before opening the first round",
    "CoordinatorGlobalAdapterNotInitialized": "initialize the global adapter before opening a round",
    "CoordinatorPreviousRoundNotFinalized": "wait for the previous round to commit or call finalize_round after its deadline",
    "CoordinatorPhaseOutOfBounds": ("each phase is 1..100800 blocks and the claim window 3..256 "
                                    "(phase 0 submission, 1 claim, 2 proposal, 3 voting); see phaseBounds()"),
    "CoordinatorInvalidExpectedCommitteeSize": "the expected committee size k must be between the minimum committee size and 1000",
    "CoordinatorOneSeatCommits": ("raise min_committee_size or the approval threshold so that "
                                  "min_committee_size x threshold_bps > 10000: one seat must never commit alone"),
    "CoordinatorInvalidMinCommitteeSize": "min_committee_size must be in [1, 1000]",
    "CoordinatorInvalidLeaderBlocks": "leader_blocks must be in [1, 100800]",
    "CoordinatorInvalidMaxSampleCount": "max_sample_count must be at least 1",
    "CoordinatorSampleCountAboveCap": "claim at most the deployment's max_sample_count samples (maxSampleCount())",
    "CoordinatorTooFewNodes": "register at least min_committee_size nodes before opening a round",
    "CoordinatorRoundNotOpen": "use the current open round (current_round / round_info)",
    "CoordinatorLateSubmission": "the submission deadline has passed; submit in the next round",
    "CoordinatorDuplicateSubmission": "this node already submitted for this round; one submission per round",
    "CoordinatorZeroSampleCount": "sample_count must be at least 1",
    "CoordinatorOutsideClaimWindow": "claim seats after the submission deadline and until the claim deadline",
    "CoordinatorClaimSeedUnavailable": ("the contract reads a round's claim seed only in the 256 blocks after its "
                                        "submission deadline; use CoordinatorClient.claim_seed, which reads the "
                                        "block hash from the node"),
    "CoordinatorNotEligible": ("a node sits on committees of rounds opened after it registered and before "
                               "it asked to unbond"),
    "CoordinatorStakeTooHigh": "one node may stake at most 2^80 wei; spread a larger stake over several nodes",
    "CoordinatorAlreadyUnbonding": "this node already asked to unbond; withdraw once the delay has passed",
    "CoordinatorNotUnbonding": "call request_unbond first; the stake is withdrawable after the unbonding delay",
    "CoordinatorUnbondingNotOver": "wait until the block the error names, then withdraw",
    "CoordinatorStillEligible": "wait until the round the error names has committed or failed, then withdraw",
    "CoordinatorWithdrawFailed": "the node's address refused the payment; withdraw from an address that accepts ether",
    "CoordinatorAlreadySeated": "this node already holds a seat on this round's committee",
    "CoordinatorNotSelected": "the VRF output is not under this node's threshold: it has no seat this round",
    "CoordinatorClaimsStillOpen": "wait until the block after the claim deadline",
    "CoordinatorCommitteeTooSmall": "too few seats were claimed; finalize_round fails the round, open the next one",
    "CoordinatorNotLeader": "a lower-ranked member has the turn; propose from the block the error names",
    "CoordinatorVoteOnOtherProposal": ("the proposal reviewed was rejected (or not made yet); review the round's "
                                       "current proposal and vote on that"),
    "CoordinatorRankHasNoTurn": ("only the lowest-scored members propose, and after a rejected proposal only "
                                 "ranks above it; this member votes instead"),
    "CoordinatorNotCommitteeMember": "only members who claimed a seat for this round may propose or vote",
    "CoordinatorProposalClosed": "the proposal deadline has passed; finalize the round instead",
    "CoordinatorEmptyAcceptedSet": "accept at least one submitted update",
    "CoordinatorNoProposal": "votes need a pending proposal for the round",
    "CoordinatorVoteClosed": "the vote deadline has passed; finalize the round instead",
    "CoordinatorDuplicateVote": "each committee member votes once per round",
    "CoordinatorNothingToFinalize": "the round is final already or its deadline has not passed yet",
}


@dataclass(frozen=True)
class DecodedError:
    """A decoded revert: the error's name and its arguments in declaration order."""

    name: str
    args: tuple[Any, ...]
    arg_names: tuple[str, ...]

    def signature_text(self) -> str:
        """``Name(arg=value, ...)`` with bytes as hex, for messages."""
        shown = ", ".join(f"{n}={_show(v)}" for n, v in zip(self.arg_names, self.args, strict=True))
        return f"{self.name}({shown})"


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, RoundStatus):
        return value.name
    return str(value)


def _type_string(param: Mapping[str, Any]) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_type_string(c) for c in param["components"])
        return f"({inner}){kind[5:]}"
    return kind


class ErrorDecoder:
    """Decode revert data against the custom errors declared in an ABI."""

    def __init__(self, abi: Sequence[Mapping[str, Any]]) -> None:
        self._errors: dict[bytes, Mapping[str, Any]] = {}
        for entry in [*abi, _ERROR_STRING, _PANIC]:
            if entry.get("type") != "error":
                continue
            types = ",".join(_type_string(p) for p in entry["inputs"])
            self._errors[keccak(text=f"{entry['name']}({types})")[:4]] = entry

    def decode(self, data: bytes) -> DecodedError | None:
        """The error ``data`` encodes, or None if the selector is unknown or the data malformed."""
        entry = self._errors.get(data[:4]) if len(data) >= 4 else None
        if entry is None:
            return None
        inputs = entry["inputs"]
        try:
            values = abi_decode([_type_string(p) for p in inputs], data[4:])
        except Exception:
            return None
        args = tuple(_convert(p, v) for p, v in zip(inputs, values, strict=True))
        return DecodedError(entry["name"], args, tuple(p["name"] for p in inputs))

    def chain_error(self, label: str, data: bytes | None, fallback: str) -> ChainError:
        """A ChainError for ``label`` (e.g. ``submitUpdate``) reverting with ``data``."""
        decoded = self.decode(data) if data else None
        if decoded is None:
            shown = f"data 0x{data.hex()}" if data else fallback
            return ChainError(f"{label} reverted ({shown}); check the call's arguments and the round's state")
        default = (
            "the VRF proof does not verify for this node's key and this round's input"
            if decoded.name.startswith("VRFVerifier")
            else "see FlareCoordinator.sol for when this error is raised"
        )
        hint = _HINTS.get(decoded.name, default)
        return ChainError(
            f"{label} reverted with {decoded.signature_text()}: {hint}",
            error_name=decoded.name,
            error_args=decoded.args,
        )


def _convert(param: Mapping[str, Any], value: Any) -> Any:
    enum = _ENUMS.get(str(param.get("internalType", "")))
    if enum is not None:
        return enum(value)
    if param["type"] == "address":
        return to_checksum_address(value)
    return value


_BYTES_LITERAL = re.compile(r"""b(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")
_HEX = re.compile(r"0x[0-9a-fA-F]{8,}")


def revert_data_from_exception(exc: BaseException) -> bytes | None:
    """Best effort: the raw revert data carried by an exception from a call or gas estimate."""
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    if isinstance(data, bytes):
        return data
    text = " ".join(str(a) for a in exc.args)
    if (match := _BYTES_LITERAL.search(text)) is not None:
        try:
            literal = ast.literal_eval(match.group(0))
        except (ValueError, SyntaxError):
            literal = None
        if isinstance(literal, bytes):
            return literal
    hex_match = _HEX.search(text) if "revert" in text.lower() else None
    if hex_match is not None and len(hex_match.group(0)) % 2 == 0:
        return bytes.fromhex(hex_match.group(0)[2:])
    return None
