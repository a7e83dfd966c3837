"""The tolerance-band rule for a leader's accepted set: statistics at a threshold go either way, others do not."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from flare_chain.aggregation import GateSettings
from flare_chain.aggregation.anomaly import NormAnomalyGate
from flare_chain.aggregation.base import ClientUpdate
from flare_chain.aggregation.gates import Comparison, GateContext, GateDecision
from flare_chain.aggregation.tolerance import Band, ToleranceBands, in_band
from flare_chain.chain import Submission
from flare_chain.committee.aggregate import build_aggregate, check_submissions, review_accepted_set
from flare_chain.committee.verdict import SetVerdict, may_pass, may_reject
from flare_chain.errors import ConfigError
from flare_chain.ipfs import ContentStore, cid_to_bytes
from flare_chain.lora.adapter import initial_adapter
from flare_chain.node.bundles import GlobalAdapter, pin_update_bundle
from flare_chain.node.participant import initial_global_manifest

BANDS = ToleranceBands()
NORM_ONLY = dict(direction=False, mutual_information=False, probe_loss=False)


def _decision(value: float, threshold: float, *, statistic: str = "probe_z") -> GateDecision:
    """What a gate that rejects when ``value >= threshold`` decides on this machine."""
    rejects = value >= threshold
    return GateDecision("probe_loss", "0xaa", "harmful" if rejects else None,
                        (Comparison(statistic, value, threshold, rejects=rejects),))


# ------------------------------------------------------------------------------------------ the rule itself


def test_statistic_one_ulp_across_its_threshold_flips_a_strict_verdict_but_not_the_band_rule() -> None:
    leader = _decision(math.nextafter(3.0, 0.0), 3.0)   # leader: one ulp below, passed
    member = _decision(math.nextafter(3.0, 4.0), 3.0)   # member: one ulp above, rejects on its own
    assert not leader.rejected and member.rejected      # the strict comparison disagrees
    assert may_pass(member, BANDS)                      # the band lets the leader's pass stand
    assert may_reject(_decision(math.nextafter(3.0, 0.0), 3.0), BANDS)  # and the other way round


def test_statistic_clearly_on_the_wrong_side_is_not_tolerated() -> None:
    width = BANDS.probe_z.width(3.0)
    assert not may_pass(_decision(3.0 + 2 * width, 3.0), BANDS)
    assert not may_reject(_decision(3.0 - 2 * width, 3.0), BANDS)


def test_exact_decisions_have_no_band() -> None:
    passed = GateDecision("duplicate", "0xaa", None)
    rejected = GateDecision("duplicate", "0xaa", "bit-identical")
    assert not may_reject(passed, BANDS)
    assert not may_pass(rejected, BANDS)


def test_a_rejection_needs_every_condition_and_a_pass_any_one() -> None:
    # probe-loss gate: active only when the round's median change is below 0; here it sits at 0 (in band)
    precondition = Comparison("probe_median_change", 0.0, 0.0, rejects=False)
    strong = Comparison("probe_z", 9.0, 3.0, rejects=True)
    weak = Comparison("probe_z", 0.5, 3.0, rejects=False)
    assert may_reject(GateDecision("probe_loss", "0xaa", None, (precondition, strong)), BANDS)
    assert not may_reject(GateDecision("probe_loss", "0xaa", None, (precondition, weak)), BANDS)


def test_non_finite_statistics_are_never_in_a_band() -> None:
    assert not in_band(Comparison("probe_z", math.inf, 3.0, rejects=True), BANDS)
    assert not in_band(Comparison("probe_z", math.nan, 3.0, rejects=False), BANDS)


def test_band_width_is_absolute_plus_relative_and_unknown_statistics_are_named() -> None:
    assert Band(absolute=0.1, relative=0.01).width(-3.0) == pytest.approx(0.13)
    with pytest.raises(ConfigError, match="no tolerance band for gate statistic 'loss_ratio'"):
        in_band(Comparison("loss_ratio", 1.0, 1.0, rejects=False), BANDS)


def test_the_verdict_summary_names_tolerated_calls_and_counts_further_disputes() -> None:
    # The one line a member logs and records with its vote: band calls are named, never hidden
    tolerated = ["0xaa kept at norm (norm_z 3.5 vs threshold 3.5)"]
    assert SetVerdict().summary() == "accepted set matches the gates"
    assert SetVerdict(tolerated=tolerated).summary() == f"accepted set defensible; within tolerance: {tolerated[0]}"
    one = [("0xbb", "excludes 0xbb, whose update passes the gates")]
    assert SetVerdict(disputes=one).summary() == f"accepted set not defensible: {one[0][1]}"
    two = [*one, ("0xcc", "includes 0xcc, which submitted nothing this round")]
    assert SetVerdict(disputes=two, tolerated=tolerated).summary() == (
        f"accepted set not defensible: {one[0][1]} (+1 more)")


def test_gates_record_the_statistic_and_threshold_of_each_decision() -> None:
    gen = torch.Generator().manual_seed(3)
    updates = [ClientUpdate(f"0x{i:040x}", {"w": torch.randn(8, generator=gen) * (40.0 if i == 5 else 1.0)}, 1)
               for i in range(6)]
    decisions = NormAnomalyGate(3.5).assess(updates, GateContext({"w": torch.zeros(8)}))
    assert [d.node for d in decisions] == [u.node for u in updates]
    assert all(len(d.comparisons) == 1 and d.comparisons[0].statistic == "norm_z" for d in decisions)
    assert all(d.comparisons[0].threshold == 3.5 for d in decisions)
    assert [d.rejected for d in decisions] == [False] * 5 + [True]
    assert all(d.rejected == d.comparisons[0].rejects for d in decisions)


# --------------------------------------------------------------- on pinned updates, as a member reviews them


@pytest.fixture(scope="module")
def pinned_round(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tiny_train_params):
    """Seven synthetic updates around one direction, sizes spread; node 7's is 60× the others (an attack)."""
    store = ContentStore(tmp_path_factory.mktemp("verdict-ipfs"), durable=False)
    start = initial_adapter(tiny_model_dir, tiny_train_params, seed=0)
    gen = torch.Generator().manual_seed(11)
    common = {k: torch.randn(v.shape, generator=gen) for k, v in start.items()}
    subs = []
    for i in range(7):
        scale = (1.0 + 0.15 * i) * (60.0 if i == 6 else 1.0) * 1e-3
        delta = {k: (common[k] + 0.3 * torch.randn(v.shape, generator=gen)) * scale for k, v in start.items()}
        node = f"0x{i + 1:040x}"
        manifest = initial_global_manifest(tiny_model_dir, tiny_train_params, start).model_copy(update={
            "kind": "delta", "round": 1, "node": node, "sample_count": 10 + i})
        cid, digest = pin_update_bundle(store, delta, manifest)
        subs.append(Submission(round_id=1, node=node, cid=cid_to_bytes(cid), sample_count=10 + i,
                               manifest_hash=digest, block_number=1, tx_hash="0x"))
    manifest = initial_global_manifest(tiny_model_dir, tiny_train_params, start)
    return store, GlobalAdapter(cid="bafy-round-0", tensors=start, manifest=manifest), subs


