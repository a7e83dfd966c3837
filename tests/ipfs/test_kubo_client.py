"""The Kubo RPC client: end to end against our own server, and against endpoints that lie or fail."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from flare_chain.errors import ConfigError, IntegrityError, StoreError
from flare_chain.ipfs import (
    ContentStore,
    KuboClient,
    cid_of_bytes,
    cid_of_directory,
    parse_cid,
    serve_in_thread,
)
from flare_chain.ipfs.dagpb import decode_pb_node
from flare_chain.ipfs.kubo_client import parse_chunker
from flare_chain.ipfs.multiformats import CODEC_RAW, Cid, cid_from_bytes, sha256_multihash
from flare_chain.ipfs.rpc_server import ServerHandle

FAKE_URL = "http://ipfs.test:5001"
CHUNK = 262_144


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ServerHandle, ContentStore]]:
    store = ContentStore(tmp_path / "served", durable=False)
    with serve_in_thread(store) as handle:
        yield handle, store


@pytest.fixture
def client(served: tuple[ServerHandle, ContentStore]) -> Iterator[KuboClient]:
    with KuboClient(served[0].url, retries=0) as c:
        yield c


def _blocks_in(store: ContentStore) -> list[Path]:
    return sorted((store.root / "blocks").rglob("*.data"))


def store_backed(store: ContentStore, *, tamper: Callable[[str, bytes], bytes] | None = None,
                 answer_add: str | None = None) -> Callable[[httpx.Request], httpx.Response]:
    """A MockTransport handler answering block/get and add from a real store, optionally lying."""

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/api/v0/block/get":
            cid = request.url.params["arg"]
            try:
                data = store.get_block(cid)
            except StoreError as exc:
                return httpx.Response(500, json={"Message": str(exc), "Code": 0, "Type": "error"})
            return httpx.Response(200, content=tamper(cid, data) if tamper else data)
        if path == "/api/v0/add":
            line = {"Name": "x", "Hash": answer_add, "Size": "1"}
            return httpx.Response(200, content=json.dumps(line).encode() + b"\n")
        if path == "/api/v0/version":
            return httpx.Response(200, json={"Version": "0.30.0", "Commit": "", "Repo": "16"})
        return httpx.Response(404, text="404 page not found")

    return handler


# ---------------------------------------------------------------- end to end over loopback HTTP


def test_add_matches_kubo_vectors_and_the_embedded_store(client: KuboClient, tmp_path: Path) -> None:
    # Prepare
    local = ContentStore(tmp_path / "local", durable=False)
    # Execute / Assert: Kubo's own `ipfs add` CIDs for "hello world"
    assert client.add(b"hello world") == "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD"
    assert client.add(b"hello world", cid_version=1) == "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    data = os.urandom(3 * CHUNK + 5)
    for kw in ({}, {"cid_version": 1}, {"cid_version": 0, "raw_leaves": True}, {"cid_version": 1, "raw_leaves": False}):
        assert client.add(data, **kw) == local.add_bytes(data, **kw) == cid_of_bytes(data, **kw)


def test_add_answers_kubo_lines_for_a_file(client: KuboClient, tmp_path: Path) -> None:
    f = tmp_path / "hello.txt"
    f.write_bytes(b"hello world")
    [entry] = client.add_entries(f)
    # A one-chunk dag-pb leaf is 19 bytes: PBNode(0a 11) + UnixFS{Type 2, Data 11 bytes, filesize 11}.
    assert (entry.name, entry.cid, entry.size) == ("hello.txt", "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD", 19)


def test_add_file_then_cat_verifies_block_by_block(client: KuboClient, tmp_path: Path,
                                                   served: tuple[ServerHandle, ContentStore]) -> None:
    data = os.urandom(2 * CHUNK + 17)
    f = tmp_path / "delta.safetensors"
    f.write_bytes(data)
    cid = client.add(f)
    assert cid == cid_of_bytes(data)
    assert served[1].cat(cid) == data  # really stored on the server's store
    assert client.cat(cid) == data
    assert b"".join(client.open(cid)) == data


def test_add_directory_recursive_ls_and_cat_by_path(client: KuboClient, tmp_path: Path) -> None:
    d = tmp_path / "adapter"
    (d / "sub").mkdir(parents=True)
    (d / "adapter_config.json").write_bytes(b"{}")
    (d / "sub" / "weights.bin").write_bytes(os.urandom(CHUNK + 1))
    (d / ".secret").write_bytes(b"not sent")
    with pytest.raises(ConfigError, match="recursive=True"):
        client.add(d)
    entries = client.add_entries(d, recursive=True)
    assert [e.name for e in entries] == ["adapter/adapter_config.json", "adapter/sub/weights.bin",
                                         "adapter/sub", "adapter"]
    root = entries[-1].cid
    assert root == cid_of_directory(d)
    assert [e.name for e in client.ls(root)] == ["adapter_config.json", "sub"]
    assert client.cat(f"{root}/sub/weights.bin") == (d / "sub" / "weights.bin").read_bytes()
    assert client.add(d, recursive=True, include_hidden=True, cid_version=1) == \
        cid_of_directory(d, 1, include_hidden=True)


def test_only_hash_stores_nothing_on_the_endpoint(client: KuboClient,
                                                  served: tuple[ServerHandle, ContentStore]) -> None:
    cid = client.add(b"just the hash", only_hash=True)
    assert cid == cid_of_bytes(b"just the hash")
    assert not served[1].has(cid)
    assert cid not in client.pin_ls()


def test_pin_add_rm_ls(client: KuboClient) -> None:
    cid = client.add(b"pin me", pin=False)
    assert cid not in client.pin_ls()
    assert client.pin_add(cid) == [cid]
    assert client.pin_ls() == {cid: "recursive"}
    assert client.pin_ls(cid) == {cid: "recursive"}
    assert client.pin_rm(cid) == [cid]
    assert client.pin_ls() == {}
    with pytest.raises(StoreError, match="not pinned"):
        client.pin_rm(cid)


def test_id_and_version(client: KuboClient) -> None:
    ident = client.id()
    assert ident["ID"].startswith("12D3KooW")
    assert ident["AgentVersion"].startswith("flare-chain/")
    assert client.id()["ID"] == ident["ID"]  # stable
    assert "Version" in client.version()


def test_block_put_and_get_are_verified(client: KuboClient) -> None:
    cid = client.block_put(b"a raw block")
    assert parse_cid(cid).codec_name == "raw"
    assert client.block_get(cid) == b"a raw block"
    assert cid not in client.pin_ls()  # as `ipfs block put`: unpinned unless asked, so `gc` may drop it
    pinned = client.block_put(b"a pinned raw block", pin=True)
    assert pinned in client.pin_ls()


def test_pull_copies_a_dag_into_a_local_store_and_pins_it(client: KuboClient, tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK)
    cid = client.add(data, cid_version=1)
    local = ContentStore(tmp_path / "local", durable=False)
    assert client.pull(cid, local) == cid
    assert local.pins() == [cid]
    assert local.cat(cid) == data


def test_cache_serves_blocks_after_the_first_fetch(served: tuple[ServerHandle, ContentStore], tmp_path: Path) -> None:
    cache = ContentStore(tmp_path / "cache", durable=False)
    with KuboClient(served[0].url, retries=0, cache=cache) as c:
        cid = c.add(b"cached")
        assert c.cat(cid) == b"cached"
    assert cache.has(cid)
    with KuboClient("http://127.0.0.1:9", retries=0, cache=cache) as offline:  # nothing listens there
        assert offline.cat(cid) == b"cached"


def test_unknown_cid_is_a_store_error_naming_the_endpoint(client: KuboClient) -> None:
    missing = cid_of_bytes(b"never added")
    with pytest.raises(StoreError, match=f"{client.base_url}.*{missing}"):
        client.cat(missing)


def test_endpoints_serving_one_repository_share_content(tmp_path: Path) -> None:
    repo = tmp_path / "shared"
    with serve_in_thread(ContentStore(repo, durable=False)) as a, \
            serve_in_thread(ContentStore(repo, durable=False)) as b, \
            KuboClient(a.url, retries=0) as ca, KuboClient(b.url, retries=0) as cb:
        cid = ca.add(b"written through a")
        assert cb.cat(cid) == b"written through a"
        assert cid in cb.pin_ls()


# ---------------------------------------------------------------- endpoints that lie


def test_altered_block_is_refused_and_nothing_is_cached(tmp_path: Path) -> None:
    # Prepare
    source = ContentStore(tmp_path / "source", durable=False)
    cid = source.add_bytes(b"the real global adapter", cid_version=1)
    cache = ContentStore(tmp_path / "cache", durable=False)
    evil = store_backed(source, tamper=lambda _cid, data: data.replace(b"real", b"evil"))
    # Execute
    with KuboClient(FAKE_URL, transport=httpx.MockTransport(evil), cache=cache, retries=0) as c, \
            pytest.raises(IntegrityError) as err:
        c.cat(cid)
    # Assert
    got = cid_of_bytes(b"the evil global adapter", 1)
    assert str(err.value) == f"block {cid} from {FAKE_URL} hashed to {got}; refusing it"
    assert _blocks_in(cache) == []
    assert cache.pins() == []


def test_altered_leaf_in_a_large_file_is_refused_and_not_cached(tmp_path: Path) -> None:
    source = ContentStore(tmp_path / "source", durable=False)
    data = os.urandom(3 * CHUNK)
    cid = source.add_bytes(data)
    leaves = [cid_from_bytes(link.hash) for link in decode_pb_node(source.get_block(cid)).links]
    bad = leaves[1]

    def tamper(asked: str, block: bytes) -> bytes:
        return block[:-1] + bytes([block[-1] ^ 1]) if asked == bad else block

    cache = ContentStore(tmp_path / "cache", durable=False)
    handler = store_backed(source, tamper=tamper)
    with KuboClient(FAKE_URL, transport=httpx.MockTransport(handler), cache=cache, retries=0) as c:
        with pytest.raises(IntegrityError, match=f"block {bad} from {FAKE_URL} hashed to"):
            c.cat(cid)
        with pytest.raises(IntegrityError):
            c.pull(cid)
    assert not cache.has(bad)
    assert cache.pins() == []


def test_oversized_block_answer_is_refused(tmp_path: Path) -> None:
    source = ContentStore(tmp_path / "source", durable=False)
    cid = source.add_bytes(b"small")
    flood = store_backed(source, tamper=lambda _c, _d: b"\0" * 5000)
    with KuboClient(FAKE_URL, transport=httpx.MockTransport(flood), retries=0, max_block_bytes=4096) as c, \
            pytest.raises(IntegrityError, match="more than 4096 bytes"):
        c.block_get(cid)


def test_by_default_a_block_of_bitswaps_2_mib_is_taken_and_one_byte_more_refused(tmp_path: Path) -> None:
    # No peer can legitimately hold a block over 2 MiB (bitswap's limit): the default bound is exactly there
    source = ContentStore(tmp_path / "source", durable=False)
    largest = os.urandom(2 * 1024 * 1024)
    cid = Cid.v1(CODEC_RAW, sha256_multihash(largest))  # one raw block, not a chunked file
    source.put_block(cid, largest)
    with KuboClient(FAKE_URL, transport=httpx.MockTransport(store_backed(source)), retries=0) as c:
        assert c.block_get(cid) == largest
    flood = store_backed(source, tamper=lambda _c, data: data + b"\0")
    with KuboClient(FAKE_URL, transport=httpx.MockTransport(flood), retries=0) as c, \
            pytest.raises(IntegrityError, match=f"more than {2 * 1024 * 1024} bytes"):
        c.block_get(cid)


def test_add_where_the_endpoint_lies_about_the_cid(tmp_path: Path) -> None:
    lie = cid_of_bytes(b"something else")
    handler = store_backed(ContentStore(tmp_path / "s", durable=False), answer_add=lie)
    with KuboClient(FAKE_URL, transport=httpx.MockTransport(handler), retries=0) as c, \
            pytest.raises(IntegrityError) as err:
        c.add(b"hello world")
    message = str(err.value)
    assert FAKE_URL in message and lie in message
    assert "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD" in message


def test_block_put_where_the_endpoint_lies(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"Key": cid_of_bytes(b"other", 1), "Size": 5})

    with KuboClient(FAKE_URL, transport=httpx.MockTransport(handler), retries=0) as c, \
            pytest.raises(IntegrityError, match="block/put"):
        c.block_put(b"mine")


def test_options_that_cannot_be_verified_are_refused_before_sending() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    with KuboClient(FAKE_URL, transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(ConfigError, match="sha2-256"):
            c.add(b"x", hash="blake2b-256")
        with pytest.raises(ConfigError, match="rabin"):
            c.add(b"x", chunker="rabin-262144")
    with pytest.raises(ConfigError, match="http"):
        KuboClient("ipfs.test:5001")


def test_non_default_chunker_is_recomputed_locally(tmp_path: Path) -> None:
    # The endpoint (a stand-in for Kubo) answers the CID for 1 KiB chunks; our recomputation must agree.
    data = os.urandom(5000)
    small_chunks = ContentStore(tmp_path / "s", durable=False)
    from flare_chain.ipfs.unixfs import FileDagBuilder, ImportOptions

    builder = FileDagBuilder(ImportOptions(chunk_size=1024))
    builder.add_bytes(data)
    expected = builder.finish().cid.encode()
    assert expected != cid_of_bytes(data)
    handler = store_backed(small_chunks, answer_add=expected)
    with KuboClient(FAKE_URL, transport=httpx.MockTransport(handler), retries=0) as c:
        assert c.add(data, chunker="size-1024") == expected
        with pytest.raises(IntegrityError):
            c.add(data)  # default chunker: the same answer is now a lie


# ---------------------------------------------------------------- endpoints that fail


def test_endpoint_down_then_up_is_retried_with_backoff(tmp_path: Path) -> None:
    # Prepare: connection refused twice, then a 503 from a proxy, then the real answer
    source = ContentStore(tmp_path / "source", durable=False)
    cid = source.add_bytes(b"eventually")
    real = store_backed(source)
    calls = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) <= 2:
            raise httpx.ConnectError("connection refused", request=request)
        if len(calls) == 3:
            return httpx.Response(503, text="upstream unavailable")
        return real(request)

    sleeps: list[float] = []
    # Execute
    with KuboClient(FAKE_URL, transport=httpx.MockTransport(flaky), retries=4, backoff_s=0.5,
                    sleep=sleeps.append) as c:
        data = c.cat(cid)
    # Assert
    assert data == b"eventually"
    assert sleeps == [0.5, 1.0, 2.0]
    assert len(calls) == 4


def test_endpoint_down_for_good_is_a_store_error_after_the_retries() -> None:
    calls = []

    def down(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("connection refused", request=request)

    sleeps: list[float] = []
    with KuboClient(FAKE_URL, transport=httpx.MockTransport(down), retries=3, backoff_s=1.0, max_backoff_s=3.0,
                    sleep=sleeps.append) as c, pytest.raises(StoreError) as err:
        c.version()
    assert len(calls) == 4
    assert sleeps == [1.0, 2.0, 3.0]
    message = str(err.value)
    assert FAKE_URL in message and "after 4 tries" in message and "daemon runs" in message


def test_kubo_command_errors_are_not_retried() -> None:
    calls = []

    def refuses(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(500, json={"Message": "block was not found locally (offline)", "Code": 0,
                                         "Type": "error"})

    with KuboClient(FAKE_URL, transport=httpx.MockTransport(refuses), retries=3, sleep=lambda _s: None) as c, \
            pytest.raises(StoreError, match="not found locally") as caught:
        c.block_get(cid_of_bytes(b"x"))
    assert len(calls) == 1
    # the operator reads Kubo's own message, not the JSON envelope it came in
    assert str(caught.value).endswith(": block was not found locally (offline)")
    assert '"Message"' not in str(caught.value)


def test_pull_without_a_store_or_cache_is_refused_before_anything_is_fetched() -> None:
    calls = []

    def answers(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(500)

    with KuboClient(FAKE_URL, transport=httpx.MockTransport(answers), retries=0) as c, \
            pytest.raises(ConfigError, match="pull needs a store"):
        c.pull(cid_of_bytes(b"x"))
    assert calls == []


@pytest.mark.parametrize(("chunker", "size"), [("size-1", 1), ("size-262144", 262_144), ("size-1048576", 1 << 20)])
def test_every_size_chunker_kubo_accepts_is_reproduced(chunker: str, size: int) -> None:
    assert parse_chunker(chunker) == size


@pytest.mark.parametrize("chunker", ["size-0", "size-1048577", "rabin-262144", "size-"])
def test_chunkers_outside_kubos_range_or_kind_are_refused(chunker: str) -> None:
    with pytest.raises(ConfigError, match="chunker"):
        parse_chunker(chunker)


def test_gateway_url_instead_of_rpc_gets_a_hint() -> None:
    def gateway(request: httpx.Request) -> httpx.Response:
        return httpx.Response(405, text="method not allowed")

    with KuboClient(FAKE_URL, transport=httpx.MockTransport(gateway), retries=0) as c, \
            pytest.raises(ConfigError, match="Kubo RPC API address"):
        c.version()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_real_server_coming_up_during_the_retries(tmp_path: Path) -> None:
    # Prepare: nothing listens on the port until the second back-off
    store = ContentStore(tmp_path / "late", durable=False)
    cid = store.add_bytes(b"late but fine")
    port = _free_port()
    handles: list[ServerHandle] = []

    sleeps: list[float] = []

    def sleep(delay: float) -> None:
        sleeps.append(delay)
        if len(sleeps) == 2:
            handles.append(serve_in_thread(store, port=port))

    try:
        # Execute
        with KuboClient(f"http://127.0.0.1:{port}", retries=5, backoff_s=0.01, sleep=sleep) as c:
            data = c.cat(cid)
    finally:
        for h in handles:
            h.close()
    # Assert
    assert data == b"late but fine"
    assert len(sleeps) == 2
