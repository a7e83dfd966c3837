"""The participant daemon against an in-process chain (eth-tester) and the embedded store.

Rounds complete even when every node crashes at every side-effect point, each
resuming without a second transaction; SIGTERM stops between steps; RPC and IPFS outages are retried;
altered bytes from an IPFS endpoint are refused and the update left out.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import signal
from pathlib import Path

import httpx
import pytest
import torch

from flare_chain.chain import RoundStatus, fund_accounts
from flare_chain.ipfs import ContentStore, KuboClient, serve_in_thread
from flare_chain.lora.peft_files import load_peft_adapter
from flare_chain.node.bundles import with_accepted_list
from flare_chain.node.daemon import Faults
from flare_chain.node.endpoint import EndpointStore
from flare_chain.node.localnet import (
    arm,
    assert_nothing_sent_twice,
    drive,
    make_daemon,
    make_net,
    open_round,
    register_all,
    sent_by,
)
from flare_chain.node.state import StepStatus


@pytest.fixture(scope="module")
def fast_params(tiny_train_params):
    """Even less training than the shared tiny settings: the daemon's plumbing is under test, not learning."""
    return tiny_train_params.model_copy(update={"max_train_windows": 16, "max_val_windows": 8})


def _close(net) -> None:
    for d in net.daemons:
        d.state.close()


def _assert_everyone_pulled(net, round_id: int) -> str:
    outcome = net.coordinator.round_outcome(round_id)
    assert outcome is not None and outcome.committed
    accepted = set(with_accepted_list(net.store, net.coordinator.proposal(round_id)).accepted or ())
    cids = set()
    for d in net.daemons:
        pulled = d.state.get(round_id, "pull")
        assert pulled is not None and pulled.status == StepStatus.DONE
        assert pulled.detail["update_accepted"] == (d.address in accepted)  # what `node status` shows offline
        assert math.isfinite(pulled.detail["held_out_loss"]) and pulled.detail["held_out_loss"] > 0  # devnet table
        tensors, _config = load_peft_adapter(Path(pulled.detail["dir"]))
        assert tensors
        cids.add(pulled.detail["cid"])
    assert len(cids) == 1
    return cids.pop()


@pytest.mark.slow
def test_crash_at_every_side_effect_point_resumes_without_a_second_transaction(tmp_path, tiny_model_dir,
                                                                               fast_params) -> None:
    # stdlib text: the tiny test model learns it a little every round, so no member's own held-out check
    # (vote_tolerance 0.5%) turns a vote against an honest aggregate; this test is about crashes
    net = make_net(tmp_path, tiny_model_dir, fast_params, task="stdlib")
    try:
        register_all(net)
        # Round 1: every node dies several times, at different points of every kind of step.
        plan = {
            0: {"train:during", "submit:sent", "claim:signed", "vote:sent", "propose:sent"},
            1: {"train:after", "submit:signed", "claim:sent", "vote:signed", "propose:sent"},
            2: {"pin:before", "submit:before", "claim:before", "vote:before", "propose:sent"},
            3: {"submit:done", "claim:done", "vote:done", "propose:sent"},
        }
        for i, points in plan.items():
            arm(net, i, points)
        round_id = open_round(net)
        drive(net, round_id)
        fired = collections.Counter(point.split(":")[0] for _i, point in net.crashes)
        assert fired["submit"] == 4 and fired["claim"] == 4 and fired["vote"] >= 2 and fired["propose"] == 1
        _assert_everyone_pulled(net, round_id)
        assert_nothing_sent_twice(net, 1)
        for d in net.daemons:  # despite the crashes, every step ended done, each with one transaction
            steps = {r.step: r for r in d.state.steps(round_id)}
            assert all(steps[k].status == StepStatus.DONE for k in ("train", "pin", "submit", "claim", "pull"))
            assert steps["submit"].tx_hash and steps["claim"].tx_hash
        assert net.coordinator.proposal(round_id).proposer == net.coordinator.leader(round_id)

        # Round 2: the leader dies just before proposing and stays down; the next-ranked member proposes.
        net.crashes.clear()
        for i in range(len(net.daemons)):
            arm(net, i, set())  # disarm the round-1 points that did not fire (only one node proposed)
        # The three members left must hold 2/3 of the weight without the leader: with k = 400 each
        # weight is Poisson(100), so every member holds close to a quarter of it.
        round_id = open_round(net, expected_committee_size=400)
        leader_faults = {}

        def arm_leader(net, n: int) -> None:
            leader = net.coordinator.leader(round_id)
            if leader is not None and not leader_faults:
                i = [a.address for a in net.accounts].index(leader)
                leader_faults[i] = arm(net, i, {"propose:before"})

        drive(net, round_id, before_pass=arm_leader, down_passes={"propose:before": 8})
        assert [p for _i, p in net.crashes] == ["propose:before"]
        proposal = net.coordinator.proposal(round_id)
        assert proposal.rank == 1 and proposal.proposer != net.coordinator.leader(round_id)
        _assert_everyone_pulled(net, round_id)
        assert_nothing_sent_twice(net, 2)
    finally:
        _close(net)