def _norm_z(store, previous, subs, settings: GateSettings) -> dict[str, float]:
    """|robust z| of each update's norm as the committee's norm gate computes it on this machine."""
    decisions: dict[str, float] = {}

    def record(assessed):
        for d in assessed:
            if d.gate == "norm":
                decisions[d.node] = d.comparisons[0].value
        return {d.node: d.reason for d in assessed if d.rejected}

    check_submissions(store, 1, subs, previous, gates=settings, settle=record)
    return decisions


def test_member_approves_a_leader_whose_statistic_fell_one_ulp_the_other_way(pinned_round, tiny_model_dir,
                                                                            tiny_train_params) -> None:
    store, previous, subs = pinned_round
    attacker = subs[6].node
    z = _norm_z(store, previous, subs, GateSettings(**NORM_ONLY))
    # The committee's threshold sits exactly at the largest honest statistic: a knife edge.
    edge_node = max((n for n in z if n != attacker), key=lambda n: z[n])
    settings = GateSettings(**NORM_ONLY, norm_threshold=z[edge_node])
    # A leader whose CPU put that statistic one ulp higher rejects it; that is what the pipeline then does:
    leader_view = GateSettings(**NORM_ONLY, norm_threshold=math.nextafter(z[edge_node], 0.0))
    leader_set, _ = check_submissions(store, 1, subs, previous, gates=leader_view)
    accepted = [u.submission.node for u in leader_set]
    assert edge_node not in accepted and attacker not in accepted and len(accepted) == 5
    leader_aggregate = build_aggregate(store, 1, previous, leader_set, tiny_model_dir, tiny_train_params, pin=False,
                                       max_sample_count=10**6)

    own, _ = check_submissions(store, 1, subs, previous, gates=settings)
    assert sorted(u.submission.node for u in own) != sorted(accepted)  # the old, strict rule votes no
    verdict, chosen = review_accepted_set(store, 1, subs, previous, accepted, gates=settings)
    assert verdict.defensible, verdict.summary()
    assert any(edge_node in t for t in verdict.tolerated)
    mine = build_aggregate(store, 1, previous, chosen, tiny_model_dir, tiny_train_params, pin=False,
                                       max_sample_count=10**6)
    assert mine.cid == leader_aggregate.cid


def test_member_rejects_a_set_that_leaves_out_an_update_far_from_every_threshold(pinned_round) -> None:
    store, previous, subs = pinned_round
    own, _ = check_submissions(store, 1, subs, previous, gates=GateSettings(**NORM_ONLY))
    victim = own[0].submission.node
    accepted = [u.submission.node for u in own if u.submission.node != victim]
    verdict, _ = review_accepted_set(store, 1, subs, previous, accepted, gates=GateSettings(**NORM_ONLY))
    assert not verdict.defensible
    assert verdict.disputes == [(victim, f"excludes {victim}, whose update passes the gates")]


def test_member_rejects_a_set_that_includes_an_update_clearly_over_a_threshold(pinned_round) -> None:
    store, previous, subs = pinned_round
    accepted = [s.node for s in subs]  # the 60× update included
    verdict, _ = review_accepted_set(store, 1, subs, previous, accepted, gates=GateSettings(**NORM_ONLY))
    assert [node for node, _ in verdict.disputes] == [subs[6].node]
    assert "rejected by the norm gate outside its tolerance band" in verdict.summary()


def test_member_rejects_a_set_naming_a_node_that_submitted_nothing(pinned_round) -> None:
    store, previous, subs = pinned_round
    own, _ = check_submissions(store, 1, subs, previous, gates=GateSettings(**NORM_ONLY))
    ghost = "0x" + "9" * 40
    verdict, _ = review_accepted_set(store, 1, subs, previous, [*(u.submission.node for u in own), ghost],
                                     gates=GateSettings(**NORM_ONLY))
    assert verdict.disputes == [(ghost, f"includes {ghost}, which submitted nothing this round")]
