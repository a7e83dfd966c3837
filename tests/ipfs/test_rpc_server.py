"""The embedded store served over the Kubo RPC subset, spoken to as a Kubo client would (raw HTTP)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.client import HTTPConnection, HTTPResponse
from pathlib import Path

import httpx
import pytest

from flare_chain.errors import ConfigError
from flare_chain.ipfs import ContentStore, KuboClient, cid_of_bytes, cid_of_directory, serve_in_thread
from flare_chain.ipfs.multipart import MultipartBody, UploadEntry, iter_parts, upload_entries
from flare_chain.ipfs.rpc_server import ServerHandle, _LineWriter

CHUNK = 262_144


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "repo", durable=False)


@pytest.fixture
def http(store: ContentStore) -> Iterator[httpx.Client]:
    with serve_in_thread(store) as handle, httpx.Client(base_url=handle.url + "/api/v0", timeout=30) as c:
        yield c


def _lines(resp: httpx.Response) -> list[dict[str, str]]:
    return [json.loads(line) for line in resp.text.splitlines() if line.strip()]


def _post_raw(conn: HTTPConnection, path: str, body: bytes | Iterator[bytes],
              headers: dict[str, str]) -> tuple[HTTPResponse, bytes]:
    conn.request("POST", path, body=body, headers=headers, encode_chunked=not isinstance(body, bytes))
    resp = conn.getresponse()
    return resp, resp.read()


def _kubo_error(resp: httpx.Response) -> dict[str, object]:
    doc = resp.json()
    assert set(doc) == {"Message", "Code", "Type"} and doc["Type"] == "error"
    return doc


def test_get_is_405_as_in_kubo(http: httpx.Client) -> None:
    resp = http.get("/version")
    assert resp.status_code == 405
    assert resp.headers["Allow"] == "POST"
    assert "POST" in str(_kubo_error(resp)["Message"])


def test_unknown_command_is_404(http: httpx.Client) -> None:
    assert http.post("/swarm/peers").status_code == 404


def test_unknown_cid_is_a_kubo_shaped_error(http: httpx.Client) -> None:
    missing = cid_of_bytes(b"not here")
    for command in ("/cat", "/block/get"):
        resp = http.post(command, params={"arg": missing})
        assert resp.status_code == 500
        doc = _kubo_error(resp)
        assert doc["Code"] == 0 and missing in str(doc["Message"])


def test_bad_arguments_are_client_errors(http: httpx.Client) -> None:
    resp = http.post("/cat")
    assert resp.status_code == 400
    assert _kubo_error(resp) == {"Message": 'argument "ipfs-path" is required', "Code": 1, "Type": "error"}
    resp = http.post("/cat", params={"arg": "Qmfoo"})
    assert resp.status_code == 400 and "malformed CID" in str(_kubo_error(resp)["Message"])
    resp = http.post("/add", params={"chunker": "rabin"}, files={"file": ("x", b"x")})
    assert resp.status_code == 400 and "size-262144" in str(_kubo_error(resp)["Message"])


def test_add_answers_kubo_ndjson_lines(http: httpx.Client, store: ContentStore) -> None:
    # httpx's own multipart encoder, as `curl -F file=@hello.txt` would send it
    resp = http.post("/add", files={"file": ("hello.txt", b"hello world")})
    assert resp.status_code == 200
    assert _lines(resp) == [{"Name": "hello.txt", "Hash": "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD",
                             "Size": "19"}]
    assert store.pins() == ["Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD"]
    resp = http.post("/add", params={"cid-version": "1", "pin": "false"}, files={"file": ("h", b"hello world")})
    assert _lines(resp) == [{"Name": "h", "Hash": "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e",
                             "Size": "11"}]
    assert len(store.pins()) == 1


def test_add_with_a_chunked_request_body(http: httpx.Client) -> None:
    data = os.urandom(CHUNK + 3)
    body = MultipartBody([UploadEntry.from_bytes("blob", data)])
    resp = http.post("/add", content=iter(body), headers={"Content-Type": body.content_type})
    assert resp.request.headers.get("Transfer-Encoding") == "chunked"
    assert _lines(resp)[-1]["Hash"] == cid_of_bytes(data)
    assert http.post("/cat", params={"arg": cid_of_bytes(data)}).content == data


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_kept_alive_connection_serves_the_request_after_an_add(store: ContentStore, chunked: bool) -> None:
    # Prepare: the multipart parser stops at the closing boundary; the epilogue (and the last-chunk
    # marker of a chunked body) must be read before answering, or the server closes a connection it
    # announced as kept alive and the client's next request on it is lost (issue 14, item 6).
    data = os.urandom(CHUNK + 3)
    body = MultipartBody([UploadEntry.from_bytes("blob", data)])
    with serve_in_thread(store) as handle:
        conn = HTTPConnection("127.0.0.1", handle.port, timeout=30)
        try:
            # Execute
            sent = iter(body) if chunked else b"".join(body)
            added, answer = _post_raw(conn, "/api/v0/add", sent, {"Content-Type": body.content_type})
            cat, content = _post_raw(conn, f"/api/v0/cat?arg={cid_of_bytes(data)}", b"", {})
        finally:
            conn.close()
    # Assert
    assert added.status == 200 and added.getheader("Connection") is None
    assert json.loads(answer)["Hash"] == cid_of_bytes(data)
    assert cat.status == 200 and content == data


def test_an_early_refusal_of_a_large_upload_announces_the_close(http: httpx.Client) -> None:
    body = MultipartBody([UploadEntry.from_bytes("blob", b"\0" * (3 * 1024 * 1024))])
    resp = http.post("/add", params={"chunker": "rabin"}, content=b"".join(body),
                     headers={"Content-Type": body.content_type})
    assert resp.status_code == 400 and resp.headers["Connection"] == "close"
    assert http.post("/version").status_code == 200  # the client opened a fresh connection


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
@pytest.mark.parametrize("progress", [False, True], ids=["quiet", "progress"])
def test_an_upload_cut_mid_stream_logs_one_line(store: ContentStore, caplog: pytest.LogCaptureFixture,
                                                capfd: pytest.CaptureFixture[str], chunked: bool,
                                                reset: bool, progress: bool) -> None:
    # Prepare
    body = b"".join(MultipartBody([UploadEntry.from_bytes("blob", b"x" * 2_000_000)], boundary="b0"))
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % len(body)
    sent = body[:len(body) // 2]
    caplog.set_level(logging.INFO, logger="flare_chain.ipfs.rpc_server")
    with serve_in_thread(store) as handle:
        # Execute: send half the upload, then go away (FIN, or RST with a zero linger)
        with socket.create_connection(("127.0.0.1", handle.port), timeout=30) as sock:
            query = b"?progress=true" if progress else b""  # with progress, the answer has begun by then
            sock.sendall(b"POST /api/v0/add" + query + b" HTTP/1.1\r\nHost: x\r\n" + framing +
                         b"\r\nContent-Type: multipart/form-data; boundary=b0\r\n\r\n" +
                         (b"%x\r\n" % len(body) if chunked else b"") + sent)
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        deadline = time.monotonic() + 30
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.02)
        # a request after it is served, and its handling logs nothing more
        assert httpx.post(handle.url + "/api/v0/version", timeout=30).status_code == 200
    # Assert: one line, no traceback (a reset that beats the request line is logged as a lost connection)
    assert [r.exc_info for r in caplog.records] == [None]
    if not reset:
        assert caplog.records[0].levelname == "WARNING" and "cut off" in caplog.records[0].getMessage()
    assert "Traceback" not in capfd.readouterr().err


def test_add_directory_lines_and_wrap(http: httpx.Client, tmp_path: Path) -> None:
    d = tmp_path / "model"
    (d / "b").mkdir(parents=True)
    (d / "a.json").write_bytes(b"{}")
    (d / "b" / "c.bin").write_bytes(b"weights")
    entries = [UploadEntry("model", "directory"), UploadEntry("model/a.json", "file", data=b"{}", size=2),
               UploadEntry("model/b", "directory"), UploadEntry("model/b/c.bin", "file", data=b"weights", size=7)]
    body = MultipartBody(entries)
    headers = {"Content-Type": body.content_type}
    lines = _lines(http.post("/add", content=b"".join(body), headers=headers))
    assert [line["Name"] for line in lines] == ["model/a.json", "model/b/c.bin", "model/b", "model"]
    assert lines[-1]["Hash"] == cid_of_directory(d)
    wrapped = _lines(http.post("/add", params={"wrap-with-directory": "true"}, content=b"".join(body),
                               headers=headers))
    assert wrapped[-1]["Name"] == ""
    assert wrapped[-2] == lines[-1]


def test_nameless_file_is_named_by_its_cid(http: httpx.Client) -> None:
    body = MultipartBody([UploadEntry.from_bytes("", b"stdin")])
    lines = _lines(http.post("/add", content=b"".join(body), headers={"Content-Type": body.content_type}))
    assert lines == [{"Name": cid_of_bytes(b"stdin"), "Hash": cid_of_bytes(b"stdin"), "Size": "13"}]


def test_only_hash_stores_nothing(http: httpx.Client, store: ContentStore) -> None:
    lines = _lines(http.post("/add", params={"only-hash": "true"}, files={"file": ("f", b"ghost")}))
    assert lines[-1]["Hash"] == cid_of_bytes(b"ghost")
    assert not store.has(cid_of_bytes(b"ghost"))
    assert store.pins() == []


def test_path_traversal_is_refused(http: httpx.Client, store: ContentStore, tmp_path: Path) -> None:
    body = MultipartBody([UploadEntry("../escape", "file", data=b"x", size=1)])
    resp = http.post("/add", content=b"".join(body), headers={"Content-Type": body.content_type})
    assert resp.status_code == 400 and "escape" in str(_kubo_error(resp)["Message"])
    assert store.pins() == []


def test_cat_offset_and_length(http: httpx.Client, store: ContentStore) -> None:
    data = os.urandom(2 * CHUNK + 10)
    cid = store.add_bytes(data)
    assert http.post("/cat", params={"arg": cid}).content == data
    part = http.post("/cat", params={"arg": cid, "offset": str(CHUNK - 5), "length": "20"}).content
    assert part == data[CHUNK - 5:CHUNK + 15]


def test_block_put_get_stat(http: httpx.Client) -> None:
    resp = http.post("/block/put", params={"cid-codec": "raw"}, files={"file": ("b", b"block bytes")})
    key = resp.json()["Key"]
    assert key == cid_of_bytes(b"block bytes", 1)
    assert http.post("/block/get", params={"arg": key}).content == b"block bytes"
    assert http.post("/block/stat", params={"arg": key}).json() == {"Key": key, "Size": 11}
    big = http.post("/block/put", files={"file": ("b", b"\0" * (1024 * 1024 + 1))})
    assert big.status_code == 400 and "over" in str(_kubo_error(big)["Message"])


def test_pin_ls_types_and_not_pinned(http: httpx.Client, store: ContentStore) -> None:
    cid = store.add_bytes(os.urandom(CHUNK + 1))
    assert http.post("/pin/ls", params={"type": "recursive"}).json() == {"Keys": {cid: {"Type": "recursive"}}}
    everything = http.post("/pin/ls").json()["Keys"]
    assert everything[cid] == {"Type": "recursive"}
    assert sorted(v["Type"] for v in everything.values()) == ["indirect", "indirect", "recursive"]
    other = cid_of_bytes(b"other")
    resp = http.post("/pin/ls", params={"arg": other})
    assert resp.status_code == 500 and _kubo_error(resp)["Message"] == f"path '{other}' is not pinned"
    streamed = [json.loads(x) for x in http.post("/pin/ls", params={"type": "recursive", "stream": "true"})
                .text.splitlines()]
    assert streamed == [{"Cid": cid, "Type": "recursive"}]


def test_id_answers_for_its_own_peer_and_refuses_another(http: httpx.Client) -> None:
    own = http.post("/id").json()["ID"]
    assert http.post("/id", params={"arg": own}).json()["ID"] == own
    other = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
    resp = http.post("/id", params={"arg": other})
    assert resp.status_code == 500 and f"peer {other} is unknown" in str(_kubo_error(resp)["Message"])


def test_pin_add_and_rm_take_every_arg_and_refuse_none(http: httpx.Client, store: ContentStore) -> None:
    # `ipfs pin rm A B` (and `pin add A B`) must act on both, not on the first alone
    first, second = store.add_bytes(b"first", pin=False), store.add_bytes(b"second", pin=False)
    added = http.post("/pin/add", params=[("arg", first), ("arg", second)])
    assert added.json() == {"Pins": [first, second]} and store.pins() == sorted([first, second])
    removed = http.post("/pin/rm", params=[("arg", first), ("arg", second)])
    assert removed.json() == {"Pins": [first, second]} and store.pins() == []
    for command in ("/pin/add", "/pin/rm"):
        resp = http.post(command)
        assert resp.status_code == 400 and "required" in str(_kubo_error(resp)["Message"])


def test_a_client_error_on_a_chunked_request_keeps_the_connection_and_logs_no_cut_off(
        store: ContentStore, caplog: pytest.LogCaptureFixture) -> None:
    # A chunked request read to its end and refused for its arguments is an ordinary 400: the
    # kept-alive connection serves the next request, and nothing is logged as a cut-off upload.
    cid = store.add_bytes(b"pinned", pin=False)
    caplog.set_level(logging.INFO, logger="flare_chain.ipfs.rpc_server")
    with serve_in_thread(store) as handle:
        conn = HTTPConnection("127.0.0.1", handle.port, timeout=30)
        try:
            refused, answer = _post_raw(conn, f"/api/v0/pin/add?arg={cid}&recursive=false", iter([b"x"]), {})
            version, _ = _post_raw(conn, "/api/v0/version", b"", {})
        finally:
            conn.close()
    assert refused.status == 400 and "pin recursively" in json.loads(answer)["Message"]
    assert refused.getheader("Connection") is None and version.status == 200
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_wrapped_upload_keeps_its_dotfiles(http: httpx.Client, tmp_path: Path) -> None:
    # The client chose to send `.config`; the server stores what it was sent, as Kubo does
    d = tmp_path / "model"
    d.mkdir()
    (d / ".config").write_bytes(b"hidden")
    (d / "w.bin").write_bytes(b"weights")
    body = MultipartBody([UploadEntry(".config", "file", data=b"hidden", size=6),
                          UploadEntry("w.bin", "file", data=b"weights", size=7)])
    lines = _lines(http.post("/add", params={"wrap-with-directory": "true"}, content=b"".join(body),
                             headers={"Content-Type": body.content_type}))
    assert [line["Name"] for line in lines] == [".config", "w.bin", ""]
    assert lines[-1]["Hash"] == cid_of_directory(d, include_hidden=True) != cid_of_directory(d)


def test_ls_gives_an_empty_file_size_zero(http: httpx.Client, store: ContentStore, tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "empty").write_bytes(b"")
    (d / "one").write_bytes(b"1")
    links = http.post("/ls", params={"arg": store.add_directory(d)}).json()["Objects"][0]["Links"]
    assert [(link["Name"], link["Size"], link["Type"]) for link in links] == [("empty", 0, 2), ("one", 1, 2)]


def test_multipart_round_trip_with_awkward_names() -> None:
    names = ["a b+c.txt", "dir/ü%2F.bin", 'q"uote']
    entries = [UploadEntry.from_bytes(n, n.encode() * 1000) for n in names]
    body = MultipartBody(entries, boundary="b0undary")
    raw = b"".join(body)
    assert len(raw) == body.length
    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        piece = raw[pos:pos + min(n, 7)]  # tiny reads: boundaries split across reads
        pos += len(piece)
        return piece

    got = [(p.path, b"".join(p.body)) for p in iter_parts(read, body.content_type)]
    assert got == [(n, n.encode() * 1000) for n in names]


def test_cli_serve_runs_until_sigterm(tmp_path: Path) -> None:
    # Prepare
    repo = tmp_path / "repo"
    cmd = [sys.executable, "-m", "flare_chain.cli.main", "ipfs", "serve", "--repo", str(repo), "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("RPC API server listening on http://127.0.0.1:"), line + (proc.stderr.read()
                                                                                          if proc.stderr else "")
        url = line.split()[5]
        # Execute
        with KuboClient(url, retries=0) as c:
            cid = c.add(b"served by the CLI")
            assert c.cat(cid) == b"served by the CLI"
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
    # Assert
    assert rc == 0
    assert ContentStore(repo).cat(cid) == b"served by the CLI"


def test_serve_in_thread_handle(store: ContentStore) -> None:
    with serve_in_thread(store) as handle:
        assert isinstance(handle, ServerHandle)
        assert handle.url == f"http://127.0.0.1:{handle.port}"
        with KuboClient(handle.url, retries=0) as c:
            assert c.version()["Version"]
    with KuboClient(handle.url, retries=0) as c, pytest.raises(Exception, match="daemon runs"):
        c.version()


def test_ls_answers_kubo_objects_and_streams(http: httpx.Client, store: ContentStore, tmp_path: Path) -> None:
    # Prepare
    d = tmp_path / "model"
    (d / "sub").mkdir(parents=True)
    (d / "weights.bin").write_bytes(b"w" * (CHUNK + 5))
    (d / "link").symlink_to("weights.bin")
    cid = store.add_directory(d)
    entries = {e.name: e.cid for e in store.ls(cid)}
    # Execute
    doc = http.post("/ls", params={"arg": cid}).json()
    streamed = _lines(http.post("/ls", params={"arg": cid, "stream": "true"}))
    # Assert
    assert doc == {"Objects": [{"Hash": cid, "Links": [
        {"Name": "link", "Hash": entries["link"], "Size": 0, "Type": 4, "Target": "weights.bin"},
        {"Name": "sub", "Hash": entries["sub"], "Size": 0, "Type": 1, "Target": ""},
        {"Name": "weights.bin", "Hash": entries["weights.bin"], "Size": CHUNK + 5, "Type": 2, "Target": ""}]}]}
    assert streamed == [{"Objects": [{"Hash": cid, "Links": [link]}]} for link in doc["Objects"][0]["Links"]]
    resp = http.post("/cat", params={"arg": cid})
    assert resp.status_code == 500 and "ipfs ls" in str(_kubo_error(resp)["Message"])


def _raw_post(port: int, path: str) -> bytes:
    """The raw HTTP answer to a bodiless POST, read to the end of its chunked body and trailers."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
        answer = b""
        while not (b"\r\n0\r\n" in answer and answer.endswith(b"\r\n\r\n")):
            piece = sock.recv(65536)
            if not piece:
                break
            answer += piece
    return answer


