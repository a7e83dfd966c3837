"""Crash-safe file writes for the block store: temp file, fsync, rename.

A block file either does not exist or holds its complete bytes: data is
written to a unique temp name in the destination folder, fsynced, then renamed
over the final name; the folder is fsynced afterwards so the rename survives
a power cut. :class:`ParallelWriter` does the same for a whole ``add`` with
one filesystem sync instead of one fsync per block, and writes on worker
threads so hashing the next chunk overlaps with the disk (hashlib and
os.write both release the GIL).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from flare_chain.errors import StoreError

__all__ = ["ParallelWriter", "atomic_write", "fsync_dir", "sync_filesystem"]

_TMP_SUFFIX = ".tmp"


def fsync_dir(path: Path) -> None:
    """Make renames inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, pieces: Sequence[bytes | memoryview], *, durable: bool = True) -> None:
    """Write the concatenation of ``pieces`` to ``path`` atomically (never a torn file).

    ``durable=False`` skips the fsync (the file is still never torn while the
    OS runs, but a power cut may lose it); the folder fsync is the caller's.
    """
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}{_TMP_SUFFIX}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o444)
        try:
            total = sum(len(p) for p in pieces)
            written = os.writev(fd, pieces) if pieces else 0
            if written != total:  # short write (rare: disk full, signals); finish it piece by piece
                data = b"".join(pieces)[written:]
                while data:
                    data = data[os.write(fd, data):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}; check free space and permissions") from None


def _write_tmp(path: Path, pieces: Sequence[bytes | memoryview], rename: bool) -> Path:
    """Write a complete temp file next to ``path``; rename it into place now if ``rename``."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}{_TMP_SUFFIX}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o444)
        try:
            total = sum(len(p) for p in pieces)
            written = os.writev(fd, pieces) if pieces else 0
            if written != total:
                data = b"".join(pieces)[written:]
                while data:
                    data = data[os.write(fd, data):]
        finally:
            os.close(fd)
        if rename:
            os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}; check free space and permissions") from None
    return tmp


def sync_filesystem(path: Path) -> None:
    """Flush every dirty page of the filesystem holding ``path`` (Linux syncfs; else sync)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _syncfs is None or _syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).syncfs  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_syncfs = _load_syncfs()


class ParallelWriter:
    """Write many blocks on worker threads, crash-safely, with two filesystem syncs in all.

    fsync per 256 KiB block costs a journal commit each (tens of MB/s on
    ordinary disks), so a durable writer instead writes every block to a temp
    file, syncs the filesystem once, renames them all into place and syncs
    again: the same tmp + fsync + rename guarantee, batched. Until ``close``
    returns no block of the batch is visible under its final name. With
    ``durable=False`` each block is renamed as soon as it is written.

    ``submit`` blocks once ``max_pending`` writes are queued (bounding memory
    to about ``max_pending`` chunks); ``close`` re-raises the first failure
    and removes the batch's temp files if anything failed. ``abort`` (instead
    of ``close``, for an add that failed half-way) removes every file the
    batch created, so a refused add leaves no stray blocks behind.
    """

    def __init__(self, root: Path, *, durable: bool = True, workers: int = 2, max_pending: int = 16) -> None:
        self._root = root
        self._durable = durable
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ipfs-write")
        self._slots = threading.BoundedSemaphore(max_pending)
        self._jobs: list[tuple[Path, Future[Path]]] = []
        self._replacing: set[Path] = set()

    def submit(self, path: Path, pieces: Sequence[bytes | memoryview], *, replaces: bool = False) -> None:
        """Queue a block write; ``replaces``: a (damaged) file is already at ``path``, which ``abort`` keeps."""
        self._slots.acquire()
        future = self._pool.submit(_write_tmp, path, pieces, not self._durable)
        future.add_done_callback(lambda _f: self._slots.release())
        self._jobs.append((path, future))
        if replaces:
            self._replacing.add(path)

    def abort(self) -> None:
        """Wait for the queued writes, then remove every file this batch created.

        Durable batches were never renamed into place, so only temp files go.
        Non-durable ones were; their new files go too, except where they
        replaced a file that was there before (its bytes are now the right ones).
        The caller holds the repository lock, so no other writer created them.
        """
        try:
            for path, future in self._jobs:
                try:
                    tmp = future.result()
                except BaseException:  # _write_tmp already removed its own temp file
                    continue
                if self._durable:
                    with contextlib.suppress(OSError):
                        tmp.unlink()
                elif path not in self._replacing:
                    with contextlib.suppress(OSError):
                        path.unlink()
        finally:
            self._pool.shutdown(wait=True)
            self._jobs.clear()

    def close(self) -> None:
        try:
            done: list[tuple[Path, Path]] = []
            error: BaseException | None = None
            for path, future in self._jobs:
                try:
                    done.append((path, future.result()))
                except BaseException as exc:
                    error = error or exc
            if error is not None:
                if self._durable:
                    for _path, tmp in done:
                        with contextlib.suppress(OSError):
                            tmp.unlink()
                raise error
            if self._durable and done:
                sync_filesystem(self._root)
                for path, tmp in done:
                    os.replace(tmp, path)
                sync_filesystem(self._root)
        finally:
            self._pool.shutdown(wait=True)
            self._jobs.clear()
