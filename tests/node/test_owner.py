"""The owner's round driver: opens rounds, ends stuck ones, and summarises what the chain recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from eth_utils import keccak

from flare_chain.chain import RoundStatus, advance_blocks, deploy_coordinator, fund_accounts, in_process_chain
from flare_chain.cli.tables import render_table
from flare_chain.errors import ChainError
from flare_chain.ipfs import ContentStore, KuboClient, cid_of_bytes, cid_to_bytes, serve_in_thread
from flare_chain.node.owner import DriverSettings, drive_rounds, ensure_global_adapter, summary_rows

# k = 20 over 3 equal nodes: the committee weighs under the minimum of 2 with p = 21·e^-20 (the in-process
# chain's prevrandao, and so every draw, changes each run; at k = 3 a round fell short with p = 4·e^-3 = 20%)
FAST = DriverSettings(rounds=1, submission_blocks=6, claim_blocks=6, proposal_blocks=3, voting_blocks=4,
                      expected_committee_size=20, poll_interval_s=0.01, mine_every_poll=True, round_timeout_s=60)


@pytest.fixture()
def federation():
    """``(coordinator, owner, nodes)`` on a fresh in-process chain; 3 registered nodes, adapter set."""
    w3 = in_process_chain()
    owner = Account.from_key(keccak(text="owner tests owner"))
    nodes = [Account.from_key(keccak(text=f"owner tests node {i}")) for i in range(3)]
    fund_accounts(w3, [owner, *nodes], 10**20)
    coordinator = deploy_coordinator(w3, owner, min_committee_size=2)
    for node in nodes:
        coordinator.register_node(node, 10**18)
    ensure_global_adapter(coordinator, owner, lambda: cid_of_bytes(b"round 0"))
    return coordinator, owner, nodes


class HonestNodes:
    """Stands in for the node daemons: called between the driver's polls, does whatever the phase allows."""

    def __init__(self, coordinator, nodes, *, approve: bool = True) -> None:
        self.coordinator, self.nodes, self.approve = coordinator, nodes, approve
        self.aggregate = cid_to_bytes(cid_of_bytes(b"the aggregate"))

    def __call__(self, _seconds: float) -> None:
        c = self.coordinator
        rid = c.current_round()
        info = c.round_info(rid)
        nxt = c.w3.eth.block_number + 1  # the block our transaction lands in
        if info.status != RoundStatus.OPEN:
            if info.status == RoundStatus.PROPOSED:
                for node in c.committee(rid):
                    if c.round_info(rid).status == RoundStatus.PROPOSED and not c.has_voted(rid, node):
                        c.vote(self._account(node), rid, self.approve)
            return
        if nxt <= info.submission_deadline:
            for i, node in enumerate(self.nodes):
                in_window = c.w3.eth.block_number + 1 <= info.submission_deadline
                if in_window and c.submission_hash(rid, node.address) == bytes(32):
                    c.submit_update(node, rid, cid_to_bytes(cid_of_bytes(f"update {rid} {i}".encode())), 10,
                                    bytes(32))
        elif nxt <= info.claim_deadline:
            for node in self.nodes:
                draw = c.draw_seat(node, rid)
                in_window = c.w3.eth.block_number + 1 <= info.claim_deadline
                if in_window and draw.selected and not c.is_committee_member(rid, node.address):
                    c.claim_seat(node, rid, draw.proof)
        elif info.turns_start <= nxt <= info.proposal_deadline and len(c.proposer_order(rid)) > info.first_rank:
            # the first rank with a turn in this attempt: the leader, or after a rejection the next rank
            proposer = self._account(c.proposer_order(rid)[info.first_rank])
            c.propose_aggregate(proposer, rid, self.aggregate, [s.node for s in c.submissions(rid)])

    def _account(self, address: str):
        return next(n for n in self.nodes if n.address == address)


def test_rounds_without_a_committee_are_finalized_and_the_next_opens(federation) -> None:
    coordinator, owner, _ = federation
    summaries = drive_rounds(coordinator, owner, FAST.model_copy(update={"rounds": 2}), sleep=lambda _s: None)
    assert [s.round_id for s in summaries] == [1, 2]
    assert all(s.status == RoundStatus.FAILED and s.failure_reason == "committee too small" for s in summaries)
    assert all(s.committed_cid is None and s.seats == 0 for s in summaries)


