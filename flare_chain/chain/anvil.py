"""Start and stop anvil, the devnet's chain, from the npm package the project's setup installs.

``make setup`` runs ``npm ci``, which puts ``@foundry-rs/anvil-linux-amd64`` under
the repository's ``node_modules``; ``find_anvil`` looks there (or at
``$FLARE_ANVIL``), never on the network. ``AnvilProcess`` starts it on a free
port, either mining one block per transaction (automine) or on a fixed block
time, waits until it answers ``eth_chainId``, and stops it on exit.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from flare_chain.errors import ChainError, ConfigError

__all__ = ["ANVIL_PACKAGE", "REPO_ROOT", "AnvilProcess", "anvil_available", "find_anvil", "free_port", "rpc_answers"]

ANVIL_PACKAGE = "@foundry-rs/anvil-linux-amd64"
REPO_ROOT = Path(__file__).resolve().parents[2]
_READY_TIMEOUT_S = 30.0


def find_anvil(repo_root: Path = REPO_ROOT) -> Path:
    """The anvil binary: ``$FLARE_ANVIL`` if set, else the npm package's ``bin/anvil`` under ``repo_root``.

    Raises ConfigError saying how to install it when it is absent.
    """
    override = os.environ.get("FLARE_ANVIL")
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ConfigError(f"FLARE_ANVIL={override} is not an executable file; unset it or fix the path")
        return path
    path = repo_root / "node_modules" / ANVIL_PACKAGE / "bin" / "anvil"
    if path.is_file() and os.access(path, os.X_OK):
        return path
    raise ConfigError(f"anvil is not installed ({path} is missing); run `npm ci` in {repo_root} "
                      f"(or `make setup`), which installs {ANVIL_PACKAGE}; the devnet can also run on "
                      "`flare-chain chain serve` without it")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class AnvilProcess:
    """One anvil process: ``start()`` then ``stop()``, or use as a context manager.

    ``block_time_s=None`` mines a block per transaction (automine); a number
    mines on that period too. ``port=None`` picks a free port. Its log goes to
    ``log_path`` (default: discarded).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        block_time_s: float | None = None,
        chain_id: int | None = None,
        accounts: int = 10,
        binary: Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        if block_time_s is not None and block_time_s <= 0:
            raise ConfigError(f"block_time_s must be positive (or None for automine), got {block_time_s}")
        self.binary = binary or find_anvil()
        self.host = host
        self.port = port or free_port(host)
        self.block_time_s = block_time_s
        self.chain_id = chain_id
        self.accounts = accounts
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def command(self) -> list[str]:
        """The command line this launcher runs."""
        cmd = [str(self.binary), "--host", self.host, "--port", str(self.port), "--accounts", str(self.accounts)]
        if self.block_time_s is not None:
            cmd += ["--block-time", f"{self.block_time_s:g}"]
        if self.chain_id is not None:
            cmd += ["--chain-id", str(self.chain_id)]
        return cmd

    def start(self, timeout_s: float = _READY_TIMEOUT_S) -> AnvilProcess:
        """Launch and wait until it answers JSON-RPC; ChainError with its log tail if it does not."""
        if self._process is not None:
            raise ChainError(f"anvil on {self.url} is already started (pid {self.pid})")
        if not _port_is_free(self.host, self.port):  # else readiness would be answered by whoever holds it
            raise ChainError(f"port {self.port} on {self.host} is taken; stop what listens there or choose "
                             "another port")
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._process = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            if self.log_path:
                out.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise ChainError(f"anvil exited with status {code} before answering on {self.url}"
                                 f"{self._log_tail()}; is port {self.port} taken?")
            if rpc_answers(self.url):
                return self
            time.sleep(0.1)
        self.stop()
        raise ChainError(f"anvil did not answer on {self.url} within {timeout_s:.0f} s{self._log_tail()}")

    def _log_tail(self) -> str:
        if not self.log_path or not Path(self.log_path).exists():
            return ""
        tail = Path(self.log_path).read_text(errors="replace").strip().splitlines()[-3:]
        return " (log: " + " | ".join(tail) + ")" if tail else ""

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate (then kill) the process; safe to call twice."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout_s)

    def __enter__(self) -> AnvilProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _port_is_free(host: str, port: int) -> bool:
    """Whether nothing listens on ``host:port``.

    SO_REUSEADDR, as anvil binds: right after a chain on this port exits, its
    side of a client's kept-alive connection lingers (FIN-WAIT/TIME-WAIT) and
    a plain bind() fails although anvil can listen there again (a restart on
    the same port); a process still listening makes this bind fail either way.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def rpc_answers(url: str, timeout_s: float = 1.0) -> bool:
    """Whether a JSON-RPC endpoint at ``url`` answers ``eth_chainId`` (used to wait for readiness)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return "result" in json.loads(response.read())
    except (OSError, ValueError):
        return False


def anvil_available(repo_root: Path = REPO_ROOT) -> bool:
    """Whether ``find_anvil`` would succeed (tests skip on False)."""
    try:
        find_anvil(repo_root)
    except ConfigError:
        return False
    return shutil.which(str(find_anvil(repo_root))) is not None
