"""Stake-weighted VRF sortition: the committee rule of ``VrfSortitionCommittee.sol``, in pure Python.

A node with stake ``w`` sits on the committee of a round with expected size
``k`` and total eligible stake ``W`` when its VRF output ``beta`` on the round's
input satisfies ``0 < beta < threshold(k, w, W)``, where
``threshold = min(floor(2^256·k·w / W), 2^256 − 1)``. That is the rule
``beta < 2^256·k·w/W`` of cryptographic sortition (Algorand's, with one seat
per node instead of sub-users) up to boundary values of probability 2^-256; the
integers here are exactly the contract's, so a node knows before sending a
claim whether the contract will seat it.

The VRF input binds chain, contract, round and seed (``vrf_alpha``), so a proof
is valid for one round of one deployment only.

The second half of the module is the committee's security in numbers: with many
small stakes, the seats won by a coalition holding a share ``f`` of the stake
are Poisson(``k·f``) and the honest seats an independent Poisson(``k·(1−f)``)
(the limit of the binomial draw; with ``nodes`` equal stakes the exact binomial
model is used instead). From these come the probabilities that a coalition
holds a majority of a committee, holds enough seats to commit on its own, or can
block a commit, and that a committee is too small to act.

Everything here is pure: ints, bytes and floats in, ints, bools and floats out.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from eth_utils import is_address, keccak, to_canonical_address

from flare_chain.errors import ConfigError

__all__ = [
    "ALPHA_LEN",
    "BPS",
    "DEFAULT_EXPECTED_COMMITTEE_SIZE",
    "OUTPUT_SPACE",
    "CommitteeRisk",
    "committee_risk",
    "is_selected",
    "leader_order",
    "leader_score",
    "rank_of",
    "selection_probability",
    "threshold",
    "vrf_alpha",
]

OUTPUT_SPACE = 2**256
"""Number of possible VRF outputs (32-byte SHA-256 digests read as big-endian integers)."""
ALPHA_LEN = 32 + 20 + 32 + 32
"""Bytes of a round's VRF input: chain id, contract address, round, seed."""
BPS = 10_000
DEFAULT_EXPECTED_COMMITTEE_SIZE = 20
"""The expected committee size ``k`` the client opens rounds with unless told otherwise."""
_MAX_STAKE = 2**96  # the contract keeps stakes and their total in 96 bits


def vrf_alpha(chain_id: int, contract: str, round_id: int, seed: bytes) -> bytes:
    """The VRF input of a round: ``abi.encodePacked(uint256 chainid, address contract, uint256 round, bytes32 seed)``.

    116 bytes: chain id (32, big-endian), contract address (20), round (32),
    seed (32). Byte-identical to the contract's ``vrfInput(round)``.
    """
    if not is_address(contract):
        raise ConfigError(f"contract {contract!r} is not an Ethereum address")
    if not 0 <= chain_id < 2**256 or not 0 <= round_id < 2**256:
        raise ConfigError(f"chain id and round must be uint256, got {chain_id} and {round_id}")
    seed = bytes(seed)
    if len(seed) != 32:
        raise ConfigError(f"round seed must be 32 bytes, got {len(seed)}")
    return chain_id.to_bytes(32, "big") + to_canonical_address(contract) + round_id.to_bytes(32, "big") + seed


def _check_weights(k: int, stake: int, total_stake: int) -> None:
    if not 1 <= k < 2**16:
        raise ConfigError(f"expected committee size k must be in [1, 65535], got {k}")
    if not 0 <= stake <= total_stake < _MAX_STAKE or total_stake == 0:
        raise ConfigError(
            f"need 0 <= stake <= total stake < 2^96 and a positive total, got stake {stake} of {total_stake}"
        )


