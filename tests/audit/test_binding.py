"""The audit is bound to one chain: a twin (same chain id, same address, other history) or a chain shorter than
the deployment is refused with one line, and a run that checked nothing is never a pass.

The chains here are in-process eth-tester chains on which the same owner deploys at nonce 0, so they share
chain id, contract address, code and parameters, as two anvils started with chain id 31337 do.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_utils import keccak

from flare_chain.audit import UNVERIFIABLE, ContentSource, load_target, run_audit
from flare_chain.chain import fund_accounts
from flare_chain.chain.deployment import ConstructorParams, deploy, write_deployment
from flare_chain.chain.tester_backend import audit_ready_chain
from flare_chain.cli import audit as audit_cli
from flare_chain.cli.main import main
from flare_chain.errors import IntegrityError
from flare_chain.ipfs import ContentStore

OWNER = Account.from_key(keccak(text="audit binding owner"))


def _chain(funding_wei: int = 10**19, *, deploy_it: bool = True):
    w3 = audit_ready_chain()
    fund_accounts(w3, [OWNER], funding_wei)
    record = deploy(w3, OWNER, ConstructorParams())[0] if deploy_it else None
    return w3, record


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "store")


@pytest.fixture
def cli(store, monkeypatch) -> Iterator[object]:
    """``flare-chain audit`` against a chosen in-process chain; gives back (status, stdout, stderr)."""
    root, ours = logging.getLogger(), logging.getLogger("flare_chain")
    saved = (root.handlers[:], root.level, ours.level)

    def run(w3, deployment: Path, capsys, *extra: str) -> tuple[int, str, str]:
        monkeypatch.setattr(audit_cli, "connect", lambda url, timeout_s: w3)
        status = main(["audit", "--deployment", str(deployment), "--store", str(store.root), "--no-reproduce",
                       *extra])
        out, err = capsys.readouterr()
        return status, out, err

    yield run
    root.handlers[:], _, _ = saved
    root.setLevel(saved[1])
    ours.setLevel(saved[2])


def test_a_twin_chain_with_the_same_id_and_address_fails_naming_the_block_hash(tmp_path, store, cli,
                                                                               capsys) -> None:
    _w3_a, record_a = _chain(10**19)
    w3_b, record_b = _chain(2 * 10**19)  # another funding: another history from that block on
    assert (record_a.chain_id, record_a.coordinator) == (record_b.chain_id, record_b.coordinator)
    path = write_deployment(record_a, tmp_path / "a.json")

    status, out, err = cli(w3_b, path, capsys)

    assert status == IntegrityError.exit_code, out
    assert "every check passed" not in out
    (line,) = err.strip().splitlines()
    assert f"deployment block {record_a.deployment_block} has hash" in line and "twin" in line
    with pytest.raises(IntegrityError, match="has hash"):
        run_audit(w3_b, load_target(path), ContentSource(store), show_progress=False)


def test_a_fresh_chain_shorter_than_the_deployment_is_refused_not_passed(tmp_path, cli, capsys) -> None:
    _w3_a, record = _chain()
    fresh, _ = _chain(deploy_it=False)
    assert int(fresh.eth.block_number) < record.deployment_block
    path = write_deployment(record, tmp_path / "a.json")

    status, out, err = cli(fresh, path, capsys)

    assert status == IntegrityError.exit_code, out
    assert f"deployed in block {record.deployment_block}, but the chain behind the RPC endpoint ends at block" in err


def test_the_deployment_transaction_missing_from_a_long_enough_twin_is_named(tmp_path, store) -> None:
    _w3_a, record = _chain()
    other, _ = _chain(deploy_it=False)
    fund_accounts(other, [Account.from_key(keccak(text="someone else"))], 10**18)
    fund_accounts(other, [Account.from_key(keccak(text="someone else 2"))], 10**18)
    assert int(other.eth.block_number) >= record.deployment_block
    with pytest.raises(IntegrityError, match=f"deployment transaction {record.deployment_tx} is not on the chain"):
        run_audit(other, load_target(write_deployment(record, Path(store.root) / "d.json")), ContentSource(store),
                  show_progress=False)


def test_an_audit_that_checked_no_round_is_not_a_pass(tmp_path, store, cli, capsys) -> None:
    w3, record = _chain()
    path = write_deployment(record, tmp_path / "d.json")
    out_json = tmp_path / "audit.json"

    status, out, _err = cli(w3, path, capsys, "--json", str(out_json))

    assert status == audit_cli.EXIT_UNVERIFIABLE, out
    assert "every check passed" not in out and "nothing was checked" in out
    doc = json.loads(out_json.read_text())
    assert doc["ok"] is False
    assert {f["check"]: f["status"] for f in doc["findings"]} == {"deployment": "pass", "federation-spec": "pass",
                                                                  "rounds": UNVERIFIABLE}


def test_a_minimal_file_without_deployment_transaction_is_unverifiable_not_passed(tmp_path, store) -> None:
    w3, record = _chain()
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"chain_id": record.chain_id, "address": record.coordinator,
                                "block": record.deployment_block}))

    report = run_audit(w3, load_target(path), ContentSource(store), show_progress=False)

    (bound,) = [f for f in report.findings if f.check == "deployment"]
    assert bound.status == UNVERIFIABLE and "deployment_tx" in bound.detail
    assert not report.ok