class _FaultyEndpoint(httpx.BaseTransport):
    """In front of a real RPC server: down for the first ``down_s`` (simulated) seconds, then it
    flips a byte in every block of the CIDs in ``tamper``."""

    def __init__(self, url: str, clock: list[float], down_s: float) -> None:
        self._inner = httpx.HTTPTransport()
        self._url = url
        self._clock = clock
        self._down_s = down_s
        self.tamper: set[str] = set()
        self.refused = 0
        self.altered = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._clock[0] < self._down_s:
            self.refused += 1
            raise httpx.ConnectError("connection refused (endpoint down)", request=request)
        response = self._inner.handle_request(request)
        if request.url.path.endswith("/block/get") and request.url.params.get("arg") in self.tamper:
            body = bytearray(response.read())
            body[-1] ^= 0xFF
            self.altered += 1
            return httpx.Response(response.status_code, headers=response.headers, content=bytes(body))
        return response


@pytest.mark.slow
def test_ipfs_endpoint_down_30s_then_altering_an_update_is_survived(tmp_path, tiny_model_dir, fast_params,
                                                                      caplog) -> None:
    server_store = ContentStore(tmp_path / "served", durable=False)
    handle = serve_in_thread(server_store)
    clock = [0.0]

    def fake_sleep(seconds: float) -> None:
        clock[0] += seconds

    transports = {i: _FaultyEndpoint(handle.url, clock, down_s=30.0) for i in range(4)}
    stores = {i: EndpointStore(KuboClient(handle.url, transport=transports[i], retries=5, backoff_s=1.0,
                                          max_backoff_s=10.0, sleep=fake_sleep,
                                          cache=ContentStore(tmp_path / f"cache-{i}", durable=False)))
              for i in range(4)}
    net = make_net(tmp_path, tiny_model_dir, fast_params, node_stores=stores)
    try:
        for cid in net.store.pins():  # the round-0 adapter went into the local store; serve it
            for block in _dag_blocks(net.store, cid):
                server_store.put_block(block, net.store.get_block(block))
            server_store.pin(cid)
        register_all(net)
        round_id = open_round(net)
        victim = net.accounts[3].address

        def tamper_once_submitted(net, n: int) -> None:
            clock[0] += 5.0  # each pass stands for five seconds of wall time
            for sub in net.coordinator.submissions(round_id):
                if sub.node == victim and not transports[0].tamper:
                    from flare_chain.ipfs import cid_from_bytes

                    cid = cid_from_bytes(sub.cid)
                    blocks = {str(c) for c in _dag_blocks(server_store, cid)}
                    for t in transports.values():
                        t.tamper = blocks

        with caplog.at_level(logging.WARNING, logger="flare_chain"):
            drive(net, round_id, before_pass=tamper_once_submitted)
        assert transports[0].refused > 0 and clock[0] >= 30.0
        assert sum(t.altered for t in transports.values()) > 0
        proposal = with_accepted_list(server_store, net.coordinator.proposal(round_id))  # pinned via the endpoint
        assert proposal.accepted is not None and victim not in proposal.accepted and len(proposal.accepted) == 3
        assert any("hashed to" in r.getMessage() or "IntegrityError" in r.getMessage() or
                   "leaving out" in r.getMessage() for r in caplog.records)
        assert_nothing_sent_twice(net, 1)
        assert net.coordinator.round_info(round_id).status == RoundStatus.COMMITTED
    finally:
        _close(net)
        handle.close()