def test_cat_failing_mid_stream_ends_with_an_x_stream_error_trailer(store: ContentStore) -> None:
    # Prepare: the second of three leaves is damaged on disk, so the failure comes after the first byte
    data = os.urandom(3 * CHUNK)
    cid = store.add_bytes(data, cid_version=1)
    bad = store.block_path(cid_of_bytes(data[CHUNK:2 * CHUNK], 1))
    bad.chmod(0o644)
    bad.write_bytes(b"\0" * CHUNK)
    with serve_in_thread(store) as handle:
        # Execute
        answer = _raw_post(handle.port, f"/api/v0/cat?arg={cid}")
        # Assert: the trailer is announced, sent, names the block and not the server's folders
        head, _, rest = answer.partition(b"\r\n\r\n")
        assert b"\r\nTrailer: X-Stream-Error" in head
        trailer = rest.rsplit(b"\r\n0\r\n", 1)[1]
        assert trailer.startswith(b"X-Stream-Error: ") and trailer.endswith(b"\r\n\r\n")
        assert cid_of_bytes(data[CHUNK:2 * CHUNK], 1).encode() in trailer
        assert str(store.root).encode() not in trailer and b"blocks/" in trailer
        # the connection stays usable, as after any complete answer
        assert httpx.post(handle.url + "/api/v0/version", timeout=30).status_code == 200


