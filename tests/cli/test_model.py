"""``flare-chain model add|fetch`` through the real entry point: the CID on stdout, one line per failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from flare_chain.cli.main import main
from flare_chain.ipfs import ContentStore, cid_of_directory, serve_in_thread
from tests.basemodel._folders import write_model_folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_model_folder(tmp_path / "my-model", weight_bytes=300_000)


def test_add_prints_only_the_cid_and_fetch_prints_the_verified_folder(folder: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    assert main(["model", "add", str(folder), "--repo", str(repo), "--quiet"]) == 0
    cid = capsys.readouterr().out.strip()
    assert cid == cid_of_directory(folder) and ContentStore(repo).pins() == [cid]
    assert main(["model", "fetch", cid, "--repo", str(repo), "--cache-dir", str(tmp_path / "cache"), "--quiet"]) == 0
    fetched = Path(capsys.readouterr().out.strip())
    assert fetched == tmp_path / "cache" / cid
    assert (fetched / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()


def test_add_to_a_kubo_endpoint_gives_the_same_cid(folder: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    served = ContentStore(tmp_path / "served", durable=False)
    with serve_in_thread(served) as handle:
        assert main(["model", "add", str(folder), "--api", handle.url, "--quiet"]) == 0
    cid = capsys.readouterr().out.strip()
    assert cid == cid_of_directory(folder) and served.pins() == [cid]


def test_a_pickle_folder_is_refused_with_one_line_and_nothing_stored(folder: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    repo = tmp_path / "repo"
    assert main(["model", "add", str(folder), "--repo", str(repo), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.strip().splitlines()
    assert line.startswith("flare-chain: ConfigError:") and "pytorch_model.bin is a pickle weight file" in line
    assert not repo.exists()


def test_fetch_of_an_unknown_cid_fails_cleanly(folder: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    other = ContentStore(tmp_path / "other", durable=False)
    cid = other.add_directory(folder, only_hash=True)
    repo = tmp_path / "repo"
    ContentStore(repo)
    status = main(["model", "fetch", cid, "--repo", str(repo), "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    assert status == 5
    assert "is not in the store" in capsys.readouterr().err
    assert list((tmp_path / "cache").iterdir()) == []