def _dag_blocks(store: ContentStore, cid: str) -> list:
    from flare_chain.ipfs import dag

    return list(dag.iter_dag(store.get_block, store.resolve(cid)))


# ---------------------------------------------------------------- cheap: no training


@pytest.fixture()
def idle_net(tmp_path, tiny_model_dir, fast_params):
    net = make_net(tmp_path, tiny_model_dir, fast_params, nodes=2)
    yield net
    _close(net)


def _crash_after_register_broadcast(net):
    """Node 0 dies right after broadcasting its registration; its stored (SIGNED) record."""
    arm(net, 0, {"register:sent"})
    with pytest.raises(BaseException, match="register:sent"):
        net.daemons[0].tick()
    stored = net.daemons[0].state.get(0, "register")
    assert stored.status == StepStatus.SIGNED
    return stored


def test_restart_after_broadcast_resends_the_same_transaction(idle_net) -> None:
    net = idle_net
    stored = _crash_after_register_broadcast(net)
    net.daemons[0].state.close()
    net.faults.pop(0)
    net.daemons[0] = make_daemon(net, 0)
    net.daemons[0].tick()
    done = net.daemons[0].state.get(0, "register")
    assert done.status == StepStatus.DONE and done.tx_hash == stored.tx_hash and done.nonce == stored.nonce
    assert net.coordinator.is_registered(net.accounts[0].address)
    assert sent_by(net, net.accounts[0].address) == ["registerNode"]


def test_restart_with_a_signed_but_unsent_transaction_sends_those_bytes(idle_net) -> None:
    net = idle_net
    arm(net, 1, {"register:signed"})
    with pytest.raises(BaseException, match="register:signed"):
        net.daemons[1].tick()
    stored = net.daemons[1].state.get(0, "register")
    assert not net.coordinator.is_registered(net.accounts[1].address)
    net.daemons[1].state.close()
    net.faults.pop(1)
    net.daemons[1] = make_daemon(net, 1)
    net.daemons[1].tick()
    tx = net.w3.eth.get_transaction(stored.tx_hash)
    assert tx["nonce"] == stored.nonce
    assert sent_by(net, net.accounts[1].address) == ["registerNode"]


def test_sigterm_finishes_the_step_under_way_then_stops(idle_net) -> None:
    net = idle_net
    daemon = net.daemons[0]
    daemon.install_signal_handlers()
    try:
        # SIGTERM arrives after the registration is signed and stored, before it is broadcast.
        daemon.faults = Faults({"register:signed"}, action=lambda p: os.kill(os.getpid(), signal.SIGTERM))
        assert daemon.run() == 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    assert daemon.stopping
    assert daemon.state.get(0, "register").status == StepStatus.DONE
    assert net.coordinator.is_registered(net.accounts[0].address)


def test_rpc_errors_are_retried_with_backoff_until_the_endpoint_returns(idle_net, caplog) -> None:
    net = idle_net
    daemon = net.daemons[1]
    provider = net.w3.provider
    real = provider.make_request
    outage = {"left": 6}

    def flaky(method, params):
        if outage["left"] > 0:
            outage["left"] -= 1
            raise ConnectionError(f"RPC endpoint restarting ({method})")
        return real(method, params)

    waits: list[float] = []
    daemon._sleep = waits.append
    provider.make_request = flaky
    provider._request_func_cache = (None, None)  # web3 caches the bound request function with its middleware
    try:
        with caplog.at_level(logging.WARNING, logger="flare_chain.node"):
            daemon.run(until=lambda: daemon.state.is_final(0, "register"))
    finally:
        provider.make_request = real
        provider._request_func_cache = (None, None)
    assert net.coordinator.is_registered(net.accounts[1].address)
    backoffs = [w for w in waits if w != daemon.settings.poll_interval_s]
    assert len(backoffs) >= 1 and backoffs == sorted(backoffs)
    assert any("retrying in" in r.getMessage() for r in caplog.records)


