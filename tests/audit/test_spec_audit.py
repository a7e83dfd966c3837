"""The auditor re-checks rounds under the spec the coordinator names, and says when it cannot load it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flare_chain.audit import FAIL, PASS, UNVERIFIABLE, ContentSource, run_audit
from flare_chain.audit.simulate import simulate
from flare_chain.ipfs import ContentStore
from flare_chain.protocol import spec as spec_module
from flare_chain.protocol.spec import RULES_VERSION, AggregatorSpec, FederationSpec, spec_cid

pytestmark = pytest.mark.slow

SPEC = FederationSpec(name="median audit", aggregator=AggregatorSpec(name="median"))


@pytest.fixture(scope="module")
def median_fed(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tiny_train_params):
    fed = simulate(tmp_path_factory.mktemp("spec-audit"), tiny_model_dir, tiny_train_params, nodes=4, spec=SPEC)
    fed.run_round()
    return fed


def _audit(fed, store: ContentStore):
    return run_audit(fed.coordinator.w3, fed.target, ContentSource(store), model_dir=fed.model_dir, model_search=[],
                     show_progress=False)


def test_a_median_federation_passes_under_its_spec(median_fed) -> None:
    report = _audit(median_fed, median_fed.store)
    assert report.ok, [f.line() for f in report.findings if f.status != PASS]
    assert report.spec_cid == spec_cid(SPEC) and report.spec is not None
    assert report.spec["aggregator"]["name"] == "median"
    (finding,) = [f for f in report.findings if f.check == "federation-spec"]
    assert "aggregator median" in finding.detail and f"rules v{RULES_VERSION}" in finding.detail


def test_an_auditor_on_other_verdict_rules_fails_the_spec_check_naming_both_versions(
        median_fed, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: this build as a later release whose gate rules moved on
    monkeypatch.setattr(spec_module, "RULES_VERSION", RULES_VERSION + 1)
    # Act
    report = _audit(median_fed, median_fed.store)
    # Assert: the auditor does not re-judge the rounds by rules the federation never agreed on
    assert not report.ok
    (finding,) = [f for f in report.findings if f.check == "federation-spec"]
    assert finding.status == FAIL
    assert f"written for verdict rules version {RULES_VERSION}; this build implements version {RULES_VERSION + 1}" \
        in finding.detail


def test_a_median_round_fails_when_rebuilt_with_fedavg(median_fed) -> None:
    # the honest leader used the median; an auditor that ignored the spec would call its CID wrong
    from flare_chain.audit.fetch import ChainReader
    from flare_chain.audit.history import build_history
    from flare_chain.audit.reproduce import ModelLocator, content_checks, reproduce_round
    from flare_chain.chain.artifacts import load_artifact

    w3, target = median_fed.coordinator.w3, median_fed.target
    reader = ChainReader(w3, target.address, load_artifact("FlareCoordinator").abi, show_progress=False)
    head = int(w3.eth.block_number)
    history = build_history(reader, reader.events(target.block, head), chain_id=target.chain_id,
                            from_block=target.block, to_block=head)
    source = ContentSource(median_fed.store)
    r = history.rounds[1]
    _, content = content_checks(source, r)
    models = ModelLocator(median_fed.model_dir, [])
    cap = history.params.max_sample_count
    seed = history.claim_seed(r)
    as_median = reproduce_round(source, r, history.initial_cid, content, models, SPEC, cap, seed)
    as_fedavg = reproduce_round(source, r, history.initial_cid, content, models, FederationSpec(), cap, seed)
    assert {f.check: f.status for f in as_median}["aggregate-cid"] == PASS
    assert {f.check: f.status for f in as_fedavg}["aggregate-cid"] == "fail"


def test_a_spec_missing_from_the_store_is_unverifiable_not_passed(median_fed, tmp_path: Path) -> None:
    copy = tmp_path / "store"
    shutil.copytree(median_fed.store.root, copy)
    store = ContentStore(copy)
    cid = spec_cid(SPEC)
    store.unpin(cid)
    store.gc()
    report = _audit(median_fed, store)
    assert not report.ok
    statuses = {(f.check, f.round): f.status for f in report.findings}
    assert statuses[("federation-spec", None)] == UNVERIFIABLE
    assert statuses[("aggregate-cid", 1)] == UNVERIFIABLE


def test_the_audit_reports_epsilon_per_node_and_round_under_local_dp(tmp_path: Path, tiny_model_dir: Path,
                                                                     tiny_train_params) -> None:
    from flare_chain.aggregation.privacy import PrivacyAccountant
    from flare_chain.protocol.spec import PrivacySpec

    # simulated updates are tiny (1e-3 per entry), well inside the clip plus noise bound
    spec = FederationSpec(name="dp audit", privacy=PrivacySpec(enabled=True, clip_norm=1.0, noise_multiplier=1.1,
                                                                delta=1e-5))
    fed = simulate(tmp_path / "store", tiny_model_dir, tiny_train_params, nodes=4, spec=spec)
    fed.run_round()
    fed.run_round()
    report = _audit(fed, fed.store)
    assert report.ok, [f.line() for f in report.findings if f.status != PASS]
    accountant = PrivacyAccountant(1.1, target_delta=1e-5)
    one, two = accountant.epsilon_after(1), accountant.epsilon_after(2)
    assert 0 < one < two
    first, second = report.rounds
    assert set(first.epsilon) == {n.address for n in fed.nodes} == set(second.epsilon)
    assert all(e == pytest.approx(one) for e in first.epsilon.values())
    assert all(e == pytest.approx(two) for e in second.epsilon.values())
