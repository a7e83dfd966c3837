"""Walking UnixFS DAGs: file bytes, path resolution, directory listings, reachability.

Every function takes ``get_block(cid) -> bytes``, which must return bytes
already verified against the CID (the store's and, later, a remote fetcher's
job). Keeping the walk apart from where blocks come from lets the same code
read the embedded store and a Kubo node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from flare_chain.errors import ConfigError, IntegrityError, StoreError
from flare_chain.ipfs.dagpb import (
    UNIXFS_DIRECTORY,
    UNIXFS_FILE,
    UNIXFS_HAMT_SHARD,
    UNIXFS_RAW,
    UNIXFS_SYMLINK,
    decode_pb_node,
    decode_unixfs_data,
)
from flare_chain.ipfs.multiformats import CODEC_DAG_PB, CODEC_RAW, Cid, parse_cid

__all__ = ["DirEntry", "GetBlock", "iter_dag", "iter_file", "list_directory", "resolve_path", "split_path"]

GetBlock = Callable[[Cid], bytes]

_TYPE_NAMES = {UNIXFS_DIRECTORY: "directory", UNIXFS_FILE: "file", UNIXFS_SYMLINK: "symlink", UNIXFS_RAW: "file"}


@dataclass(frozen=True, slots=True)
class DirEntry:
    """One link of a UnixFS directory: name, target CID, cumulative size and kind."""

    name: str
    cid: str
    tsize: int
    kind: str


def split_path(path: str) -> tuple[Cid, list[str]]:
    """Split ``CID[/a/b]`` (optionally prefixed by ``/ipfs/``) into the root CID and names."""
    text = path.removeprefix("/ipfs/")
    parts = [p for p in text.split("/") if p]
    if not parts:
        raise ConfigError(f"empty IPFS path {path!r}; expected CID or CID/name")
    return parse_cid(parts[0]), parts[1:]


def _child_cid(raw: bytes, parent: Cid) -> Cid:
    from flare_chain.ipfs.multiformats import cid_from_bytes

    try:
        return parse_cid(cid_from_bytes(raw))
    except IntegrityError as exc:
        raise IntegrityError(f"block {parent} links to a malformed CID: {exc}") from None


def resolve_path(get_block: GetBlock, path: str) -> Cid:
    """Follow directory links by name from the root CID; raise StoreError for a missing name."""
    cid, names = split_path(path)
    walked = cid.encode()
    for name in names:
        if cid.codec != CODEC_DAG_PB:
            raise StoreError(f"{walked} is a raw block, not a directory; cannot resolve {name!r} in {path!r}")
        node = decode_pb_node(get_block(cid))
        fs = decode_unixfs_data(node.data or b"")
        if fs.type == UNIXFS_HAMT_SHARD:
            raise StoreError(f"{walked} is a HAMT-sharded directory, which this store cannot read yet")
        if fs.type != UNIXFS_DIRECTORY:
            raise StoreError(f"{walked} is a {_TYPE_NAMES.get(fs.type, 'node')}, not a directory; "
                             f"cannot resolve {name!r} in {path!r}")
        wanted = name.encode()
        for link in node.links:
            if link.name == wanted:
                cid = _child_cid(link.hash, cid)
                break
        else:
            raise StoreError(f"no entry {name!r} in directory {walked} (while resolving {path!r}); "
                             f"list it with `flare-chain ipfs ls {walked}`")
        walked += "/" + name
    return cid


def iter_file(get_block: GetBlock, cid: Cid) -> Iterator[bytes | memoryview]:
    """Yield a UnixFS file's bytes in order, depth first, with bounded memory."""
    if cid.codec == CODEC_RAW:
        yield get_block(cid)
        return
    if cid.codec != CODEC_DAG_PB:
        raise StoreError(f"{cid} has codec {cid.codec_name}; only dag-pb and raw files can be read")
    node = decode_pb_node(get_block(cid))
    fs = decode_unixfs_data(node.data or b"")
    if fs.type in (UNIXFS_DIRECTORY, UNIXFS_HAMT_SHARD):
        raise StoreError(f"{cid} is a directory; name a file inside it (CID/name) or list it with `ipfs ls`")
    if fs.type not in (UNIXFS_FILE, UNIXFS_RAW):
        raise StoreError(f"{cid} is a UnixFS {_TYPE_NAMES.get(fs.type, f'type {fs.type}')}, not a file")
    if fs.data:
        yield fs.data
    if node.links and len(fs.blocksizes) != len(node.links):
        raise IntegrityError(f"file node {cid} has {len(node.links)} links but {len(fs.blocksizes)} blocksizes")
    for link in node.links:
        yield from iter_file(get_block, _child_cid(link.hash, cid))


def list_directory(get_block: GetBlock, cid: Cid) -> list[DirEntry]:
    """The entries of a flat UnixFS directory, in stored (name) order."""
    if cid.codec != CODEC_DAG_PB:
        raise StoreError(f"{cid} is a raw block, not a directory")
    node = decode_pb_node(get_block(cid))
    fs = decode_unixfs_data(node.data or b"")
    if fs.type != UNIXFS_DIRECTORY:
        raise StoreError(f"{cid} is a UnixFS {_TYPE_NAMES.get(fs.type, f'type {fs.type}')}, not a directory")
    out = []
    for link in node.links:
        child = _child_cid(link.hash, cid)
        kind = "file" if child.codec == CODEC_RAW else "unknown"
        if child.codec == CODEC_DAG_PB:
            try:
                child_fs = decode_unixfs_data(decode_pb_node(get_block(child)).data or b"")
                kind = _TYPE_NAMES.get(child_fs.type, "unknown")
            except StoreError:
                kind = "unknown"
        out.append(DirEntry((link.name or b"").decode("utf-8", "surrogateescape"), child.encode(),
                            link.tsize or 0, kind))
    return out


def iter_dag(get_block: GetBlock, root: Cid) -> Iterator[Cid]:
    """Yield every CID reachable from ``root`` (root first), each distinct multihash once."""
    seen: set[bytes] = set()
    stack = [root]
    while stack:
        cid = stack.pop()
        if cid.multihash in seen:
            continue
        seen.add(cid.multihash)
        yield cid
        if cid.codec == CODEC_DAG_PB:
            node = decode_pb_node(get_block(cid))
            stack.extend(_child_cid(link.hash, cid) for link in reversed(node.links))
