"""Multiformats maths: varints, sha2-256 multihashes, multibase and CIDs.

Pure functions over bytes and strings, no I/O. They implement exactly the
parts of the multiformats specs (github.com/multiformats/{unsigned-varint,
multihash, multibase, cid}) that Kubo's ``ipfs add`` output uses:

* unsigned LEB128 varints, at most 9 bytes (the multiformats limit, 2**63-1);
* multihash ``<code varint><length varint><digest>``; only sha2-256 (0x12) can
  be *computed* here, any code can be parsed and carried;
* CIDv0: the base58btc text of a 34-byte sha2-256 multihash (``Qm...``), codec
  implicitly dag-pb; its binary form is the multihash itself;
* CIDv1: ``0x01 <codec varint> <multihash>``, written as lower-case base32
  without padding behind the multibase prefix ``b`` (``bafy...``/``bafk...``);
  base58btc (``z``) and upper base32 (``B``) are accepted on input.

Binary CIDs are what goes on-chain, so :func:`cid_to_bytes` and
:func:`cid_from_bytes` round-trip exactly. Malformed text raises
:class:`~flare_chain.errors.ConfigError` saying what is wrong with it.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import base58

from flare_chain.errors import ConfigError, IntegrityError

__all__ = [
    "CODEC_DAG_PB",
    "CODEC_RAW",
    "SHA2_256",
    "Cid",
    "base32_decode",
    "base32_encode",
    "cid_from_bytes",
    "cid_to_bytes",
    "decode_multihash",
    "decode_varint",
    "encode_varint",
    "parse_cid",
    "sha256_multihash",
]

CODEC_DAG_PB = 0x70
CODEC_RAW = 0x55
SHA2_256 = 0x12
_SHA2_256_LEN = 32
_MAX_VARINT_BYTES = 9
_CODEC_NAMES = {CODEC_DAG_PB: "dag-pb", CODEC_RAW: "raw"}


def encode_varint(value: int) -> bytes:
    """Encode a non-negative int as an unsigned LEB128 varint (multiformats flavour)."""
    if value < 0 or value >= 1 << 63:
        raise ConfigError(f"varint value {value} out of range 0..2**63-1")
    if value < 0x80:  # the common case: one byte
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(buf: bytes | memoryview, offset: int = 0) -> tuple[int, int]:
    """Decode a varint at ``offset``; return ``(value, offset just past it)``.

    Rejects truncated input, more than 9 bytes and non-minimal encodings
    (a trailing 0x00 byte), because two encodings of one number would give two
    CIDs for one block.
    """
    value = 0
    shift = 0
    for i in range(_MAX_VARINT_BYTES):
        pos = offset + i
        if pos >= len(buf):
            raise ConfigError(f"truncated varint at byte {offset}: input ends after {i} byte(s)")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise ConfigError(f"non-minimal varint at byte {offset}")
            return value, pos + 1
        shift += 7
    raise ConfigError(f"varint at byte {offset} is longer than {_MAX_VARINT_BYTES} bytes")


def sha256_multihash(data: bytes | memoryview) -> bytes:
    """Return the 34-byte sha2-256 multihash of ``data``."""
    return b"\x12\x20" + hashlib.sha256(data).digest()


def decode_multihash(mh: bytes) -> tuple[int, bytes]:
    """Split a complete multihash into ``(hash code, digest)``; the length must match exactly."""
    code, pos = decode_varint(mh)
    length, pos = decode_varint(mh, pos)
    digest = mh[pos:]
    if len(digest) != length:
        raise ConfigError(f"multihash declares a {length}-byte digest but carries {len(digest)} bytes")
    if code == SHA2_256 and length != _SHA2_256_LEN:
        raise ConfigError(f"sha2-256 multihash must carry 32 bytes, not {length}")
    return code, digest


def base32_encode(data: bytes) -> str:
    """RFC 4648 base32, lower case, no padding (multibase ``b`` without the prefix)."""
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def base32_decode(text: str) -> bytes:
    """Inverse of :func:`base32_encode`; accepts either case, no padding."""
    upper = text.upper()
    try:
        return base64.b32decode(upper + "=" * (-len(upper) % 8))
    except ValueError as exc:
        raise ConfigError(f"invalid base32 text {text!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Cid:
    """A parsed content identifier: version, codec and complete multihash."""

    version: int
    codec: int
    multihash: bytes

    def __post_init__(self) -> None:
        if self.version not in (0, 1):
            raise ConfigError(f"CID version must be 0 or 1, not {self.version}")
        decode_multihash(self.multihash)
        if self.version == 0 and (self.codec != CODEC_DAG_PB or not self.multihash.startswith(b"\x12\x20")):
            raise ConfigError("CIDv0 must be dag-pb with a sha2-256 multihash; use CIDv1 for anything else")

    @classmethod
    def v0(cls, multihash: bytes) -> Cid:
        return cls(0, CODEC_DAG_PB, multihash)

    @classmethod
    def v1(cls, codec: int, multihash: bytes) -> Cid:
        return cls(1, codec, multihash)

    @property
    def codec_name(self) -> str:
        return _CODEC_NAMES.get(self.codec, hex(self.codec))

    @property
    def digest(self) -> bytes:
        return decode_multihash(self.multihash)[1]

    def to_bytes(self) -> bytes:
        """Binary form: the multihash for v0, ``0x01 codec multihash`` for v1."""
        if self.version == 0:
            return self.multihash
        return b"\x01" + encode_varint(self.codec) + self.multihash

    def encode(self) -> str:
        """Canonical text: base58btc for v0, multibase base32 lower (``b...``) for v1."""
        if self.version == 0:
            return base58.b58encode(self.multihash).decode("ascii")
        return "b" + base32_encode(self.to_bytes())

    def with_multihash(self, multihash: bytes) -> Cid:
        """Same version and codec, another multihash (used to name what bytes really hashed to)."""
        return Cid(self.version, self.codec, multihash)

    def __str__(self) -> str:
        return self.encode()


def parse_cid(text: str) -> Cid:
    """Parse a CID string (v0 ``Qm...``, v1 ``b...``/``B...``/``z...``).

    Raises ConfigError naming the string and what is wrong, so a typo in a
    command line or config never reaches the store.
    """
    if not isinstance(text, str) or not text:
        raise ConfigError(f"empty or non-string CID {text!r}; expected e.g. Qm... or bafy...")
    try:
        if len(text) == 46 and text.startswith("Qm"):
            raw = base58.b58decode(text)
            return _cid_from_raw(raw, text)
        prefix, body = text[0], text[1:]
        if prefix in "bB":
            raw = base32_decode(body)
        elif prefix == "z":
            raw = base58.b58decode(body)
        else:
            raise ConfigError(f"unsupported multibase prefix {prefix!r}")
        if raw[:1] != b"\x01":
            raise ConfigError("multibase CID must be version 1")
        return _cid_from_raw(raw, text)
    except ConfigError as exc:
        raise ConfigError(f"malformed CID {text!r}: {exc}; expected a CIDv0 (Qm...) or CIDv1 (b...)") from None
    except ValueError as exc:  # base58 alphabet errors
        raise ConfigError(f"malformed CID {text!r}: {exc}; expected a CIDv0 (Qm...) or CIDv1 (b...)") from None


def canonical_cid_field(value: str | None, hint: str = "") -> str | None:
    """The canonical text of an optional CID field of a settings model, for pydantic validators.

    Settings files accept any CID spelling (v0, v1 in another base); storing the canonical
    text means two files naming the same content compare equal. Raises ``ValueError`` (what
    pydantic turns into a validation error naming the field), with ``hint`` as the fix.
    """
    if value is None:
        return None
    try:
        return parse_cid(value).encode()
    except ConfigError as exc:
        raise ValueError(f"not a CID ({exc}){hint}") from None


def _cid_from_raw(raw: bytes, shown: object) -> Cid:
    if len(raw) == 34 and raw[:2] == b"\x12\x20":
        return Cid.v0(raw)
    if raw[:1] != b"\x01":
        raise ConfigError(f"binary CID {shown!r} is neither a 34-byte CIDv0 multihash nor starts with 0x01")
    codec, pos = decode_varint(raw, 1)
    return Cid.v1(codec, bytes(raw[pos:]))


def cid_to_bytes(cid: str | Cid) -> bytes:
    """Binary CID for on-chain storage (v0: 34-byte multihash; v1: 0x01 + codec + multihash)."""
    return (cid if isinstance(cid, Cid) else parse_cid(cid)).to_bytes()


def cid_from_bytes(raw: bytes) -> str:
    """Inverse of :func:`cid_to_bytes`: canonical CID text from binary form.

    Raises IntegrityError, since binary CIDs come from chain data rather than
    an operator, and a malformed one means the record is not what it claims.
    """
    try:
        return _cid_from_raw(bytes(raw), raw.hex()).encode()
    except ConfigError as exc:
        raise IntegrityError(f"binary CID 0x{bytes(raw).hex()} is malformed: {exc}") from None