def test_client_facing_errors_do_not_show_server_paths(http: httpx.Client, store: ContentStore) -> None:
    missing = cid_of_bytes(b"not here")
    for command in ("/cat", "/block/get", "/pin/add"):
        message = str(_kubo_error(http.post(command, params={"arg": missing}))["Message"])
        assert missing in message and str(store.root) not in message
    cid = store.add_bytes(b"hello world\n")
    path = store.block_path(cid)
    path.chmod(0o644)
    path.write_bytes(b"jello world\n")
    message = str(_kubo_error(http.post("/cat", params={"arg": cid}))["Message"])
    assert "hashed to" in message and str(store.root) not in message
    body = MultipartBody([UploadEntry("dir", "directory"), UploadEntry("dir/f", "file", data=b"x", size=1),
                          UploadEntry("dir/f/g", "file", data=b"y", size=1)])
    resp = http.post("/add", content=b"".join(body), headers={"Content-Type": body.content_type})
    error = _lines(resp)[-1]  # after dir/f's line went out, the failure is part of the streamed answer
    assert error["Type"] == "error" and "inside a file" in error["Message"]
    assert "flare-ipfs-add" not in error["Message"] and str(store.root) not in error["Message"]


def test_add_with_progress_reports_bytes_then_the_cid(http: httpx.Client) -> None:
    data = os.urandom(2 * CHUNK + 10)
    plain = _lines(http.post("/add", files={"file": ("blob", data)}))
    resp = http.post("/add", params={"progress": "true"}, files={"file": ("blob", data)})
    assert resp.headers["X-Chunked-Output"] == "1"
    assert _lines(resp) == [{"Name": "blob", "Bytes": CHUNK}, {"Name": "blob", "Bytes": 2 * CHUNK},
                            {"Name": "blob", "Bytes": 2 * CHUNK + 10}, *plain]
    assert plain[0]["Hash"] == cid_of_bytes(data)


