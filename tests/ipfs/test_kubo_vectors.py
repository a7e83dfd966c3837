"""CIDs that Kubo's ``ipfs add`` publishes, reproduced byte for byte.

Sources:
* ipfs/kubo test/cli/cid_profiles_test.go (IPIP-499 profiles: unixfs-v0-2015 == Kubo's
  defaults, unixfs-v1-2025 == CIDv1, raw leaves, 1 MiB chunks, 1024 links);
* ipfs/js-ipfs-unixfs packages/ipfs-unixfs-importer/test/cid-profiles.spec.ts, which
  re-states Kubo's vectors with the chunk-size ones and the empty-directory CIDs, and
  test/helpers/deterministic.ts (ChaCha20 content and file names, after Kubo's
  test/cli/testutils/random_deterministic.go);
* the well-known `ipfs add` CIDs of "", "hello world" and "hello world\\n".
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from flare_chain.errors import StoreError
from flare_chain.ipfs.unixfs import DagEntry, FileDagBuilder, ImportOptions, build_directory, cid_of_bytes

KIB256 = 262_144
MIB = 1_048_576
ALPHABET_EASY = "abcdefghijklmnopqrstuvwxyz01234567890-_"  # Kubo testutils.AlphabetEasy (39 chars)
V1_2025 = ImportOptions(cid_version=1, chunk_size=MIB, max_links=1024)


def deterministic_bytes(size: int, seed: str) -> bytes:
    """Kubo's DeterministicRandomReader: ChaCha20 keystream, key sha256(seed), zero nonce and counter."""
    key = hashlib.sha256(seed.encode()).digest()
    return Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor().update(bytes(size))


def deterministic_names(count: int, name_len: int, last_len: int, seed: str) -> list[bytes]:
    stream = deterministic_bytes(MIB, seed)
    names, offset = [], 0
    for i in range(count):
        n = last_len if i == count - 1 else name_len
        names.append("".join(ALPHABET_EASY[b % 39] for b in stream[offset : offset + n]).encode())
        offset += n
    return names


def file_cid(data: bytes, options: ImportOptions) -> str:
    builder = FileDagBuilder(options)
    builder.add_bytes(data)
    return builder.finish().cid.encode()


def single_x_file(options: ImportOptions) -> DagEntry:
    builder = FileDagBuilder(options)
    builder.add_bytes(b"x")
    return builder.finish()


def test_chacha20_reader_matches_rfc8439_keystream() -> None:
    # RFC 8439 §2.4.2 is counter 1; with counter 0 and an all-zero key the first keystream
    # block is the well-known 76b8e0ad... (RFC 7539 test vector A.1 #1).
    block = Cipher(algorithms.ChaCha20(bytes(32), bytes(16)), mode=None).encryptor().update(bytes(16))
    assert block.hex() == "76b8e0ada0f13d90405d6ae55386bd28"


@pytest.mark.parametrize(("data", "v0", "v1"), [
    (b"", "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH",
     "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"),
    (b"hello world", "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD",
     "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"),
    (b"hello world\n", "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o", None),
])
def test_small_files(data: bytes, v0: str, v1: str | None) -> None:
    assert cid_of_bytes(data) == v0
    if v1 is not None:
        assert cid_of_bytes(data, 1) == v1


@pytest.mark.parametrize(("size", "seed", "expected"), [
    (KIB256, "chunk-v0-seed", "QmWmRj3dFDZdb6ABvbmKhEL6TmPbAfBZ1t5BxsEyJrcZhE"),
    (KIB256 + 1, "chunk-v0-seed", "QmYyLxtzZyW22zpoVAtKANLRHpDjZtNeDjQdJrcQNWoRkJ"),
    (174 * KIB256, "v0-seed", "QmUbBALi174SnogsUzLpYbD4xPiBSFANF4iztWCsHbMKh2"),
    (174 * KIB256 + 1, "v0-seed", "QmV81WL765sC8DXsRhE5fJv2rwhS4icHRaf3J9Zk5FdRnW"),
])
def test_kubo_default_profile_files(size: int, seed: str, expected: str) -> None:
    assert cid_of_bytes(deterministic_bytes(size, seed)) == expected


