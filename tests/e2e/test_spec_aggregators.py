"""A federation deployed with each aggregator in its spec commits rounds built with that aggregator."""

from __future__ import annotations

from pathlib import Path

import pytest

from flare_chain.aggregation import FedAvg
from flare_chain.aggregation.pipeline import GateSettings
from flare_chain.chain import RoundStatus
from flare_chain.committee.aggregate import build_aggregate
from flare_chain.federation import FederationConfig, run_round, setup_federation
from flare_chain.ipfs import cid_from_bytes
from flare_chain.node.bundles import fetch_global_bundle
from flare_chain.protocol.spec import AggregatorSpec, FederationSpec, fetch_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.parametrize("aggregator", ["trimmed_mean", "median", "multi_krum"])
def test_each_spec_aggregator_commits_its_own_aggregate(tmp_path: Path, tiny_model_dir: Path, tiny_train_params,
                                                        aggregator: str) -> None:
    # statistical gates off: on five non-IID stdlib domains the direction gate may leave an honest node out,
    # and this test is about what the aggregator does with a known accepted set
    gates = GateSettings(norm=False, direction=False, probe_loss=False, mutual_information=False)
    spec = FederationSpec(name=f"{aggregator} federation", lora=tiny_train_params, gates=gates,
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


def test_a_local_dp_federation_commits_noised_updates(tmp_path: Path, tiny_model_dir: Path, tiny_train_params) -> None:
    from flare_chain.lora.files import Manifest
    from flare_chain.node.bundles import MANIFEST_FILE
    from flare_chain.protocol.spec import CommitteeSpec, PrivacySpec

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