def test_fault_points_from_the_environment_are_validated() -> None:
    assert Faults.from_env({"FLARE_FAULT": "submit:sent, vote:before"}).points == {"submit:sent", "vote:before"}
    assert Faults.from_env({}).points == set()
    env = {"FLARE_FAULT": "node-2@vote:sent,node-1@train:during,pin:before"}
    assert Faults.from_env(env, node="node-2").points == {"vote:sent", "pin:before"}
    from flare_chain.errors import ConfigError

    with pytest.raises(ConfigError, match="not <step>:<when>"):
        Faults.from_env({"FLARE_FAULT": "lunch:after"})


def test_node_run_with_a_missing_config_names_the_fix(tmp_path, capsys) -> None:
    from flare_chain.cli.main import main

    assert main(["node", "run", "--config", str(tmp_path / "absent.toml")]) == 2
    assert "does not exist; copy one from nodes/" in capsys.readouterr().err


# ---------------------------------------------------------------- PowerSGD residual across restarts (quick: tiny training)


def _compressing(net, i: int):
    """Restart node ``i`` with rank-1 PowerSGD (on the tiny model rank 2 would leave every tensor dense)."""
    from flare_chain.compression import PowerSGDConfig
    from flare_chain.node.daemon import DaemonSettings

    net.daemons[i].state.close()
    settings = DaemonSettings(poll_interval_s=0.01, backoff_s=0.01,
                              compression=PowerSGDConfig(rank=1, min_compression_rate=1.0))
    net.daemons[i] = make_daemon(net, i, settings=settings)
    return net.daemons[i]


def _end_round(net, round_id: int) -> None:
    """Let a round run out with nobody on the committee, so the owner can open the next."""
    from flare_chain.chain import advance_blocks

    info = net.coordinator.round_info(round_id)
    advance_blocks(net.w3, max(0, info.claim_deadline + 1 - int(net.w3.eth.block_number)))
    net.coordinator.finalize_round(net.owner, round_id)


def _restart_into_next_round_until_submit(net, round_id: int):
    """Restart node 0 (compressing), let ``round_id`` run out, open the next round and tick node 0
    until it crashes just before submitting; returns the new daemon and round."""
    net.faults.pop(0)
    daemon = _compressing(net, 0)
    _end_round(net, round_id)
    round_id = open_round(net)
    arm(net, 0, {"submit:before"})
    with pytest.raises(BaseException, match="submit:before"):
        daemon.tick()
    return daemon, round_id


def test_restart_after_submission_uses_the_residual_once_and_an_unsent_one_again(idle_net) -> None:
    from flare_chain.compression import PowerSGDCompressor

    net = idle_net
    daemon = _compressing(net, 0)
    daemon.tick()  # registers
    # A round opens only with the minimum committee (2) of nodes registered; node 1 stays idle.
    net.coordinator.register_node(net.accounts[1], net.coordinator.min_stake())
    # Round 1: the submission is recorded, then the node dies before committing the compressor state.
    round_id = open_round(net)
    arm(net, 0, {"submit:done"})
    with pytest.raises(BaseException, match="submit:done"):
        daemon.tick()
    assert net.coordinator.submission_hash(round_id, net.accounts[0].address) != bytes(32)
    trained = daemon.state.get(round_id, "train").detail  # what `node status` shows of the compression
    assert 0 <= trained["compress_seconds"] <= trained["seconds"] + 60 and trained["powersgd_rank"] >= 1
    (pending,) = daemon.residuals.pending()
    assert (pending.round_id, pending.base_round, daemon.residuals.committed_round) == (1, 0, 0)
    residual_1 = PowerSGDCompressor.from_state_bytes(pending.state_file.read_bytes()).error
    assert sum(float(t.norm()) for t in residual_1.values()) > 0

    # Round 2 after a restart: round 1's residual is committed first and round 2 is compressed from it.
    daemon, round_id = _restart_into_next_round_until_submit(net, round_id)
    assert daemon.residuals.committed_round == 1
    reloaded = daemon.residuals.load_committed().error
    assert reloaded.keys() == residual_1.keys() and all(torch.equal(reloaded[k], residual_1[k]) for k in reloaded)
    (pending,) = daemon.residuals.pending()
    assert (pending.round_id, pending.base_round) == (2, 1)

    # Round 2's submission never lands (the node is down until its window closed): its compressed update was
    # never sent, so round 3 starts again from round 1's residual instead of counting it twice or losing it.
    daemon, round_id = _restart_into_next_round_until_submit(net, round_id)
    assert net.coordinator.submission_hash(2, net.accounts[0].address) == bytes(32)
    assert daemon.residuals.committed_round == 1
    assert [(p.round_id, p.base_round) for p in daemon.residuals.pending()] == [(3, 1)]
    net.faults.pop(0)
    daemon.faults = Faults()
    daemon.tick()  # round 3 submits; its state is committed right after
    assert daemon.residuals.committed_round == 3 and daemon.residuals.pending() == []
    assert sent_by(net, net.accounts[0].address) == ["registerNode", "submitUpdate", "submitUpdate"]


