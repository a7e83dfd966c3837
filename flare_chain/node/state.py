"""A node's durable memory: one SQLite row per round and step, written before and after each side effect.

The daemon records an **intent** before it does anything the outside world sees
(pin, transaction), the **signed raw transaction** before it broadcasts it, and
the **result** after. A process killed at any point therefore restarts knowing
exactly how far it got: a step found ``signed`` is re-broadcast with the same
bytes (same hash, same nonce), never re-signed, so the chain sees at most one
submission, seat claim or vote from this node per round.

The file is opened in WAL mode with ``synchronous=FULL`` and every write is its
own ``BEGIN IMMEDIATE`` transaction, so a crash leaves either the old row or the
new one. The schema carries a version; a file written by a newer release is
refused rather than misread. A state file is bound to one chain (its id and
genesis hash), contract (address, deployment transaction and block hash) and
node address: pointing a node at another deployment with the same data folder,
including a restarted dev chain that reuses the id and address, is an error,
not a silent mix of two histories.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from flare_chain.errors import ConfigError, StoreError

__all__ = ["SCHEMA_VERSION", "NodeState", "StepRecord", "StepStatus"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS steps (
    round      INTEGER NOT NULL,
    step       TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    detail     TEXT    NOT NULL DEFAULT '{}',
    raw_tx     BLOB,
    tx_hash    TEXT,
    nonce      INTEGER,
    attempts   INTEGER NOT NULL DEFAULT 0,
    started_at REAL    NOT NULL,
    updated_at REAL    NOT NULL,
    PRIMARY KEY (round, step)
);
"""


class StepStatus(StrEnum):
    """Where a step stands. ``DONE``, ``SKIPPED`` and ``FAILED`` are final for the round."""

    INTENT = "intent"    # about to act; nothing sent yet (or not known to be)
    SIGNED = "signed"    # raw transaction stored; it may or may not have reached the chain
    DONE = "done"        # effect confirmed (receipt, or the chain already shows it)
    SKIPPED = "skipped"  # not for this node this round (not selected, window passed, someone else proposed)
    FAILED = "failed"    # gave up after repeated errors; the reason is in ``detail``

    @property
    def is_final(self) -> bool:
        return self in (StepStatus.DONE, StepStatus.SKIPPED, StepStatus.FAILED)


@dataclass(frozen=True)
class StepRecord:
    """One row: what the node intended, signed and achieved for ``step`` of ``round_id``."""

    round_id: int
    step: str
    status: StepStatus
    detail: dict[str, Any] = field(default_factory=dict)
    raw_tx: bytes | None = None
    tx_hash: str | None = None
    nonce: int | None = None
    attempts: int = 0
    started_at: float = 0.0
    updated_at: float = 0.0

    @property
    def seconds(self) -> float:
        """Wall time from the first intent to the last update of this step."""
        return max(0.0, self.updated_at - self.started_at)


