"""UnixFS DAG building, exactly as Kubo's ``ipfs add`` lays files and directories out.

Pure: chunks in, blocks out through a caller-supplied sink; nothing here reads
files or touches the disk. What it reproduces (boxo ``importer/balanced`` and
``ipld/unixfs``):

* fixed-size chunking (Kubo's ``size-262144``): every chunk is exactly
  ``chunk_size`` bytes except the last; an empty file has no chunks;
* leaves: with ``raw_leaves`` a raw block (codec 0x55, always CIDv1); otherwise
  a dag-pb node whose Data is UnixFS ``{Type: File, Data: chunk, filesize: n}``;
  the empty file is a leaf with no Data field and ``filesize: 0`` (raw: the
  empty raw block);
* balanced layout with at most ``max_links`` (174) children per node:
  leaves are grouped left to right into nodes, those nodes into nodes, until
  one root remains; a single-chunk file is just its leaf;
* internal nodes: UnixFS ``{Type: File, filesize, blocksizes[]}`` (no Data),
  links with empty Name and Tsize = the linked block's size plus its
  children's Tsizes (a raw leaf's Tsize is its length);
* directories: UnixFS ``{Type: Directory}``, links sorted by name bytes,
  Tsize cumulative. Only flat directories: HAMT sharding (which Kubo switches
  to when the sum over entries of name length + binary CID length exceeds
  262144 bytes) is not implemented, and :func:`build_directory` raises
  StoreError rather than produce a CID Kubo would not.

Defaults match ``ipfs add``; ``cid_version=1`` implies raw leaves, as in Kubo.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from flare_chain.errors import ConfigError, StoreError
from flare_chain.ipfs.dagpb import (
    UNIXFS_DIRECTORY,
    UNIXFS_FILE,
    UNIXFS_SYMLINK,
    PBLink,
    UnixFSData,
    encode_pb_node,
    encode_unixfs_data,
)
from flare_chain.ipfs.multiformats import CODEC_DAG_PB, CODEC_RAW, Cid, encode_varint

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MAX_LINKS",
    "HAMT_THRESHOLD_BYTES",
    "BlockSink",
    "DagEntry",
    "FileDagBuilder",
    "ImportOptions",
    "build_directory",
    "build_symlink",
    "cid_of_bytes",
]

DEFAULT_CHUNK_SIZE = 262_144
DEFAULT_MAX_LINKS = 174
HAMT_THRESHOLD_BYTES = 262_144

BlockSink = Callable[[Cid, Sequence[bytes]], None]
"""Receives each new block as its CID and the byte pieces whose concatenation is the block.

Pieces avoid concatenating a 256 KiB chunk with its few bytes of framing; a
sink that stores blocks can ``os.writev`` them directly.
"""


@dataclass(frozen=True, slots=True)
class ImportOptions:
    """How to turn bytes into a DAG; the defaults are Kubo's ``ipfs add`` defaults."""

    cid_version: int = 0
    raw_leaves: bool | None = None  # None: Kubo's rule, raw leaves iff cid_version == 1
    chunk_size: int = DEFAULT_CHUNK_SIZE
    max_links: int = DEFAULT_MAX_LINKS

    def __post_init__(self) -> None:
        if self.cid_version not in (0, 1):
            raise ConfigError(f"cid_version must be 0 or 1, not {self.cid_version!r}")
        if not 1 <= self.chunk_size <= 1 << 24:
            raise ConfigError(f"chunk_size must be 1..16777216 bytes, not {self.chunk_size}")
        if self.max_links < 2:
            raise ConfigError(f"max_links must be at least 2, not {self.max_links}")

    @property
    def use_raw_leaves(self) -> bool:
        return self.cid_version == 1 if self.raw_leaves is None else self.raw_leaves


@dataclass(frozen=True, slots=True)
class DagEntry:
    """A finished DAG root: its CID, cumulative size (link Tsize) and file content size."""

    cid: Cid
    tsize: int
    filesize: int


def _dag_pb_cid(pieces: Sequence[bytes | memoryview], cid_version: int) -> Cid:
    h = hashlib.sha256()
    for piece in pieces:
        h.update(piece)
    mh = b"\x12\x20" + h.digest()
    return Cid.v0(mh) if cid_version == 0 else Cid.v1(CODEC_DAG_PB, mh)


def _ignore(_cid: Cid, _pieces: Sequence[bytes]) -> None:
    return None


