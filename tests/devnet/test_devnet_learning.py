"""The devnet on its shipped defaults learns: every round commits and the federation's held-out loss falls.

Runs ``hardhat-free-devnet/start --rounds 3`` exactly as the README gives it (the four node templates of
``nodes/``, the reference model published by CID, anvil when installed), on free ports in a temporary run
folder, and reads the learning table it prints: each node's held-out loss of the base and of every
committed global adapter, measured by the node itself when it pulled the adapter.
"""

from __future__ import annotations

import re
import subprocess
from itertools import pairwise
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROUNDS = 3
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _table(stdout: str) -> dict[str, float]:
    """``{"base": mean, "1": mean, ...}`` from the learning table's rows."""
    means = {}
    for line in stdout.splitlines():
        m = re.match(r"^\s*(base|\d+)\s+((?:\d+\.\d{4}\s+){4})(\d+\.\d{4})\s", line + " ")
        if m:
            means[m.group(1)] = float(m.group(3))
    return means


def test_the_devnet_defaults_commit_every_round_and_the_mean_held_out_loss_falls_each_round(tmp_path: Path) -> None:
    run = tmp_path / "run"
    try:
        done = subprocess.run(
            [str(REPO / "hardhat-free-devnet" / "start"), "--run-dir", str(run), "--chain-port", "0",
             "--ipfs-port", "0", "--rounds", str(ROUNDS)],
            capture_output=True, text=True, timeout=1800, cwd=REPO, check=False)
    finally:
        subprocess.run([str(REPO / "hardhat-free-devnet" / "stop"), "--run-dir", str(run)], capture_output=True,
                       timeout=120, cwd=REPO, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"{ROUNDS} of {ROUNDS} rounds committed" in done.stdout, done.stdout[-3000:]
    means = _table(done.stdout)
    assert set(means) == {"base", *(str(r) for r in range(1, ROUNDS + 1))}, done.stdout[-3000:]
    series = [means["base"], *(means[str(r)] for r in range(1, ROUNDS + 1))]
    assert all(after < before for before, after in pairwise(series)), series
    assert series[-1] < 0.8 * series[0], series  # a gain to judge by, not noise (measured: -36%)
    assert f"the mean fell in {ROUNDS} of {ROUNDS} round(s)" in done.stdout
