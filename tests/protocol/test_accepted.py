"""The accepted list's root: one canonical order, and every way a published list can disagree with the chain."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import keccak, to_checksum_address
from hypothesis import given
from hypothesis import strategies as st

from flare_chain.errors import IntegrityError
from flare_chain.protocol import accepted_root, canonical_accepted, check_accepted_list

addresses = st.lists(st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex()), min_size=1, max_size=30,
                     unique_by=lambda a: a.lower())


@given(addresses, st.randoms())
def test_the_root_ignores_order_and_case_and_is_the_abi_hash_of_the_ascending_list(nodes, rnd) -> None:
    shuffled = [n.upper().replace("0X", "0x") if rnd.random() < 0.5 else n for n in nodes]
    rnd.shuffle(shuffled)
    ascending = sorted((to_checksum_address(n) for n in nodes), key=lambda a: int(a, 16))
    assert canonical_accepted(shuffled) == ascending
    assert accepted_root(shuffled) == accepted_root(nodes) == keccak(encode(["address[]"], [ascending]))
    assert check_accepted_list(ascending, accepted_root(nodes), len(nodes)) == tuple(ascending)


@given(addresses.filter(lambda n: len(n) >= 2))
def test_a_published_list_out_of_order_is_refused(nodes) -> None:
    ascending = canonical_accepted(nodes)
    with pytest.raises(IntegrityError, match="not ascending at entry 0"):
        check_accepted_list(ascending[::-1], accepted_root(nodes), len(nodes))


def test_each_disagreement_names_itself() -> None:
    a, b, c = ("0x" + f"{i:02x}" * 20 for i in (1, 2, 3))
    root = accepted_root([a, b])
    with pytest.raises(IntegrityError, match="names 2 node"):
        check_accepted_list([a, b], root, 3)
    with pytest.raises(IntegrityError, match="not the list that was proposed"):
        check_accepted_list([a, c], root, 2)
    with pytest.raises(IntegrityError, match="twice"):
        check_accepted_list([a, a], root, 2)
    with pytest.raises(IntegrityError, match="not an Ethereum address"):
        check_accepted_list([a, "0x1234"], root, 2)
    assert check_accepted_list([a.upper().replace("0X", "0x"), b], root, 2) == (to_checksum_address(a),
                                                                                to_checksum_address(b))
