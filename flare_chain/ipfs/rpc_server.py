"""Serve a :class:`ContentStore` over the Kubo RPC subset flare-chain uses, so processes share one store.

``flare-chain ipfs serve`` runs this; :func:`serve_in_thread` runs it beside
tests and the devnet. Commands, all ``POST /api/v0/<command>`` as in Kubo
(any other method gets 405, an unknown command 404):

=================  =================================================================
``add``            multipart files (see :mod:`flare_chain.ipfs.multipart`); query
                   ``cid-version``, ``raw-leaves``, ``chunker`` (only ``size-262144``),
                   ``hash`` (only ``sha2-256``), ``pin``, ``only-hash``,
                   ``wrap-with-directory``, ``progress``; answers NDJSON, streamed:
                   ``{"Name","Hash","Size"}`` for each file as soon as it has arrived,
                   then folders innermost first, the root last; with ``progress``
                   also ``{"Name","Bytes"}`` after every chunk. A failure after the
                   first line ends the answer with an error line and the
                   ``X-Stream-Error`` trailer
``cat``            ``arg=CID[/path]`` (``offset``, ``length``): the file's bytes; a failure
                   after the first byte ends the body with an ``X-Stream-Error`` trailer
``ls``             ``arg=CID[/path]`` (repeatable), ``stream``: ``{"Objects": [{"Hash",
                   "Links": [{"Name","Hash","Size","Type","Target"}]}]}``
``block/get``      ``arg=CID``: one block (verified on read by the store)
``block/put``      one multipart part; ``cid-codec`` (raw, dag-pb), ``mhtype``,
                   ``pin``: ``{"Key","Size"}``
``block/stat``     ``arg=CID``: ``{"Key","Size"}``
``pin/add|rm``     ``arg=CID[/path]``, recursive pins only: ``{"Pins": [...]}``
``pin/ls``         ``type`` (all, recursive, direct, indirect), optional ``arg``:
                   ``{"Keys": {CID: {"Type": ...}}}``
``id``             a stable pseudo peer identity derived from the repository path
                   (the store has no libp2p key and joins no network)
``version``        ``{"Version": flare-chain's version, ...}``
=================  =================================================================

Errors are Kubo's JSON ``{"Message", "Code", "Type": "error"}``: HTTP 400 with
Code 1 for a bad argument (ConfigError), HTTP 500 with Code 0 for everything
else the store refuses (unknown CID, not pinned, corrupt block); messages name
the server's repository and upload spool only as "the repository" or by the
name the client sent, never by their paths on the server. Uploads are
spooled to a temporary folder (each file hashed on the way, for its early
answer line) and added with the store's own importer once complete, so an add
is all or nothing and a CID served here is the one ``ContentStore.add_*`` (and
Kubo) gives. The server
binds loopback by default: anyone who can reach it can add and pin.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import platform
import queue
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import base58

from flare_chain.errors import ConfigError, FlareError, StoreError
from flare_chain.ipfs import dag
from flare_chain.ipfs.dagpb import decode_pb_node, decode_unixfs_data
from flare_chain.ipfs.multiformats import CODEC_DAG_PB, CODEC_RAW, Cid, parse_cid, sha256_multihash
from flare_chain.ipfs.multipart import iter_parts
from flare_chain.ipfs.store import ContentStore
from flare_chain.ipfs.unixfs import DEFAULT_CHUNK_SIZE, DagEntry, FileDagBuilder, ImportOptions, build_symlink

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "KuboRpcServer", "ServerHandle", "serve_in_thread"]

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5001
MAX_PUT_BLOCK_BYTES = 1024 * 1024  # Kubo's block/put limit without --allow-big-block
_MAX_SMALL_BODY_BYTES = 1024 * 1024
_MAX_DRAIN_BYTES = 1024 * 1024  # request bytes read past an early answer before closing instead
_CODE_NORMAL = 0  # go-ipfs-cmds ErrNormal
_CODE_CLIENT = 1  # go-ipfs-cmds ErrClient
_CODE_IMPLEMENTATION = 2
_CODECS = {"raw": CODEC_RAW, "dag-pb": CODEC_DAG_PB, "protobuf": CODEC_DAG_PB}


def _flare_version() -> str:
    from flare_chain import __version__

    return __version__


# ------------------------------------------------------------------ request bodies


class _LengthBody:
    """A body of known length. ``cut_off`` turns true when the client stops sending early."""

    def __init__(self, rfile: Any, length: int) -> None:
        self._f = rfile
        self._left = length
        self.received = 0
        self.cut_off = False

    def read(self, n: int) -> bytes:
        if self._left <= 0:
            return b""
        data: bytes = self._f.read(min(n, self._left))
        if not data:
            self.cut_off = True
            raise ConfigError(f"request body ended {self._left} bytes early; the upload was cut off")
        self._left -= len(data)
        self.received += len(data)
        return data

    @property
    def done(self) -> bool:
        return self._left <= 0


class _ChunkedBody:
    """HTTP/1.1 chunked transfer coding (what streaming clients send instead of a Content-Length)."""

    def __init__(self, rfile: Any) -> None:
        self._f = rfile
        self._left = 0
        self.done = False
        self.received = 0
        self.cut_off = False

    def _cut(self) -> ConfigError:
        self.cut_off = True
        return ConfigError("chunked request body ended early; the upload was cut off")

    def read(self, n: int) -> bytes:
        if self.done:
            return b""
        if self._left == 0:
            line = self._f.readline(1024)
            if not line:
                raise self._cut()
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise ConfigError(f"malformed chunk size line {line[:40]!r} in a chunked request body") from None
            if size == 0:
                while self._f.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self.done = True
                return b""
            self._left = size
        data: bytes = self._f.read(min(n, self._left))
        if not data:
            raise self._cut()
        self._left -= len(data)
        self.received += len(data)
        if self._left == 0:
            self._f.read(2)  # CRLF after the chunk
        return data


def _read_all(body: _LengthBody | _ChunkedBody, limit: int) -> bytes:
    out = bytearray()
    while piece := body.read(65536):
        out += piece
        if len(out) > limit:
            raise ConfigError(f"request body larger than {limit} bytes")
    return bytes(out)


# ------------------------------------------------------------------ query helpers


class _Query:
    def __init__(self, raw: str) -> None:
        self._q = parse_qs(raw, keep_blank_values=True)

    def all(self, name: str) -> list[str]:
        return self._q.get(name, [])

    def get(self, name: str) -> str | None:
        values = self._q.get(name)
        return values[0] if values else None

    def arg(self, what: str = "ipfs-path") -> str:
        value = self.get("arg")
        if not value:
            raise ConfigError(f'argument "{what}" is required')
        return value

    def bool(self, name: str, default: bool | None) -> bool | None:
        value = self.get(name)
        if value is None:
            return default
        if value == "":  # a bare flag, as Kubo's CLI sends it
            return True
        if value in ("1", "t", "T", "true", "TRUE", "True"):
            return True
        if value in ("0", "f", "F", "false", "FALSE", "False"):
            return False
        raise ConfigError(f"option {name!r}: {value!r} is not a boolean (true or false)")

    def int(self, name: str, default: int) -> int:
        value = self.get(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"option {name!r}: {value!r} is not an integer") from None


def _pseudo_identity(root: Path) -> tuple[str, str]:
    """A libp2p-shaped (ed25519, ``12D3KooW...``) peer ID derived from the repository path.

    There is no private key behind it: the embedded store speaks only this RPC.
    It is stable across restarts so logs and ``id`` answers can be correlated.
    """
    seed = hashlib.sha256(b"flare-chain embedded ipfs\0" + os.fsencode(root.resolve())).digest()
    public_key_pb = b"\x08\x01\x12\x20" + seed  # libp2p PublicKey{Type: Ed25519, Data: 32 bytes}
    peer_id = base58.b58encode(b"\x00" + bytes([len(public_key_pb)]) + public_key_pb).decode("ascii")
    return peer_id, base64.b64encode(public_key_pb).decode("ascii")


def _tsize(get_block: Callable[[Cid], bytes], cid: Cid) -> int:
    """Cumulative DAG size (what Kubo's ``add`` answers as Size): block plus its links' Tsizes."""
    block = get_block(cid)
    if cid.codec != CODEC_DAG_PB:
        return len(block)
    return len(block) + sum(link.tsize or 0 for link in decode_pb_node(block).links)


def _safe_relpath(path: str) -> list[str]:
    parts = path.split("/")
    if not path or any(p in ("", ".", "..") or "\0" in p for p in parts):
        raise ConfigError(f"refusing multipart entry {path!r}: paths must be relative, without '.', '..' "
                          f"or empty components")
    return parts


# ------------------------------------------------------------------ the server


class KuboRpcServer(ThreadingHTTPServer):
    """A threading HTTP server answering the Kubo RPC subset from one :class:`ContentStore`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, store: ContentStore, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                 spool_dir: str | os.PathLike[str] | None = None) -> None:
        self.store = store
        self.spool_dir = spool_dir
        self.peer_id, self.public_key = _pseudo_identity(store.root)
        try:
            super().__init__((host, port), _Handler)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                              f"is another daemon using the port? pass --port") from None

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log through ``logging`` (socketserver prints tracebacks to stderr); a lost connection is one line."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            log.info("IPFS RPC connection from %s ended: %s", client_address[0], exc)
            return
        log.exception("IPFS RPC connection from %s failed", client_address[0])

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: KuboRpcServer
    server_version = "flare-chain-ipfs"
    _request_body: _LengthBody | _ChunkedBody | None = None
    _spool: str | None = None  # the current add's spool folder, kept out of client-facing errors
    answer_started = False  # a streamed answer's headers are out: no second response may follow

    # -------------------------------------------------------- plumbing

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _not_post(self) -> None:
        self._request_body = None
        self.close_connection = True
        self._send_error(f"method {self.command} not allowed: the Kubo RPC API takes POST", 405,
                         _CODE_CLIENT, extra={"Allow": "POST"})

    do_GET = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_post

    def _body(self) -> _LengthBody | _ChunkedBody:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return _ChunkedBody(self.rfile)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise ConfigError("malformed Content-Length header") from None
        return _LengthBody(self.rfile, length)

    def _settle_request_body(self) -> None:
        """Read what is left of the request body before answering, or announce that the connection closes.

        Parsers stop at what they need (multipart stops at its closing boundary,
        leaving the CRLF epilogue and, for a chunked body, the last-chunk
        marker). Left unread, those bytes would be parsed as the next request,
        so the connection would have to close; doing that *after* a response
        that did not say ``Connection: close`` races a client that reuses the
        kept-alive connection ("Server disconnected without sending a
        response"). So: drain up to ``_MAX_DRAIN_BYTES`` now, and if the body
        cannot be finished, say ``Connection: close`` in this response's headers.
        """
        body = self._request_body
        if body is None or body.done:
            return
        drained = 0
        try:
            while piece := body.read(65536):
                drained += len(piece)
                if drained > _MAX_DRAIN_BYTES:
                    break
        except (FlareError, OSError):
            pass
        if not body.done:
            self.close_connection = True

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        if self.answer_started:  # the streamed answer's own error path has spoken; just end the connection
            self.close_connection = True
            return
        self._settle_request_body()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, doc: Any) -> None:
        self._send(200, json.dumps(doc).encode() + b"\n", "application/json")

    def _public(self, message: str) -> str:
        """An error message fit for the client: the server's own folders replaced by what they stand for.

        Store and spool errors name files for the operator's log; a client has
        no use for (and should not learn) where the repository or the upload
        spool lives on the server.
        """
        spool = self._spool
        replacements = ([(f"{spool}/in/", ""), (f"{spool}/unnamed/", "unnamed part #"), (spool, "the upload")]
                        if spool else [])
        root = self.server.store.root
        replacements += [(f"{root.resolve()}/", ""), (str(root.resolve()), "the repository"),
                         (f"{root}/", ""), (str(root), "the repository")]
        for path, shown in replacements:
            message = message.replace(str(path), shown)
        return message

    def _send_error(self, message: str, status: int = 500, code: int = _CODE_NORMAL,
                    extra: dict[str, str] | None = None) -> None:
        doc = {"Message": self._public(message), "Code": code, "Type": "error"}
        self._send(status, json.dumps(doc).encode() + b"\n", "application/json", extra)

    def _send_stream(self, first: bytes, rest: Iterator[bytes | memoryview]) -> None:
        self._settle_request_body()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("X-Stream-Output", "1")
        self.send_header("Trailer", "X-Stream-Error")
        self.send_header("Transfer-Encoding", "chunked")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        try:
            for piece in _chain(first, rest):
                if piece:
                    self.wfile.write(b"%x\r\n" % len(piece))
                    self.wfile.write(piece)
                    self.wfile.write(b"\r\n")
        except FlareError as exc:
            # Headers are gone: end the body with Kubo's X-Stream-Error trailer (go-ipfs-cmds does
            # the same), which tells a client that checks it that what it got is not the whole file.
            log.warning("IPFS RPC %s for %s failed mid-stream: %s", self.path, self.address_string(), exc)
            message = " ".join(self._public(str(exc)).split())  # one header line
            self.wfile.write(b"0\r\nX-Stream-Error: " + message.encode("utf-8", "replace") + b"\r\n\r\n")
            return
        self.wfile.write(b"0\r\n\r\n")

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        handler = _COMMANDS.get(url.path.rstrip("/"))
        body = self._request_body = None
        self._spool = None
        self.answer_started = False
        if handler is None:
            self.close_connection = True
            self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")
            return
        try:
            body = self._request_body = self._body()
            handler(self, _Query(url.query), body)
        except ConfigError as exc:
            if body is not None and body.cut_off:
                self._upload_cut_off(url.path, body, str(exc))
            else:
                self._fail(str(exc), 400, _CODE_CLIENT, body)
        except FlareError as exc:
            self._fail(str(exc), 500, _CODE_NORMAL, body)
        except ConnectionError as exc:  # reset or broken pipe: the client is gone
            self.close_connection = True
            if body is not None and not body.done:
                self._upload_cut_off(url.path, body,
                                     f"connection lost ({exc.strerror or exc}); the upload was cut off")
            else:
                log.info("IPFS RPC %s for %s: client left before the answer was complete (%s)",
                         url.path, self.address_string(), exc.strerror or exc)
        except Exception as exc:  # keep serving; the client gets Kubo's implementation-error shape
            log.exception("IPFS RPC %s failed", url.path)
            self._fail(f"internal error: {type(exc).__name__}: {exc}", 500, _CODE_IMPLEMENTATION, body)
        else:
            if body is not None and not body.done:
                self.close_connection = True  # unread request bytes would corrupt the next request

    def _upload_cut_off(self, path: str, body: _LengthBody | _ChunkedBody, why: str) -> None:
        """A client that stops mid-upload is routine (killed, timed out, network dropped): one log line.

        The 400 answer is still attempted for a client that only half-closed;
        one that is gone makes the write fail, which is expected here, not a
        second error to report.
        """
        self.close_connection = True
        with contextlib.suppress(OSError):
            self._send_error(why, 400, _CODE_CLIENT)
        log.warning("IPFS RPC %s from %s: %s after %d bytes", path, self.address_string(), why, body.received)

    def _fail(self, message: str, status: int, code: int, body: _LengthBody | _ChunkedBody | None) -> None:
        if body is None:  # the body's framing itself was unreadable
            self.close_connection = True
        self._send_error(message, status, code)

    # -------------------------------------------------------- commands

    def cmd_version(self, q: _Query, body: Any) -> None:
        _read_all(body, _MAX_SMALL_BODY_BYTES)
        self._send_json({"Version": _flare_version(), "Commit": "", "Repo": "flare-chain-embedded",
                         "System": f"{platform.machine().lower()}/{platform.system().lower()}",
                         "Golang": "", "Implementation": "flare-chain embedded store"})

    def cmd_id(self, q: _Query, body: Any) -> None:
        _read_all(body, _MAX_SMALL_BODY_BYTES)
        if q.get("arg") not in (None, "", self.server.peer_id):
            raise StoreError(f"peer {q.get('arg')} is unknown: the embedded store knows no other peers")
        self._send_json({"ID": self.server.peer_id, "PublicKey": self.server.public_key, "Addresses": [],
                         "AgentVersion": f"flare-chain/{_flare_version()}/embedded",
                         "ProtocolVersion": "ipfs/0.1.0", "Protocols": []})

    def cmd_cat(self, q: _Query, body: Any) -> None:
        _read_all(body, _MAX_SMALL_BODY_BYTES)
        offset = q.int("offset", 0)
        length = q.int("length", -1)
        if offset < 0:
            raise ConfigError(f"cannot specify negative offset {offset}")
        pieces = _window(self.server.store.open(q.arg()), offset, length)
        first = next(pieces, b"")  # errors before the first byte still get a proper error answer
        self._send_stream(bytes(first), pieces)

    def cmd_block_get(self, q: _Query, body: Any) -> None:
        _read_all(body, _MAX_SMALL_BODY_BYTES)
        data = self.server.store.get_block(q.arg("cid"))
        self._send(200, data, "application/octet-stream")

    def cmd_block_stat(self, q: _Query, body: Any) -> None:
        _read_all(body, _MAX_SMALL_BODY_BYTES)
        cid = parse_cid(q.arg("cid"))
        self._send_json({"Key": cid.encode(), "Size": len(self.server.store.get_block(cid))})

    def cmd_block_put(self, q: _Query, body: Any) -> None:
        codec_name = q.get("cid-codec") or ("protobuf" if q.get("format") in ("v0", "protobuf") else "raw")
        if codec_name not in _CODECS:
            raise ConfigError(f"cid-codec {codec_name!r} not supported by the embedded store; use raw or dag-pb")
        if (q.get("mhtype") or "sha2-256") != "sha2-256":
            raise ConfigError(f"mhtype {q.get('mhtype')!r} not supported; only sha2-256")
        limit = MAX_PUT_BLOCK_BYTES * 2 if q.bool("allow-big-block", False) else MAX_PUT_BLOCK_BYTES
        answers = []
        for part in iter_parts(body.read, self.headers.get("Content-Type", "")):
            data = bytearray()
            for piece in part.body:
                data += piece
                if len(data) > limit:
                    raise ConfigError(f"produced block is over {limit} bytes: big blocks can't be exchanged "
                                      f"with other peers; use add (UnixFS chunking) instead")
            mh = sha256_multihash(bytes(data))
            codec = _CODECS[codec_name]
            cid = Cid.v0(mh) if q.get("format") == "v0" else Cid.v1(codec, mh)
            self.server.store.put_block(cid, bytes(data))
            if q.bool("pin", False):
                self.server.store.pin(cid)
            answers.append({"Key": cid.encode(), "Size": len(data)})
        if not answers:
            raise ConfigError("block/put needs one file part with the block's bytes")
        self._send(200, b"".join(json.dumps(a).encode() + b"\n" for a in answers), "application/json")

    def cmd_pin_add(self, q: _Query, body: Any) -> None:
        _read_all(body, _MAX_SMALL_BODY_BYTES)
        if q.bool("recursive", True) is False:
            raise ConfigError("direct pins are not supported by the embedded store; pin recursively")
        store = self.server.store
        pins = [store.pin(store.resolve(arg)) for arg in q.all("arg")] or [store.pin(store.resolve(q.arg()))]
        self._send_json({"Pins": pins})

    def cmd_pin_rm(self, q: _Query, body: Any) -> None:
        _read_all(body, _MAX_SMALL_BODY_BYTES)
        store = self.server.store
        args = q.all("arg") or [q.arg()]
        done = []
        for arg in args:
            cid = store.resolve(arg).encode()
            store.unpin(cid)
            done.append(cid)
        self._send_json({"Pins": done})

    def cmd_pin_ls(self, q: _Query, body: Any) -> None:
        _read_all(body, _MAX_SMALL_BODY_BYTES)
        kind = q.get("type") or "all"
        if kind not in ("all", "recursive", "direct", "indirect"):
            raise ConfigError(f"invalid type {kind!r}, must be one of {{direct, indirect, recursive, all}}")
        store = self.server.store
        recursive = store.pins()
        keys: dict[str, dict[str, str]] = {}
        if kind in ("all", "recursive"):
            keys.update({c: {"Type": "recursive"} for c in recursive})
        if kind in ("all", "indirect"):
            roots = {parse_cid(c).multihash for c in recursive}
            for root in recursive:
                for cid in dag.iter_dag(store.get_block, parse_cid(root)):
                    if cid.multihash not in roots:
                        keys.setdefault(cid.encode(), {"Type": "indirect"})
        wanted = q.all("arg")
        if wanted:
            picked: dict[str, dict[str, str]] = {}
            for arg in wanted:
                text = store.resolve(arg).encode()
                if text not in keys:
                    raise StoreError(f"path '{arg}' is not pinned")
                picked[text] = keys[text]
            keys = picked
        if q.bool("stream", False):
            lines = [json.dumps({"Cid": c, "Type": info["Type"]}).encode() + b"\n" for c, info in keys.items()]
            self._send(200, b"".join(lines), "application/json")
            return
        self._send_json({"Keys": keys})

    def cmd_ls(self, q: _Query, body: Any) -> None:
        """Kubo's ``ls``: ``{"Objects": [{"Hash": path, "Links": [...]}]}``, or one object per link with ``stream``."""
        _read_all(body, _MAX_SMALL_BODY_BYTES)
        store = self.server.store
        paths = q.all("arg") or [q.arg()]
        objects = []
        for path in paths:
            links = [_ls_link(store.get_block, entry) for entry in store.ls(path)]
            objects.append({"Hash": path, "Links": links})
        if q.bool("stream", False):
            lines = [json.dumps({"Objects": [{"Hash": o["Hash"], "Links": [link]}]}).encode() + b"\n"
                     for o in objects for link in o["Links"]]
            self._send(200, b"".join(lines), "application/json", {"X-Chunked-Output": "1"})
            return
        self._send_json({"Objects": objects})

    def cmd_add(self, q: _Query, body: Any) -> None:
        cid_version = q.int("cid-version", 0)
        raw_leaves = q.bool("raw-leaves", None)
        chunker = q.get("chunker") or f"size-{DEFAULT_CHUNK_SIZE}"
        if chunker != f"size-{DEFAULT_CHUNK_SIZE}":
            raise ConfigError(f"chunker {chunker!r} not supported by the embedded store; "
                              f"only size-{DEFAULT_CHUNK_SIZE} (Kubo's default)")
        if (q.get("hash") or "sha2-256") != "sha2-256":
            raise ConfigError(f"hash {q.get('hash')!r} not supported by the embedded store; only sha2-256")
        for unsupported in ("trickle", "nocopy", "inline"):
            if q.bool(unsupported, False):
                raise ConfigError(f"option {unsupported!r} is not supported by the embedded store")
        pin = bool(q.bool("pin", True))
        only_hash = bool(q.bool("only-hash", False))
        wrap = bool(q.bool("wrap-with-directory", False))
        progress = bool(q.bool("progress", False))
        options = ImportOptions(cid_version=cid_version, raw_leaves=raw_leaves)
        content_type = self.headers.get("Content-Type", "")
        answer = _AddAnswer(self)
        try:
            with tempfile.TemporaryDirectory(prefix="flare-ipfs-add-", dir=self.server.spool_dir) as tmp:
                spool = Path(tmp) / "in"
                self._spool = tmp
                tops = _spool_parts(iter_parts(body.read, content_type), spool, Path(tmp) / "unnamed", options,
                                    wrap=wrap, on_added=answer.added,
                                    on_progress=answer.progress if progress else None)
                if not tops:
                    raise ConfigError("add needs at least one file part")
                target = ContentStore(Path(tmp) / "scratch", durable=False) if only_hash else self.server.store
                kw: dict[str, Any] = {"cid_version": cid_version, "raw_leaves": raw_leaves,
                                      "pin": pin and not only_hash}
                if wrap:
                    root = parse_cid(target.add_directory(spool, include_hidden=True, **kw))
                    _walk_dirs(target, root, "", answer.added)
                else:
                    for path, shown, announced in tops:
                        if path.is_dir():
                            root = parse_cid(target.add_directory(path, include_hidden=True, **kw))
                            _walk_dirs(target, root, shown, answer.added)
                        elif target.add_file(path, **kw) != announced:  # the importer is deterministic
                            raise StoreError(f"{shown or 'an unnamed part'} stored under another CID than "
                                             f"announced ({announced}); report this as a bug")
            self._settle_request_body()
        except FlareError as exc:
            if not answer.started:
                raise  # nothing sent yet: do_POST answers with a proper HTTP error
            answer.fail(self._public(str(exc)))
            self.close_connection = True
            if body.cut_off:
                log.warning("IPFS RPC %s from %s: %s after %d bytes", self.path, self.address_string(), exc,
                            body.received)
            else:
                log.warning("IPFS RPC %s for %s failed after its answer began: %s", self.path,
                            self.address_string(), exc)
            return
        except BaseException:
            answer.abandon()  # a lost connection or a bug: do_POST reports it; stop the writer thread
            raise
        answer.finish()


