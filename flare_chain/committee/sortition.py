"""Stake-weighted VRF sortition: the committee rule of ``VrfSortitionCommittee.sol``, in pure Python.

A node with stake ``w`` in a round with expected committee size ``k`` and total
eligible stake ``W`` draws a seat *weight* from its VRF output ``beta`` on the
round's input: a Poisson(``k·w/W``) variate by inverse CDF on hashes of
``beta`` (``seat_weight``). Weight 0 is no seat; a seated member votes with its
weight. Poisson is the one choice that makes the scheme split-proof: the
expected weight is exactly proportional to stake with no cap, and a stake
split over many nodes draws a sum of independent Poissons, which is again
Poisson with the same mean, so splitting or merging stake changes nothing about
an owner's total weight. The integer fixed-point maths below is the contract's,
step for step (``tests/contracts/test_seat_weights.py`` pins them together on
random inputs), so a node knows before it sends a claim what weight the
contract will give it.

Proposers are ranked by ``leader_score``: the least of one hash per unit of
weight, so each unit of seated weight is equally likely to lead.

The VRF input binds chain, contract, round and seed (``vrf_alpha``), so a proof
is valid for one round of one deployment only. The seed is the round's *claim
seed* (``claim_seed``): the seed fixed when the round opened, mixed with the hash
of its submission deadline block. The owner chooses the opening block and so
could re-draw the round seed a block at a time; the deadline block's hash is
unknown when the round opens, so that choice no longer moves the draw. The
contract reads the hash with ``blockhash``, which reaches back 256 blocks, so
the claim window is at most ``MAX_CLAIM_BLOCKS`` long.

The second half of the module is the committee's security in numbers: the
weight held by a coalition with a share ``f`` of the stake is Poisson(``k·f``)
and the honest weight an independent Poisson(``k·(1−f)``), however either side
split its stake. From these come the probabilities that a coalition holds a
majority of a committee's weight, enough to commit on its own, or enough to
block a commit, and that a committee is too light to act.

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
    "MAX_CLAIM_BLOCKS",
    "OUTPUT_SPACE",
    "PROPOSER_RANKS",
    "WEIGHT_BITS",
    "CommitteeRisk",
    "claim_seed",
    "committee_risk",
    "is_selected",
    "leader_order",
    "leader_score",
    "poisson_mean",
    "rank_of",
    "seat_weight",
    "selection_probability",
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
MAX_CLAIM_BLOCKS = 256
"""Longest claim window ``openRound`` accepts: ``blockhash`` reaches 256 blocks back (``phaseBounds()``)."""
PROPOSER_RANKS = 4
"""Members of a committee that may ever propose: the leader and its fallbacks (the contract's ``PROPOSER_RANKS``)."""


def claim_seed(round_seed: bytes, deadline_block_hash: bytes) -> bytes:
    """The seed a round's seats are drawn on: ``keccak256(abi.encode(round_seed, deadline_block_hash))``.

    ``round_seed`` is the seed of the ``RoundOpened`` event (fixed by the owner's
    choice of opening block); ``deadline_block_hash`` the hash of the round's
    submission deadline block, which nobody knows when the round opens.
    Byte-identical to the contract's ``claimSeed(round)``.
    """
    round_seed, deadline_block_hash = bytes(round_seed), bytes(deadline_block_hash)
    if len(round_seed) != 32 or len(deadline_block_hash) != 32:
        raise ConfigError(f"round seed and block hash must be 32 bytes each, got {len(round_seed)} and "
                          f"{len(deadline_block_hash)}")
    if deadline_block_hash == bytes(32):
        raise ConfigError("the submission deadline block hash is zero: the block is not mined yet, or it is "
                          "further back than blockhash reaches; read the block's hash from an RPC node")
    return keccak(round_seed + deadline_block_hash)


def vrf_alpha(chain_id: int, contract: str, round_id: int, seed: bytes) -> bytes:
    """The VRF input of a round: ``abi.encodePacked(uint256 chainid, address contract, uint256 round, bytes32 seed)``.

    116 bytes: chain id (32, big-endian), contract address (20), round (32),
    seed (32): the round's ``claim_seed``. Byte-identical to the contract's ``vrfInput(round)``.
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


WEIGHT_DOMAIN = keccak(text="flare-chain seat weight")
"""Tag of the weight draws, so they are independent of the leader draws of the same output."""
LEADER_DOMAIN = keccak(text="flare-chain leader score")
"""Tag of the leader draws."""
FIXED_ONE = 2**64
"""Fixed point of the Poisson mean (``lambda = floor(k·w·2^64 / W)``), of probabilities and of uniforms."""
LAMBDA_CHUNK = 16 * FIXED_ONE
"""The largest mean drawn from one uniform; e^-16 is still 2^40.9 units."""
EXP_MINUS_ONE = 0x5E2D58D8B3BCDF1A
"""``floor(e^-1 · 2^64)``."""
WEIGHT_BITS = 32
"""A stored seat is ``leader_score << 32 | weight``; leader scores are 224-bit."""


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _exp_neg(x: int) -> int:
    """``e^-x`` in 2^-64 units for ``x`` in 2^-64 units (x ≤ 16): the contract's ``_expNeg``."""
    f = x % FIXED_ONE
    term = positive = FIXED_ONE
    negative = 0
    i = 1
    while term != 0:
        term = (term * f) // (i * FIXED_ONE)
        if i % 2 == 1:
            negative += term
        else:
            positive += term
        i += 1
    result = positive - negative
    for _ in range(x // FIXED_ONE):
        result = (result * EXP_MINUS_ONE) // FIXED_ONE
    return result


def _poisson_inverse(u: int, lam: int) -> int:
    """Least ``j`` with ``u < P(X ≤ j)``, X ~ Poisson(lam): the contract's ``_poissonInverse``."""
    p = _exp_neg(lam)
    cdf, j = p, 0
    while u >= cdf and p != 0:
        j += 1
        p = (p * lam) // (j * FIXED_ONE)
        cdf += p
    return j


def poisson_mean(k: int, stake: int, total_stake: int) -> int:
    """The Poisson mean ``floor(k·w·2^64 / W)`` of a node's seat weight, in 2^-64 units."""
    _check_weights(k, stake, total_stake)
    return (k * stake * FIXED_ONE) // total_stake


def seat_weight(beta: bytes | int, k: int, stake: int, total_stake: int) -> int:
    """The seat weight VRF output ``beta`` wins: Poisson(``k·w/W``) by inverse CDF (0: no seat).

    The contract's ``seatWeight``: the mean is cut into chunks of at most 16,
    chunk ``c`` drawn from the uniform ``keccak256(abi.encode(WEIGHT_DOMAIN,
    beta, c)) >> 192``; the weight is the sum of the chunks' draws.
    """
    lam = poisson_mean(k, stake, total_stake)
    output = _word(_as_int(beta))
    weight, chunk = 0, 0
    while lam != 0:
        part = min(lam, LAMBDA_CHUNK)
        lam -= part
        u = int.from_bytes(keccak(WEIGHT_DOMAIN + output + _word(chunk)), "big") >> 192
        weight += _poisson_inverse(u, part)
        chunk += 1
    return weight


def is_selected(beta: bytes | int, k: int, stake: int, total_stake: int) -> bool:
    """Whether output ``beta`` wins a seat: its seat weight is at least 1."""
    return seat_weight(beta, k, stake, total_stake) > 0


def selection_probability(k: int, stake: int, total_stake: int) -> float:
    """Chance that a node with ``stake`` of ``total_stake`` wins a seat: ``1 − e^(−k·w/W)``."""
    _check_weights(k, stake, total_stake)
    return -math.expm1(-k * stake / total_stake)


def leader_score(output: bytes | int, weight: int) -> int:
    """The least of ``weight`` draws ``keccak256(abi.encode(LEADER_DOMAIN, output, j)) >> 192``: the contract's ``leaderScore``.

    What orders a round's proposers (lowest leads). Each unit of weight is an
    independent uniform 64-bit draw, so each unit is equally likely to be the
    committee's lowest: a member leads with probability weight / total weight.
    64 bits let the contract keep the ``PROPOSER_RANKS`` lowest in one storage slot.
    """
    if weight < 1:
        raise ConfigError(f"a seat has weight at least 1, got {weight}")
    word = _word(_as_int(output))
    return min(int.from_bytes(keccak(LEADER_DOMAIN + word + _word(j)), "big") >> 192 for j in range(weight))


def leader_order(scores: Mapping[str, int]) -> list[str]:
    """Members (address -> leader score) in proposing order: lowest score first (the leader), ties by address."""
    return sorted(scores, key=lambda a: (scores[a], int(a, 16)))


def rank_of(scores: Mapping[str, int], member: str) -> int:
    """How many members have a lower leader score than ``member`` (the contract's proposer rank).

    Only ranks below ``PROPOSER_RANKS`` ever propose; the contract counts no further.
    """
    own = scores[member]
    return sum(1 for score in scores.values() if score < own)


# -- committee security --------------------------------------------------------------------------


def _poisson(mean: float) -> list[float]:
    """pmf of Poisson(mean) over 0..n, n far enough into the tail that the rest is < 1e-16."""
    if mean == 0:
        return [1.0]
    n = int(mean + 12 * math.sqrt(mean) + 30)
    return [math.exp(i * math.log(mean) - mean - math.lgamma(i + 1)) for i in range(n + 1)]


def _joint(k: float, share: float) -> Iterator[tuple[int, int, float]]:
    """``(attacker weight, honest weight, probability)`` over every outcome of one draw."""
    attackers, honest = _poisson(k * share), _poisson(k * (1 - share))
    for a, pa in enumerate(attackers):
        for h, ph in enumerate(honest):
            yield a, h, pa * ph


@dataclass(frozen=True)
class CommitteeRisk:
    """What a coalition with ``attacker_share`` of the stake can expect from one committee draw.

    ``majority``: it holds more than half the weight. ``capture``: it holds the
    approval threshold of the weight, so it commits any proposal alone (and the
    committee is heavy enough to act). ``blocking``: the honest weight alone
    falls short of the threshold, so it can stall the round. ``too_small``: less
    than ``min_committee`` weight, the round fails whoever holds it. ``leader``:
    the chance it holds the lowest leader score (its share of the weight).
    """

    k: float
    attacker_share: float
    threshold_bps: int
    min_committee: int
    majority: float
    capture: float
    blocking: float
    too_small: float
    leader: float


def committee_risk(
    k: float,
    attacker_share: float,
    *,
    threshold_bps: int = 6666,
    min_committee: int = 1,
) -> CommitteeRisk:
    """The probabilities of ``CommitteeRisk`` for expected committee size ``k``.

    Exact for every way either side splits its stake (seat weights are
    Poisson), up to float rounding, a truncated tail below 1e-15 and the
    contract's fixed point (below 2^-60 per node).
    """
    if not 0 <= attacker_share <= 1:
        raise ConfigError(f"attacker_share must be in [0, 1], got {attacker_share}")
    if not k > 0:
        raise ConfigError(f"k must be positive, got {k}")
    if not 0 < threshold_bps <= BPS:
        raise ConfigError(f"threshold_bps must be in (0, 10000], got {threshold_bps}")
    majority = capture = blocking = too_small = leader = 0.0
    for a, h, p in _joint(k, attacker_share):
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
        leader += p * a / seats
    return CommitteeRisk(
        k=k,
        attacker_share=attacker_share,
        threshold_bps=threshold_bps,
        min_committee=min_committee,
        majority=majority,
        capture=capture,
        blocking=blocking,
        too_small=too_small,
        leader=leader,
    )
