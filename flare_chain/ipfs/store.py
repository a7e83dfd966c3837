"""The embedded content store: blocks on disk, recursive pins, garbage collection.

Layout of a repository folder (``ContentStore(root)`` creates it)::

    root/
      blocks/<XY>/<KEY>.data   one file per block, KEY = upper base32 of the multihash,
                               XY = the two characters before KEY's last one (Kubo's
                               flatfs next-to-last/2 sharding), so CIDv0 and CIDv1 of the
                               same bytes share one file
      pins.json                {"version": 1, "recursive": [CID, ...]}, replaced atomically
      repo.lock                flock'd so add/pin/unpin/gc in several processes never race

Public API (CIDs are strings everywhere; :class:`~flare_chain.ipfs.multiformats.Cid`
objects are accepted too):

* ``add_bytes(data, *, cid_version=0, raw_leaves=None, pin=True, only_hash=False) -> str``
* ``add_file(path, ...) -> str`` — streams chunk by chunk, one read per chunk
* ``add_directory(path, ..., include_hidden=False) -> str`` — like ``ipfs add -r``
* ``cat(cid_or_path) -> bytes`` and ``open(cid_or_path) -> Iterator[bytes]`` (streaming)
* ``ls(cid_or_path) -> list[DirEntry]``
* ``has(cid)``, ``get_block(cid) -> bytes``, ``put_block(cid, data)``
* ``pin(cid)``, ``unpin(cid)``, ``pins() -> list[str]``, ``gc() -> GcResult``
* ``verify(repair=False) -> VerifyResult`` — re-hash every block (``ipfs repo verify``)

Every block read is re-hashed and compared with its CID: a mismatch raises
IntegrityError naming the CID, what the bytes hashed to and the file, and
deletes nothing (the operator decides). A missing block raises StoreError.
Adding (or ``put_block``) over a block whose file fails verification rewrites
it with the verified bytes, so re-adding a file repairs its damaged blocks.
Writes are tmp + fsync + rename, batched per add (see :mod:`flare_chain.ipfs.blockfiles`);
``durable=False`` skips the fsyncs for scratch repositories and benchmarks.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from flare_chain.errors import ConfigError, IntegrityError, StoreError
from flare_chain.ipfs import dag
from flare_chain.ipfs.blockfiles import ParallelWriter, atomic_write, fsync_dir
from flare_chain.ipfs.content import VerifiedDagReader
from flare_chain.ipfs.importer import OnRead, import_directory, import_file
from flare_chain.ipfs.multiformats import (
    CODEC_RAW,
    SHA2_256,
    Cid,
    base32_decode,
    base32_encode,
    decode_multihash,
    parse_cid,
)
from flare_chain.ipfs.unixfs import BlockSink, FileDagBuilder, ImportOptions

__all__ = ["ContentStore", "CorruptBlock", "GcResult", "VerifyResult"]

log = logging.getLogger(__name__)

_PINS_VERSION = 1
_Feed = bytes | bytearray | memoryview | tuple[str, Path, bool]
"""What to import: bytes, or ``(kind, path, include_hidden)`` with kind "file" or "dir"."""
_STALE_TMP_S = 3600.0
_NOT_A_KEY = "file name is not a block key"


@dataclass(frozen=True, slots=True)
class CorruptBlock:
    """A block file that failed ``verify``: its CID (raw CIDv1 of the key), file and what is wrong."""

    cid: str
    path: Path
    problem: str


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """What ``verify`` found: how many block files it hashed, the bad ones, whether they were moved aside."""

    checked: int
    corrupt: tuple[CorruptBlock, ...]
    repaired: bool


@dataclass(frozen=True, slots=True)
class GcResult:
    """What a garbage collection removed."""

    removed_blocks: int
    freed_bytes: int


def _as_cid(cid: str | Cid) -> Cid:
    return cid if isinstance(cid, Cid) else parse_cid(cid)


def _block_key(cid: Cid) -> str:
    return base32_encode(cid.multihash).upper()


class ContentStore(VerifiedDagReader):
    """A content-addressed block store on local disk producing Kubo's ``ipfs add`` CIDs."""

    def __init__(self, root: str | os.PathLike[str], *, durable: bool = True, create: bool = True) -> None:
        self.root = Path(root).expanduser()
        self.durable = durable
        self._blocks = self.root / "blocks"
        self._pins_path = self.root / "pins.json"
        if not self._blocks.is_dir():
            if not create:
                raise StoreError(f"no IPFS repository at {self.root}; add something first or pass --repo")
            try:
                self._blocks.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create IPFS repository at {self.root}: {exc.strerror}") from None

    # ---------------------------------------------------------------- blocks

    def block_path(self, cid: str | Cid) -> Path:
        """Where the block for ``cid`` lives (whether or not it exists)."""
        key = _block_key(_as_cid(cid))
        return self._blocks / key[-3:-1] / f"{key}.data"

    def has(self, cid: str | Cid) -> bool:
        """Whether the block is present (not verified; reads verify)."""
        return self.block_path(cid).is_file()

    def get_block(self, cid: str | Cid) -> bytes:
        """Read one block and check its hash; IntegrityError on mismatch, StoreError if absent."""
        c = _as_cid(cid)
        path = self.block_path(c)
        try:
            with open(path, "rb", buffering=0) as f:
                data = f.read()
        except FileNotFoundError:
            raise StoreError(f"block {c} is not in the store at {self.root}; "
                             f"fetch it from a peer or re-add the file it belongs to") from None
        except OSError as exc:
            raise StoreError(f"cannot read block {c} from {path}: {exc.strerror}") from None
        code, digest = decode_multihash(c.multihash)
        if code != SHA2_256:
            raise ConfigError(f"block {c} uses multihash code {code:#x}; only sha2-256 is supported")
        actual = hashlib.sha256(data).digest()
        if actual != digest:
            got = c.with_multihash(b"\x12\x20" + actual)
            raise IntegrityError(f"block {c} read from {path} hashed to {got}; refusing it "
                                 f"(the file is left in place: delete it and re-add or re-fetch the block)")
        return data

    def put_block(self, cid: str | Cid, data: bytes | memoryview) -> None:
        """Store bytes fetched from elsewhere after checking they hash to ``cid``."""
        c = _as_cid(cid)
        code, digest = decode_multihash(c.multihash)
        if code != SHA2_256:
            raise ConfigError(f"block {c} uses multihash code {code:#x}; only sha2-256 is supported")
        actual = hashlib.sha256(data).digest()
        if actual != digest:
            got = c.with_multihash(b"\x12\x20" + actual)
            raise IntegrityError(f"block offered as {c} hashed to {got}; refusing to store it")
        path = self.block_path(c)
        with self._lock():  # an add that fails removes the blocks it created; it must own them alone
            state = self._stored(path, c, len(data))
            if state == "intact":
                return
            if state == "damaged":
                log.warning("block %s at %s failed verification; rewriting it with the verified bytes", c, path)
            path.parent.mkdir(exist_ok=True)
            atomic_write(path, (data,), durable=self.durable)
            if self.durable:
                fsync_dir(path.parent)

    @staticmethod
    def _stored(path: Path, cid: Cid, size: int) -> str:
        """``"intact"`` (skip the write), ``"missing"`` or ``"damaged"`` (rewrite it with the good bytes).

        A copy of the right length is hashed before it is trusted: a block
        altered on disk must not make a re-add report success over bad bytes.
        """
        try:
            if path.stat().st_size != size:
                return "damaged"
            with open(path, "rb", buffering=0) as f:
                actual = hashlib.sha256(f.read()).digest()
        except FileNotFoundError:
            return "missing"
        except OSError:
            return "damaged"
        return "intact" if actual == decode_multihash(cid.multihash)[1] else "damaged"

    # ---------------------------------------------------------------- add

    def _add(self, feed: _Feed, options: ImportOptions, *, pin: bool, only_hash: bool,
             on_read: OnRead | None = None) -> str:
        if only_hash:
            return self._run_import(feed, options, None, on_read).encode()
        with self._lock():
            writer = ParallelWriter(self.root, durable=self.durable)
            seen: set[bytes] = set()
            known_dirs: set[Path] = set()
            made_dirs: set[Path] = set()  # shard folders this add created, removed again if it fails

            def sink(cid: Cid, pieces: Sequence[bytes]) -> None:
                if cid.multihash in seen:
                    return
                seen.add(cid.multihash)
                path = self.block_path(cid)
                state = self._stored(path, cid, sum(len(p) for p in pieces))
                if state == "intact":
                    return
                if state == "damaged":
                    log.warning("block %s at %s failed verification; rewriting it from the added bytes", cid, path)
                if path.parent not in known_dirs:
                    known_dirs.add(path.parent)
                    if not path.parent.is_dir():
                        path.parent.mkdir()
                        made_dirs.add(path.parent)
                writer.submit(path, pieces, replaces=state == "damaged")

            try:
                root = self._run_import(feed, options, sink, on_read)
            except BaseException:
                # A refused add (HAMT-sized folder, unreadable file, ...) leaves nothing behind.
                writer.abort()
                for folder in made_dirs:
                    with contextlib.suppress(OSError):
                        folder.rmdir()  # only if empty: other blocks may share the shard folder
                raise
            writer.close()
            if pin:
                self._write_pins(self._read_pins() | {root.encode()})
            return root.encode()

    @staticmethod
    def _run_import(feed: _Feed, options: ImportOptions, sink: BlockSink | None, on_read: OnRead | None) -> Cid:
        if isinstance(feed, bytes | bytearray | memoryview):
            builder = FileDagBuilder(options, sink)
            builder.add_bytes(feed)
            return builder.finish().cid
        kind, path, hidden = feed
        if kind == "file":
            return import_file(path, options, sink, on_read=on_read).cid
        return import_directory(path, options, sink, include_hidden=hidden, on_read=on_read).cid

    def add_bytes(self, data: bytes | bytearray | memoryview, *, cid_version: int = 0,
                  raw_leaves: bool | None = None, pin: bool = True, only_hash: bool = False) -> str:
        """Add in-memory bytes as a UnixFS file; return its CID (Kubo's ``ipfs add`` CID)."""
        opts = ImportOptions(cid_version=cid_version, raw_leaves=raw_leaves)
        return self._add(memoryview(data), opts, pin=pin, only_hash=only_hash)

    def add_file(self, path: str | os.PathLike[str], *, cid_version: int = 0, raw_leaves: bool | None = None,
                 pin: bool = True, only_hash: bool = False) -> str:
        """Add a file from disk, streaming one chunk at a time; return its CID."""
        opts = ImportOptions(cid_version=cid_version, raw_leaves=raw_leaves)
        return self._add(("file", Path(path), False), opts, pin=pin, only_hash=only_hash)

    def add_directory(self, path: str | os.PathLike[str], *, cid_version: int = 0,
                      raw_leaves: bool | None = None, pin: bool = True, only_hash: bool = False,
                      include_hidden: bool = False, on_read: OnRead | None = None) -> str:
        """Add a folder recursively like ``ipfs add -r`` (dotfiles skipped unless asked); return its CID.

        ``on_read`` is told the size of each chunk as it is read (progress over a large folder).
        """
        opts = ImportOptions(cid_version=cid_version, raw_leaves=raw_leaves)
        return self._add(("dir", Path(path), include_hidden), opts, pin=pin, only_hash=only_hash,
                         on_read=on_read)

    # ---------------------------------------------------------------- read

    def _verified_block(self, cid: Cid) -> bytes:
        return self.get_block(cid)

    # ---------------------------------------------------------------- pins

    def pin(self, cid: str | Cid) -> str:
        """Pin a DAG recursively; every block must be present (StoreError names the first missing)."""
        c = _as_cid(cid)
        with self._lock():
            for block in dag.iter_dag(self.get_block, c):
                if not self.has(block):
                    raise StoreError(f"cannot pin {c}: block {block} of its DAG is missing from {self.root}; "
                                     f"fetch or re-add the content first")
            self._write_pins(self._read_pins() | {c.encode()})
        return c.encode()

    def unpin(self, cid: str | Cid) -> None:
        """Remove a recursive pin; StoreError if it was not pinned. Blocks stay until ``gc``."""
        c = _as_cid(cid).encode()
        with self._lock():
            pins = self._read_pins()
            if c not in pins:
                raise StoreError(f"{c} is not pinned in {self.root}; `ipfs pin ls` shows what is")
            self._write_pins(pins - {c})

    def pins(self) -> list[str]:
        """Recursively pinned root CIDs, sorted."""
        return sorted(self._read_pins())

    def _read_pins(self) -> set[str]:
        try:
            doc = json.loads(self._pins_path.read_text("utf-8"))
        except FileNotFoundError:
            return set()
        except (OSError, ValueError) as exc:
            raise StoreError(f"pin file {self._pins_path} is unreadable ({exc}); restore it from backup") from None
        if not isinstance(doc, dict) or doc.get("version") != _PINS_VERSION:
            raise StoreError(f"pin file {self._pins_path} has an unknown format; expected version {_PINS_VERSION}")
        return {parse_cid(c).encode() for c in doc.get("recursive", [])}

    def _write_pins(self, pins: set[str]) -> None:
        body = json.dumps({"version": _PINS_VERSION, "recursive": sorted(pins)}, indent=1).encode()
        atomic_write(self._pins_path, (body,), durable=self.durable)
        if self.durable:
            fsync_dir(self.root)

    # ---------------------------------------------------------------- gc

    def gc(self) -> GcResult:
        """Delete every block not reachable from a pin.

        Reachability is computed first, reading (and verifying) every pinned
        dag-pb block; if any pinned block is missing or corrupt the error is
        raised before anything is deleted.
        """
        with self._lock():
            keep: set[str] = set()
            for root in self._read_pins():
                for block in dag.iter_dag(self.get_block, parse_cid(root)):
                    keep.add(_block_key(block))
            removed = freed = 0
            now = time.time()
            for shard in self._blocks.iterdir():
                if not shard.is_dir():
                    continue
                for entry in os.scandir(shard):
                    name = entry.name
                    if name.endswith(".tmp"):
                        # leftovers of an interrupted write; only old ones, a live writer may own new ones
                        with contextlib.suppress(OSError):
                            if now - entry.stat().st_mtime > _STALE_TMP_S:
                                os.unlink(entry.path)
                        continue
                    if not name.endswith(".data") or name[:-5] in keep:
                        continue
                    size = entry.stat().st_size
                    os.unlink(entry.path)
                    removed += 1
                    freed += size
            return GcResult(removed, freed)

    # ---------------------------------------------------------------- verify

    def verify(self, *, repair: bool = False) -> VerifyResult:
        """Re-hash every stored block (``ipfs repo verify``); with ``repair``, move corrupt ones aside.

        Corrupt files are moved, not deleted, into ``root/corrupt/`` (nothing
        stored is destroyed by a check): the store then reports them missing,
        so a re-add or a fetch writes good copies. Files in ``blocks/`` whose
        names are no block key are reported too and never touched.
        """
        checked = 0
        corrupt: list[CorruptBlock] = []
        for shard in sorted(self._blocks.iterdir()):  # without the lock: adds may go on meanwhile
            if not shard.is_dir():
                continue
            for path in sorted(shard.iterdir()):
                if path.name.endswith(".tmp") or not path.name.endswith(".data"):
                    continue
                checked += 1
                problem = self._verify_file(path)
                if problem is not None:
                    corrupt.append(CorruptBlock(problem[0], path, problem[1]))
        if repair and corrupt:
            quarantine = self.root / "corrupt"
            with self._lock():
                quarantine.mkdir(exist_ok=True)
                for bad in corrupt:
                    if bad.problem == _NOT_A_KEY or self._verify_file(bad.path) is None:  # or an add rewrote it
                        continue
                    with contextlib.suppress(FileNotFoundError):  # or a gc removed it
                        os.replace(bad.path, quarantine / bad.path.name)
                if self.durable:
                    fsync_dir(quarantine)
        return VerifyResult(checked, tuple(corrupt), repaired=repair and bool(corrupt))

    @staticmethod
    def _verify_file(path: Path) -> tuple[str, str] | None:
        """None if the block file hashes to its name; else (the block's CID text, what is wrong)."""
        key = path.name[:-len(".data")]
        try:
            multihash = base32_decode(key)
            code, digest = decode_multihash(multihash)
        except ConfigError:
            return key, _NOT_A_KEY
        shown = Cid.v1(CODEC_RAW, multihash).encode()  # flatfs keeps multihashes; Kubo shows them as raw CIDv1
        if code != SHA2_256:
            return shown, f"multihash code {code:#x} cannot be verified"
        try:
            with open(path, "rb", buffering=0) as f:
                actual = hashlib.sha256(f.read()).digest()
        except OSError as exc:
            return shown, f"unreadable: {exc.strerror}"
        if actual != digest:
            got = Cid.v1(CODEC_RAW, b"\x12\x20" + actual).encode()
            return shown, f"block in storage hashed to {got}"
        return None

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        fd = os.open(self.root / "repo.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
