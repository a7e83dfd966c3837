"""Misbehaving nodes against the real round: the contract, the store and the checks hold."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from flare_chain.chain import RoundStatus
from flare_chain.committee.aggregate import check_submissions
from flare_chain.federation import Federation, FederationConfig, run_round, setup_federation
from flare_chain.ipfs import cid_to_bytes
from flare_chain.lora.files import Manifest, tensor_shapes
from flare_chain.node.bundles import pin_update_bundle, with_accepted_list
from flare_chain.node.daemon import Daemon
from flare_chain.node.localnet import restart_as

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def fed(tmp_path: Path, tiny_model_dir: Path, tiny_train_params) -> Federation:
    # k=30 of 3 equal stakes: each node draws a Poisson(10) weight, so all three (seated but for
    # p = e^-10 each) judge each proposal
    return setup_federation(FederationConfig(nodes=3, rounds=1, work_dir=tmp_path, model_dir=tiny_model_dir,
                                             train=tiny_train_params, expected_committee_size=30,
                                             show_progress=False))


def _swap(fed: Federation, index: int, cls: type[Daemon]) -> Daemon:
    """Restart node ``index`` running ``cls``: an operator running modified node code."""
    return restart_as(fed.net, index, cls)


def _swap_all(fed: Federation, cls: type[Daemon]) -> None:
    """Give every node ``cls``'s proposing code: whoever sortition makes leader misbehaves.

    The leader is only known once seats are claimed, inside the round; the
    classes below change ``build_proposal`` alone, so every member still reviews honestly.
    """
    for i in range(len(fed.daemons)):
        _swap(fed, i, cls)


class ManifestLiar(Daemon):
    """Pins a NaN delta behind a manifest that claims finite and 10,000 samples, and submits it."""

    def encode_update(self, round_id: int, delta, manifest: Manifest):
        nan = {k: torch.full_like(v, float("nan")) for k, v in delta.items()}
        lie = manifest.model_copy(update={"sample_count": 10_000, "shapes": tensor_shapes(nan)})
        return unchecked_bundle_files(nan, lie), {}


def unchecked_bundle_files(delta, manifest: Manifest) -> dict[str, bytes]:
    """Bypass encode-time checks the way an attacker's own code would."""
    from safetensors.torch import save

    return {"delta.safetensors": save({k: v.contiguous() for k, v in delta.items()}),
            "manifest.json": manifest.to_bytes()}


def test_nan_update_is_left_out_and_the_round_still_commits(fed: Federation) -> None:
    liar = _swap(fed, 1, ManifestLiar)
    report = run_round(fed)
    assert report.status == RoundStatus.COMMITTED
    assert (report.submissions, report.accepted, report.rejected) == (3, 2, 1)
    proposal = fed.coordinator.proposal(1)
    assert proposal is not None
    assert liar.address not in (with_accepted_list(fed.store, proposal).accepted or ())
    assert report.global_loss < fed.base_loss


def test_manifest_hash_mismatch_is_rejected_by_gating(fed: Federation) -> None:
    # Prepare: node 1 pins an honest-looking update but submits a different manifest hash
    node = fed.participants[0]
    round_id, _ = fed.coordinator.open_round(fed.owner, 40, 10, 10, 20, expected_committee_size=30)
    previous = node.pull_global()
    delta = {k: torch.zeros_like(v) for k, v in previous.tensors.items()}
    manifest = previous.manifest.model_copy(update={"kind": "delta", "round": round_id, "node": node.address,
                                                    "sample_count": 5})
    cid, _digest = pin_update_bundle(fed.store, delta, manifest)
    fed.coordinator.submit_update(node.account, round_id, cid_to_bytes(cid), 5, b"\x11" * 32)
    # Execute
    accepted, rejected = check_submissions(fed.store, round_id, fed.coordinator.submissions(round_id), previous)
    # Assert
    assert accepted == []
    assert len(rejected) == 1 and "manifest" in rejected[0].reason and "chain records" in rejected[0].reason


class ExcludingLeader(Daemon):
    """Leaves the highest-address honest update out of its proposal."""

    def build_proposal(self, round_id, previous):
        accepted, rejected = self.participant.gate_submissions(round_id, self.coordinator.submissions(round_id),
                                                               previous)
        kept = sorted(accepted, key=lambda u: u.submission.node.lower())[:-1]
        return self.participant.aggregate(round_id, previous, kept), rejected


