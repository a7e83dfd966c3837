"""Fetching a base model by CID into a local cache, verified, complete or not at all.

A node that does not hold the federation's base model reads it from any IPFS
source (a Kubo endpoint, a peer's ``flare-chain ipfs serve``, the embedded
store) block by block; every block is hashed against its CID before a byte of
it is written (:class:`flare_chain.ipfs.VerifiedBlocks`). The tree is written
into a temporary sibling of its cache folder, checked as a model folder
(safetensors only), re-hashed as a whole with ``ipfs add -r``'s rules and
compared with the CID, and only then renamed to ``<cache>/<CID>``. So a
tampered block, a DAG laid out some other way, a pickle file or a crash
mid-way leaves nothing under the CID's name, and a folder found there later is
the model. It is still re-hashed on every reuse: a cache folder someone edited
is fetched again rather than trusted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from flare_chain.basemodel.folder import check_model_folder, model_cid
from flare_chain.errors import ConfigError, FlareError, IntegrityError, StoreError
from flare_chain.ipfs import Cid, VerifiedBlocks, parse_cid
from flare_chain.ipfs.dag import iter_file
from flare_chain.ipfs.dagpb import (
    UNIXFS_DIRECTORY,
    UNIXFS_FILE,
    UNIXFS_HAMT_SHARD,
    UNIXFS_RAW,
    decode_pb_node,
    decode_unixfs_data,
)
from flare_chain.ipfs.multiformats import CODEC_DAG_PB, CODEC_RAW, cid_from_bytes
from flare_chain.progress import progress

__all__ = ["PARTIAL_PREFIX", "cached_model_path", "fetch_model"]

log = logging.getLogger(__name__)

PARTIAL_PREFIX = ".partial-"
"""Folders under the cache being written; never read as a model, removed once stale."""
_STALE_PARTIAL_S = 3600.0


def cached_model_path(cache_root: Path, cid: str) -> Path:
    """Where the model ``cid`` lives once fetched (whether or not it is there yet)."""
    return Path(cache_root) / parse_cid(cid).encode()


def _check_name(raw: bytes | None, parent: str) -> str:
    """A link name that is safe as one path component, or IntegrityError (a hostile DAG cannot escape the folder)."""
    try:
        name = (raw or b"").decode("utf-8")
    except UnicodeDecodeError:
        raise IntegrityError(f"directory {parent} holds an entry whose name is not UTF-8; refusing the model") from None
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name or name.startswith("."):
        raise IntegrityError(f"directory {parent} holds an entry named {name!r}, which a model folder cannot "
                             "hold; refusing the model")
    return name


def _write_tree(get_block: Callable[[Cid], bytes], cid: Cid, dest: Path, on_bytes: Callable[[int], None]) -> None:
    """Write the UnixFS directory ``cid`` into the existing folder ``dest``: files and subfolders only."""
    if cid.codec != CODEC_DAG_PB:
        raise ConfigError(f"{cid} is a raw block, not a folder; pass the CID `flare-chain model add` printed")
    node = decode_pb_node(get_block(cid))
    kind = decode_unixfs_data(node.data or b"").type
    if kind == UNIXFS_HAMT_SHARD:
        raise StoreError(f"{cid} is a HAMT-sharded directory, which flare-chain cannot read; split the model folder")
    if kind != UNIXFS_DIRECTORY:
        raise ConfigError(f"{cid} is not a folder; pass the CID `flare-chain model add` printed for the model folder")
    for link in node.links:
        name = _check_name(link.name, cid.encode())
        try:
            child = parse_cid(cid_from_bytes(link.hash))
        except ConfigError as exc:
            raise IntegrityError(f"directory {cid} links {name!r} to a malformed CID ({exc})") from None
        target = dest / name
        if target.exists():
            raise IntegrityError(f"directory {cid} names {name!r} twice; refusing the model")
        if child.codec == CODEC_RAW:
            _write_file(iter_file(get_block, child), target, on_bytes)
            continue
        block = get_block(child)
        child_kind = decode_unixfs_data(decode_pb_node(block).data or b"").type
        reader = _first_block_known(get_block, child, block)  # the walk below starts with the block just read
        if child_kind == UNIXFS_DIRECTORY:
            target.mkdir()
            _write_tree(reader, child, target, on_bytes)
        elif child_kind in (UNIXFS_FILE, UNIXFS_RAW):
            _write_file(iter_file(reader, child), target, on_bytes)
        else:
            raise IntegrityError(f"directory {cid} holds {name!r}, which is neither a file nor a folder (a symlink?); "
                                 "a model folder carries its files, refusing it")


def _first_block_known(get_block: Callable[[Cid], bytes], cid: Cid, block: bytes) -> Callable[[Cid], bytes]:
    """``get_block`` that answers ``cid`` with the ``block`` already fetched (and verified) instead of asking again."""

    def read(wanted: Cid) -> bytes:
        return block if wanted == cid else get_block(wanted)

    return read


def _write_file(pieces: object, target: Path, on_bytes: Callable[[int], None]) -> None:
    with open(target, "wb") as fh:
        for piece in pieces:  # type: ignore[attr-defined]
            fh.write(piece)
            on_bytes(len(piece))


def _remove_stale_partials(cache_root: Path, cid: str) -> None:
    now = time.time()
    for stale in cache_root.glob(f"{PARTIAL_PREFIX}{cid}-*"):
        with contextlib.suppress(OSError):
            if now - stale.stat().st_mtime > _STALE_PARTIAL_S:
                shutil.rmtree(stale, ignore_errors=True)


def _verified_cache_hit(final: Path, cid: str, version: int) -> bool:
    """Whether ``final`` holds exactly the model ``cid``; a folder that does not is removed (it is only a cache)."""
    if not final.is_dir():
        return False
    try:
        found = model_cid(final, version)
    except FlareError as exc:
        found = f"an unreadable folder ({exc})"
    if found == cid:
        return True
    log.warning("cached model %s hashes to %s, not its CID; fetching it again", final, found)
    aside = final.with_name(f"{PARTIAL_PREFIX}{cid}-stale-{secrets.token_hex(4)}")
    with contextlib.suppress(OSError):
        os.rename(final, aside)
    shutil.rmtree(aside, ignore_errors=True)
    return False


def fetch_model(cid: str, fetch: Callable[[Cid], bytes], cache_root: Path, *, source: str,
                show_progress: bool = True) -> Path:
    """The model folder ``cid``, from ``cache_root`` if it is there intact, else fetched from ``fetch``.

    ``fetch(cid) -> bytes`` is any block source (``KuboClient.block_get``,
    ``ContentStore.get_block``); ``source`` names it in errors. Raises
    IntegrityError when a block or the finished folder does not hash to its
    CID, ConfigError when the folder is not a safetensors model; in every
    failure the temporary folder is removed and the cache is as it was.
    """
    root_cid = parse_cid(cid)
    text = root_cid.encode()
    cache_root = Path(cache_root)
    try:
        cache_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the model cache {cache_root}: {exc.strerror}; set [model] cache_dir "
                          "to a writable folder") from None
    final = cached_model_path(cache_root, text)
    if _verified_cache_hit(final, text, root_cid.version):
        log.info("base model %s found in %s", text, final)
        return final
    _remove_stale_partials(cache_root, text)
    blocks = VerifiedBlocks(fetch, source=source)
    root_block = blocks(root_cid)
    total = sum(link.tsize or 0 for link in decode_pb_node(root_block).links) if root_cid.codec == CODEC_DAG_PB else 0
    tmp = cache_root / f"{PARTIAL_PREFIX}{text}-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        log.info("fetching base model %s from %s into %s", text, source, final)
        with progress(f"fetch model {text[:12]}…", total, unit="B", logger=log, enabled=show_progress) as bar:
            _write_tree(_first_block_known(blocks, root_cid, root_block), root_cid, tmp, bar.update)
        try:
            check_model_folder(tmp)
        except ConfigError as exc:
            raise ConfigError(f"the model {text} from {source} is not usable: {exc}") from None
        got = model_cid(tmp, root_cid.version)
        if got != text:
            raise IntegrityError(f"the model fetched from {source} as {text} re-hashes to {got} as a folder: it was "
                                 "not added with `ipfs add -r` defaults (or `flare-chain model add`); refusing it")
        try:
            os.rename(tmp, final)
        except OSError:
            if not _verified_cache_hit(final, text, root_cid.version):  # another fetcher did not win either
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("base model %s verified and cached in %s", text, final)
    return final