def _read_until(sock: socket.socket, marker: bytes, got: bytes = b"") -> bytes:
    while marker not in got:
        piece = sock.recv(65536)
        assert piece, f"connection closed before {marker!r} arrived; got {got[-200:]!r}"
        got += piece
    return got


def test_add_answers_each_file_while_the_upload_is_still_arriving(store: ContentStore) -> None:
    # Prepare: two files; the client sends the first, then waits for its line before sending the second
    first, second = os.urandom(CHUNK + 1), b"second file"
    body = b"".join(MultipartBody([UploadEntry.from_bytes("a", first), UploadEntry.from_bytes("b", second)],
                                  boundary="b0"))
    cut = body.index(b"\r\n\r\n", body.index(b"--b0", 10)) + 4  # through the second part's headers
    with serve_in_thread(store) as handle, socket.create_connection(("127.0.0.1", handle.port), timeout=30) as sock:
        # Execute
        sock.sendall(b"POST /api/v0/add?progress=true HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Type: multipart/form-data; boundary=b0\r\n\r\n" + b"%x\r\n" % cut + body[:cut] + b"\r\n")
        early = _read_until(sock, cid_of_bytes(first).encode())
        rest = body[cut:]
        sock.sendall(b"%x\r\n" % len(rest) + rest + b"\r\n0\r\n\r\n")
        late = _read_until(sock, b"\r\n0\r\n\r\n", early)
    # Assert: the head, a progress line and the first file's line came before the second part was sent
    assert early.startswith(b"HTTP/1.1 200") and b'"Bytes": 262144' in early
    assert cid_of_bytes(second).encode() in late[len(early):]