def test_a_corrupt_compressor_state_stops_the_node_naming_the_file_and_the_fix(idle_net) -> None:
    from flare_chain.compression import PowerSGDCompressor, PowerSGDConfig
    from flare_chain.errors import ConfigError
    from flare_chain.node.residual import INDEX_FILE, CompressorStore

    net = idle_net
    folder = net.root / "node-0" / "compressor"
    config = PowerSGDConfig(rank=1, min_compression_rate=1.0)
    store = CompressorStore(folder, config)
    compressor = PowerSGDCompressor(config)
    compressor.step({"m.lora_A.weight": torch.randn(4, 32)})
    store.save_pending(1, compressor, base_round=0, manifest_hash=bytes(32))
    assert store.promote(store.pending()[0])
    _compressing(net, 0)  # a good state loads

    state_file = folder / "state-round-1.safetensors"
    state_file.write_bytes(state_file.read_bytes()[:100])  # truncated, as by a full disk
    with pytest.raises(ConfigError, match=r"state-round-1\.safetensors is unreadable .*move the folder"):
        _compressing(net, 0)
    (folder / INDEX_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"state\.json is unreadable \(not valid JSON"):
        _compressing(net, 0)


def test_a_claim_refused_as_early_is_retried_and_one_refused_as_late_is_given_up(idle_net) -> None:
    """The contract answers "too early" and "too late" with the same error; only "too late" skips the seat.

    A node whose simulation lands at or before the submission deadline (its
    head moved on by a block, or the RPC evaluates at the latest block) used to
    record the seat as skipped for good, and a round could fail with too few seats.
    """
    from flare_chain.chain import advance_blocks

    net = idle_net
    register_all(net)
    round_id = open_round(net, expected_committee_size=60)  # Poisson(30) each: both seated but for e^-30
    early, late = net.daemons
    info = net.coordinator.round_info(round_id)
    assert int(net.w3.eth.block_number) + 1 < info.submission_deadline
    early._claim(round_id)  # what a node does when it thinks the window is open but the chain says not yet
    assert early.state.get(round_id, "claim") is None or not early.state.is_final(round_id, "claim")
    assert net.coordinator.seat_weight(round_id, early.address) == 0

    advance_blocks(net.w3, info.submission_deadline + 1 - int(net.w3.eth.block_number))
    early._claim(round_id)
    assert early.state.get(round_id, "claim").status == StepStatus.DONE
    assert net.coordinator.seat_weight(round_id, early.address) > 0

    advance_blocks(net.w3, info.claim_deadline + 1 - int(net.w3.eth.block_number))
    late._claim(round_id)
    skipped = late.state.get(round_id, "claim")
    assert skipped.status == StepStatus.SKIPPED and "CoordinatorOutsideClaimWindow" in skipped.detail["reason"]


@pytest.mark.parametrize("next_round_open", [False, True], ids=["round-ended", "next-round-already-open"])
def test_steps_left_at_intent_when_the_round_ends_are_skipped_with_the_reason(idle_net, next_round_open) -> None:
    net = idle_net
    register_all(net)
    round_id = open_round(net)
    daemon = net.daemons[0]
    # As after the node's review, before its vote went out (slow review, crash, or "no proposal yet" refusals).
    daemon.state.record_intent(round_id, "vote", {"approve": True, "reason": "reviewed"})
    daemon.state.record_intent(round_id, "claim")
    never_mined = "0x" + "ee" * 32
    daemon.state.record_signed(round_id, "propose", b"\x02stored", never_mined, 99)
    _end_round(net, round_id)
    assert net.coordinator.round_info(round_id).status.is_final
    if next_round_open:  # the owner opened the next round before this node looked again (and it ran on)
        from flare_chain.chain import advance_blocks

        assert open_round(net) == round_id + 1
        advance_blocks(net.w3, net.coordinator.round_info(round_id + 1).claim_deadline + 1 - net.w3.eth.block_number)

    daemon.tick()

    rows = {r.step: r for r in daemon.state.steps(round_id)}
    assert {step: r.status for step, r in rows.items()} == {
        step: StepStatus.SKIPPED for step in ("submit", "claim", "propose", "vote", "pull")}
    assert rows["vote"].detail["reason"] == "round already failed without this node's vote"
    assert rows["vote"].detail["approve"] is True  # what it meant to vote stays on record
    assert rows["propose"].detail["reason"].endswith(f"its stored transaction {never_mined} was never mined")


