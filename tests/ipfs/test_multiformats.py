"""Codec properties and published vectors for varints, multihashes and CIDs."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flare_chain.errors import ConfigError, IntegrityError
from flare_chain.ipfs.multiformats import (
    CODEC_DAG_PB,
    CODEC_RAW,
    Cid,
    cid_from_bytes,
    cid_to_bytes,
    decode_varint,
    encode_varint,
    parse_cid,
    sha256_multihash,
)

digests = st.binary(min_size=32, max_size=32)


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_varint_round_trip(value: int) -> None:
    encoded = encode_varint(value)
    assert decode_varint(encoded + b"\xff") == (value, len(encoded))


@pytest.mark.parametrize(("value", "encoded"), [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"),
                                                (300, b"\xac\x02"), (16384, b"\x80\x80\x01")])
def test_varint_known_encodings(value: int, encoded: bytes) -> None:
    # Source: multiformats/unsigned-varint README examples.
    assert encode_varint(value) == encoded


@pytest.mark.parametrize("bad", [b"", b"\x80", b"\x80\x00", b"\xff" * 10])
def test_varint_rejects_truncated_overlong_and_non_minimal(bad: bytes) -> None:
    with pytest.raises(ConfigError):
        decode_varint(bad)


@given(digests, st.sampled_from([0, 1]), st.sampled_from([CODEC_DAG_PB, CODEC_RAW]))
def test_cid_text_and_binary_round_trip(digest: bytes, version: int, codec: int) -> None:
    if version == 0:
        codec = CODEC_DAG_PB
    cid = Cid(version, codec, b"\x12\x20" + digest)
    text = cid.encode()
    assert parse_cid(text) == cid
    assert cid_from_bytes(cid_to_bytes(text)) == text
    assert text.startswith("Qm" if version == 0 else "b")


def test_cid_binary_forms_match_the_spec() -> None:
    # Source: CID spec (multiformats/cid) — v0 binary is the bare multihash, v1 is 0x01 codec multihash.
    v0 = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    digest = hashlib.sha256(b"\x0a\x12\x08\x02\x12\x0chello world\n\x18\x0c").digest()
    assert cid_to_bytes(v0) == b"\x12\x20" + digest
    v1 = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    assert cid_to_bytes(v1) == b"\x01\x55\x12\x20" + hashlib.sha256(b"hello world").digest()
    assert len(cid_to_bytes(v1)) == 36


def test_v1_accepts_base58_and_upper_base32_and_normalises() -> None:
    v1 = parse_cid("bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e")
    import base58

    z = "z" + base58.b58encode(v1.to_bytes()).decode()
    assert parse_cid(z) == v1
    assert parse_cid("B" + v1.encode()[1:].upper()) == v1


def test_sha256_multihash_prefix() -> None:
    assert sha256_multihash(b"") == b"\x12\x20" + hashlib.sha256(b"").digest()


@pytest.mark.parametrize("bad", [
    "",
    "hello",
    "Qm" + "0" * 44,                                       # '0' is not in the base58 alphabet
    "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5",       # truncated
    "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5",  # digest one symbol short
    "xafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e",  # unknown multibase
    "b" + "1" * 20,                                        # '1' is not base32
])
def test_malformed_cid_strings_raise_config_error_naming_the_string(bad: str) -> None:
    with pytest.raises(ConfigError, match="CID"):
        parse_cid(bad)


def test_malformed_binary_cid_raises_integrity_error() -> None:
    with pytest.raises(IntegrityError, match="malformed"):
        cid_from_bytes(b"\x02\x70\x12\x20" + bytes(32))
    with pytest.raises(IntegrityError):
        cid_from_bytes(b"\x12\x20" + bytes(31))


def test_a_parsed_cid_names_its_codec_and_digest() -> None:
    cid = parse_cid("bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e")
    assert (cid.version, cid.codec_name) == (1, "raw")
    assert cid.digest == hashlib.sha256(b"hello world").digest()