def test_a_long_progress_answer_reaches_a_client_that_reads_after_sending(store: ContentStore) -> None:
    # Prepare: ~0.5 MB of answer lines, written while httpx is still sending the upload
    entries = [UploadEntry("d", "directory")]
    entries += [UploadEntry.from_bytes(f"d/{i:04d}{'n' * 56}", b"%d" % i) for i in range(2500)]
    body = MultipartBody(entries)
    with serve_in_thread(store) as handle, httpx.Client(timeout=30) as client:
        # Execute
        resp = client.post(handle.url + "/api/v0/add", params={"progress": "true"}, content=b"".join(body),
                           headers={"Content-Type": body.content_type})
    # Assert
    lines = _lines(resp)
    assert len(resp.content) > 400_000
    assert len(lines) == 2 * 2500 + 1 and lines[-1]["Name"] == "d" and store.pins() == [lines[-1]["Hash"]]


def test_answer_lines_never_block_the_handler_reading_the_upload() -> None:
    # Prepare: a client that reads nothing until it has sent everything; the socket is "full"
    release = threading.Event()
    written: list[bytes] = []

    class StalledClient:
        def write(self, data: bytes) -> None:
            if not release.wait(10):
                raise TimeoutError("the server waited on a client that reads only after sending")
            written.append(data)

    writer = _LineWriter(StalledClient())
    # Execute: the handler queues lines while the upload goes on; none of this may wait for the client
    started = time.monotonic()
    for i in range(1000):
        writer.put(b"%d" % i)
    queued_in = time.monotonic() - started
    release.set()
    writer.close("boom")
    # Assert
    assert queued_in < 10
    assert written[:2] == [b"1\r\n0\r\n", b"1\r\n1\r\n"] and len(written) == 1001
    assert written[-1] == b"0\r\nX-Stream-Error: boom\r\n\r\n"


