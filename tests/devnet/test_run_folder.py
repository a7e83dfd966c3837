"""The devnet's run folder: pid files name the command each process was started with, ``stop`` signals only
a pid that still runs it, and ``start`` clears node data an earlier start's chain left.

``/proc/<pid>/cmdline`` reads empty for a moment after Popen returns (the child's exec has begun, its
arguments are not laid out yet); pid files used to copy it from there and most recorded ``[]``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

DEVNET = Path(__file__).resolve().parents[2] / "hardhat-free-devnet" / "devnet.py"


@pytest.fixture(scope="module")
def devnet() -> ModuleType:
    spec = importlib.util.spec_from_file_location("devnet_under_test", DEVNET)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    yield process
    process.kill()
    process.wait(timeout=10)


def _wait_for_cmdline(devnet: ModuleType, pid: int) -> list[str]:
    deadline = time.monotonic() + 10
    while not (now := devnet._cmdline(pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return now


def test_a_pid_file_records_the_command_even_while_proc_shows_none_yet(tmp_path, devnet, monkeypatch) -> None:
    monkeypatch.setattr(devnet, "_cmdline", lambda pid: [])  # what /proc says while the child is inside exec
    argv = [sys.executable, "-c", "pass"]

    process = devnet._spawn(tmp_path, "node-1", argv)
    process.wait(timeout=30)

    assert json.loads((tmp_path / "pids" / "node-1.pid").read_text())["cmdline"] == argv


def test_stop_ends_a_process_running_its_recorded_command(tmp_path, devnet, sleeper) -> None:
    argv = _wait_for_cmdline(devnet, sleeper.pid)
    devnet._record(tmp_path, "node-1", sleeper.pid, argv)

    assert devnet.stop(tmp_path, quiet=True, timeout_s=10) == 1
    assert sleeper.wait(timeout=10) != 0


def test_stop_never_signals_a_pid_whose_file_records_no_command(tmp_path, devnet, sleeper, capsys) -> None:
    (tmp_path / "pids").mkdir()
    (tmp_path / "pids" / "node-1.pid").write_text(json.dumps({"pid": sleeper.pid, "cmdline": []}))

    assert devnet.stop(tmp_path, timeout_s=1) == 0

    assert sleeper.poll() is None  # still running: a bare pid may belong to anything by now
    assert "records no command line; not signalling" in capsys.readouterr().out
    assert not (tmp_path / "pids" / "node-1.pid").exists()


def test_start_clears_node_data_folders_an_earlier_start_left(tmp_path, devnet) -> None:
    (tmp_path / "node-1").mkdir()
    (tmp_path / "node-1" / "state.sqlite").write_bytes(b"bound to the chain of an earlier start")
    (tmp_path / "node-2").mkdir()  # no state: nothing a node would refuse
    (tmp_path / "ipfs").mkdir()  # not a node's: kept

    assert devnet._clear_node_data(tmp_path, ["node-1", "node-2"]) == ["node-1"]

    assert not (tmp_path / "node-1").exists() and (tmp_path / "node-2").is_dir() and (tmp_path / "ipfs").is_dir()
