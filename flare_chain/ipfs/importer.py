"""Reading files and folders from disk into UnixFS DAGs (the I/O half of ``ipfs add``).

:mod:`flare_chain.ipfs.unixfs` does the maths; this module only reads. Files
are read one chunk at a time into a fresh buffer that is hashed and handed to
the sink as is, so a 512 MiB file is never held in memory, and never copied.
Folders follow ``ipfs add -r``: entries sorted by name, dotfiles skipped
unless ``include_hidden``, symlinks stored as UnixFS symlinks (not followed).
The pure ``cid_of_file``/``cid_of_directory`` equal ``ipfs add --only-hash``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from flare_chain.errors import ConfigError, StoreError
from flare_chain.ipfs.unixfs import (
    BlockSink,
    DagEntry,
    FileDagBuilder,
    ImportOptions,
    build_directory,
    build_symlink,
)

__all__ = ["OnRead", "cid_of_directory", "cid_of_file", "import_directory", "import_file", "import_path"]

OnRead = Callable[[int], None]
"""Told how many file bytes were just read, so a caller can show progress over a large import."""


def _read_chunk(f: object, size: int) -> bytes:
    """Read exactly ``size`` bytes unless the file ends (Go's io.ReadFull, as Kubo's chunker)."""
    data: bytes = f.read(size)  # type: ignore[attr-defined]
    if len(data) == size or not data:
        return data
    parts = [data]
    have = len(data)
    while have < size:
        more: bytes = f.read(size - have)  # type: ignore[attr-defined]
        if not more:
            break
        parts.append(more)
        have += len(more)
    return b"".join(parts)


def import_file(path: str | os.PathLike[str], options: ImportOptions | None = None,
                sink: BlockSink | None = None, *, on_read: OnRead | None = None) -> DagEntry:
    """Chunk a file from disk into a balanced UnixFS DAG; blocks go to ``sink``, chunk sizes to ``on_read``."""
    opts = options or ImportOptions()
    builder = FileDagBuilder(opts, sink)
    try:
        with open(path, "rb", buffering=0) as f:
            while chunk := _read_chunk(f, opts.chunk_size):
                builder.add_chunk(chunk)
                if on_read is not None:
                    on_read(len(chunk))
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory; add it recursively (-r / add_directory)") from None
    except FileNotFoundError:
        raise ConfigError(f"no such file {path}") from None
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from None
    return builder.finish()


def import_path(path: Path, options: ImportOptions, sink: BlockSink | None, *, include_hidden: bool,
                on_read: OnRead | None = None) -> DagEntry:
    """A file, folder or symlink, whichever ``path`` is."""
    if path.is_symlink():
        return build_symlink(os.fsencode(os.readlink(path)), options, sink)
    if path.is_dir():
        return import_directory(path, options, sink, include_hidden=include_hidden, on_read=on_read)
    return import_file(path, options, sink, on_read=on_read)


def import_directory(path: str | os.PathLike[str], options: ImportOptions | None = None,
                     sink: BlockSink | None = None, *, include_hidden: bool = False,
                     on_read: OnRead | None = None) -> DagEntry:
    """Import a folder tree bottom-up; the directory node comes last, so its children exist first."""
    opts = options or ImportOptions()
    root = Path(path)
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory")
    try:
        names = sorted(os.listdir(root), key=os.fsencode)
    except OSError as exc:
        raise StoreError(f"cannot list {root}: {exc.strerror}") from None
    entries = []
    for name in names:
        if name.startswith(".") and not include_hidden:
            continue
        entries.append((os.fsencode(name), import_path(root / name, opts, sink, include_hidden=include_hidden,
                                                       on_read=on_read)))
    return build_directory(entries, opts, sink)


def cid_of_file(path: str | os.PathLike[str], cid_version: int = 0, *, raw_leaves: bool | None = None) -> str:
    """``ipfs add --only-hash FILE``: the CID, storing nothing."""
    return import_file(path, ImportOptions(cid_version=cid_version, raw_leaves=raw_leaves)).cid.encode()


def cid_of_directory(path: str | os.PathLike[str], cid_version: int = 0, *, raw_leaves: bool | None = None,
                     include_hidden: bool = False) -> str:
    """``ipfs add -r --only-hash DIR``: the CID, storing nothing."""
    opts = ImportOptions(cid_version=cid_version, raw_leaves=raw_leaves)
    return import_directory(path, opts, include_hidden=include_hidden).cid.encode()