def test_honest_round_is_committed_and_summarised(federation) -> None:
    coordinator, owner, nodes = federation
    honest = HonestNodes(coordinator, nodes)
    (summary,) = drive_rounds(coordinator, owner, FAST, sleep=honest)
    assert summary.status == RoundStatus.COMMITTED
    assert summary.committed_cid == cid_of_bytes(b"the aggregate")
    assert summary.submissions == 3 and summary.seats >= 2 and summary.approvals >= 2
    headers, rows = summary_rows([summary])
    table = render_table(headers, rows)
    assert summary.committed_cid in table and "committed" in table


def test_rejected_round_reports_the_reason(federation) -> None:
    coordinator, owner, nodes = federation
    (summary,) = drive_rounds(coordinator, owner, FAST, sleep=HonestNodes(coordinator, nodes, approve=False))
    # every rank's proposal is voted down in turn (the fallback), until no rank is left
    assert summary.status == RoundStatus.FAILED and summary.failure_reason in ("rejected", "vote timeout")
    assert len(coordinator.proposals(summary.round_id)) == min(3, summary.seats)
    assert summary.committed_cid is None


def test_only_the_owner_may_drive(federation) -> None:
    coordinator, _, nodes = federation
    with pytest.raises(ChainError, match="not the coordinator's owner"):
        drive_rounds(coordinator, nodes[0], FAST, sleep=lambda _s: None)


def test_global_adapter_is_set_once(federation) -> None:
    coordinator, owner, _ = federation
    calls: list[int] = []
    cid = ensure_global_adapter(coordinator, owner, lambda: calls.append(1) or cid_of_bytes(b"other"))
    assert cid == cid_of_bytes(b"round 0") and calls == []


def test_summary_reads_held_out_loss_from_the_committed_manifest(tmp_path: Path, federation) -> None:
    from flare_chain.node.owner import _global_loss

    handle = serve_in_thread(ContentStore(tmp_path / "ipfs"))
    try:
        folder = tmp_path / "bundle"
        folder.mkdir()
        (folder / "flare_manifest.json").write_text(json.dumps({"metrics": {"global_val_loss": 2.5}}))
        with KuboClient(handle.url) as ipfs:
            cid = ipfs.add(folder, recursive=True, cid_version=1)
            assert _global_loss(ipfs, cid) == 2.5
    finally:
        handle.close()


def test_round0_adapter_pinned_over_rpc_has_the_bundle_cid(tmp_path: Path, tiny_model_dir, tiny_train_params) -> None:
    from flare_chain.lora.adapter import initial_adapter
    from flare_chain.node.bundles import pin_global_bundle
    from flare_chain.node.owner import pin_initial_adapter
    from flare_chain.node.participant import initial_global_manifest

    handle = serve_in_thread(ContentStore(tmp_path / "ipfs"))
    try:
        with KuboClient(handle.url) as ipfs:
            cid = pin_initial_adapter(ipfs, tiny_model_dir, tiny_train_params, seed=3)
            assert cid in ipfs.pin_ls()
    finally:
        handle.close()
    tensors = initial_adapter(tiny_model_dir, tiny_train_params, seed=3)
    expected = pin_global_bundle(ContentStore(tmp_path / "other"), tensors,
                                 initial_global_manifest(tiny_model_dir, tiny_train_params, tensors),
                                 tiny_model_dir, tiny_train_params, only_hash=True)
    assert cid == expected  # nodes that rebuild the bundle in-process get the same CID


def test_round0_adapter_names_the_probe_corpus_it_pinned_over_rpc(tmp_path: Path, tiny_model_dir,
                                                                   tiny_train_params) -> None:
    from flare_chain.node.bundles import fetch_global_bundle, fetch_probe_corpus, pin_probe_corpus
    from flare_chain.node.owner import pin_initial_adapter

    texts = ["public text of the task, one", "public text of the task, two"]
    store = ContentStore(tmp_path / "ipfs")
    handle = serve_in_thread(store)
    try:
        with KuboClient(handle.url) as ipfs:
            cid = pin_initial_adapter(ipfs, tiny_model_dir, tiny_train_params, seed=3, probe_corpus=texts)
    finally:
        handle.close()
    probe_cid = fetch_global_bundle(store, cid).manifest.probe_cid
    assert probe_cid == pin_probe_corpus(ContentStore(tmp_path / "other"), texts)  # same CID in-process
    assert fetch_probe_corpus(store, probe_cid).texts == tuple(texts)