class _LineWriter:
    """Writes the lines of a streamed answer as HTTP chunks, on a thread of its own.

    An add answer starts while the upload is still arriving. A client that
    reads only once it has sent everything (what most HTTP/1.1 clients do)
    would let progress lines fill the socket buffers; a handler writing them
    itself would then block, stop reading the upload, and client and server
    would wait on each other forever. So the handler only queues lines (tiny
    next to the upload) and this thread does the blocking writes.
    """

    def __init__(self, wfile: Any) -> None:
        self._wfile = wfile
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="ipfs-rpc-answer", daemon=True)
        self._thread.start()

    def put(self, line: bytes) -> None:
        self._queue.put(line)

    def _run(self) -> None:
        while (line := self._queue.get()) is not None:
            if self.error is None:
                try:
                    self._wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                except OSError as exc:  # the client left; keep draining the queue
                    self.error = exc

    def stop(self) -> None:
        """Write what is queued and end the thread; raises the write error if the client left."""
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def close(self, stream_error: str | None = None) -> None:
        """Write what is queued, then the last chunk (with Kubo's X-Stream-Error trailer on failure)."""
        self.stop()
        trailer = b""
        if stream_error is not None:
            trailer = b"X-Stream-Error: " + " ".join(stream_error.split()).encode("utf-8", "replace") + b"\r\n"
        self._wfile.write(b"0\r\n" + trailer + b"\r\n")


