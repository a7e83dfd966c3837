"""A client for the Kubo RPC API (``/api/v0``) that trusts the endpoint with nothing.

Any endpoint speaking Kubo's RPC works: a Kubo daemon, IPFS Cluster's proxy,
or another node's ``flare-chain ipfs serve``. Whatever it is, it cannot feed
us bad data:

* **Reads** never use ``/cat``: files are fetched block by block with
  ``/block/get`` and each block is hashed and compared with the CID it was
  asked for before it is used (:mod:`flare_chain.ipfs.fetch`); the DAG walk
  (:mod:`flare_chain.ipfs.dag`) then follows only links found in verified
  blocks. A block that fails raises IntegrityError naming the endpoint, the
  CID asked for and what the bytes hashed to, and is never cached.
* **Adds** compute the CID locally with the same options (Kubo's importer
  layout, :mod:`flare_chain.ipfs.unixfs`) and compare it with the CID the
  endpoint answers; a mismatch raises IntegrityError.

Connection errors, timeouts and 5xx answers that are not Kubo command errors
are retried with exponential backoff (``retries``, ``backoff_s``,
``max_backoff_s``; each retry is logged); after the last try a StoreError
names the endpoint and suggests checking that the daemon runs. A Kubo command
error (HTTP 500 with ``{"Message", "Code", "Type": "error"}``) is the
endpoint's answer, not an outage, and is raised at once as StoreError.

Why not ipfshttpclient: the last stable release on PyPI (0.7.0, March 2021)
checks the daemon version in ``connect()`` against a hard-coded window and
raises ``VersionMismatch`` for any daemon from 0.8.0 on; its 0.8.0a2
pre-release widens the window only to ``< 0.9.0`` and warns beyond it
(py-ipfs-http-client issues #282, #296, #310, #315). Its maintainers asked
for a new maintainer in 2022 (issue #316), and web3.py issue #2629 (2022)
asks to drop it as unmaintained. The subset we need
(add, block/get, block/put, pin add/rm/ls, id, version) is a few POSTs, so we
speak it directly with httpx, which also lets tests swap the network for
``httpx.MockTransport``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from flare_chain.errors import ConfigError, IntegrityError, StoreError
from flare_chain.ipfs import dag
from flare_chain.ipfs.content import VerifiedDagReader
from flare_chain.ipfs.fetch import MAX_BLOCK_BYTES, VerifiedBlocks
from flare_chain.ipfs.importer import OnRead, import_directory, import_file
from flare_chain.ipfs.multiformats import CODEC_DAG_PB, CODEC_RAW, Cid, parse_cid, sha256_multihash
from flare_chain.ipfs.multipart import MultipartBody, UploadEntry, upload_entries
from flare_chain.ipfs.store import ContentStore
from flare_chain.ipfs.unixfs import DEFAULT_CHUNK_SIZE, FileDagBuilder, ImportOptions

__all__ = [
    "DEFAULT_BACKOFF_S",
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_BACKOFF_S",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT_S",
    "AddedEntry",
    "KuboClient",
    "parse_chunker",
]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:5001"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_RETRIES = 5
DEFAULT_BACKOFF_S = 0.5
DEFAULT_MAX_BACKOFF_S = 10.0
_MAX_ANSWER_BYTES = 64 * 1024 * 1024  # add/pin listings; anything bigger is not an honest answer
_MAX_SMALL_ANSWER_BYTES = 1024 * 1024
_CODECS = {"raw": CODEC_RAW, "dag-pb": CODEC_DAG_PB}
_HINT = "check that the daemon runs (`ipfs daemon` or `flare-chain ipfs serve`) and that the URL is its RPC address"


@dataclass(frozen=True, slots=True)
class AddedEntry:
    """One line of Kubo's ``add`` answer: path as sent, CID, cumulative DAG size in bytes."""

    name: str
    cid: str
    size: int


