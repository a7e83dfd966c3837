"""Reading UnixFS files refuses a file node whose links and blocksizes disagree."""

from __future__ import annotations

import pytest

from flare_chain.errors import IntegrityError
from flare_chain.ipfs.dag import iter_file
from flare_chain.ipfs.dagpb import UNIXFS_FILE, PBLink, UnixFSData, encode_pb_node, encode_unixfs_data
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