def test_polling_survives_a_flaky_rpc(federation) -> None:
    coordinator, owner, _ = federation
    real = coordinator.round_info
    failures = iter([True, True, False])

    def flaky(round_id: int):
        if next(failures, False):
            raise ConnectionRefusedError("connection refused")
        return real(round_id)

    coordinator.round_info = flaky  # type: ignore[method-assign]
    (summary,) = drive_rounds(coordinator, owner, FAST, sleep=lambda _s: None)
    assert summary.status == RoundStatus.FAILED  # no committee, but the outage did not end the driver


class FakeClock:
    """Seconds that pass only when the driver sleeps, so waits of minutes take no time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_chain_that_stops_making_blocks_fails_with_what_to_do(federation, caplog) -> None:
    coordinator, owner, _ = federation
    clock = FakeClock()
    settings = FAST.model_copy(update={"mine_every_poll": False, "poll_interval_s": 1.0, "stall_timeout_s": 30.0,
                                       "progress_every_s": 10.0})
    with caplog.at_level("INFO", logger="flare_chain"), pytest.raises(ChainError) as err:
        drive_rounds(coordinator, owner, settings, sleep=clock.sleep, clock=clock)
    head = coordinator.w3.eth.block_number
    deadline = coordinator.round_info(1).submission_deadline
    assert f"made no block for 30 s (head {head}, round 1 waits for block {deadline})" in str(err.value)
    assert "--block-time" in str(err.value) and "--mine" in str(err.value)
    progress = [r.getMessage() for r in caplog.records if "submission phase" in r.getMessage()]
    assert 2 <= len(progress) <= 4  # one on entering the phase, then one per 10 s: a modest rate
    assert progress[0].endswith(f"block {head} of {deadline}")


def test_a_chain_that_moves_is_not_called_stalled(federation) -> None:
    coordinator, owner, _nodes = federation
    clock = FakeClock()

    def block_time(seconds: float) -> None:  # a chain with a block time: one block per second, whoever sends
        clock.sleep(seconds)
        advance_blocks(coordinator.w3, 1)

    settings = FAST.model_copy(update={"mine_every_poll": False, "poll_interval_s": 1.0, "stall_timeout_s": 2.0})
    summaries = drive_rounds(coordinator, owner, settings, sleep=block_time, clock=clock)
    assert summaries[0].status == RoundStatus.FAILED and summaries[0].failure_reason == "committee too small"


def test_drive_before_any_node_registered_waits_for_them(caplog) -> None:
    w3 = in_process_chain()
    owner = Account.from_key(keccak(text="owner tests owner"))
    nodes = [Account.from_key(keccak(text=f"owner tests node {i}")) for i in range(2)]
    fund_accounts(w3, [owner, *nodes], 10**20)
    coordinator = deploy_coordinator(w3, owner, min_committee_size=2)
    ensure_global_adapter(coordinator, owner, lambda: cid_of_bytes(b"round 0"))
    clock = FakeClock()

    def nodes_arrive(seconds: float) -> None:  # the daemons start a while after the driver
        clock.sleep(seconds)
        registered = coordinator.node_count()
        if clock.now >= 5 * (registered + 1) and registered < len(nodes):
            coordinator.register_node(nodes[registered], 10**18)

    settings = FAST.model_copy(update={"expected_committee_size": 2, "poll_interval_s": 1.0})
    with caplog.at_level("INFO", logger="flare_chain"):
        summaries = drive_rounds(coordinator, owner, settings, sleep=nodes_arrive, clock=clock)
    assert [s.round_id for s in summaries] == [1]
    waits = [r.getMessage() for r in caplog.records if "waiting for nodes" in r.getMessage()]
    assert waits and "0 of 2 needed" in waits[0]


def test_drive_without_enough_nodes_gives_up_with_one_line_after_its_timeout() -> None:
    w3 = in_process_chain()
    owner = Account.from_key(keccak(text="owner tests owner"))
    fund_accounts(w3, [owner], 10**20)
    coordinator = deploy_coordinator(w3, owner, min_committee_size=2)
    ensure_global_adapter(coordinator, owner, lambda: cid_of_bytes(b"round 0"))
    clock = FakeClock()
    settings = FAST.model_copy(update={"expected_committee_size": 2, "nodes_timeout_s": 20.0, "poll_interval_s": 1.0})
    with pytest.raises(ChainError, match=r"only 0 of the 2 nodes a committee needs registered within 20 s; "
                                         r"start the nodes"):
        drive_rounds(coordinator, owner, settings, sleep=clock.sleep, clock=clock)
    assert coordinator.current_round() == 0