class _AddAnswer:
    """The NDJSON answer of ``add``, started at its first line, so errors before it get a plain HTTP error."""

    def __init__(self, handler: _Handler) -> None:
        self._handler = handler
        self._writer: _LineWriter | None = None

    @property
    def started(self) -> bool:
        return self._writer is not None

    def _line(self, doc: dict[str, Any]) -> None:
        if self._writer is None:
            h = self._handler
            h.answer_started = True
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("X-Chunked-Output", "1")
            h.send_header("Trailer", "X-Stream-Error")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            self._writer = _LineWriter(h.wfile)
        self._writer.put(json.dumps(doc).encode() + b"\n")

    def added(self, name: str, cid: str, tsize: int) -> None:
        self._line({"Name": name, "Hash": cid, "Size": str(tsize)})

    def progress(self, name: str, done: int) -> None:
        self._line({"Name": name, "Bytes": done})

    def finish(self) -> None:
        if self._writer is None:  # cannot happen for a valid add (it names at least its root); be safe
            self._handler._send(200, b"", "application/json", {"X-Chunked-Output": "1"})
            return
        self._writer.close()

    def abandon(self) -> None:
        """Stop the writer without ending the body (the connection closes; the client sees a cut answer)."""
        if self._writer is not None:
            self._handler.close_connection = True
            with contextlib.suppress(OSError):
                self._writer.stop()

    def fail(self, message: str) -> None:
        """After the first line: an error line (what flare-chain's client and go-ipfs-cmds read) and the trailer."""
        assert self._writer is not None
        self._writer.put(json.dumps({"Message": message, "Code": _CODE_NORMAL, "Type": "error"}).encode() + b"\n")
        with contextlib.suppress(OSError):
            self._writer.close(message)


