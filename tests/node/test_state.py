"""Node state file: what survives a restart, and what it refuses to record."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flare_chain.errors import ConfigError, StoreError
from flare_chain.node.state import SCHEMA_VERSION, NodeState, StepStatus


def test_steps_survive_reopening_with_their_signed_transaction(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    with NodeState(path) as state:
        state.record_intent(3, "submit", {"cid": "bafy"})
        state.record_signed(3, "submit", b"\x02raw", "0xabc", 7)
    with NodeState(path) as state:
        rec = state.get(3, "submit")
        assert rec is not None
        assert (rec.status, rec.raw_tx, rec.tx_hash, rec.nonce) == (StepStatus.SIGNED, b"\x02raw", "0xabc", 7)
        assert rec.detail == {"cid": "bafy"}
        assert not state.is_final(3, "submit")


def test_a_second_different_transaction_for_the_same_step_is_refused(tmp_path: Path) -> None:
    with NodeState(tmp_path / "s.sqlite") as state:
        state.record_signed(1, "vote", b"a", "0x01", 4)
        state.record_signed(1, "vote", b"a", "0x01", 4)  # the same bytes again: fine (a re-broadcast)
        with pytest.raises(StoreError, match="already holds transaction 0x01"):
            state.record_signed(1, "vote", b"b", "0x02", 5)


def test_final_steps_never_move_backwards(tmp_path: Path) -> None:
    with NodeState(tmp_path / "s.sqlite") as state:
        state.record_done(2, "claim", {"block": 9})
        assert state.record_intent(2, "claim").status == StepStatus.DONE
        with pytest.raises(StoreError, match="already done"):
            state.record_skipped(2, "claim", "late")
        assert state.get(2, "claim").detail == {"block": 9}


def test_repeated_errors_mark_a_step_failed_but_never_one_with_a_stored_transaction(tmp_path: Path) -> None:
    with NodeState(tmp_path / "s.sqlite") as state:
        for _ in range(3):
            rec = state.record_error(1, "propose", "boom", give_up_after=3)
        assert rec.status == StepStatus.FAILED and rec.attempts == 3
        state.record_signed(1, "vote", b"x", "0x0f", 1)
        for _ in range(5):
            rec = state.record_error(1, "vote", "rpc down", give_up_after=2)
        assert rec.status == StepStatus.SIGNED  # it may be mined: keep it to re-send


def test_state_is_bound_to_one_chain_contract_and_node(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with NodeState(path) as state:
        state.bind(chain_id=1, contract="0xAa", node="0xBb")
        state.bind(chain_id=1, contract="0xaa", node="0xbb")
    with NodeState(path) as state, pytest.raises(ConfigError, match="belongs to contract 0xaa"):
        state.bind(chain_id=1, contract="0xcc", node="0xbb")


def test_state_is_bound_to_the_chain_history_not_only_its_id_and_address(tmp_path: Path) -> None:
    path = tmp_path / "node-1" / "s.sqlite"
    old = {"chain_id": 31337, "contract": "0xAa", "node": "0xBb"}
    with NodeState(path) as state:
        state.bind(**old)  # a folder from before the history was bound takes it on at the next start
        state.bind(**old, genesis_hash="0x" + "11" * 32, deployment_tx="0x" + "22" * 32,
                   deployment_block_hash="0x" + "33" * 32)
        state.bind(**old, genesis_hash="0x" + "11" * 32)  # a bare address: the deployment is not checked
    # the same id and address after a restart: another genesis, or another deployment block
    for changed in ({"genesis_hash": "0x" + "44" * 32}, {"deployment_block_hash": "0x" + "55" * 32}):
        with NodeState(path) as state, pytest.raises(ConfigError) as caught:
            state.bind(**old, **changed)
        message = str(caught.value)
        assert "written on another chain" in message and "fresh data_dir" in message
        assert f"delete {path.parent}" in message and "\n" not in message


def test_a_state_file_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with NodeState(path) as state:
        assert state.schema_version == SCHEMA_VERSION
        state.set_meta("schema_version", str(SCHEMA_VERSION + 1))
    with pytest.raises(ConfigError, match="upgrade flare-chain"):
        NodeState(path)


def test_a_corrupt_state_file_names_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match="move it aside"):
        NodeState(path)


def test_state_uses_write_ahead_logging(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    NodeState(path).close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_scan_cursor_persists(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with NodeState(path) as state:
        assert state.scanned_block == -1
        state.set_scanned_block(41)
    with NodeState(path) as state:
        assert state.scanned_block == 41


_ops = st.lists(st.tuples(st.sampled_from(["intent", "signed", "done", "skipped", "error"]),
                          st.integers(1, 2), st.sampled_from(["submit", "vote"])), max_size=25)


@given(ops=_ops)
@settings(max_examples=40, deadline=None)
def test_any_sequence_of_records_keeps_one_row_per_step_and_final_stays_final(tmp_path_factory, ops) -> None:
    with NodeState(tmp_path_factory.mktemp("h") / "s.sqlite") as state:
        final: dict[tuple[int, str], StepStatus] = {}
        for op, rnd, step in ops:
            try:
                if op == "intent":
                    state.record_intent(rnd, step)
                elif op == "signed":
                    state.record_signed(rnd, step, b"t", f"0x{rnd}{step}", 1)
                elif op == "done":
                    state.record_done(rnd, step)
                elif op == "skipped":
                    state.record_skipped(rnd, step, "r")
                else:
                    state.record_error(rnd, step, "e", give_up_after=3)
            except StoreError:
                assert (rnd, step) in final
            rec = state.get(rnd, step)
            if rec is not None and rec.status.is_final:
                final.setdefault((rnd, step), rec.status)
                assert rec.status == final[(rnd, step)]
        keys = [(r.round_id, r.step) for r in state.steps()]
        assert len(keys) == len(set(keys))
