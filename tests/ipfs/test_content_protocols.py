"""Both stores the node code is written against read UnixFS the same way, through one implementation."""

from __future__ import annotations

from pathlib import Path

from flare_chain.ipfs import ContentStore, KuboClient, serve_in_thread
from flare_chain.ipfs.content import ContentReader, PinningStore, VerifiedDagReader
from flare_chain.node.endpoint import EndpointStore


def test_embedded_and_endpoint_stores_satisfy_the_node_protocol_and_agree(tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_bytes(b"alpha" * 1000)
    (folder / "sub" / "b.bin").write_bytes(bytes(range(256)) * 2000)
    served = ContentStore(tmp_path / "served")
    cid = served.add_directory(folder, cid_version=1)
    handle = serve_in_thread(served)
    try:
        client = KuboClient(handle.url, cache=ContentStore(tmp_path / "cache"))
        endpoint = EndpointStore(client)
        local = ContentStore(tmp_path / "local")
        assert local.add_directory(folder, cid_version=1) == cid
        for store in (local, endpoint):
            assert isinstance(store, PinningStore)
        assert isinstance(client, ContentReader)
        assert isinstance(local, VerifiedDagReader) and isinstance(client, VerifiedDagReader)
        for reader in (local, client, endpoint):
            assert [e.name for e in reader.ls(cid)] == ["a.txt", "sub"]
            assert reader.cat(f"{cid}/sub/b.bin") == bytes(range(256)) * 2000
            assert b"".join(reader.open(f"{cid}/a.txt")) == b"alpha" * 1000
            assert reader.resolve(f"{cid}/sub") == local.resolve(f"{cid}/sub")
        client.close()
    finally:
        handle.close()