_LS_TYPES = {"directory": 1, "file": 2, "symlink": 4}  # UnixFS Data.DataType, as Kubo's ls reports it


def _ls_link(get_block: Callable[[Cid], bytes], entry: dag.DirEntry) -> dict[str, Any]:
    """One ``ls`` link as Kubo writes it: Size is the file's size (0 for folders), Target a symlink's."""
    cid = parse_cid(entry.cid)
    size, target = 0, ""
    if cid.codec == CODEC_RAW:
        size = len(get_block(cid))
    elif entry.kind in ("file", "symlink"):
        fs = decode_unixfs_data(decode_pb_node(get_block(cid)).data or b"")
        if entry.kind == "file":
            size = fs.filesize or 0
        else:
            target = (fs.data or b"").decode("utf-8", "surrogateescape")
    return {"Name": entry.name, "Hash": entry.cid, "Size": size, "Type": _LS_TYPES.get(entry.kind, 0),
            "Target": target}


def _chain(first: bytes, rest: Iterator[bytes | memoryview]) -> Iterator[bytes | memoryview]:
    yield first
    yield from rest


def _window(pieces: Iterator[bytes | memoryview], offset: int, length: int) -> Iterator[bytes | memoryview]:
    """Kubo's ``cat --offset --length`` over a stream of pieces (length < 0: to the end)."""
    pos = 0
    left = length
    for piece in pieces:
        end = pos + len(piece)
        if end > offset:
            view = memoryview(piece)[max(0, offset - pos):]
            if left >= 0:
                view = view[:left]
                left -= len(view)
            if len(view):
                yield view
            if left == 0:
                return
        pos = end