def test_a_data_folder_from_a_redeployed_chain_with_the_same_id_and_address_is_refused(
        tmp_path, tiny_model_dir, fast_params) -> None:
    from eth_account import Account
    from eth_utils import keccak

    from flare_chain.chain import fund_accounts, in_process_chain
    from flare_chain.errors import ConfigError

    first = make_net(tmp_path, tiny_model_dir, fast_params, nodes=1, probe_corpus=False)
    register_all(first)
    assert first.daemons[0].state.is_final(0, "register")
    _close(first)
    # The chain restarted: same id, and the owner deploys at nonce 0 again, so at the same address.
    again = in_process_chain()
    fund_accounts(again, [Account.from_key(keccak(text="anyone"))], 10**18)  # its history differs from block 1 on

    with pytest.raises(ConfigError, match=r"node-0/state\.sqlite was written on another chain .*fresh data_dir"):
        make_net(tmp_path, tiny_model_dir, fast_params, nodes=1, probe_corpus=False, w3=again)


def test_settling_a_step_whose_stored_transaction_was_mined_marks_it_done(idle_net) -> None:
    net = idle_net
    stored = _crash_after_register_broadcast(net)

    settled = net.daemons[0].sender.settle(0, "register", "round over")

    assert settled.status == StepStatus.DONE and settled.detail["tx_hash"] == stored.tx_hash


# ---------------------------------------------------------------- double-send guards and the claim window's edge


def _update_by_hand(net, i: int, round_id: int) -> tuple[str, bytes]:
    """Node ``i`` submits an update outside its daemon (an operator's tool); the CID and manifest hash sent."""
    from eth_utils import keccak

    from flare_chain.ipfs import cid_to_bytes

    cid = net.store.add_bytes(f"update of node {i} for round {round_id}".encode(), cid_version=1)
    digest = keccak(text=f"manifest {i} {round_id}")
    net.coordinator.submit_update(net.accounts[i], round_id, cid_to_bytes(cid), 5, digest)
    return cid, digest


def test_a_submission_already_on_chain_is_recorded_done_without_sending_another(idle_net) -> None:
    # Prepare: the node's update is pinned and already submitted (by hand, or before its state was restored)
    net = idle_net
    register_all(net)
    round_id = open_round(net)
    d = net.daemons[0]
    cid, digest = _update_by_hand(net, 0, round_id)
    d.state.record_done(round_id, "train", {})
    d.state.record_done(round_id, "pin", {"cid": cid, "manifest_hash": digest.hex(), "sample_count": 5})
    # Execute
    d.tick()
    # Assert: no second submitUpdate (the contract would refuse it with CoordinatorDuplicateSubmission)
    rec = d.state.get(round_id, "submit")
    assert rec.status == StepStatus.DONE and rec.tx_hash is None
    assert sent_by(net, d.address).count("submitUpdate") == 1
    assert_nothing_sent_twice(net, 1)


def _proposed_round(net) -> int:
    """Both nodes seated by hand, node 0's update submitted and proposed by the leader; voting open."""
    from flare_chain.chain import advance_blocks
    from flare_chain.ipfs import cid_to_bytes

    c = net.coordinator
    # k = 400 over two equal stakes: each seat weight is Poisson(200), so neither member's approval alone reaches
    # 2/3 of the committee's weight (the proposed CID is not a real bundle: a commit would make daemons pull it)
    round_id = open_round(net, expected_committee_size=400)
    cid, _digest = _update_by_hand(net, 0, round_id)
    info = c.round_info(round_id)
    advance_blocks(net.w3, info.submission_deadline + 1 - int(net.w3.eth.block_number))
    for account in net.accounts:
        draw = c.draw_seat(account, round_id)
        assert draw.selected
        c.claim_seat(account, round_id, draw.proof)
    advance_blocks(net.w3, info.claim_deadline + 1 - int(net.w3.eth.block_number))
    leader = next(a for a in net.accounts if a.address == c.leader(round_id))
    c.propose_aggregate(leader, round_id, cid_to_bytes(cid), [net.accounts[0].address])
    return round_id


