"""A federation deployed with each aggregator in its spec commits rounds built with that aggregator."""

from __future__ import annotations

from pathlib import Path

import pytest

from flare_chain.aggregation import FedAvg
from flare_chain.aggregation.pipeline import GateSettings
from flare_chain.audit import PASS, AuditReport, ContentSource, run_audit
from flare_chain.audit.deployment import AuditTarget
from flare_chain.chain import RoundStatus
from flare_chain.committee.aggregate import build_aggregate
from flare_chain.federation import Federation, FederationConfig, run_round, setup_federation
from flare_chain.ipfs import cid_from_bytes
from flare_chain.node.bundles import fetch_global_bundle
from flare_chain.protocol.spec import AggregatorSpec, CommitteeSpec, FederationSpec, fetch_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.parametrize("aggregator", ["trimmed_mean", "median", "multi_krum", "exact_lora"])
def test_each_spec_aggregator_commits_its_own_aggregate(tmp_path: Path, tiny_model_dir: Path, tiny_train_params,
                                                        aggregator: str) -> None:
    # statistical gates off: on five non-IID stdlib domains the direction gate may leave an honest node out,
    # and this test is about what the aggregator does with a known accepted set. Members tolerate any loss rise:
    # a coordinate median over five skewed nodes can raise one member's own held-out loss (seen: every rank's
    # proposal voted down once in two runs), which is that member's judgement, not the aggregator's
    gates = GateSettings(norm=False, direction=False, probe_loss=False, mutual_information=False)
    spec = FederationSpec(name=f"{aggregator} federation", lora=tiny_train_params, gates=gates,
                          committee=CommitteeSpec(vote_tolerance=1.0),
                          aggregator=AggregatorSpec(name=aggregator, krum_byzantine=1, trim_fraction=0.2))
    config = FederationConfig(nodes=5, rounds=1, work_dir=tmp_path, model_dir=tiny_model_dir, spec=spec,
                              expected_committee_size=20, min_committee_size=2, show_progress=False)
    fed = setup_federation(config)
    spec_cid = cid_from_bytes(fed.coordinator.federation_spec_cid())
    pinned = fetch_spec(fed.store, spec_cid)  # the chain names the spec the members follow
    assert pinned.aggregator.name == aggregator and pinned.name == spec.name and pinned == fed.spec
    previous = fetch_global_bundle(fed.store, cid_from_bytes(fed.coordinator.global_adapter_cid()))

    report = run_round(fed)

    assert report.status == RoundStatus.COMMITTED and report.accepted == 5
    node = fed.participants[0]
    accepted, _ = node.gate_submissions(1, fed.coordinator.submissions(1), previous)
    assert node.aggregate(1, previous, accepted, pin=False).cid == report.committed_cid
    fedavg = build_aggregate(fed.store, 1, previous, accepted, fed.model_dir, node.params, aggregator=FedAvg(),
                             pin=False, max_sample_count=fed.coordinator.max_sample_count())
    assert fedavg.cid != report.committed_cid  # the spec's aggregator, not the old hard-wired FedAvg
    # the auditor, reading the spec by its on-chain CID, rebuilds the round with the same aggregator
    audit = _audit(fed)
    assert not audit.failures, [f.line() for f in audit.failures]
    assert {f.round for f in audit.findings if f.check == "aggregate-cid" and f.status == PASS
            and "reproduced" in f.detail} == {1}


def _audit(fed: Federation) -> AuditReport:
    target = AuditTarget(chain_id=int(fed.coordinator.w3.eth.chain_id), address=fed.coordinator.address,
                         block=fed.coordinator.deployment_block)
    return run_audit(fed.coordinator.w3, target, ContentSource(fed.store), model_dir=fed.model_dir,
                     model_search=[], show_progress=False)


