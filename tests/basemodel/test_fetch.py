"""Publishing a model folder and fetching it back by CID: verified block by block and as a whole, cached."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flare_chain.basemodel import cached_model_path, fetch_model, publish_model
from flare_chain.basemodel.fetch import PARTIAL_PREFIX
from flare_chain.errors import ConfigError, IntegrityError
from flare_chain.ipfs import Cid, ContentStore, KuboClient, cid_of_directory, parse_cid, serve_in_thread
from tests.basemodel._folders import EMPTY_CID, HELLO_CID
from tests.ipfs.test_kubo_client import store_backed


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "ipfs", durable=False)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, ContentStore]]:
    served_store = ContentStore(tmp_path / "served", durable=False)
    with serve_in_thread(served_store) as handle:
        yield handle.url, served_store


def test_add_then_fetch_round_trip_gives_kubo_cids_and_the_same_bytes(model_folder: Path, store: ContentStore,
                                                                       tmp_path: Path) -> None:
    # Execute
    cid = publish_model(model_folder, store, show_progress=False)
    path = fetch_model(cid, store.get_block, tmp_path / "cache", source="test store", show_progress=False)
    # Assert: the CID is `ipfs add -r`'s; its entries link the files by the CIDs Kubo gives them
    assert cid == cid_of_directory(model_folder)
    entries = {e.name: e.cid for e in store.ls(cid)}
    assert entries["tokenizer.json"] == HELLO_CID and entries["tokenizer_config.json"] == EMPTY_CID
    assert store.pins() == [cid]
    assert path == cached_model_path(tmp_path / "cache", cid) and _tree(path) == _tree(model_folder)


def test_add_over_a_kubo_endpoint_gives_the_embedded_cid_and_fetches_back(model_folder: Path, store: ContentStore,
                                                                          served: tuple[str, ContentStore],
                                                                          tmp_path: Path) -> None:
    url, served_store = served
    local = publish_model(model_folder, store, show_progress=False)
    with KuboClient(url, retries=0) as client:
        remote = publish_model(model_folder, client, show_progress=False)
        path = fetch_model(remote, client.block_get, tmp_path / "cache", source=url, show_progress=False)
    assert remote == local and served_store.pins() == [remote]
    assert _tree(path) == _tree(model_folder)


def test_a_tampered_block_is_refused_and_nothing_is_left_in_the_cache(model_folder: Path, store: ContentStore,
                                                                      tmp_path: Path) -> None:
    # Prepare: an endpoint that flips one byte of one weight chunk
    cid = publish_model(model_folder, store, show_progress=False)
    weights = parse_cid(next(e.cid for e in store.ls(cid) if e.name == "model.safetensors"))
    from flare_chain.ipfs.dagpb import decode_pb_node
    from flare_chain.ipfs.multiformats import cid_from_bytes

    victim = cid_from_bytes(decode_pb_node(store.get_block(weights)).links[1].hash)

    def flip(asked: str, data: bytes) -> bytes:
        return data[:100] + bytes([data[100] ^ 1]) + data[101:] if asked == victim else data

    cache = tmp_path / "cache"
    transport = httpx.MockTransport(store_backed(store, tamper=flip))
    # Execute / Assert
    with KuboClient("http://kubo.test:5001", transport=transport, retries=0) as client, \
            pytest.raises(IntegrityError, match=f"block {victim} from http://kubo.test:5001 hashed to"):
        fetch_model(cid, client.block_get, cache, source=client.base_url, show_progress=False)
    assert list(cache.iterdir()) == []


def test_a_corrupt_block_in_the_embedded_store_is_refused(model_folder: Path, store: ContentStore,
                                                          tmp_path: Path) -> None:
    cid = publish_model(model_folder, store, show_progress=False)
    config_cid = next(e.cid for e in store.ls(cid) if e.name == "config.json")
    block = store.block_path(config_cid)
    block.write_bytes(block.read_bytes().replace(b"llama", b"llamb"))
    with pytest.raises(IntegrityError, match="hashed to"):
        fetch_model(cid, store.get_block, tmp_path / "cache", source="test store", show_progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_the_cache_is_reused_without_fetching_and_an_edited_copy_is_fetched_again(
        model_folder: Path, store: ContentStore, tmp_path: Path) -> None:
    # Prepare
    cid = publish_model(model_folder, store, show_progress=False)
    cache = tmp_path / "cache"
    first = fetch_model(cid, store.get_block, cache, source="test store", show_progress=False)
    asked: list[Cid] = []

    def counting(c: Cid) -> bytes:
        asked.append(c)
        return store.get_block(c)

    # Execute / Assert: a second fetch reads nothing from the source
    assert fetch_model(cid, counting, cache, source="test store", show_progress=False) == first
    assert asked == []
    # Execute / Assert: someone edits the cached copy; the next fetch notices and restores the published bytes
    (first / "config.json").write_text("{}", encoding="utf-8")
    again = fetch_model(cid, counting, cache, source="test store", show_progress=False)
    assert again == first and asked and _tree(again) == _tree(model_folder)
    assert [p.name for p in cache.iterdir()] == [cid]


def test_a_published_folder_holding_pickle_is_refused_on_fetch(model_folder: Path, store: ContentStore,
                                                               tmp_path: Path) -> None:
    # Prepare: pinned around the publisher's check, as a hostile owner could
    (model_folder / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    cid = store.add_directory(model_folder)
    with pytest.raises(ConfigError, match=f"model {cid} from test store is not usable: .*pickle"):
        fetch_model(cid, store.get_block, tmp_path / "cache", source="test store", show_progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_dag_not_laid_out_by_ipfs_add_defaults_is_refused(model_folder: Path, store: ContentStore,
                                                            tmp_path: Path) -> None:
    # CIDv0 with raw leaves: valid blocks, but not what `ipfs add -r` makes, so the folder cannot be re-checked.
    cid = store.add_directory(model_folder, raw_leaves=True)
    with pytest.raises(IntegrityError, match=r"re-hashes to .* not added with `ipfs add -r` defaults"):
        fetch_model(cid, store.get_block, tmp_path / "cache", source="test store", show_progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_file_cid_is_not_a_model(store: ContentStore, tmp_path: Path) -> None:
    cid = store.add_bytes(b"hello world")
    with pytest.raises(ConfigError, match="not a folder"):
        fetch_model(cid, store.get_block, tmp_path / "cache", source="test store", show_progress=False)
    assert not any(p.name.startswith(PARTIAL_PREFIX) for p in (tmp_path / "cache").iterdir())


def test_publishing_refuses_a_bad_folder_before_storing_anything(model_folder: Path, store: ContentStore) -> None:
    (model_folder / "config.json").unlink()
    with pytest.raises(ConfigError, match=r"config\.json"):
        publish_model(model_folder, store, show_progress=False)
    assert store.pins() == [] and not list((store.root / "blocks").rglob("*.data"))


def test_a_directory_naming_an_entry_twice_is_refused(store: ContentStore, tmp_path: Path) -> None:
    # Prepare: a hand-built directory node whose two links share a name (no importer makes one)
    from flare_chain.ipfs.dagpb import (
        UNIXFS_DIRECTORY,
        PBLink,
        UnixFSData,
        encode_pb_node,
        encode_unixfs_data,
    )
    from flare_chain.ipfs.multiformats import sha256_multihash

    leaf = parse_cid(store.add_bytes(b"{}"))
    block = encode_pb_node([PBLink(leaf.to_bytes(), b"config.json", 10), PBLink(leaf.to_bytes(), b"config.json", 10)],
                           encode_unixfs_data(UnixFSData(UNIXFS_DIRECTORY)))
    root = Cid.v0(sha256_multihash(block))
    store.put_block(root, block)
    # Execute / Assert
    with pytest.raises(IntegrityError, match=r"names 'config\.json' twice"):
        fetch_model(root.encode(), store.get_block, tmp_path / "cache", source="test store", show_progress=False)
    assert list((tmp_path / "cache").iterdir()) == []