class FileDagBuilder:
    """Streaming balanced-DAG builder: feed chunks with :meth:`add_chunk`, then :meth:`finish`.

    Memory stays at one pending link list per tree level (at most
    ``max_links`` entries each), so a file of any size is built in a single
    pass. The caller does the chunking (see :meth:`add_bytes` for in-memory
    data); every chunk but the last must be exactly ``chunk_size`` bytes.
    """

    def __init__(self, options: ImportOptions | None = None, sink: BlockSink | None = None) -> None:
        self._opts = options or ImportOptions()
        self._sink = sink or _ignore
        self._raw = self._opts.use_raw_leaves
        self._levels: list[list[DagEntry]] = [[]]
        self._short_chunk_seen = False

    def add_chunk(self, chunk: bytes | memoryview) -> None:
        """Turn one chunk into a leaf block and place it in the tree."""
        n = len(chunk)
        if n == 0:
            return
        if self._short_chunk_seen:
            raise ConfigError(f"chunk after a short chunk: all chunks but the last must be {self._opts.chunk_size} bytes")
        if n != self._opts.chunk_size:
            if n > self._opts.chunk_size:
                raise ConfigError(f"chunk of {n} bytes is larger than chunk_size {self._opts.chunk_size}")
            self._short_chunk_seen = True
        self._push(0, self._leaf(chunk))

    def add_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """Chunk in-memory bytes and add them (no copies: chunks are memoryview slices)."""
        view = memoryview(data)
        size = self._opts.chunk_size
        for start in range(0, len(view), size):
            self.add_chunk(view[start : start + size])

    def finish(self) -> DagEntry:
        """Close every open level and return the root (the lone leaf for a one-chunk file)."""
        levels = self._levels
        if not levels[0]:
            return self._empty_leaf()
        level = 0
        while True:
            entries = levels[level]
            if level == len(levels) - 1 and len(entries) == 1:
                return entries[0]
            levels[level] = []
            self._push(level + 1, self._internal(entries))
            level += 1

    def _push(self, level: int, entry: DagEntry) -> None:
        levels = self._levels
        if level == len(levels):
            levels.append([])
        if len(levels[level]) == self._opts.max_links:
            full, levels[level] = levels[level], []
            self._push(level + 1, self._internal(full))
        levels[level].append(entry)

    def _leaf(self, chunk: bytes | memoryview) -> DagEntry:
        n = len(chunk)
        if self._raw:
            cid = Cid.v1(CODEC_RAW, b"\x12\x20" + hashlib.sha256(chunk).digest())
            self._sink(cid, (chunk,))  # type: ignore[arg-type]
            return DagEntry(cid, n, n)
        # PBNode{Data: UnixFS{Type: File, Data: chunk, filesize: n}} written around the chunk.
        n_varint = encode_varint(n)
        unixfs_len = 2 + 1 + len(n_varint) + n + 1 + len(n_varint)
        head = b"\x0a" + encode_varint(unixfs_len) + b"\x08\x02\x12" + n_varint
        tail = b"\x18" + n_varint
        pieces = (head, chunk, tail)
        cid = _dag_pb_cid(pieces, self._opts.cid_version)
        self._sink(cid, pieces)  # type: ignore[arg-type]
        return DagEntry(cid, len(head) + n + len(tail), n)

    def _empty_leaf(self) -> DagEntry:
        if self._raw:
            cid = Cid.v1(CODEC_RAW, b"\x12\x20" + hashlib.sha256(b"").digest())
            self._sink(cid, (b"",))
            return DagEntry(cid, 0, 0)
        block = encode_pb_node((), encode_unixfs_data(UnixFSData(UNIXFS_FILE, None, 0)))
        cid = _dag_pb_cid((block,), self._opts.cid_version)
        self._sink(cid, (block,))
        return DagEntry(cid, len(block), 0)

    def _internal(self, children: Sequence[DagEntry]) -> DagEntry:
        filesize = sum(c.filesize for c in children)
        data = encode_unixfs_data(UnixFSData(UNIXFS_FILE, None, filesize, tuple(c.filesize for c in children)))
        block = encode_pb_node([PBLink(c.cid.to_bytes(), b"", c.tsize) for c in children], data)
        cid = _dag_pb_cid((block,), self._opts.cid_version)
        self._sink(cid, (block,))
        return DagEntry(cid, len(block) + sum(c.tsize for c in children), filesize)


def build_directory(
    entries: Iterable[tuple[bytes, DagEntry]],
    options: ImportOptions | None = None,
    sink: BlockSink | None = None,
) -> DagEntry:
    """Build a flat UnixFS directory node over ``(name, child)`` entries.

    Names are raw bytes (``os.fsencode`` of the file name), sorted bytewise as
    go-merkledag does. Raises StoreError where Kubo would shard the directory.
    """
    opts = options or ImportOptions()
    items = sorted(entries, key=lambda e: e[0])
    names = [name for name, _ in items]
    if len(set(names)) != len(names):
        raise ConfigError("directory has duplicate entry names")
    for name in names:
        if not name or b"/" in name:
            raise ConfigError(f"invalid directory entry name {name!r}: must be non-empty and contain no '/'")
    estimate = sum(len(name) + len(child.cid.to_bytes()) for name, child in items)
    if estimate > HAMT_THRESHOLD_BYTES:
        raise StoreError(
            f"directory with {len(items)} entries needs HAMT sharding (links estimate {estimate} bytes > "
            f"{HAMT_THRESHOLD_BYTES}), which this store does not implement; split it into subdirectories"
        )
    links = [PBLink(child.cid.to_bytes(), name, child.tsize) for name, child in items]
    block = encode_pb_node(links, encode_unixfs_data(UnixFSData(UNIXFS_DIRECTORY)))
    cid = _dag_pb_cid((block,), opts.cid_version)
    (sink or _ignore)(cid, (block,))
    return DagEntry(cid, len(block) + sum(child.tsize for _, child in items), 0)


def build_symlink(target: bytes, options: ImportOptions | None = None, sink: BlockSink | None = None) -> DagEntry:
    """A UnixFS Symlink node ``{Type: Symlink, Data: target}``, as ``ipfs add -r`` stores symlinks."""
    opts = options or ImportOptions()
    block = encode_pb_node((), encode_unixfs_data(UnixFSData(UNIXFS_SYMLINK, target)))
    cid = _dag_pb_cid((block,), opts.cid_version)
    (sink or _ignore)(cid, (block,))
    return DagEntry(cid, len(block), 0)


def cid_of_bytes(data: bytes | memoryview, cid_version: int = 0, *, raw_leaves: bool | None = None) -> str:
    """The CID ``ipfs add --only-hash`` prints for a file with these bytes (Kubo defaults)."""
    builder = FileDagBuilder(ImportOptions(cid_version=cid_version, raw_leaves=raw_leaves))
    builder.add_bytes(data)
    return builder.finish().cid.encode()