def test_a_proposal_made_while_the_daemon_was_away_is_credited_to_its_proposer_only(idle_net, monkeypatch) -> None:
    # Prepare: the leader proposed by hand (as a daemon that crashed right after sending would have);
    # then both daemons come back with voting open and their propose steps still undecided
    net = idle_net
    register_all(net)
    round_id = _proposed_round(net)
    leader = net.coordinator.leader(round_id)
    for d in net.daemons:
        monkeypatch.setattr(d.participant, "review", lambda *a, **k: (True, "reviewed", None, None))
    # Execute
    for d in net.daemons:
        d.tick()
    # Assert: only the leader's record says it proposed; the other names who did
    for d in net.daemons:
        rec = d.state.get(round_id, "propose")
        if d.address == leader:
            assert rec.status == StepStatus.DONE and rec.detail.get("found_on_chain") is True
        else:
            assert rec.status == StepStatus.SKIPPED and rec.detail["reason"] == f"proposed by {leader}"
        assert sent_by(net, d.address).count("proposeAggregate") == (1 if d.address == leader else 0)


def test_a_vote_already_on_chain_is_recorded_without_reviewing_or_voting_again(idle_net, monkeypatch) -> None:
    # Prepare: node 1 voted by hand; its daemon then comes back
    net = idle_net
    register_all(net)
    round_id = _proposed_round(net)
    d = net.daemons[1]
    net.coordinator.vote(net.accounts[1], round_id, True)
    reviews: list[int] = []

    def review(rid, *args, **kwargs):
        reviews.append(rid)
        return True, "reviewed", None, None

    monkeypatch.setattr(d.participant, "review", review)
    # Execute
    d.tick()
    # Assert: the daemon neither re-judged the proposal (a verdict it would log but never cast) nor voted
    rec = d.state.get(round_id, "vote")
    assert rec.status == StepStatus.DONE and rec.detail.get("found_on_chain") is True
    assert reviews == []
    assert sent_by(net, d.address).count("vote") == 1


def test_a_node_claims_its_seat_in_the_last_block_of_the_claim_window(idle_net) -> None:
    from flare_chain.chain import advance_blocks

    # Prepare: a node with nothing to submit this round reaches the claim window's last block
    net = idle_net
    register_all(net)
    round_id = open_round(net)
    d = net.daemons[0]
    d.state.record_skipped(round_id, "submit", "nothing to submit (test)")
    info = net.coordinator.round_info(round_id)
    advance_blocks(net.w3, info.claim_deadline - 1 - int(net.w3.eth.block_number))
    # Execute: its next transaction lands in block claim_deadline, still inside the window
    d.tick()
    # Assert
    claim = d.state.get(round_id, "claim")
    assert claim.status == StepStatus.DONE
    assert net.w3.eth.get_transaction_receipt(claim.tx_hash)["blockNumber"] == info.claim_deadline
    assert net.coordinator.seat_weight(round_id, d.address) > 0


def test_a_node_out_of_ether_keeps_its_submission_open_naming_the_address_until_funded(idle_net) -> None:
    # Prepare: both registered and a round open; then node 0's account is emptied (gas only left behind)
    net = idle_net
    register_all(net)
    round_id = open_round(net)
    daemon, account = net.daemons[0], net.accounts[0]
    price = 2 * int(net.w3.eth.get_block("latest")["baseFeePerGas"]) + 10**9
    left = 21_000 * price
    net.w3.eth.send_raw_transaction(account.sign_transaction({
        "to": net.owner.address, "value": net.w3.eth.get_balance(account.address) - left, "gas": 21_000,
        "maxFeePerGas": price, "maxPriorityFeePerGas": 10**9, "nonce": net.w3.eth.get_transaction_count(
            account.address), "chainId": net.w3.eth.chain_id}).raw_transaction)
    # Execute: more failed attempts than a step is allowed for a revert (max_step_attempts = 5)
    for _ in range(daemon.settings.max_step_attempts + 2):
        with pytest.raises(Exception, match=rf"submit: {account.address} holds .* but needs"):
            daemon.tick()
    # Assert: the step is still open (not given up), nothing was sent; funding it is enough
    assert not daemon.state.is_final(round_id, "submit")
    assert net.coordinator.submission_hash(round_id, account.address) == bytes(32)
    fund_accounts(net.w3, [account], 10**18)
    daemon.tick()
    assert daemon.state.get(round_id, "submit").status == StepStatus.DONE