def test_an_exact_lora_federation_carries_its_residual_and_the_audit_reproduces_it(
        tmp_path: Path, tiny_model_dir: Path, tiny_train_params) -> None:
    from flare_chain.node.bundles import EXACT_RESIDUAL_FILE

    # members tolerate any loss rise: on three non-IID nodes one member's own held-out loss may rise in
    # round 2 and it votes no by its own judgement; this test is about carrying and reproducing the residual
    gates = GateSettings(norm=False, direction=False, probe_loss=False, mutual_information=False)
    spec = FederationSpec(name="exact federation", lora=tiny_train_params, gates=gates,
                          committee=CommitteeSpec(vote_tolerance=1.0),
                          aggregator=AggregatorSpec(name="exact_lora", exact_residual_rank=3))
    config = FederationConfig(nodes=3, rounds=2, work_dir=tmp_path, model_dir=tiny_model_dir, spec=spec,
                              expected_committee_size=20, min_committee_size=2, show_progress=False)
    fed = setup_federation(config)

    reports = [run_round(fed), run_round(fed)]

    assert [r.status for r in reports] == [RoundStatus.COMMITTED] * 2
    bundles = [fetch_global_bundle(fed.store, r.committed_cid) for r in reports]
    for r in reports:
        assert EXACT_RESIDUAL_FILE in {e.name for e in fed.store.ls(r.committed_cid)}
    ranks = {t.shape[0] for b in bundles for k, t in b.residual.items() if k.endswith("lora_A.weight")}
    assert ranks == {3}  # 3 nodes x rank 4 = 12 directions: 4 in the adapter, the 3 strongest carried
    # round 2 was built on round 1's pinned residual: without it the same updates give another adapter
    node = fed.participants[0]
    accepted, _ = node.gate_submissions(2, fed.coordinator.submissions(2), bundles[0])
    forgetful = type(bundles[0])(cid=bundles[0].cid, tensors=bundles[0].tensors, manifest=bundles[0].manifest)
    assert node.aggregate(2, bundles[0], accepted, pin=False).cid == reports[1].committed_cid
    assert node.aggregate(2, forgetful, accepted, pin=False).cid != reports[1].committed_cid

    audit = _audit(fed)
    assert not audit.failures, [f.line() for f in audit.failures]
    rebuilt = {f.round for f in audit.findings if f.check == "aggregate-cid" and f.status == PASS
               and "reproduced" in f.detail}
    assert rebuilt == {1, 2}


def test_a_local_dp_federation_commits_noised_updates(tmp_path: Path, tiny_model_dir: Path, tiny_train_params) -> None:
    from flare_chain.lora.files import Manifest
    from flare_chain.node.bundles import MANIFEST_FILE
    from flare_chain.protocol.spec import PrivacySpec

    dp = PrivacySpec(enabled=True, clip_norm=0.5, noise_multiplier=0.3)
    # members tolerate any loss rise here: this test is about the DP mechanics, not whether noise helps
    spec = FederationSpec(name="dp federation", lora=tiny_train_params, privacy=dp,
                          committee=CommitteeSpec(vote_tolerance=1.0))
    config = FederationConfig(nodes=3, rounds=1, work_dir=tmp_path, model_dir=tiny_model_dir, spec=spec,
                              expected_committee_size=20, min_committee_size=2, show_progress=False)
    fed = setup_federation(config)
    assert all(d.residuals is None for d in fed.daemons)  # noise is full-rank: updates go dense
    report = run_round(fed)
    assert report.status == RoundStatus.COMMITTED and report.accepted == 3
    for sub in fed.coordinator.submissions(1):
        manifest = Manifest.from_bytes(fed.store.cat(f"{cid_from_bytes(sub.cid)}/{MANIFEST_FILE}"))
        assert manifest.metrics["dp_clip_norm"] == 0.5 and manifest.metrics["dp_noise_multiplier"] == 0.3
    # the auditor passes the round and reports each node's privacy loss at the spec's delta
    audit = _audit(fed)
    assert not audit.failures, [f.line() for f in audit.failures]
    epsilon = audit.rounds[0].epsilon
    assert sorted(epsilon, key=str.lower) == sorted((s.node for s in fed.coordinator.submissions(1)), key=str.lower)
    assert all(0 < e < float("inf") for e in epsilon.values())
