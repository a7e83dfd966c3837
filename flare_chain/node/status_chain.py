"""What the chain says about a node's rounds, for ``node status``: each round's outcome and whether the
node's own update is in the proposal's accepted set.

The state folder records what the node sent, not what the committee made of
it; ``roundInfo`` has the round's status and the ``AggregateProposed`` event
the accepted list's root and count. The list itself is in the aggregate's
manifest on IPFS, which the node read when it pulled the committed adapter
(the pull record's ``update_accepted``), so membership comes from there. ``node status`` must answer at once beside a
running node and for a stopped one whose chain is gone, so everything here is
read-only, each RPC call has a short timeout, the whole query a time budget,
and any failure becomes a one-line ``note`` (the caller then shows what the
state folder knows) rather than an error.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # web3 only when the chain is asked: reading the state folder must not need it
    from flare_chain.chain.coordinator import CoordinatorClient

__all__ = ["DEFAULT_CHAIN_TIMEOUT_S", "ChainView", "RoundOnChain", "read_chain_view"]

DEFAULT_CHAIN_TIMEOUT_S = 3.0
"""Per RPC call; the whole query stops after four times this."""


@dataclass(frozen=True)
class RoundOnChain:
    """One round as the coordinator records it, seen from one node."""

    round_id: int
    outcome: str
    """``open``, ``proposed`` (voting), ``committed``, ``failed`` or ``not opened``."""
    submitted: bool
    """The coordinator holds a submission from this node for the round."""
    update_accepted: bool | None
    """The node's address is in the proposal's accepted list; None when the chain cannot say (it keeps only the
    list's root: ``node.status.with_chain`` fills it from the pull record)."""
    accepted_count: int | None
    """How many updates the proposal accepted; None without a proposal."""
    proposal_tx: str | None


@dataclass(frozen=True)
class ChainView:
    """The rounds read from the chain, or why none could be (``reachable`` False, ``note`` says why)."""

    reachable: bool
    note: str
    """``chain <url> at block N`` when read; otherwise ``chain unreachable: …`` or what stopped the query."""
    rounds: dict[int, RoundOnChain] = field(default_factory=dict)


def read_chain_view(rpc_url: str, *, contract: str, node: str, chain_id: str | None, round_ids: Iterable[int],
                    timeout_s: float = DEFAULT_CHAIN_TIMEOUT_S) -> ChainView:
    """Ask the chain at ``rpc_url`` about ``round_ids`` for ``node`` at coordinator ``contract``; never raises.

    ``chain_id`` (the id the node's state folder is bound to, if any) guards
    against reading another chain that happens to answer at the same URL.
    Rounds the budget (four times ``timeout_s``) leaves unread are absent
    from ``rounds`` and the note says so.
    """
    began = time.monotonic()
    try:
        from flare_chain.chain.coordinator import CoordinatorClient
        from flare_chain.chain.deployment import connect_rpc

        w3 = connect_rpc(rpc_url, timeout_s=timeout_s, retry=False)
        answered = str(int(w3.eth.chain_id))
        if chain_id is not None and answered != chain_id:
            return ChainView(False, f"chain unreachable: {rpc_url} is chain {answered}, but the state folder is "
                                    f"bound to chain {chain_id}; showing the state folder only")
        coordinator = CoordinatorClient(w3, contract)
        head = int(w3.eth.block_number)
    except Exception as exc:  # any failure to reach the chain is reported, not raised
        return ChainView(False, f"chain unreachable: {_reason(exc)}; showing what the state folder knows")
    rounds: dict[int, RoundOnChain] = {}
    wanted = sorted(set(round_ids))
    for round_id in wanted:
        if time.monotonic() - began > 4 * timeout_s:
            left = len(wanted) - len(rounds)
            return ChainView(True, f"chain {rpc_url} at block {head}; stopped after {4 * timeout_s:.0f} s with "
                                   f"{left} round(s) unread", rounds)
        try:
            rounds[round_id] = _round(coordinator, round_id, node, head)
        except Exception as exc:  # a half-answered query still shows what it has
            return ChainView(bool(rounds), f"chain unreachable: {_reason(exc)} while reading round {round_id}; "
                                           "showing what the state folder knows", rounds)
    return ChainView(True, f"chain {rpc_url} at block {head}", rounds)


def _round(coordinator: CoordinatorClient, round_id: int, node: str, head: int) -> RoundOnChain:
    from flare_chain.chain.records import RoundStatus

    info = coordinator.round_info(round_id)
    if info.status == RoundStatus.NONE:
        return RoundOnChain(round_id, "not opened", False, None, None, None)
    submitted = any(coordinator.submission_hash(round_id, node))
    proposal = None
    if info.status != RoundStatus.OPEN and any(info.proposal_hash):
        # proposals land after the claim window and by the proposal deadline: scan only those blocks
        proposal = coordinator.proposal(round_id, blocks=(info.claim_deadline + 1, min(head, info.proposal_deadline)))
    count = None if proposal is None else proposal.accepted_count
    # The chain keeps the accepted list's root only. A node that submitted nothing is on no valid list; for one
    # that did, membership is the pulled manifest's (``node.status.with_chain`` takes it from the pull record).
    accepted = None if proposal is None or submitted else False
    return RoundOnChain(round_id, info.status.name.lower(), submitted, accepted, count,
                        None if proposal is None else proposal.tx_hash)


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"