def _spool_parts(parts: Iterator[Any], spool: Path, unnamed_dir: Path, options: ImportOptions, *, wrap: bool,
                 on_added: Callable[[str, str, int], None],
                 on_progress: Callable[[str, int], None] | None) -> list[tuple[Path, str, str]]:
    """Write multipart entries under ``spool``, announcing each file as soon as it has arrived.

    Each file (and symlink) is hashed while it is written, so its answer line
    ``on_added(name, cid, tsize)`` goes out right away (Kubo's order: files as
    they come, folders at the end), and ``on_progress(name, bytes)`` after
    every chunk when the client asked for progress. Returns each top-level
    entry's spooled path, name as sent and announced CID ("" for a folder), in
    order. Nameless file parts (Kubo answers them under their CID) go to
    ``unnamed_dir``.
    """
    tops: list[tuple[Path, str, str]] = []
    seen_tops: set[str] = set()
    spool.mkdir()
    for index, part in enumerate(parts):
        if part.path:
            comps = _safe_relpath(part.path)
            dest = spool.joinpath(*comps)
            if len(comps) == 1 and part.kind == "symlink" and not wrap:
                raise ConfigError(f"top-level symlink {part.path!r}: add the folder that holds it, "
                                  f"or use wrap-with-directory")
        elif part.kind == "file":
            unnamed_dir.mkdir(exist_ok=True)
            dest = unnamed_dir / str(index)
            comps = []
        else:
            raise ConfigError(f"multipart {part.kind} entry without a name")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ConfigError(f"multipart entry {part.path!r} is inside a file sent earlier") from None
        announced = ""
        try:
            if part.kind == "directory":
                dest.mkdir(exist_ok=True)
            elif part.kind == "symlink":
                target = b"".join(part.body)
                os.symlink(os.fsdecode(target), dest)
                entry = build_symlink(target, options)
                announced = entry.cid.encode()
                on_added(part.path, announced, entry.tsize)
            else:
                entry = _spool_file(part.body, dest, options, part.path, on_progress)
                announced = entry.cid.encode()
                on_added(part.path or announced, announced, entry.tsize)
        except FileExistsError:
            raise ConfigError(f"multipart entry {part.path!r} sent twice") from None
        except (NotADirectoryError, IsADirectoryError):
            raise ConfigError(f"multipart entry {part.path!r} conflicts with an earlier entry") from None
        if not comps:
            tops.append((dest, "", announced))
        elif comps[0] not in seen_tops:
            seen_tops.add(comps[0])
            tops.append((spool / comps[0], comps[0], announced if len(comps) == 1 else ""))
    return tops