def threshold(k: int, stake: int, total_stake: int) -> int:
    """The bound a node's VRF output must be under: ``min(floor(2^256·k·w / W), 2^256 − 1)``.

    The contract's ``selectionThreshold``, computed exactly on Python ints.
    """
    _check_weights(k, stake, total_stake)
    return min((k * stake * OUTPUT_SPACE) // total_stake, OUTPUT_SPACE - 1)


def _as_int(beta: bytes | int) -> int:
    if isinstance(beta, int):
        value = beta
    else:
        if len(beta) != 32:
            raise ConfigError(f"VRF output must be 32 bytes, got {len(beta)}")
        value = int.from_bytes(beta, "big")
    if not 0 <= value < OUTPUT_SPACE:
        raise ConfigError("VRF output out of range")
    return value


def is_selected(beta: bytes | int, k: int, stake: int, total_stake: int) -> bool:
    """Whether output ``beta`` wins a seat: ``0 < beta < threshold(k, stake, total_stake)``.

    Output 0 is reserved on chain for "no seat" (probability 2^-256), so it never wins.
    """
    value = _as_int(beta)
    return 0 < value < threshold(k, stake, total_stake)


def selection_probability(k: int, stake: int, total_stake: int) -> float:
    """Chance that a node with ``stake`` of ``total_stake`` wins a seat: ``min(1, k·w/W)``."""
    _check_weights(k, stake, total_stake)
    return min(1.0, k * stake / total_stake)


def leader_score(output: bytes) -> int:
    """``keccak256(abi.encode(output))`` as an integer: what orders a round's proposers (lowest leads).

    The contract's ``leaderScore``. Ranking by the raw output would favour
    small stakes, whose seated outputs are uniform below a small threshold;
    the hash is uniform for every seat, so each seat is equally likely to lead.
    """
    return int.from_bytes(keccak(_as_int(output).to_bytes(32, "big")), "big")


def leader_order(outputs: Mapping[str, bytes]) -> list[str]:
    """Members in proposing order: lowest leader score first (the leader), ties by address."""
    return sorted(outputs, key=lambda a: (leader_score(outputs[a]), int(a, 16)))


def rank_of(outputs: Mapping[str, bytes], member: str) -> int:
    """How many members have a lower leader score than ``member`` (the contract's proposer rank)."""
    own = leader_score(outputs[member])
    return sum(1 for out in outputs.values() if leader_score(out) < own)


# -- committee security --------------------------------------------------------------------------


def _poisson(mean: float) -> list[float]:
    """pmf of Poisson(mean) over 0..n, n far enough into the tail that the rest is < 1e-16."""
    if mean == 0:
        return [1.0]
    n = int(mean + 12 * math.sqrt(mean) + 30)
    return [math.exp(i * math.log(mean) - mean - math.lgamma(i + 1)) for i in range(n + 1)]


def _binomial(n: int, p: float) -> list[float]:
    if p >= 1:
        return [0.0] * n + [1.0]
    if p <= 0:
        return [1.0]
    return [math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(n + 1)]


def _joint(k: float, share: float, nodes: int | None) -> Iterator[tuple[int, int, float]]:
    """``(attacker seats, honest seats, probability)`` over every outcome of one draw."""
    if nodes is None:
        attackers, honest = _poisson(k * share), _poisson(k * (1 - share))
    else:
        bad = round(share * nodes)
        p = min(1.0, k / nodes)
        attackers, honest = _binomial(bad, p), _binomial(nodes - bad, p)
    for a, pa in enumerate(attackers):
        for h, ph in enumerate(honest):
            yield a, h, pa * ph


@dataclass(frozen=True)
class CommitteeRisk:
    """What a coalition with ``attacker_share`` of the stake can expect from one committee draw.

    ``majority``: it holds more than half the seats. ``capture``: it holds the
    approval threshold of seats, so it commits any proposal alone (and the
    committee is big enough to act). ``blocking``: the honest seats alone fall
    short of the threshold, so it can stall the round. ``too_small``: fewer
    than ``min_committee`` seats, the round fails whoever holds them.
    """

    k: float
    attacker_share: float
    threshold_bps: int
    min_committee: int
    nodes: int | None
    majority: float
    capture: float
    blocking: float
    too_small: float


def committee_risk(
    k: float,
    attacker_share: float,
    *,
    threshold_bps: int = 6666,
    min_committee: int = 1,
    nodes: int | None = None,
) -> CommitteeRisk:
    """The probabilities of ``CommitteeRisk`` for expected committee size ``k``.

    ``nodes=None`` is the many-small-stakes (Poisson) model; ``nodes=n`` has ``n``
    equal stakes of which the coalition holds ``round(attacker_share·n)``.
    Deterministic; exact up to float rounding and a truncated tail below 1e-15.
    """
    if not 0 <= attacker_share <= 1:
        raise ConfigError(f"attacker_share must be in [0, 1], got {attacker_share}")
    if not k > 0:
        raise ConfigError(f"k must be positive, got {k}")
    if not 0 < threshold_bps <= BPS:
        raise ConfigError(f"threshold_bps must be in (0, 10000], got {threshold_bps}")
    if nodes is not None and nodes < 1:
        raise ConfigError(f"nodes must be at least 1, got {nodes}")
    majority = capture = blocking = too_small = 0.0
    for a, h, p in _joint(k, attacker_share, nodes):
        seats = a + h
        if seats < max(1, min_committee):
            too_small += p
            continue
        if a > h:
            majority += p
        if a * BPS >= threshold_bps * seats:
            capture += p
        if h * BPS < threshold_bps * seats:
            blocking += p
    return CommitteeRisk(
        k=k,
        attacker_share=attacker_share,
        threshold_bps=threshold_bps,
        min_committee=min_committee,
        nodes=nodes,
        majority=majority,
        capture=capture,
        blocking=blocking,
        too_small=too_small,
    )
