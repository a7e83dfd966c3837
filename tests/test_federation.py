"""One node engine: the demo's nodes are the daemons ``flare-chain node run`` builds, stepped in process.

If the demo (``run_federation`` / ``run_round``) went back to stepping
``Participant`` objects itself, the patched stepping methods below would raise
and the daemons' state files would hold no round: both tests would fail.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from flare_chain.chain import RoundStatus
from flare_chain.cli import node as node_cli
from flare_chain.federation import FederationConfig, run_round, setup_federation
from flare_chain.node.daemon import Daemon
from flare_chain.node.participant import Participant
from flare_chain.node.state import StepStatus

STEPPING = ("train_and_submit", "register", "draw_seat", "claim_seat", "propose_if_turn", "propose",
            "vote_if_member", "review_and_vote")
"""Participant methods that would be a second round engine if the demo called them."""


def _daemon_class_node_run_builds() -> type:
    """The class ``flare-chain node run``'s ``build_daemon`` constructs, read from its source (it needs a live
    chain, keystore and IPFS endpoint to run)."""
    tree = ast.parse(inspect.getsource(node_cli.build_daemon))
    imported = {alias.asname or alias.name: (n.module, alias.name) for n in ast.walk(tree)
                if isinstance(n, ast.ImportFrom) for alias in n.names}
    returned = [n.value for n in ast.walk(tree) if isinstance(n, ast.Return) and isinstance(n.value, ast.Call)]
    (call,) = returned
    assert isinstance(call.func, ast.Name)
    module, name = imported[call.func.id]
    assert module is not None
    return getattr(__import__(module, fromlist=[name]), name)


def test_node_run_builds_the_daemon_class() -> None:
    assert _daemon_class_node_run_builds() is Daemon


def test_a_demo_round_is_run_by_the_daemons_node_run_builds(
        tmp_path: Path, tiny_model_dir: Path, tiny_train_params, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: a 2-node federation on a few windows; k=16 seats both nodes but for p = e^-8 each
    params = tiny_train_params.model_copy(update={"max_train_windows": 8, "max_val_windows": 4})
    config = FederationConfig(nodes=2, rounds=1, work_dir=tmp_path, model_dir=tiny_model_dir, train=params,
                              expected_committee_size=16, show_progress=False, local_only=False,
                              vote_tolerance=0.5)
    for method in STEPPING:
        def refuse(*_args: object, _method: str = method, **_kwargs: object) -> None:
            raise AssertionError(f"the demo called Participant.{_method}: a second round engine")
        monkeypatch.setattr(Participant, method, refuse)
    ticks: list[str] = []
    tick = Daemon.tick

    def counted(self: Daemon) -> None:
        ticks.append(self.name)
        tick(self)
    monkeypatch.setattr(Daemon, "tick", counted)
    # Execute
    fed = setup_federation(config)
    report = run_round(fed)
    # Assert: the nodes are exactly the class node run builds, and their state files hold the round
    assert [type(d) for d in fed.daemons] == [_daemon_class_node_run_builds()] * 2
    assert set(ticks) == {"node-1", "node-2"}
    assert report.status == RoundStatus.COMMITTED
    for d, row in zip(fed.daemons, report.nodes, strict=True):
        assert d.state.path.is_relative_to(tmp_path / "nodes")  # crash-safe state under the demo's work dir
        done = {r.step for r in d.state.steps(report.round_id) if r.status == StepStatus.DONE}
        assert {"train", "pin", "submit", "claim", "pull"} <= done
        pulled = d.state.get(report.round_id, "pull")
        assert pulled is not None and pulled.detail["cid"] == report.committed_cid
        assert row.loss_after == pulled.detail["held_out_loss"] and row.sample_count > 0 and row.gas_used > 0
