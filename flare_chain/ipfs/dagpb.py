"""Hand-written protobuf for dag-pb nodes and UnixFS ``Data`` messages.

Only the two schemas IPFS files need, so no protobuf library is required:

    message PBLink { optional bytes Hash = 1; optional string Name = 2; optional uint64 Tsize = 3; }
    message PBNode { repeated PBLink Links = 2; optional bytes Data = 1; }
    message Data   { required DataType Type = 1; optional bytes Data = 2; optional uint64 filesize = 3;
                     repeated uint64 blocksizes = 4; optional uint64 hashType = 5; optional uint64 fanout = 6; }

Encoding follows the dag-pb spec and go-merkledag's canonical form, which is
what makes CIDs match Kubo: in a PBNode the Links (field 2) come *before* Data
(field 1) in the bytes; ``blocksizes`` are written unpacked (proto2); absent
optional fields are not written at all. Decoding refuses garbage (unknown
wire types, truncation, unexpected fields) with IntegrityError, because blocks
come from disk or the network and a bad one means the data is not what it claims.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from flare_chain.errors import FlareError, IntegrityError
from flare_chain.ipfs.multiformats import decode_varint, encode_varint

__all__ = [
    "UNIXFS_DIRECTORY",
    "UNIXFS_FILE",
    "UNIXFS_HAMT_SHARD",
    "UNIXFS_METADATA",
    "UNIXFS_RAW",
    "UNIXFS_SYMLINK",
    "PBLink",
    "PBNode",
    "UnixFSData",
    "decode_pb_node",
    "decode_unixfs_data",
    "encode_pb_link",
    "encode_pb_node",
    "encode_unixfs_data",
]

UNIXFS_RAW = 0
UNIXFS_DIRECTORY = 1
UNIXFS_FILE = 2
UNIXFS_METADATA = 3
UNIXFS_SYMLINK = 4
UNIXFS_HAMT_SHARD = 5

_VARINT = 0
_LEN = 2


@dataclass(frozen=True, slots=True)
class PBLink:
    """A dag-pb link: binary CID, optional name, optional cumulative size of the target DAG."""

    hash: bytes
    name: bytes | None = b""
    tsize: int | None = None


@dataclass(frozen=True, slots=True)
class PBNode:
    links: tuple[PBLink, ...] = ()
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class UnixFSData:
    """The UnixFS ``Data`` message carried in a dag-pb node's Data field."""

    type: int
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: tuple[int, ...] = field(default=())
    hash_type: int | None = None
    fanout: int | None = None


def _key(field_no: int, wire: int) -> bytes:
    return encode_varint(field_no << 3 | wire)


def _len_delimited(field_no: int, payload: bytes) -> bytes:
    return _key(field_no, _LEN) + encode_varint(len(payload)) + payload


def encode_pb_link(link: PBLink) -> bytes:
    """Serialize one PBLink body (without the outer field-2 key and length)."""
    out = _len_delimited(1, link.hash)
    if link.name is not None:
        out += _len_delimited(2, link.name)
    if link.tsize is not None:
        out += _key(3, _VARINT) + encode_varint(link.tsize)
    return out


def encode_pb_node(links: Sequence[PBLink], data: bytes | None) -> bytes:
    """Serialize a PBNode in canonical order: all Links, then Data."""
    parts = [_len_delimited(2, encode_pb_link(link)) for link in links]
    if data is not None:
        parts.append(_len_delimited(1, data))
    return b"".join(parts)


def encode_unixfs_data(msg: UnixFSData) -> bytes:
    """Serialize a UnixFS Data message in field-number order, as go-unixfs does."""
    out = bytearray(_key(1, _VARINT) + encode_varint(msg.type))
    if msg.data is not None:
        out += _len_delimited(2, msg.data)
    if msg.filesize is not None:
        out += _key(3, _VARINT) + encode_varint(msg.filesize)
    for size in msg.blocksizes:
        out += _key(4, _VARINT) + encode_varint(size)
    if msg.hash_type is not None:
        out += _key(5, _VARINT) + encode_varint(msg.hash_type)
    if msg.fanout is not None:
        out += _key(6, _VARINT) + encode_varint(msg.fanout)
    return bytes(out)


