"""``flare-chain ipfs`` sub-commands, driven through a parser built here."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flare_chain.cli.ipfs import EXIT_READER_GONE, register
from flare_chain.errors import ConfigError, FlareError, IntegrityError
from flare_chain.ipfs import ContentStore, cid_of_bytes


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="flare-chain")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return tmp_path / "repo"


def test_add_prints_only_the_cid_and_cat_writes_bytes(repo: Path, tmp_path: Path,
                                                      capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    data = os.urandom(300_000)
    f = tmp_path / "f.bin"
    f.write_bytes(data)
    assert run(["ipfs", "--repo", str(repo), "add", str(f)]) == 0
    cid = capsysbinary.readouterr().out.decode().strip()
    assert cid == cid_of_bytes(data)
    assert run(["ipfs", "--repo", str(repo), "cat", cid]) == 0
    assert capsysbinary.readouterr().out == data


def test_add_cid_version_1(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "hello"
    f.write_bytes(b"hello world")
    run(["ipfs", "--repo", str(repo), "add", "--cid-version", "1", str(f)])
    assert capsys.readouterr().out == "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e\n"


def test_only_hash_stores_nothing_not_even_the_repo(repo: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "hello"
    f.write_bytes(b"hello world\n")
    run(["ipfs", "--repo", str(repo), "add", "--only-hash", str(f)])
    assert capsys.readouterr().out == "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o\n"
    assert not repo.exists()


def test_repo_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FLARE_IPFS_REPO", str(tmp_path / "env-repo"))
    f = tmp_path / "x"
    f.write_bytes(b"x")
    run(["ipfs", "add", str(f)])
    cid = capsys.readouterr().out.strip()
    assert ContentStore(tmp_path / "env-repo").has(cid)


def test_directory_add_ls_and_cat_path(repo: Path, tmp_path: Path,
                                       capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    d = tmp_path / "adapter"
    d.mkdir()
    (d / "adapter_config.json").write_bytes(b"{}")
    (d / "adapter_model.safetensors").write_bytes(b"weights")
    with pytest.raises(ConfigError, match="-r"):
        run(["ipfs", "--repo", str(repo), "add", str(d)])
    run(["ipfs", "--repo", str(repo), "add", "-r", str(d)])
    root = capsysbinary.readouterr().out.decode().strip()
    run(["ipfs", "--repo", str(repo), "ls", root])
    listing = capsysbinary.readouterr().out.decode().splitlines()
    assert [line.split()[-1] for line in listing] == ["adapter_config.json", "adapter_model.safetensors"]
    run(["ipfs", "--repo", str(repo), "cat", f"{root}/adapter_model.safetensors"])
    assert capsysbinary.readouterr().out == b"weights"


def test_pin_rm_gc_and_pin_ls(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "x"
    f.write_bytes(b"to be collected")
    run(["ipfs", "--repo", str(repo), "add", str(f)])
    cid = capsys.readouterr().out.strip()
    run(["ipfs", "--repo", str(repo), "pin", "ls"])
    assert capsys.readouterr().out == f"{cid} recursive\n"
    run(["ipfs", "--repo", str(repo), "pin", "rm", cid])
    capsys.readouterr()
    run(["ipfs", "--repo", str(repo), "gc"])
    # PBNode framing (0a 15) + Type (08 02) + Data key/len (12 0f) + 15 bytes + filesize (18 0f)
    assert capsys.readouterr().out == f"removed 1 blocks, freed {2 + 2 + 2 + 15 + 2} bytes\n"
    with pytest.raises(FlareError, match="re-add"):
        run(["ipfs", "--repo", str(repo), "pin", "add", cid])
    run(["ipfs", "--repo", str(repo), "add", "--no-pin", str(f)])
    capsys.readouterr()
    run(["ipfs", "--repo", str(repo), "pin", "ls"])
    assert capsys.readouterr().out == ""
    run(["ipfs", "--repo", str(repo), "pin", "add", cid])
    run(["ipfs", "--repo", str(repo), "pin", "ls"])
    assert capsys.readouterr().out.endswith(f"{cid} recursive\n")


def test_cat_of_tampered_block_is_an_integrity_error(repo: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "x"
    f.write_bytes(b"precious")
    run(["ipfs", "--repo", str(repo), "add", str(f)])
    cid = capsys.readouterr().out.strip()
    path = ContentStore(repo).block_path(cid)
    path.chmod(0o644)
    path.write_bytes(b"evil")
    with pytest.raises(IntegrityError):
        run(["ipfs", "--repo", str(repo), "cat", cid])
    assert path.read_bytes() == b"evil"


def test_malformed_cid_on_the_command_line(repo: Path) -> None:
    with pytest.raises(ConfigError, match="malformed CID 'Qmfoo'"):
        run(["ipfs", "--repo", str(repo), "pin", "rm", "Qmfoo"])


def _cli(repo: Path, *argv: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "flare_chain.cli.main", "ipfs", "--repo", str(repo), *argv]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parents[2])


@pytest.mark.parametrize("command", ["cat", "ls"])
def test_a_reader_that_stops_early_ends_the_command_quietly(repo: Path, tmp_path: Path, command: str) -> None:
    # Prepare: more output than a pipe holds (64 KiB), so the command is still writing when `head` leaves
    store = ContentStore(repo, durable=False)
    if command == "ls":
        folder = tmp_path / "many"
        folder.mkdir()
        for i in range(2000):
            (folder / f"f{i:04d}").write_bytes(b"")
        target = store.add_directory(folder)
    else:
        target = store.add_bytes(os.urandom(2 * 1024 * 1024))
    # Execute: `flare-chain ipfs cat CID | head -c5`
    proc = _cli(repo, command, target)
    assert proc.stdout is not None and proc.stderr is not None
    head = proc.stdout.read(5)
    proc.stdout.close()
    rc = proc.wait(timeout=60)
    # Assert
    assert len(head) == 5
    assert proc.stderr.read() == b""
    assert rc == EXIT_READER_GONE == 141


def test_repo_verify_reports_then_repairs(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    store = ContentStore(repo, durable=False)
    cid = store.add_bytes(b"hello world\n")
    path = store.block_path(cid)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b"hello", b"jello"))
    # Execute / Assert: report only
    with pytest.raises(IntegrityError, match=r"1 of 1 blocks were corrupt.*--repair"):
        run(["ipfs", "--repo", str(repo), "repo", "verify"])
    line = capsys.readouterr().out
    assert line.startswith("block bafkrei") and "was corrupt" in line and str(path) in line
    assert path.exists()
    # Execute / Assert: repair moves it aside, then the repository verifies clean
    with pytest.raises(IntegrityError, match="moved them to"):
        run(["ipfs", "--repo", str(repo), "repo", "verify", "--repair"])
    assert not path.exists() and (repo / "corrupt" / path.name).exists()
    capsys.readouterr()
    assert run(["ipfs", "--repo", str(repo), "repo", "verify"]) == 0
    assert capsys.readouterr().out == "verify complete, all 0 blocks validated.\n"