def _spool_file(pieces: Iterator[bytes], dest: Path, options: ImportOptions, name: str,
                on_progress: Callable[[str, int], None] | None) -> DagEntry:
    """Write one file part to ``dest`` and build its DAG on the way (no blocks kept); return the root."""
    builder = FileDagBuilder(options)
    pending = bytearray()
    done = 0
    with open(dest, "xb") as f:
        for piece in pieces:
            f.write(piece)
            pending += piece
            while len(pending) >= options.chunk_size:
                builder.add_chunk(bytes(pending[:options.chunk_size]))
                del pending[:options.chunk_size]
                done += options.chunk_size
                if on_progress is not None:
                    on_progress(name, done)
    if pending:
        builder.add_chunk(bytes(pending))
        done += len(pending)
        if on_progress is not None:
            on_progress(name, done)
    return builder.finish()


def _walk_dirs(store: ContentStore, cid: Cid, name: str, emit: Callable[[str, str, int], None]) -> None:
    """The folder lines of Kubo's add answer, innermost first (post-order); file lines went out already."""
    for entry in store.ls(cid):
        if entry.kind == "directory":
            _walk_dirs(store, parse_cid(entry.cid), f"{name}/{entry.name}" if name else entry.name, emit)
    emit(name, cid.encode(), _tsize(store.get_block, cid))


