"""Reading UnixFS DAGs: a file node whose links and blocksizes disagree is refused, and a Kubo
HAMT-sharded directory is named as one rather than mistaken for a file or a plain directory."""

from __future__ import annotations

import pytest

from flare_chain.errors import IntegrityError, StoreError
from flare_chain.ipfs.dag import iter_file, list_directory, resolve_path
from flare_chain.ipfs.dagpb import (
    UNIXFS_DIRECTORY,
    UNIXFS_FILE,
    PBLink,
    UnixFSData,
    encode_pb_node,
    encode_unixfs_data,
)
from flare_chain.ipfs.multiformats import CODEC_DAG_PB, CODEC_RAW, Cid, sha256_multihash

LEAVES = (b"first leaf ", b"second leaf")


def _dag(blocksizes: tuple[int, ...]) -> tuple[Cid, dict[bytes, bytes]]:
    """A two-leaf file node (raw leaves) whose UnixFS data lists ``blocksizes``; its CID and blocks."""
    blocks: dict[bytes, bytes] = {}
    links = []
    for leaf in LEAVES:
        cid = Cid.v1(CODEC_RAW, sha256_multihash(leaf))
        blocks[cid.multihash] = leaf
        links.append(PBLink(cid.to_bytes(), b"", len(leaf)))
    data = UnixFSData(UNIXFS_FILE, filesize=sum(map(len, LEAVES)), blocksizes=blocksizes)
    root_block = encode_pb_node(links, encode_unixfs_data(data))
    root = Cid.v1(CODEC_DAG_PB, sha256_multihash(root_block))
    blocks[root.multihash] = root_block
    return root, blocks


def _read(root: Cid, blocks: dict[bytes, bytes]) -> bytes:
    return b"".join(bytes(chunk) for chunk in iter_file(lambda c: blocks[c.multihash], root))


def test_a_file_node_with_one_blocksize_per_link_reads_its_leaves_in_order() -> None:
    root, blocks = _dag(tuple(len(leaf) for leaf in LEAVES))
    assert _read(root, blocks) == b"".join(LEAVES)


@pytest.mark.parametrize("blocksizes", [(len(LEAVES[0]),), (), (1, 2, 3)])
def test_a_file_node_whose_blocksizes_do_not_match_its_links_is_refused(blocksizes: tuple[int, ...]) -> None:
    root, blocks = _dag(blocksizes)
    with pytest.raises(IntegrityError, match=f"has 2 links but {len(blocksizes)} blocksizes"):
        _read(root, blocks)


def test_a_kubo_hamt_sharded_directory_is_reported_as_one() -> None:
    # A root as Kubo writes it for a sharded directory, spelled out on the wire (UnixFS Data: Type=5
    # HAMTShard, a one-byte bitfield, hashType=0x22 murmur3-x64-64, fanout=256) so the test does not
    # borrow the module's own constant. Reading one must say what it is, so an operator knows to list
    # it or fetch it with Kubo, not that the CID names a file or a symlink.
    hamt_data = b"\x08\x05" + b"\x12\x01\x00" + b"\x28\x22" + b"\x30\x80\x02"
    block = encode_pb_node([], hamt_data)
    root = Cid.v1(CODEC_DAG_PB, sha256_multihash(block))
    blocks = {root.multihash: block}
    with pytest.raises(StoreError, match="is a directory"):
        _read(root, blocks)
    with pytest.raises(StoreError, match="HAMT-sharded directory"):
        resolve_path(lambda c: blocks[c.multihash], f"{root}/model.safetensors")


def _directory(links: list[PBLink]) -> tuple[Cid, dict[bytes, bytes]]:
    block = encode_pb_node(links, encode_unixfs_data(UnixFSData(UNIXFS_DIRECTORY)))
    root = Cid.v1(CODEC_DAG_PB, sha256_multihash(block))
    return root, {root.multihash: block}


def test_a_raw_leaf_file_in_a_directory_is_listed_as_a_file() -> None:
    # CIDv1 adds store small files as a single raw block: `ls` must call them files, not "unknown"
    leaf = b"raw leaf file"
    cid = Cid.v1(CODEC_RAW, sha256_multihash(leaf))
    root, blocks = _directory([PBLink(cid.to_bytes(), b"notes.txt", len(leaf))])
    blocks[cid.multihash] = leaf
    (entry,) = list_directory(lambda c: blocks[c.multihash], root)
    assert (entry.name, entry.cid, entry.kind, entry.tsize) == ("notes.txt", cid.encode(), "file", len(leaf))


def test_a_directory_linking_a_malformed_cid_is_an_integrity_error_naming_the_parent() -> None:
    root, blocks = _directory([PBLink(b"\x01\x55\x12", b"broken", 1)])  # a truncated CID
    with pytest.raises(IntegrityError, match=f"block {root} links to a malformed CID"):
        list_directory(lambda c: blocks[c.multihash], root)
