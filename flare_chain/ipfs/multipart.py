"""The multipart/form-data bodies of Kubo's ``add`` and ``block/put``, both directions.

Kubo's RPC takes files as ``multipart/form-data`` parts (go-ipfs-files'
``MultiFileReader``): one part per file, folder or symlink, in walk order,
each named by its path relative to what was added, URL-escaped so ``/``
travels as ``%2F``::

    Content-Disposition: form-data; name="file"; filename="adapter%2Fconfig.json"
    Content-Type: application/octet-stream      (application/x-directory for a folder,
                                                 application/symlink with the target as body)

:class:`MultipartBody` writes such a body with a known length, streaming file
contents from disk (a 512 MiB adapter is never held in memory), and can be
iterated again for a retry. :func:`iter_parts` reads one incrementally from a
``read(n)`` callable, for the server side.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote_plus

from flare_chain.errors import ConfigError, StoreError

__all__ = [
    "CONTENT_TYPE_DIRECTORY",
    "CONTENT_TYPE_FILE",
    "CONTENT_TYPE_SYMLINK",
    "MultipartBody",
    "Part",
    "UploadEntry",
    "boundary_of",
    "iter_parts",
    "upload_entries",
]

CONTENT_TYPE_FILE = "application/octet-stream"
CONTENT_TYPE_DIRECTORY = "application/x-directory"
CONTENT_TYPE_SYMLINK = "application/symlink"
_READ_BYTES = 256 * 1024
_MAX_HEADER_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class UploadEntry:
    """One part to send: ``path`` relative and ``/``-separated, and where its bytes come from."""

    path: str
    kind: str  # "file" | "directory" | "symlink"
    data: bytes | None = None  # in-memory file contents or symlink target
    source: Path | None = None  # file on disk, streamed
    size: int = 0

    @classmethod
    def from_bytes(cls, name: str, data: bytes | bytearray | memoryview) -> UploadEntry:
        blob = bytes(data)
        return cls(name, "file", data=blob, size=len(blob))


def upload_entries(path: Path, *, include_hidden: bool = False) -> list[UploadEntry]:
    """The parts ``ipfs add -r PATH`` sends: PATH itself, then (for a folder) its tree, sorted by name.

    Follows the importer's rules (:mod:`flare_chain.ipfs.importer`): dotfiles
    below PATH are skipped unless ``include_hidden``, symlinks are sent as
    symlinks, not followed.
    """
    top = path.absolute().name
    if not top:
        raise ConfigError(f"cannot add {path}: it has no name to send it under; add the folders inside it")
    out: list[UploadEntry] = []

    def visit(p: Path, rel: str) -> None:
        if p.is_symlink():
            target = os.fsencode(os.readlink(p))
            out.append(UploadEntry(rel, "symlink", data=target, size=len(target)))
        elif p.is_dir():
            out.append(UploadEntry(rel, "directory"))
            try:
                names = sorted(os.listdir(p), key=os.fsencode)
            except OSError as exc:
                raise StoreError(f"cannot list {p}: {exc.strerror}") from None
            for name in names:
                if name.startswith(".") and not include_hidden:
                    continue
                visit(p / name, f"{rel}/{name}")
        else:
            try:
                size = p.stat().st_size
            except OSError as exc:
                raise StoreError(f"cannot read {p}: {exc.strerror}") from None
            out.append(UploadEntry(rel, "file", source=p, size=size))

    visit(path, top)
    return out


def _quote_param(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


class MultipartBody:
    """A multipart/form-data body over :class:`UploadEntry` parts, with its exact length.

    Iterating yields the body in pieces (fresh each time, so a retry can send
    it again). A file that changed size since :func:`upload_entries` looked
    at it raises StoreError rather than send a body of the wrong length.
    """

    def __init__(self, entries: Sequence[UploadEntry], *, boundary: str | None = None) -> None:
        self.entries = list(entries)
        self.boundary = boundary or secrets.token_hex(16)
        self._heads = [self._head(i, e) for i, e in enumerate(self.entries)]
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.length = sum(len(h) + e.size for h, e in zip(self._heads, self.entries, strict=True)) + len(self._tail)

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def _head(self, index: int, entry: UploadEntry) -> bytes:
        kind_type = {"file": CONTENT_TYPE_FILE, "directory": CONTENT_TYPE_DIRECTORY,
                     "symlink": CONTENT_TYPE_SYMLINK}[entry.kind]
        lead = "" if index == 0 else "\r\n"
        filename = _quote_param(quote(entry.path, safe=""))
        return (f"{lead}--{self.boundary}\r\n"
                f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                f"Content-Type: {kind_type}\r\n\r\n").encode()

    def __iter__(self) -> Iterator[bytes]:
        for head, entry in zip(self._heads, self.entries, strict=True):
            yield head
            if entry.data is not None:
                yield entry.data
            elif entry.source is not None:
                yield from _stream_file(entry.source, entry.size)
        yield self._tail


def _stream_file(path: Path, size: int) -> Iterator[bytes]:
    sent = 0
    try:
        with open(path, "rb", buffering=0) as f:
            while sent < size:
                piece = f.read(min(_READ_BYTES, size - sent))
                if not piece:
                    break
                sent += len(piece)
                yield piece
            extra = f.read(1)
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from None
    if sent != size or extra:
        raise StoreError(f"{path} changed size while it was being uploaded; add it again once it is stable")


# ------------------------------------------------------------------ parsing (server side)

_PARAM = re.compile(r';\s*([A-Za-z0-9_*.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def _header_params(value: str) -> dict[str, str]:
    params = {}
    for key, raw in _PARAM.findall(value):
        raw = raw.strip()
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[key.lower()] = raw
    return params


@dataclass(slots=True)
class Part:
    """One received part: its headers (lower-case names), decoded path and content type."""

    headers: dict[str, str]
    path: str
    content_type: str
    body: Iterator[bytes]

    @property
    def kind(self) -> str:
        if self.content_type == CONTENT_TYPE_DIRECTORY:
            return "directory"
        if self.content_type == CONTENT_TYPE_SYMLINK:
            return "symlink"
        return "file"


class _Reader:
    def __init__(self, read: Callable[[int], bytes], boundary: bytes) -> None:
        self._read = read
        self._buf = bytearray()
        self._eof = False
        self._delim = b"--" + boundary
        self._body_delim = b"\r\n--" + boundary

    def _fill(self) -> bool:
        if self._eof:
            return False
        chunk = self._read(_READ_BYTES)
        if not chunk:
            self._eof = True
            return False
        self._buf += chunk
        return True

    def _need(self, n: int) -> None:
        while len(self._buf) < n:
            if not self._fill():
                raise ConfigError("multipart body ended early; the upload was cut off")

    def parts(self) -> Iterator[Part]:
        # Preamble, then the first delimiter.
        while (i := self._buf.find(self._delim)) < 0:
            if len(self._buf) > _MAX_HEADER_BYTES:
                raise ConfigError("multipart body does not start with its boundary")
            if not self._fill():
                raise ConfigError("multipart body has no parts (boundary not found)")
        del self._buf[:i]
        while True:
            # self._buf starts with the delimiter.
            self._need(len(self._delim) + 2)
            after = bytes(self._buf[len(self._delim):len(self._delim) + 2])
            if after == b"--":
                return
            if after != b"\r\n":
                raise ConfigError("malformed multipart body: boundary line not followed by CRLF")
            del self._buf[:len(self._delim) + 2]
            headers = self._headers()
            body = self._body()
            part = _make_part(headers, body)
            yield part
            for _ in body:  # drain whatever the consumer did not read
                pass

    def _headers(self) -> dict[str, str]:
        while True:
            if self._buf.startswith(b"\r\n"):
                del self._buf[:2]
                return {}
            end = self._buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self._buf) > _MAX_HEADER_BYTES:
                raise ConfigError(f"multipart part headers longer than {_MAX_HEADER_BYTES} bytes")
            if not self._fill():
                raise ConfigError("multipart body ended inside part headers")
        block = bytes(self._buf[:end]).decode("utf-8", "replace")
        del self._buf[:end + 4]
        headers = {}
        for line in block.split("\r\n"):
            name, sep, value = line.partition(":")
            if not sep:
                raise ConfigError(f"malformed multipart header line {line!r}")
            headers[name.strip().lower()] = value.strip()
        return headers

    def _body(self) -> Iterator[bytes]:
        keep = len(self._body_delim) - 1
        while True:
            j = self._buf.find(self._body_delim)
            if j >= 0:
                if j:
                    yield bytes(self._buf[:j])
                del self._buf[:j + 2]
                return
            if len(self._buf) > keep:
                out = bytes(self._buf[:-keep])
                del self._buf[:-keep]
                yield out
            if not self._fill():
                raise ConfigError("multipart body ended inside a part; the upload was cut off")


def _make_part(headers: dict[str, str], body: Iterator[bytes]) -> Part:
    disposition = headers.get("content-disposition", "")
    params = _header_params(disposition)
    name = params.get("filename", "")
    path = unquote_plus(name)  # Go's url.QueryEscape on the sending side writes spaces as '+'
    content_type = headers.get("content-type", CONTENT_TYPE_FILE).split(";")[0].strip().lower()
    return Part(headers, path, content_type, body)


def boundary_of(content_type: str) -> bytes:
    """The boundary parameter of a ``multipart/form-data`` Content-Type; ConfigError otherwise."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise ConfigError(f"expected a multipart/form-data body, got Content-Type {content_type or 'none'!r}")
    boundary = _header_params(content_type).get("boundary")
    if not boundary:
        raise ConfigError("multipart/form-data Content-Type without a boundary")
    return boundary.encode("latin-1")


def iter_parts(read: Callable[[int], bytes], content_type: str) -> Iterator[Part]:
    """Parse a multipart body from ``read(n)``; each part's ``body`` must be read before the next.

    Unread body bytes are skipped when the next part is requested. Raises
    ConfigError for a malformed or truncated body.
    """
    return _Reader(read, boundary_of(content_type)).parts()
