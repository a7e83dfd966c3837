"""A proposal's accepted list: what the chain keeps of it, and how a reader checks the published list.

The list of submitters whose updates an aggregate was built from grows with the
federation, so it is not in the proposal's calldata or log (each entry cost some
1.4k gas there). The aggregate's manifest carries it (``Manifest.accepted``,
inside the bundle ``globalCid`` names), and the chain keeps its length and
``accepted_root``: keccak256 of the ABI-encoded ``address[]``, ascending as
uint160 without repeats, the contract's ``acceptedListHash``. A member about to
vote and an auditor read the list from IPFS and hold it to the chain's root and
count with :func:`check_accepted_list`; a list that does not match is a bad
proposal, never a reason to trust the manifest over the chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from eth_abi import encode
from eth_utils import keccak, to_checksum_address

from flare_chain.errors import ConfigError, IntegrityError

__all__ = ["accepted_root", "canonical_accepted", "check_accepted_list", "list_hash"]


def canonical_accepted(nodes: Iterable[str]) -> list[str]:
    """``nodes`` checksummed and ascending as uint160, each once: the one order the root is taken over.

    Raises IntegrityError on a value that is not an address or on a repeat, naming it
    (the rule is ``chain.coordinator.sort_addresses``'s; published data that breaks it is corrupt, not a setting).
    """
    from flare_chain.chain.coordinator import sort_addresses

    try:
        return sort_addresses(str(n) for n in nodes)
    except ConfigError as exc:
        raise IntegrityError(str(exc)) from None


def list_hash(nodes: Sequence[str]) -> bytes:
    """keccak256(abi.encode(address[])) of ``nodes`` in the order given: the contract's ``acceptedListHash``."""
    return keccak(encode(["address[]"], [[to_checksum_address(n) for n in nodes]]))


def accepted_root(nodes: Iterable[str]) -> bytes:
    """The root of an accepted list: :func:`list_hash` of ``nodes`` in canonical order."""
    return list_hash(canonical_accepted(nodes))


def check_accepted_list(nodes: Sequence[str], root: bytes, count: int) -> tuple[str, ...]:
    """The published list ``nodes``, checksummed, if it is exactly what the chain's ``root`` and ``count`` name.

    The list must already be in canonical order (a proposer that publishes it
    otherwise published something the root was not taken over). Raises
    IntegrityError naming the first problem: a non-address, a repeat, the order,
    the length, or a root that differs.
    """
    canonical = canonical_accepted(nodes)
    given = [to_checksum_address(n) for n in nodes]
    if given != canonical:
        at = next(i for i, (a, b) in enumerate(zip(given, canonical, strict=True)) if a != b)
        raise IntegrityError(f"accepted list is not ascending at entry {at} ({given[at]}); the chain's root is "
                             "taken over the addresses in ascending order")
    if len(canonical) != count:
        raise IntegrityError(f"accepted list names {len(canonical)} node(s) but the proposal on chain says {count}")
    got = accepted_root(canonical)
    if got != bytes(root):
        raise IntegrityError(f"accepted list hashes to 0x{got.hex()}, not the proposal's accepted root "
                             f"0x{bytes(root).hex()}: it is not the list that was proposed")
    return tuple(canonical)