class NodeState:
    """The SQLite state file of one node. Not shared between processes; one daemon owns it."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        """Open (creating it if needed) the state file; ``read_only`` opens an existing one for inspection only.

        Read-only is what ``node status`` uses: it never creates, migrates or
        locks the file, so it is safe beside a running daemon.
        """
        self.path = Path(path)
        try:
            if read_only:
                if not self.path.is_file():
                    raise ConfigError(f"node state {self.path} does not exist: this node has not started with "
                                      "this data_dir yet (check [node] data_dir in its config)")
                self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                           isolation_level=None, timeout=30.0)
                self._db.execute("SELECT count(*) FROM steps").fetchone()
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"node state {self.path} cannot be opened ({exc}); move it aside to start afresh "
                             "(the node then re-reads what it already did from the chain)") from None

    # ------------------------------------------------------------ housekeeping

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> NodeState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._write() as db:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise ConfigError(f"node state {self.path} has schema version {row[0]}, newer than this release "
                                  f"understands ({SCHEMA_VERSION}); upgrade flare-chain")

    @property
    def schema_version(self) -> int:
        return int(self.get_meta("schema_version") or 0)

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._write() as db:
            db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                       (key, value))

    def bind(self, *, chain_id: int, contract: str, node: str, genesis_hash: str | None = None,
             deployment_tx: str | None = None, deployment_block_hash: str | None = None) -> None:
        """Tie this file to one chain, contract and node; ConfigError if it already belongs to another.

        Chain id and address alone do not tell a restarted dev chain from the old
        one (same id, and the owner deploys at the same nonce, so at the same
        address); the genesis hash and the deployment transaction and its block
        hash do. A folder kept across such a restart would otherwise believe it is
        registered and sit "following" forever. Values given as None are not
        checked (a bare contract address does not say where it was deployed).
        """
        wanted = {"chain_id": str(chain_id), "contract": contract.lower(), "node": node.lower()}
        history = {"genesis_hash": genesis_hash, "deployment_tx": deployment_tx,
                   "deployment_block_hash": deployment_block_hash}
        wanted.update({key: value.lower() for key, value in history.items() if value is not None})
        for key, value in wanted.items():
            have = self.get_meta(key)
            if have is None:
                self.set_meta(key, value)
            elif have != value and key in history:
                raise ConfigError(f"node state {self.path} was written on another chain ({key} {have}, this chain "
                                  f"has {value}): the chain was restarted or the contract redeployed at the same "
                                  f"address; give this node a fresh data_dir, or delete {self.path.parent} to start "
                                  "afresh there")
            elif have != value:
                raise ConfigError(f"node state {self.path} belongs to {key} {have}, not {value}; give this node "
                                  "another data_dir (or move the old state aside)")

    # ------------------------------------------------------------ steps

    def get(self, round_id: int, step: str) -> StepRecord | None:
        row = self._db.execute(
            "SELECT round, step, status, detail, raw_tx, tx_hash, nonce, attempts, started_at, updated_at "
            "FROM steps WHERE round = ? AND step = ?", (round_id, step)).fetchone()
        return None if row is None else _record(row)

    def steps(self, round_id: int | None = None) -> list[StepRecord]:
        """Every step of ``round_id`` (all rounds if None) in the order they were started."""
        sql = ("SELECT round, step, status, detail, raw_tx, tx_hash, nonce, attempts, started_at, updated_at "
               "FROM steps")
        args: tuple[Any, ...] = ()
        if round_id is not None:
            sql += " WHERE round = ?"
            args = (round_id,)
        return [_record(r) for r in self._db.execute(sql + " ORDER BY round, started_at, rowid", args)]

    def is_final(self, round_id: int, step: str) -> bool:
        rec = self.get(round_id, step)
        return rec is not None and rec.status.is_final

    def _upsert(self, round_id: int, step: str, status: StepStatus, detail: dict[str, Any] | None,
                **columns: Any) -> StepRecord:
        now = time.time()
        with self._write() as db:
            old = db.execute("SELECT status, detail FROM steps WHERE round = ? AND step = ?",
                             (round_id, step)).fetchone()
            if old is not None and StepStatus(old[0]).is_final and status != old[0]:
                raise StoreError(f"round {round_id} step {step!r} is already {old[0]}; refusing to mark it "
                                 f"{status.value} (a bug: report it with the state file)")
            merged = {**(json.loads(old[1]) if old else {}), **(detail or {})}
            if old is None:
                db.execute("INSERT INTO steps (round, step, status, detail, started_at, updated_at) "
                           "VALUES (?, ?, ?, ?, ?, ?)", (round_id, step, status.value, json.dumps(merged), now, now))
            else:
                db.execute("UPDATE steps SET status = ?, detail = ?, updated_at = ? WHERE round = ? AND step = ?",
                           (status.value, json.dumps(merged), now, round_id, step))
            for column, value in columns.items():
                db.execute(f"UPDATE steps SET {column} = ? WHERE round = ? AND step = ?",  # column names are ours, not input
                           (value, round_id, step))
        rec = self.get(round_id, step)
        assert rec is not None
        return rec

    def record_intent(self, round_id: int, step: str, detail: dict[str, Any] | None = None) -> StepRecord:
        """About to act on ``step``: written before the side effect. Keeps a stored transaction."""
        rec = self.get(round_id, step)
        if rec is not None and rec.status != StepStatus.INTENT:
            return rec  # already further along; an intent never moves a step backwards
        return self._upsert(round_id, step, StepStatus.INTENT, detail)

    def record_signed(self, round_id: int, step: str, raw_tx: bytes, tx_hash: str, nonce: int) -> StepRecord:
        """Store the signed transaction *before* broadcasting it, so a restart re-sends these exact bytes."""
        rec = self.get(round_id, step)
        if rec is not None and rec.raw_tx is not None and rec.tx_hash != tx_hash:
            raise StoreError(f"round {round_id} step {step!r} already holds transaction {rec.tx_hash}; refusing to "
                             f"store a second one ({tx_hash})")
        return self._upsert(round_id, step, StepStatus.SIGNED, None, raw_tx=bytes(raw_tx), tx_hash=tx_hash,
                            nonce=nonce)

    def record_done(self, round_id: int, step: str, detail: dict[str, Any] | None = None) -> StepRecord:
        return self._upsert(round_id, step, StepStatus.DONE, detail)

    def record_skipped(self, round_id: int, step: str, reason: str) -> StepRecord:
        return self._upsert(round_id, step, StepStatus.SKIPPED, {"reason": reason})

    def record_failed(self, round_id: int, step: str, reason: str) -> StepRecord:
        return self._upsert(round_id, step, StepStatus.FAILED, {"reason": reason})

    def record_error(self, round_id: int, step: str, error: str, *, give_up_after: int) -> StepRecord:
        """Count a failed attempt; after ``give_up_after`` of them the step is marked FAILED."""
        rec = self.get(round_id, step) or self.record_intent(round_id, step)
        attempts = rec.attempts + 1
        status = StepStatus.FAILED if attempts >= give_up_after and rec.raw_tx is None else rec.status
        return self._upsert(round_id, step, status, {"last_error": error}, attempts=attempts)

    # ------------------------------------------------------------ cursor

    @property
    def scanned_block(self) -> int:
        """Last block whose events the daemon has processed (-1 before the first scan)."""
        value = self.get_meta("scanned_block")
        return -1 if value is None else int(value)

    def set_scanned_block(self, block: int) -> None:
        self.set_meta("scanned_block", str(block))


def _record(row: tuple[Any, ...]) -> StepRecord:
    return StepRecord(round_id=int(row[0]), step=str(row[1]), status=StepStatus(row[2]), detail=json.loads(row[3]),
                      raw_tx=None if row[4] is None else bytes(row[4]), tx_hash=row[5],
                      nonce=None if row[6] is None else int(row[6]), attempts=int(row[7]),
                      started_at=float(row[8]), updated_at=float(row[9]))
