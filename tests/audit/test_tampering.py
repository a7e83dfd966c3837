"""Each way of cheating a round is named by its own finding; missing data reads unverifiable."""

from __future__ import annotations

import pytest
import torch

from flare_chain.audit import FAIL, PASS, UNVERIFIABLE
from flare_chain.ipfs import cid_from_bytes
from flare_chain.node.bundles import DELTA_FILE, pin_global_bundle


def _leaf(store, cid: str, name: str):
    return next(e.cid for e in store.ls(cid) if e.name == name)


def test_update_replaced_by_other_bytes_is_a_cid_bytes_finding(fresh, tmp_path, failing_keys) -> None:
    fresh.fed.run_round()
    victim = fresh.fed.nodes[1].address
    store = fresh.store_copy(tmp_path / "forged")
    leaf = _leaf(store, fresh.fed.round_cids[2][victim], DELTA_FILE)
    store.block_path(leaf).write_bytes(b"forged bytes under an honest name")

    report = fresh.audit(store)

    assert ("cid-bytes", 2, victim) in failing_keys(report)
    assert all(f.check == "cid-bytes" for f in report.failures)
    assert "hashed to" in next(f.detail for f in report.failures)
    # the committee's view cannot be rebuilt from forged bytes: reproduction is not claimed to pass
    assert {f.status for f in report.findings if f.round == 2 and f.check == "accepted-set"} == {UNVERIFIABLE}


def test_manifest_not_matching_its_onchain_hash_is_named(fresh, failing_keys) -> None:
    fresh.fed.run_round(bad_manifest_hash=[2])
    liar = fresh.fed.nodes[2].address

    report = fresh.audit()

    assert failing_keys(report) == {("manifest-hash", 2, liar)}
    # the honest leader left it out, and the auditor agrees with that accepted set
    assert next(r.accepted for r in report.rounds if r.round_id == 2) == sorted(
        (n.address for n in fresh.fed.nodes if n.address != liar), key=str.lower)
    assert {f.status for f in report.findings if f.check in ("accepted-set", "aggregate-cid")} == {PASS}


def test_accepted_set_excluding_an_honest_update_is_named(fresh, failing_keys) -> None:
    honest = fresh.fed.nodes[0].address

    def exclude(fed, round_id, previous, passing):
        from flare_chain.committee.aggregate import build_aggregate

        kept = [u for u in passing if u.submission.node != honest]
        result = build_aggregate(fed.store, round_id, previous, kept, fed.model_dir, fed.params,
                                 max_sample_count=fed.coordinator.max_sample_count())
        return result.cid, result.accepted

    fresh.fed.run_round(proposer=exclude)
    report = fresh.audit()

    assert failing_keys(report) == {("accepted-set", 2, honest)}
    assert "passes the gates" in report.failures[0].detail


def test_adapter_the_accepted_updates_do_not_reproduce_is_named(fresh, failing_keys) -> None:
    def skew(fed, round_id, previous, passing):
        from flare_chain.committee.aggregate import build_aggregate

        honest = build_aggregate(fed.store, round_id, previous, passing, fed.model_dir, fed.params, pin=False,
                                 max_sample_count=fed.coordinator.max_sample_count())
        skewed = {k: v + 0.01 * torch.sign(v) for k, v in honest.adapter.items()}
        return pin_global_bundle(fed.store, skewed, honest.manifest, fed.model_dir, fed.params), honest.accepted

    fresh.fed.run_round(proposer=skew)
    report = fresh.audit()

    leader = fresh.fed.coordinator.proposal(2).proposer
    assert failing_keys(report) == {("aggregate-cid", 2, leader)}
    committed = cid_from_bytes(fresh.fed.coordinator.global_adapter_cid())
    assert committed in report.failures[0].detail


def test_missing_update_is_unverifiable_not_passed(fresh, tmp_path) -> None:
    fresh.fed.run_round()
    absent = fresh.fed.nodes[3].address
    store = fresh.store_copy(tmp_path / "partial")
    store.block_path(_leaf(store, fresh.fed.round_cids[2][absent], DELTA_FILE)).unlink()

    report = fresh.audit(store)

    assert not report.failures and not report.ok
    missing = {(f.check, f.node) for f in report.unverifiable}
    assert {("cid-bytes", absent), ("manifest-hash", absent)} <= missing
    assert ("accepted-set", None) in missing
    assert [r.result for r in report.rounds] == [PASS, UNVERIFIABLE]


@pytest.mark.parametrize("approvals", [1])
def test_weakened_contract_committing_without_quorum_is_named(tmp_path, tiny_model_dir, tiny_train_params,
                                                              failing_keys, approvals) -> None:
    from flare_chain.audit import ContentSource, run_audit
    from flare_chain.audit.simulate import simulate
    from flare_chain.chain.artifacts import ARTIFACTS_DIR, load_artifact

    weak = load_artifact("WeakQuorumCoordinator", ARTIFACTS_DIR / "test")
    fed = simulate(tmp_path / "store", tiny_model_dir, tiny_train_params, nodes=4, artifact=weak)
    fed.run_round(approvals=approvals)
    assert fed.coordinator.round_info(1).status.name == "COMMITTED"

    report = run_audit(fed.coordinator.w3, fed.target, ContentSource(fed.store), model_dir=fed.model_dir,
                       model_search=[], show_progress=False, artifact=weak)

    assert failing_keys(report) == {("quorum", 1, None)}
    assert "committed with approval weight" in report.failures[0].detail
    assert report.rounds[0].status == "committed"
    assert report.rounds[0].result == FAIL