def test_part_headers_of_exactly_the_bound_are_taken() -> None:
    # The refusal reads "longer than 16384 bytes": a header block of exactly 16384 bytes is still a part
    boundary = "b0"
    head = b'Content-Disposition: form-data; name="file"; filename="x"\r\nX-Filler: '
    header_block = head + b"a" * (16 * 1024 - len(head))
    pieces = [b"--b0\r\n", header_block, b"\r\n\r\nhi\r\n--b0--\r\n"]  # the reader sees each piece alone

    def read(n: int) -> bytes:
        return pieces.pop(0) if pieces else b""

    parts = [(part.path, b"".join(part.body)) for part in iter_parts(read, f"multipart/form-data; boundary={boundary}")]

    assert len(header_block) == 16 * 1024 and parts == [("x", b"hi")]


def test_a_part_whose_headers_never_end_is_refused_at_the_bound(tmp_path: Path) -> None:
    # A client that sends header lines without the blank line that ends them must not make the server
    # buffer without end: past 16 KiB the body is refused, after reading little more than that.
    boundary = "b0undary"
    head = f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n".encode()
    endless = head + b"X-Filler: " + b"a" * (10 * 1024 * 1024)
    taken = 0

    def read(n: int) -> bytes:
        nonlocal taken
        piece = endless[taken:taken + n]
        taken += len(piece)
        return piece

    with pytest.raises(ConfigError, match="multipart part headers longer than 16384 bytes"):
        list(iter_parts(read, f"multipart/form-data; boundary={boundary}"))
    assert taken < 1024 * 1024

    # and the sender side: a folder upload skips dotfiles unless asked, as `ipfs add -r` does
    folder = tmp_path / "up"
    folder.mkdir()
    (folder / ".hidden").write_bytes(b"h")
    (folder / "seen.txt").write_bytes(b"s")
    assert sorted(e.path for e in upload_entries(folder)) == ["up", "up/seen.txt"]
    assert sorted(e.path for e in upload_entries(folder, include_hidden=True)) == ["up", "up/.hidden", "up/seen.txt"]
