"""Round trips and canonical byte layout of the hand-written dag-pb / UnixFS protobuf."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flare_chain.errors import IntegrityError
from flare_chain.ipfs.dagpb import (
    UNIXFS_FILE,
    PBLink,
    PBNode,
    UnixFSData,
    decode_pb_node,
    decode_unixfs_data,
    encode_pb_node,
    encode_unixfs_data,
)

u64 = st.integers(min_value=0, max_value=2**63 - 1)
links = st.builds(PBLink, st.binary(min_size=1, max_size=40), st.one_of(st.none(), st.binary(max_size=20)),
                  st.one_of(st.none(), u64))
unixfs = st.builds(UnixFSData, st.integers(0, 5), st.one_of(st.none(), st.binary(max_size=64)),
                   st.one_of(st.none(), u64), st.lists(u64, max_size=5).map(tuple),
                   st.one_of(st.none(), u64), st.one_of(st.none(), u64))


@given(st.lists(links, max_size=6), st.one_of(st.none(), st.binary(max_size=100)))
def test_pb_node_round_trip(node_links: list[PBLink], data: bytes | None) -> None:
    encoded = encode_pb_node(node_links, data)
    assert decode_pb_node(encoded) == PBNode(tuple(node_links), data)


@given(unixfs)
def test_unixfs_data_round_trip(msg: UnixFSData) -> None:
    assert decode_unixfs_data(encode_unixfs_data(msg)) == msg


def test_links_are_serialized_before_data() -> None:
    # dag-pb spec / go-merkledag: Links (field 2, key 0x12) precede Data (field 1, key 0x0a).
    encoded = encode_pb_node([PBLink(b"\x01", b"", 5)], b"\x08\x02")
    assert encoded == b"\x12\x07\x0a\x01\x01\x12\x00\x18\x05" + b"\x0a\x02\x08\x02"


def test_hello_world_leaf_bytes() -> None:
    # The block behind QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o (`echo hello world | ipfs add`).
    data = encode_unixfs_data(UnixFSData(UNIXFS_FILE, b"hello world\n", 12))
    assert encode_pb_node([], data) == b"\x0a\x12\x08\x02\x12\x0chello world\n\x18\x0c"


@pytest.mark.parametrize("garbage", [b"\x0a\x05ab", b"\x0b", b"\x1a\x00", b"\x12\x02\x12\x00"])
def test_garbage_blocks_raise_integrity_error(garbage: bytes) -> None:
    with pytest.raises(IntegrityError):
        decode_pb_node(garbage)


@pytest.mark.parametrize(("block", "message"), [
    (b"\x08\x05", "dag-pb node: unexpected field 1 (wire type 0)"),            # Data as a varint
    (b"\x10\x05", "dag-pb node: unexpected field 2 (wire type 0)"),            # a link as a varint
    (b"\x12\x02\x08\x01", "dag-pb link: unexpected field 1 (wire type 0)"),    # a link's Hash as a varint
    (b"\x12\x04\x0a\x00\x10\x01", "dag-pb link: unexpected field 2 (wire type 0)"),      # a link's Name as a varint
    (b"\x12\x04\x0a\x00\x1a\x00", "dag-pb link: unexpected field 3 (wire type 2)"),  # Tsize as bytes
])
def test_a_field_of_the_wrong_wire_type_is_named(block: bytes, message: str) -> None:
    # Kubo refuses these blocks; reading one as a link or as Data would hand garbage to the UnixFS layer
    with pytest.raises(IntegrityError, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode_pb_node(block)