def test_after_a_rejection_the_next_rank_proposes_and_members_vote_again_as_new_steps(idle_net, monkeypatch) -> None:
    # Prepare: the leader's hand-made proposal is up; every member's review says no. The gates are not
    # what this test is about: the rank-1 daemon's gating and aggregation return one stand-in aggregate.
    from types import SimpleNamespace

    from flare_chain.chain import FailureReason

    net = idle_net
    register_all(net)
    round_id = _proposed_round(net)
    c = net.coordinator
    leader = c.leader(round_id)
    fallback_cid = net.store.add_bytes(b"the rank-1 member's aggregate", cid_version=1)
    for d in net.daemons:
        monkeypatch.setattr(d.participant, "review", lambda *a, **k: (False, "junk", None, None))
        monkeypatch.setattr(d.participant, "gate_submissions", lambda *a, **k: ([object()], []))
        monkeypatch.setattr(d.participant, "aggregate",
                            lambda *a, **k: SimpleNamespace(cid=fallback_cid, accepted=[net.accounts[0].address]))
    # Execute: ticks until the round is over (the first "no" rejects the leader's proposal, the rank-1
    # member proposes in its new turn, and its proposal is voted down too: with two seats no rank is left)
    for _ in range(8):
        for d in net.daemons:
            d.tick()
        if c.round_info(round_id).status.is_final:
            break
    for d in net.daemons:  # each sees the round over and settles what it had left
        d.tick()
    # Assert
    info = c.round_info(round_id)
    assert (info.status, info.rejected_proposals) == (RoundStatus.FAILED, 1)
    assert c.round_outcome(round_id).failure_reason is FailureReason.REJECTED
    assert [p.rank for p in c.proposals(round_id)] == [0, 1]
    for d in net.daemons:
        first, second = d.state.get(round_id, "propose"), d.state.get(round_id, "propose.2")
        if d.address == leader:
            assert first.status == StepStatus.DONE
            # its tick found the round open for rank 1 only, or rank 1's proposal already made
            assert second.status == StepStatus.SKIPPED
            assert any(reason in second.detail["reason"] for reason in ("rank 0 has no proposer turn", "proposed by"))
            assert sent_by(net, d.address).count("proposeAggregate") == 1  # the hand-made one, no second
        else:
            assert first.status == StepStatus.SKIPPED and second.status == StepStatus.DONE
            assert sent_by(net, d.address).count("proposeAggregate") == 1
        votes = [d.state.get(round_id, step) for step in ("vote", "vote.2")]
        assert all(v is not None and v.status.is_final for v in votes)
    assert c.proposal(round_id).global_cid != c.proposals(round_id)[0].global_cid
    assert sum(sent_by(net, d.address).count("vote") for d in net.daemons) >= 2


def test_a_nodes_own_update_stays_pinned_so_a_gc_before_the_committee_fetched_it_keeps_it(idle_net) -> None:
    # Until the committee has fetched it the update lives only in the node's store: left unpinned, a `gc` run
    # in the submission window (an operator's, or a cron job's) would delete the update the chain names.
    net = idle_net
    register_all(net)
    round_id = open_round(net)
    d = net.daemons[0]
    d.tick()  # trains, pins and submits its update
    assert sent_by(net, d.address).count("submitUpdate") == 1
    cid = d.state.get(round_id, "pin").detail["cid"]
    assert cid in d.store.pins()
    d.store.gc()
    assert len(_dag_blocks(d.store, cid)) > 1  # the bundle (manifest and delta) is still whole