def parse_chunker(chunker: str) -> int:
    """Chunk size of a Kubo ``size-N`` chunker; ConfigError for chunkers we cannot reproduce."""
    kind, _, value = chunker.partition("-")
    if kind != "size" or not value.isdigit():
        raise ConfigError(f"chunker {chunker!r} cannot be reproduced locally to verify the CID; "
                          f"use size-N (Kubo's default is size-{DEFAULT_CHUNK_SIZE})")
    size = int(value)
    if not 1 <= size <= 1024 * 1024:
        raise ConfigError(f"chunker {chunker!r}: size must be 1..1048576 bytes (Kubo's limit)")
    return size


def _counted(body: MultipartBody, on_sent: OnRead) -> Iterator[bytes]:
    """``body``'s pieces, each reported to ``on_sent`` as it is handed to the transport."""
    for piece in body:
        yield piece
        on_sent(len(piece))


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _kubo_error(body: bytes) -> str | None:
    """The Message of a Kubo error object, or None if ``body`` is not one."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if isinstance(doc, dict) and doc.get("Type") == "error" and "Message" in doc:
        return str(doc["Message"])
    return None


class KuboClient(VerifiedDagReader):
    """Talk to a Kubo RPC endpoint; every byte read back is verified against its CID.

    ``transport`` replaces the network (``httpx.MockTransport`` in tests);
    ``cache`` is an optional local :class:`ContentStore` that verified blocks
    are written to and read from first. ``sleep`` is what waits between
    retries (tests pass a recorder). Use as a context manager or call
    :meth:`close`.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        backoff_s: float = DEFAULT_BACKOFF_S,
        max_backoff_s: float = DEFAULT_MAX_BACKOFF_S,
        max_block_bytes: int = MAX_BLOCK_BYTES,
        cache: ContentStore | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(f"IPFS endpoint {base_url!r} is not an http(s) URL; expected e.g. {DEFAULT_BASE_URL}")
        if retries < 0 or backoff_s < 0 or max_backoff_s < 0 or timeout_s <= 0:
            raise ConfigError("retries, backoff_s and max_backoff_s must be >= 0 and timeout_s > 0")
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_block_bytes = max_block_bytes
        self.cache = cache
        self._sleep = sleep
        self._http = httpx.Client(base_url=self.base_url, transport=transport, timeout=timeout_s)
        self._blocks = VerifiedBlocks(self._fetch_block, source=self.base_url, cache=cache)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> KuboClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KuboClient({self.base_url!r})"

    # ---------------------------------------------------------------- transport

    def _call(self, command: str, params: Sequence[tuple[str, str]] = (), *, body: MultipartBody | None = None,
              max_bytes: int = _MAX_SMALL_ANSWER_BYTES, what: str = "", on_sent: OnRead | None = None) -> bytes:
        """POST ``/api/v0/<command>`` with retries; return the answer body (at most ``max_bytes``).

        ``on_sent`` is told the size of each piece of ``body`` as it goes out (upload progress).
        """
        label = f"{command} {what}".strip()
        attempts = self.retries + 1
        last = ""
        for attempt in range(attempts):
            if attempt:
                delay = min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)
                log.warning("IPFS endpoint %s: %s failed (%s); retry %d/%d in %.1f s",
                            self.base_url, label, last, attempt, self.retries, delay)
                self._sleep(delay)
            headers = {}
            content = None
            if body is not None:
                headers = {"Content-Type": body.content_type, "Content-Length": str(body.length)}
                content = iter(body) if on_sent is None else _counted(body, on_sent)
            try:
                with self._http.stream("POST", f"/api/v0/{command}", params=list(params),
                                       content=content, headers=headers) as resp:
                    status = resp.status_code
                    if status >= 400:
                        raw = self._read(resp, _MAX_SMALL_ANSWER_BYTES, label, truncate=True)
                        message = _kubo_error(raw)
                        if status >= 500 and message is None:
                            last = f"HTTP {status}"
                            continue
                        self._raise_answer(status, message, raw, label)
                    return self._read(resp, max_bytes, label)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise StoreError(f"IPFS endpoint {self.base_url} did not answer {label} after {attempts} "
                         f"tr{'y' if attempts == 1 else 'ies'} (last: {last}); {_HINT}")

    def _read(self, resp: httpx.Response, max_bytes: int, label: str, *, truncate: bool = False) -> bytes:
        out = bytearray()
        for piece in resp.iter_bytes():
            out += piece
            if len(out) > max_bytes:
                if truncate:
                    return bytes(out[:max_bytes])
                raise IntegrityError(f"{label} from {self.base_url} sent more than {max_bytes} bytes; refusing it")
        return bytes(out)

    def _raise_answer(self, status: int, message: str | None, raw: bytes, label: str) -> None:
        if message is not None:
            if status == 400:
                raise ConfigError(f"IPFS endpoint {self.base_url} rejected {label}: {message}")
            raise StoreError(f"IPFS endpoint {self.base_url} failed {label}: {message}")
        if status in (404, 405):
            raise ConfigError(f"{self.base_url} answered HTTP {status} to {label}: is it a Kubo RPC API "
                              f"address (port 5001 by default, not the gateway on 8080)?")
        text = raw[:200].decode("utf-8", "replace").strip()
        raise StoreError(f"IPFS endpoint {self.base_url} answered HTTP {status} to {label}: {text}")

    def _json(self, command: str, params: Sequence[tuple[str, str]] = (), *, what: str = "") -> Any:
        raw = self._call(command, params, what=what)
        try:
            return json.loads(raw)
        except ValueError:
            raise StoreError(f"IPFS endpoint {self.base_url} answered {command} with something "
                             f"that is not JSON: {raw[:80]!r}") from None

    # ---------------------------------------------------------------- node info

    def version(self) -> dict[str, Any]:
        """The endpoint's ``/version`` object (``Version``, ``Commit``, ``Repo``, ``System``, ...)."""
        doc = self._json("version")
        if not isinstance(doc, dict) or "Version" not in doc:
            raise StoreError(f"IPFS endpoint {self.base_url} answered version without a Version field")
        return doc

    def id(self) -> dict[str, Any]:
        """The endpoint's ``/id`` object (``ID``, ``AgentVersion``, ``Addresses``, ...)."""
        doc = self._json("id")
        if not isinstance(doc, dict) or "ID" not in doc:
            raise StoreError(f"IPFS endpoint {self.base_url} answered id without an ID field")
        return doc

    # ---------------------------------------------------------------- add

    def add(self, source: bytes | bytearray | memoryview | str | os.PathLike[str], **options: Any) -> str:
        """Add bytes, a file or (with ``recursive=True``) a folder; return the root CID, verified.

        Takes the keyword options of :meth:`add_entries`.
        """
        return self.add_entries(source, **options)[-1].cid

    def add_entries(
        self,
        source: bytes | bytearray | memoryview | str | os.PathLike[str],
        *,
        cid_version: int = 0,
        raw_leaves: bool | None = None,
        chunker: str = f"size-{DEFAULT_CHUNK_SIZE}",
        hash: str = "sha2-256",
        pin: bool = True,
        only_hash: bool = False,
        recursive: bool = False,
        include_hidden: bool = False,
        name: str | None = None,
        on_read: OnRead | None = None,
        on_sent: OnRead | None = None,
    ) -> list[AddedEntry]:
        """``ipfs add`` over the RPC; every line of the answer, the root last.

        Bytes-like ``source`` is file content (sent under ``name``, default its
        CID, as ``ipfs add`` names stdin); ``str`` or a path is a file or
        folder on disk. The root CID is recomputed here with the same
        ``cid_version``, ``raw_leaves`` and ``chunker`` before anything is
        sent, and the endpoint's answer must equal it (IntegrityError).
        Only ``size-N`` chunkers and sha2-256 can be reproduced, so only those
        are accepted (ConfigError). ``on_read`` follows the local hashing pass
        and ``on_sent`` the upload, in bytes, for progress over large folders.
        """
        if hash != "sha2-256":
            raise ConfigError(f"hash {hash!r} cannot be verified locally; only sha2-256 is supported")
        opts = ImportOptions(cid_version=cid_version, raw_leaves=raw_leaves, chunk_size=parse_chunker(chunker))
        entries: list[UploadEntry]
        if isinstance(source, bytes | bytearray | memoryview):
            builder = FileDagBuilder(opts)
            builder.add_bytes(source)
            expected = builder.finish().cid
            entries = [UploadEntry.from_bytes(name or expected.encode(), source)]
            what = name or f"{len(source)} bytes"
        else:
            path = Path(source)
            if not path.exists():
                raise ConfigError(f"no such file or directory: {path}")
            if path.is_dir():
                if not recursive:
                    raise ConfigError(f"{path} is a directory; pass recursive=True (ipfs add -r)")
                expected = import_directory(path, opts, include_hidden=include_hidden, on_read=on_read).cid
            else:
                expected = import_file(path, opts, on_read=on_read).cid
            entries = upload_entries(path, include_hidden=include_hidden)
            if name is not None:
                raise ConfigError("name= is only for bytes; a file or folder is sent under its own name")
            what = str(path)
        params = [("cid-version", str(cid_version)), ("chunker", chunker), ("hash", hash), ("pin", _bool(pin)),
                  ("only-hash", _bool(only_hash)), ("progress", "false")]
        if raw_leaves is not None:
            params.append(("raw-leaves", _bool(raw_leaves)))
        raw = self._call("add", params, body=MultipartBody(entries), max_bytes=_MAX_ANSWER_BYTES, what=what,
                         on_sent=on_sent)
        added = self._parse_add_answer(raw, what)
        answered = added[-1].cid
        try:
            ok = parse_cid(answered) == expected
        except ConfigError:
            ok = False
        if not ok:
            log.warning("IPFS endpoint %s answered %s for %s, which hashes to %s", self.base_url, answered,
                        what, expected)
            raise IntegrityError(f"add of {what} to {self.base_url} answered {answered!r}, but the bytes "
                                 f"hash to {expected} (cid-version {cid_version}, raw-leaves "
                                 f"{opts.use_raw_leaves}, chunker {chunker}); refusing it (or the file "
                                 f"changed during the upload)")
        return added

    def _parse_add_answer(self, raw: bytes, what: str) -> list[AddedEntry]:
        added = []
        for line in raw.splitlines():
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                raise StoreError(f"IPFS endpoint {self.base_url} answered add of {what} with a line "
                                 f"that is not JSON: {line[:80]!r}") from None
            if not isinstance(doc, dict):
                continue
            if doc.get("Type") == "error":
                raise StoreError(f"IPFS endpoint {self.base_url} failed add of {what}: {doc.get('Message')}")
            if "Hash" not in doc:  # progress lines carry only Bytes
                continue
            try:
                size = int(doc.get("Size") or 0)
            except (TypeError, ValueError):
                size = 0
            added.append(AddedEntry(str(doc.get("Name", "")), str(doc["Hash"]), size))
        if not added:
            raise StoreError(f"IPFS endpoint {self.base_url} answered add of {what} without any CID "
                             f"(the add may have failed mid-stream); {_HINT}")
        return added

    # ---------------------------------------------------------------- blocks

    def _fetch_block(self, cid: Cid) -> bytes:
        return self._call("block/get", [("arg", cid.encode())], max_bytes=self.max_block_bytes, what=cid.encode())

    def block_get(self, cid: str | Cid) -> bytes:
        """One raw block, verified against ``cid`` (and taken from / written to the cache if any)."""
        return self._blocks(cid if isinstance(cid, Cid) else parse_cid(cid))

    def block_put(self, data: bytes | bytearray | memoryview, *, cid_codec: str = "raw", pin: bool = False) -> str:
        """Store one block on the endpoint; return its CID after checking the endpoint's answer."""
        if cid_codec not in _CODECS:
            raise ConfigError(f"cid_codec {cid_codec!r} not supported; use one of {sorted(_CODECS)}")
        blob = bytes(data)
        expected = Cid.v1(_CODECS[cid_codec], sha256_multihash(blob))
        body = MultipartBody([UploadEntry.from_bytes("block", blob)])
        params = [("cid-codec", cid_codec), ("mhtype", "sha2-256"), ("pin", _bool(pin))]
        raw = self._call("block/put", params, body=body, what=f"{len(blob)} bytes")
        try:
            key = str(json.loads(raw)["Key"])
            answered = parse_cid(key)
        except (ValueError, KeyError, TypeError, ConfigError):
            key, answered = repr(raw[:80]), None
        # CIDv0 and v1 name the same block; codec and multihash must agree.
        if answered is None or (answered.codec, answered.multihash) != (expected.codec, expected.multihash):
            raise IntegrityError(f"block/put to {self.base_url} answered {key}, but the block hashes to "
                                 f"{expected}; refusing it")
        return expected.encode()

    # ---------------------------------------------------------------- reading files

    def _verified_block(self, cid: Cid) -> bytes:
        return self._blocks(cid)

    def pull(self, cid_or_path: str | Cid, store: ContentStore | None = None, *, pin: bool = True) -> str:
        """Copy a whole DAG, verified block by block, into ``store`` (default: the cache); return its CID.

        With ``pin`` the root is pinned there, so a later ``gc`` keeps it.
        """
        target = store if store is not None else self.cache
        if target is None:
            raise ConfigError("pull needs a store: pass one or create the client with cache=ContentStore(...)")
        blocks = VerifiedBlocks(self._fetch_block, source=self.base_url, cache=target)
        root = cid_or_path if isinstance(cid_or_path, Cid) else dag.resolve_path(blocks, cid_or_path)
        for cid in dag.iter_dag(blocks, root):
            if not target.has(cid):  # raw leaves are not read by the walk
                blocks(cid)
        if pin:
            target.pin(root)
        return root.encode()

    # ---------------------------------------------------------------- pins

    def pin_add(self, cid_or_path: str | Cid) -> list[str]:
        """Pin recursively on the endpoint; the CIDs it reports pinned."""
        arg = str(cid_or_path)
        doc = self._json("pin/add", [("arg", arg), ("recursive", "true")], what=arg)
        return [str(c) for c in (doc.get("Pins") or [])] if isinstance(doc, dict) else []

    def pin_rm(self, cid_or_path: str | Cid) -> list[str]:
        """Remove a recursive pin on the endpoint; the CIDs it reports unpinned."""
        arg = str(cid_or_path)
        doc = self._json("pin/rm", [("arg", arg), ("recursive", "true")], what=arg)
        return [str(c) for c in (doc.get("Pins") or [])] if isinstance(doc, dict) else []

    def pin_ls(self, cid_or_path: str | Cid | None = None, *, type: str = "recursive") -> dict[str, str]:
        """Pins on the endpoint as ``{CID: type}``; ``type`` is Kubo's (all, recursive, direct, indirect)."""
        if type not in ("all", "recursive", "direct", "indirect"):
            raise ConfigError(f"pin type {type!r}: expected all, recursive, direct or indirect")
        params = [("type", type)]
        if cid_or_path is not None:
            params.append(("arg", str(cid_or_path)))
        doc = self._json("pin/ls", params, what=str(cid_or_path or ""))
        keys = doc.get("Keys") if isinstance(doc, dict) else None
        if not isinstance(keys, dict):
            raise StoreError(f"IPFS endpoint {self.base_url} answered pin/ls without a Keys object")
        return {str(cid): str((info or {}).get("Type", "")) for cid, info in keys.items()}