@pytest.mark.parametrize(("size", "expected"), [
    (MIB, "bafkreiacndfy443ter6qr2tmbbdhadvxxheowwf75s6zehscklu6ezxmta"),
    (MIB + 1, "bafybeigmix7t42i6jacydtquhet7srwvgpizfg7gjbq7627d35mjomtu64"),
])
def test_unixfs_v1_2025_profile_files_at_chunk_boundary(size: int, expected: str) -> None:
    assert file_cid(deterministic_bytes(size, "chunk-v1-seed"), V1_2025) == expected


@pytest.mark.slow
@pytest.mark.parametrize(("size", "expected"), [
    (1024 * MIB, "bafybeihmf37wcuvtx4hpu7he5zl5qaf2ineo2lqlfrapokkm5zzw7zyhvm"),
    (1024 * MIB + 1, "bafybeibdsi225ugbkmpbdohnxioyab6jsqrmkts3twhpvfnzp77xtzpyhe"),
])
def test_unixfs_v1_2025_profile_files_at_max_links(size: int, expected: str) -> None:
    key = hashlib.sha256(b"v1-2025-seed").digest()
    stream = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
    builder = FileDagBuilder(V1_2025)
    for start in range(0, size, MIB):
        builder.add_chunk(stream.update(bytes(min(MIB, size - start))))
    assert builder.finish().cid.encode() == expected


@pytest.mark.parametrize(("version", "expected"), [
    (0, "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"),
    (1, "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"),
])
def test_empty_directory(version: int, expected: str) -> None:
    assert build_directory([], ImportOptions(cid_version=version)).cid.encode() == expected


def test_flat_directory_at_kubo_sharding_threshold_v0() -> None:
    # 4096 files named with 30 chars, each containing "x": 4096 * (30 + 34) == 262144, stays flat.
    opts = ImportOptions()
    x = single_x_file(opts)
    names = deterministic_names(4096, 30, 30, "hamt-unixfs-v0-2015")
    assert build_directory([(n, x) for n in names], opts).cid.encode() == "QmX5GtRk3TSSEHtdrykgqm4eqMEn3n2XhfkFAis5fjyZmN"


def test_flat_directory_v1_raw_leaves() -> None:
    # unixfs-v1-2025 "dir-basic": 4766 "x" files, CIDv1 dag-pb directory over raw leaves.
    opts = ImportOptions(cid_version=1)
    x = single_x_file(opts)
    names = deterministic_names(4766, 11, 21, "hamt-unixfs-v1-2025")
    assert (build_directory([(n, x) for n in names], opts).cid.encode()
            == "bafybeic3h7rwruealwxkacabdy45jivq2crwz6bufb5ljwupn36gicplx4")


def test_directory_one_byte_over_threshold_refuses_instead_of_guessing_a_hamt() -> None:
    # Kubo shards this one (QmeMiJzmhpJAUgynAcxTQYek5PPKgdv3qEvFsdV3XpVnvP); we must not emit a flat CID.
    opts = ImportOptions()
    x = single_x_file(opts)
    names = deterministic_names(4033, 31, 31, "hamt-unixfs-v0-2015")
    with pytest.raises(StoreError, match="HAMT"):
        build_directory([(n, x) for n in names], opts)


def test_tree_shape_175_leaves_gives_root_with_two_links() -> None:
    # Kubo's "file-over-max-links" expectation: one more chunk than 174 makes a 2-link root.
    from flare_chain.ipfs.dagpb import decode_pb_node

    blocks: dict[bytes, bytes] = {}
    builder = FileDagBuilder(ImportOptions(chunk_size=4), lambda cid, pieces: blocks.setdefault(
        cid.multihash, b"".join(pieces)))
    builder.add_bytes(bytes(i % 251 for i in range(175 * 4)))
    root = builder.finish()
    assert len(decode_pb_node(blocks[root.cid.multihash]).links) == 2
