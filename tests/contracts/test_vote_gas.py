"""The vote that commits a round must not run out of gas, whatever its estimate saw.

Found on the 4-daemon devnet (anvil, one block a second): three members estimated their votes
while the threshold was out of reach; two landed first in the same block and the third became
the committing vote, ran out of gas at 1.25 × its short-path estimate, and the round missed its
threshold (vote timeout).
"""

from __future__ import annotations

from itertools import permutations

import pytest

from flare_chain.chain import RoundStatus
from flare_chain.chain.coordinator import VOTE_GAS_FLOOR
from flare_chain.chain.revert import ErrorDecoder
from flare_chain.chain.transactions import send_transaction
from flare_chain.node.outbox import DurableSender
from flare_chain.node.state import NodeState, StepStatus


def _proposed(network, cid: bytes) -> int:
    round_id = network.open_round()
    network.seat(round_id)
    network.to_proposals(round_id)
    network.coordinator.propose_aggregate(network.leader(round_id), round_id, cid,
                                          [v.address for v in network.validators[:2]])
    return round_id


def _race(network, round_id: int):
    """(already voted, B, A): after ``already`` and B approve the threshold is still out of reach; A's approval
    then reaches it. So A estimated before B landed takes the short path and runs the long one."""
    weights = network.weights(round_id)
    needed = network.needed(sum(weights.values()))
    for order in permutations(network.validators):
        total = 0
        for i, member in enumerate(order):
            total += weights[member.address]
            if total >= needed:
                if i >= 1:
                    return list(order[:i - 1]), order[i - 1], member
                break
    pytest.skip("no vote order with a non-committing vote before the committing one")


def _raced_vote(network, tmp_path):
    """A proposed round one approval short of the threshold, with a sender for member A whose vote, once
    signed, is overtaken by member B's approval: (round, A, A's state, A's sender)."""
    c = network.coordinator
    round_id = _proposed(network, network.cid("raced aggregate"))
    already, b, a = _race(network, round_id)
    for member in already:
        c.vote(member, round_id, True)
    state = NodeState(tmp_path / "state.sqlite")
    sender = DurableSender(network.w3, a, state, ErrorDecoder(c.contract.abi),
                           faults=lambda point: c.vote(b, round_id, True) if point == "vote:signed" else None)
    return round_id, a, state, sender


def test_a_vote_estimated_before_another_lands_still_commits_the_round(network, tmp_path) -> None:
    c = network.coordinator
    round_id, a, state, sender = _raced_vote(network, tmp_path)
    out = sender.send(round_id, "vote", to=c.address, data=c.contract.encode_abi("vote", args=[round_id, 0, True]),
                      already_done=lambda: c.has_voted(round_id, a.address), min_gas=VOTE_GAS_FLOOR)
    assert c.round_info(round_id).status == RoundStatus.COMMITTED
    assert state.get(round_id, "vote").status == StepStatus.DONE
    assert out.gas_used > 0


def test_without_the_floor_the_raced_vote_runs_out_of_gas_and_says_so(network, tmp_path) -> None:
    """The failure the floor prevents, and the one line an operator gets for it."""
    c = network.coordinator
    round_id, a, state, sender = _raced_vote(network, tmp_path)
    with pytest.raises(Exception, match="ran out of gas") as caught:
        sender.send(round_id, "vote", to=c.address, data=c.contract.encode_abi("vote", args=[round_id, 0, True]),
                    already_done=lambda: c.has_voted(round_id, a.address))
    assert getattr(caught.value, "error_name", None) == "OutOfGas"
    assert state.get(round_id, "vote").status == StepStatus.FAILED
    assert c.round_info(round_id).status == RoundStatus.PROPOSED


def test_the_floor_covers_the_commit_of_the_longest_cid_the_contract_accepts(network) -> None:
    c = network.coordinator
    longest = b"\x01\x55\x12\x3c" + bytes(range(1, 61))  # 64 bytes, the contract's maximum
    assert len(longest) == 64
    round_id = _proposed(network, longest)
    weights = network.weights(round_id)
    needed = network.needed(sum(weights.values()))
    voters = sorted(network.validators, key=lambda v: weights[v.address])
    total = 0
    for member in voters:
        if total + weights[member.address] >= needed:
            result = send_transaction(network.w3, member, to=c.address, label="vote",
                                      data=c.contract.encode_abi("vote", args=[round_id, 0, True]),
                                      decoder=ErrorDecoder(c.contract.abi), gas_margin=0.0, min_gas=VOTE_GAS_FLOOR)
            assert network.w3.eth.get_transaction(result.tx_hash)["gas"] == VOTE_GAS_FLOOR
            break
        c.vote(member, round_id, True)
        total += weights[member.address]
    assert c.round_info(round_id).status == RoundStatus.COMMITTED
    assert c.global_adapter_cid() == longest