def test_leader_excluding_an_honest_update_is_voted_down_and_previous_adapter_stays(fed: Federation) -> None:
    before = fed.coordinator.global_adapter_cid()
    _swap_all(fed, ExcludingLeader)
    report = run_round(fed)
    assert report.committee_size == 3
    # every member excludes the same way, so each rank's proposal is voted down in turn (the fallback)
    proposals = fed.coordinator.proposals(report.round_id)
    assert [p.rank for p in proposals] == [0, 1, 2] and proposals[0].proposer == fed.coordinator.leader(report.round_id)
    assert all(p.accepted_count == 2 for p in proposals)  # the chain keeps the count and root; the list is in IPFS
    assert report.status == RoundStatus.FAILED
    assert report.committed_cid is None
    assert fed.coordinator.global_adapter_cid() == before
    assert any(n.vote is False for n in report.nodes)


class ForgingLeader(Daemon):
    """Proposes the right accepted set but an adapter it scaled by 10."""

    def build_proposal(self, round_id, previous):
        accepted, rejected = self.participant.gate_submissions(round_id, self.coordinator.submissions(round_id),
                                                               previous)
        honest = self.participant.aggregate(round_id, previous, accepted, pin=False)
        from flare_chain.node.bundles import pin_global_bundle

        forged = {k: v * 10 for k, v in honest.adapter.items()}
        cid = pin_global_bundle(self.store, forged, honest.manifest, self.model_dir, self.params)
        return dataclasses.replace(honest, cid=cid, adapter=forged), rejected


def test_forged_aggregate_is_not_reproduced_and_round_fails(fed: Federation) -> None:
    before = fed.coordinator.global_adapter_cid()
    _swap_all(fed, ForgingLeader)
    report = run_round(fed)
    proposals = fed.coordinator.proposals(report.round_id)  # every rank forges, every forgery is voted down
    assert [p.rank for p in proposals] == list(range(report.committee_size))
    assert report.status == RoundStatus.FAILED
    # every member that voted said no; with seat weights one heavy "no" can already make approval impossible
    votes = [n.vote for n in report.committee if n.vote is not None]
    assert votes and not any(votes)
    assert fed.coordinator.global_adapter_cid() == before


def test_demo_attackers_submit_their_crafted_update_and_the_committee_leaves_them_out(
        tmp_path: Path, tiny_model_dir: Path, tiny_train_params) -> None:
    # The demo's --attack: the last node submits an update whose tensors do not have the adapter's shapes
    # instead of what it trained; every member's policy gate refuses it, and the round commits the two
    # honest updates alone. (NaN and Inf attackers are refused by their own node's encoder: nothing is sent.)
    import math

    from flare_chain.federation import run_federation

    config = FederationConfig(nodes=3, rounds=1, work_dir=tmp_path, model_dir=tiny_model_dir,
                              train=tiny_train_params, expected_committee_size=30, show_progress=False,
                              local_only=False, attack="wrong_shape", attackers=1)
    assert [config.attack_of(i) for i in range(3)] == [None, None, "wrong_shape"]
    report = run_federation(config)
    (r,) = report.rounds
    assert r.status == RoundStatus.COMMITTED and (r.submissions, r.accepted, r.rejected) == (3, 2, 1)
    assert all(math.isfinite(n.loss_after) for n in r.nodes) and math.isfinite(report.final_loss)


def test_a_demo_attack_a_lone_node_cannot_craft_or_without_honest_nodes_is_refused(tmp_path: Path) -> None:
    from flare_chain.errors import ConfigError

    with pytest.raises(ConfigError, match=r"a daemon runs .*sign_flip"):
        FederationConfig.build(nodes=3, work_dir=tmp_path, attack="alie")
    with pytest.raises(ConfigError, match=r"unknown attack 'bogus'"):
        FederationConfig.build(nodes=3, work_dir=tmp_path, attack="bogus")
    with pytest.raises(ConfigError, match="leaves no honest node"):
        FederationConfig.build(nodes=3, work_dir=tmp_path, attack="nan", attackers=3)
