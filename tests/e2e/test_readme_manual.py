"""The README's "Run a federation by hand" block, run line for line: a round commits and the audit passes.

The block between the ``manual-federation`` markers is written to a script and
run by bash in a fresh home folder, with ``flare-chain`` on the PATH as the
virtualenv puts it there. Only the two ports are changed (8545 and 5001 become
free ports, so the test cannot meet another chain or IPFS endpoint on the
machine); every other character is the README's. ``set -e`` makes any failing
command fail the test, the audit included (its exit status is 0 only when every
check passed).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from flare_chain.chain.anvil import REPO_ROOT, anvil_available, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BLOCK = re.compile(r"<!-- manual-federation:[^>]*-->\n```bash\n(.*?)```\n<!-- /manual-federation -->", re.S)


def readme_block() -> str:
    match = BLOCK.search((REPO_ROOT / "README.md").read_text(encoding="utf-8"))
    assert match, "README.md lost its manual-federation block (or its markers)"
    return match.group(1)


def _shim(folder: Path) -> Path:
    """``flare-chain`` as the virtualenv's console script provides it, for this checkout."""
    folder.mkdir()
    script = folder / "flare-chain"
    script.write_text(f'#!/bin/sh\nPYTHONPATH="{REPO_ROOT}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" '
                      '-m flare_chain.cli.main "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder


@pytest.mark.skipif(not anvil_available(), reason="anvil is not installed (npm ci)")
def test_the_readme_manual_federation_commits_a_round_and_passes_the_audit(tmp_path: Path) -> None:
    block = readme_block()
    assert "8545" in block and "5001" in block
    chain_port, ipfs_port = free_port(), free_port()
    script = tmp_path / "manual.sh"
    script.write_text("set -euo pipefail\n" + block.replace("8545", str(chain_port)).replace("5001", str(ipfs_port)))
    home = tmp_path / "home"
    home.mkdir()
    cache = os.environ.get("FLARE_CACHE_DIR") or str(Path.home() / ".cache" / "flare-chain")  # the reference model
    env = {**os.environ, "HOME": str(home), "FLARE_CACHE_DIR": cache,
           "PATH": f"{_shim(tmp_path / 'bin')}{os.pathsep}{os.environ['PATH']}"}
    env = {k: v for k, v in env.items() if not k.startswith("FLARE__")}
    process = subprocess.Popen(["bash", str(script)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = process.communicate(timeout=1500)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        else:  # the block ends with `kill $(jobs -p)`; anything left behind by a failure goes here
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    work = home / "flare-federation"
    logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(work.rglob("*.log")))
    assert process.returncode == 0, f"{out[-6000:]}\n{logs}"
    assert "1 of 1 rounds committed" in out, out[-4000:]
    # node status, beside running nodes: the outcome and node-1's own update read from the chain, then its steps
    assert re.search(r"outcomes from: chain http://127\.0\.0\.1:\d+ at block \d+", out), out[-4000:]
    assert re.search(r"round 1: committed \(chain\); own update: (accepted: in|left out: submitted, but not in) the "
                     r"committed proposal's accepted set \(\d+ updates\)\n  (voted to approve|voted to reject|no vote); "
                     r".*adapter pulled: \S+ -> ", out), out[-4000:]
    assert (work / "audit.json").is_file()
    node_log = (work / "logs" / "node-1.log").read_text()
    assert "resuming from" in node_log and "SIGTERM received" in node_log and "stopped cleanly" in node_log