def _fields(buf: bytes | memoryview, what: str) -> list[tuple[int, int, int | memoryview]]:
    """Split a protobuf message into (field, wire type, value) triples; LEN values are views."""
    view = memoryview(buf)
    out: list[tuple[int, int, int | memoryview]] = []
    pos = 0
    try:
        while pos < len(view):
            key, pos = decode_varint(view, pos)
            field_no, wire = key >> 3, key & 7
            if field_no == 0:
                raise IntegrityError(f"{what}: field number 0 at byte {pos}")
            if wire == _VARINT:
                value, pos = decode_varint(view, pos)
                out.append((field_no, wire, value))
            elif wire == _LEN:
                length, pos = decode_varint(view, pos)
                if pos + length > len(view):
                    raise IntegrityError(f"{what}: field {field_no} runs past the end of the message")
                out.append((field_no, wire, view[pos : pos + length]))
                pos += length
            else:
                raise IntegrityError(f"{what}: unsupported protobuf wire type {wire} for field {field_no}")
    except IntegrityError:
        raise
    except FlareError as exc:  # varint errors arrive as ConfigError
        raise IntegrityError(f"{what}: {exc}") from None
    return out


def decode_pb_node(buf: bytes | memoryview) -> PBNode:
    """Parse a dag-pb block into its links and Data bytes."""
    links: list[PBLink] = []
    data: bytes | None = None
    for field_no, wire, value in _fields(buf, "dag-pb node"):
        if field_no == 1 and wire == _LEN:
            data = bytes(value)  # type: ignore[arg-type]
        elif field_no == 2 and wire == _LEN:
            links.append(_decode_link(value))  # type: ignore[arg-type]
        else:
            raise IntegrityError(f"dag-pb node: unexpected field {field_no} (wire type {wire})")
    return PBNode(tuple(links), data)


def _decode_link(buf: memoryview) -> PBLink:
    hash_: bytes | None = None
    name: bytes | None = None
    tsize: int | None = None
    for field_no, wire, value in _fields(buf, "dag-pb link"):
        if field_no == 1 and wire == _LEN:
            hash_ = bytes(value)  # type: ignore[arg-type]
        elif field_no == 2 and wire == _LEN:
            name = bytes(value)  # type: ignore[arg-type]
        elif field_no == 3 and wire == _VARINT:
            tsize = value  # type: ignore[assignment]
        else:
            raise IntegrityError(f"dag-pb link: unexpected field {field_no} (wire type {wire})")
    if hash_ is None:
        raise IntegrityError("dag-pb link without a Hash field")
    return PBLink(hash_, name, tsize)


def decode_unixfs_data(buf: bytes | memoryview) -> UnixFSData:
    """Parse a UnixFS Data message; unknown fields (mode, mtime) are skipped."""
    type_: int | None = None
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: list[int] = []
    hash_type: int | None = None
    fanout: int | None = None
    for field_no, wire, value in _fields(buf, "UnixFS Data"):
        if field_no == 1 and wire == _VARINT:
            type_ = value  # type: ignore[assignment]
        elif field_no == 2 and wire == _LEN:
            data = bytes(value)  # type: ignore[arg-type]
        elif field_no == 3 and wire == _VARINT:
            filesize = value  # type: ignore[assignment]
        elif field_no == 4 and wire == _VARINT:
            blocksizes.append(value)  # type: ignore[arg-type]
        elif field_no == 5 and wire == _VARINT:
            hash_type = value  # type: ignore[assignment]
        elif field_no == 6 and wire == _VARINT:
            fanout = value  # type: ignore[assignment]
    if type_ is None:
        raise IntegrityError("UnixFS Data message without a Type field")
    return UnixFSData(type_, data, filesize, tuple(blocksizes), hash_type, fanout)
