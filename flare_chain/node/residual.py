"""The daemon's PowerSGD state on disk: error-feedback residuals and warm starts that survive restarts.

Compressing round ``r`` turns the state after the node's last accepted
submission (``committed``, round ``b``) into a new state (``pending`` for
``r``). The new state is only true once round ``r``'s submission is on-chain:
if it never lands (window missed, node down), the residual of round ``b`` was
never sent and must be used again. So there are two kinds of file under
``<data_dir>/compressor/``:

* ``pending-round-<r>.safetensors`` + ``pending-round-<r>.json``: written when
  round ``r``'s update is compressed, before its bundle files; the JSON (written
  last, by rename) names the base round ``b``, the bundle's manifest hash and
  the state file's sha256.
* ``state-round-<r>.safetensors`` + ``state.json``: the committed state.
  ``state.json`` is written last, by rename, and is the commit point.

Order chosen (state and submission cannot be one atomic write): the
submission is recorded in the SQLite state first, then the pending state is
promoted, and only if the chain holds that submission with that manifest
hash and the pending state was built on the committed round. A crash between
the two leaves a pending file that the next round promotes before it
compresses (the daemon calls :meth:`CompressorStore.promote` for every
submitted round first). A residual is therefore used exactly once: a pending
state for a round the chain has no submission for is discarded, and the
committed one (still holding the unsent residual) is used instead.

Only safetensors and JSON; every file is written to a temp name and renamed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from flare_chain.compression import PowerSGDCompressor, PowerSGDConfig
from flare_chain.errors import ConfigError, UpdateError

__all__ = ["INDEX_FILE", "CompressorStore", "PendingState"]

log = logging.getLogger("flare_chain.node")

INDEX_FILE = "state.json"
_VERSION = 1
_PENDING_RE = re.compile(r"^pending-round-(\d+)\.json$")


@dataclass(frozen=True)
class PendingState:
    """A compressed round's next state, waiting for its submission to be on-chain."""

    round_id: int
    base_round: int
    manifest_hash: bytes
    state_file: Path
    sha256: str


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class CompressorStore:
    """Committed and pending PowerSGD states of one node, in ``folder``; one instance per daemon."""

    def __init__(self, folder: Path, config: PowerSGDConfig) -> None:
        self.folder = Path(folder)
        self.config = config

    # ------------------------------------------------------------ reading

    def _corrupt(self, path: Path, why: str) -> ConfigError:
        return ConfigError(
            f"compressor state {path} is unreadable ({why}). It holds this node's not-yet-sent PowerSGD "
            f"residual. Restore it from a backup, or move the folder {self.folder} aside to start with an "
            "empty residual (what is lost is at most about one round's compression error)")

    def _read_json(self, path: Path) -> dict[str, object]:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise self._corrupt(path, f"not valid JSON: {exc}") from None
        if not isinstance(raw, dict) or raw.get("version") != _VERSION:
            raise self._corrupt(path, f"expected a version-{_VERSION} table")
        return raw

    def _read_state(self, path: Path, sha256: str) -> PowerSGDCompressor:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise self._corrupt(path, f"cannot be read: {exc}") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise self._corrupt(path, "its sha256 differs from the one recorded next to it; truncated or altered")
        try:
            return PowerSGDCompressor.from_state_bytes(data, self.config)
        except UpdateError as exc:
            raise self._corrupt(path, str(exc)) from None
        except ConfigError as exc:
            raise ConfigError(f"compressor state {path}: {exc}; or set [compression] back as it was") from None

    @property
    def committed_round(self) -> int:
        """Round whose submission the committed state follows (0: none yet, an empty state)."""
        index = self.folder / INDEX_FILE
        if not index.exists():
            return 0
        round_id = self._index(index)["round"]
        assert isinstance(round_id, int)  # checked by _index
        return round_id

    def _index(self, index: Path) -> dict[str, object]:
        raw = self._read_json(index)
        if not isinstance(raw.get("round"), int) or not isinstance(raw.get("file"), str) \
                or not isinstance(raw.get("sha256"), str):
            raise self._corrupt(index, "missing round, file or sha256")
        return raw

    def load_committed(self) -> PowerSGDCompressor:
        """The state to compress the next round from; empty when nothing was committed yet."""
        index = self.folder / INDEX_FILE
        if not index.exists():
            return PowerSGDCompressor(self.config)
        raw = self._index(index)
        return self._read_state(self.folder / str(raw["file"]), str(raw["sha256"]))

    def pending(self) -> list[PendingState]:
        """Pending states on disk, oldest round first."""
        if not self.folder.is_dir():
            return []
        out = []
        for path in sorted(self.folder.iterdir()):
            match = _PENDING_RE.match(path.name)
            if match is None:
                continue
            raw = self._read_json(path)
            try:
                out.append(PendingState(round_id=int(match.group(1)), base_round=int(raw["base_round"]),  # type: ignore[call-overload]
                                        manifest_hash=bytes.fromhex(str(raw["manifest_hash"])),
                                        state_file=self.folder / f"pending-round-{match.group(1)}.safetensors",
                                        sha256=str(raw["sha256"])))
            except (KeyError, ValueError, TypeError) as exc:
                raise self._corrupt(path, f"bad field: {exc}") from None
        return sorted(out, key=lambda p: p.round_id)

    # ------------------------------------------------------------ writing

    def save_pending(self, round_id: int, compressor: PowerSGDCompressor, *, base_round: int,
                     manifest_hash: bytes) -> None:
        """Record round ``round_id``'s next state; call before writing the bundle it belongs to."""
        self.folder.mkdir(parents=True, exist_ok=True)
        data = compressor.state_bytes()
        _write_atomic(self.folder / f"pending-round-{round_id}.safetensors", data)
        meta = {"version": _VERSION, "round": round_id, "base_round": base_round,
                "manifest_hash": bytes(manifest_hash).hex(), "sha256": hashlib.sha256(data).hexdigest()}
        _write_atomic(self.folder / f"pending-round-{round_id}.json", json.dumps(meta, sort_keys=True).encode())

    def promote(self, pending: PendingState) -> bool:
        """Make ``pending`` the committed state; the caller has checked its submission is on-chain.

        Returns False (and discards it) when it was built on another committed
        round than the one on disk, so a residual is never applied twice.
        """
        committed = self.committed_round
        if pending.round_id <= committed or pending.base_round != committed:
            log.warning("compressor state for round %d (built on round %d) does not follow the committed "
                        "round %d; discarding it", pending.round_id, pending.base_round, committed)
            self.discard(pending)
            return False
        self._read_state(pending.state_file, pending.sha256)  # checks the bytes before committing them
        data = pending.state_file.read_bytes()
        name = f"state-round-{pending.round_id}.safetensors"
        _write_atomic(self.folder / name, data)
        index = {"version": _VERSION, "round": pending.round_id, "file": name,
                 "sha256": hashlib.sha256(data).hexdigest(), "manifest_hash": pending.manifest_hash.hex()}
        _write_atomic(self.folder / INDEX_FILE, json.dumps(index, sort_keys=True).encode())  # the commit point
        self.discard(pending)
        for path in self.folder.glob("state-round-*.safetensors"):
            if path.name != name:
                path.unlink(missing_ok=True)
        return True

    def discard(self, pending: PendingState) -> None:
        """Forget a pending state (its round's submission will never be on-chain)."""
        (self.folder / f"pending-round-{pending.round_id}.json").unlink(missing_ok=True)
        pending.state_file.unlink(missing_ok=True)