_COMMANDS: dict[str, Callable[[_Handler, _Query, Any], None]] = {
    "/api/v0/add": _Handler.cmd_add,
    "/api/v0/cat": _Handler.cmd_cat,
    "/api/v0/ls": _Handler.cmd_ls,
    "/api/v0/block/get": _Handler.cmd_block_get,
    "/api/v0/block/put": _Handler.cmd_block_put,
    "/api/v0/block/stat": _Handler.cmd_block_stat,
    "/api/v0/pin/add": _Handler.cmd_pin_add,
    "/api/v0/pin/rm": _Handler.cmd_pin_rm,
    "/api/v0/pin/ls": _Handler.cmd_pin_ls,
    "/api/v0/id": _Handler.cmd_id,
    "/api/v0/version": _Handler.cmd_version,
}


# ------------------------------------------------------------------ running it


@dataclass
class ServerHandle:
    """A server running on a background thread; ``url`` is its RPC base URL. Close to stop it."""

    server: KuboRpcServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_in_thread(store: ContentStore, host: str = DEFAULT_HOST, port: int = 0, *,
                    spool_dir: str | os.PathLike[str] | None = None) -> ServerHandle:
    """Start serving ``store`` on a daemon thread (``port=0``: any free port); return its handle."""
    server = KuboRpcServer(store, host, port, spool_dir=spool_dir)
    # A short poll interval makes close() return promptly (shutdown waits for the next poll).
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"ipfs-rpc-{server.url}", daemon=True)
    thread.start()
    return ServerHandle(server, thread)
