"""Members computing under different ATEN_CPU_CAPABILITY values reach the same verdicts and the same CID.

The leader gates and aggregates in this process (the CPU's native kernels);
three members review in child processes forced to ``default`` (no SIMD),
``avx2`` and the native capability. Every gate runs, model-based ones
included (probe loss on the public probe corpus, MI filter), on really trained
updates of which two are sign-flipped.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from flare_chain import attacks
from flare_chain.aggregation import GateSettings
from flare_chain.chain import Submission
from flare_chain.committee.aggregate import build_aggregate, check_submissions
from flare_chain.ipfs import ContentStore, cid_to_bytes
from flare_chain.lora.adapter import initial_adapter
from flare_chain.lora.domains import available_domains, domain_texts
from flare_chain.lora.probe_corpus import reference_probe_texts
from flare_chain.lora.skills import skills_node_data, skills_probe_corpus
from flare_chain.lora.train import train_lora
from flare_chain.node.bundles import (
    fetch_global_bundle,
    pin_global_bundle,
    pin_probe_corpus,
    pin_update_bundle,
)
from flare_chain.node.participant import initial_global_manifest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("_member_child.py")
FLIPPED = (1, 4)
SEED = b"\x07" * 32
CAPABILITIES = ["default", "avx2", None]  # None: whatever this CPU does best
# The committee's settings: every gate but direction, which would catch round-1 sign flips before the
# model-based gates see them (honest first-round updates still point the same way). The probe-loss gate
# runs its plain z rule: the spread and outlier rules have their own tests (test_probe_loss,
# test_probe_skew), and on this tiny model the outlier rule lets one of the two flips through.
COMMITTEE = GateSettings(direction=False, probe_loss_spread_z=None, probe_loss_outlier_z=None)


def _supported() -> list[str | None]:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return [c for c in CAPABILITIES if c in (None, "default") or c in flags]


def _member(job: Path, out: Path, capability: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    if capability is not None:
        env["ATEN_CPU_CAPABILITY"] = capability
    run = subprocess.run([sys.executable, str(CHILD), str(job), str(out)], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(out.read_text())


def _pin_round(store: ContentStore, model_dir: Path, params, probe_corpus, datasets: list) -> tuple:
    """Round 0's adapter and ``probe_corpus`` pinned, then one first-round update per dataset (the FLIPPED
    ones negated) pinned as a submission; returns (store, round 0's bundle, submissions)."""
    start = initial_adapter(model_dir, params, seed=0)
    probe_cid = pin_probe_corpus(store, probe_corpus)
    manifest0 = initial_global_manifest(model_dir, params, start, probe_cid=probe_cid)
    previous_cid = pin_global_bundle(store, start, manifest0, model_dir, params)
    subs = []
    for i, data in enumerate(datasets):
        node = f"0x{i + 1:040x}"
        result = train_lora(model_dir, data, params, start_adapter=start, show_progress=False)
        delta = attacks.sign_flip(result.delta) if i in FLIPPED else result.delta
        manifest = manifest0.model_copy(update={"kind": "delta", "round": 1, "node": node,
                                                "sample_count": result.sample_count})
        cid, digest = pin_update_bundle(store, delta, manifest)
        subs.append(Submission(round_id=1, node=node, cid=cid_to_bytes(cid), sample_count=result.sample_count,
                               manifest_hash=digest, block_number=1, tx_hash="0x"))
    return store, fetch_global_bundle(store, previous_cid), subs


@pytest.fixture(scope="module")
def round_on_disk(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tiny_train_params):
    """Six trained first-round updates (two negated), the probe corpus and round 0's adapter, pinned on disk."""
    return _pin_round(ContentStore(tmp_path_factory.mktemp("cross-cpu-ipfs")), tiny_model_dir, tiny_train_params,
                      reference_probe_texts(bytes_per_domain=2048),
                      [domain_texts(d) for d in available_domains()[:6]])


def test_members_on_different_cpu_kernels_agree_with_the_leader(round_on_disk, tiny_model_dir, tiny_train_params,
                                                                tmp_path: Path) -> None:
    store, previous, subs = round_on_disk
    common = dict(model_dir=tiny_model_dir, params=tiny_train_params, probe_seed=SEED)

    # Leader, honest.
    strict = COMMITTEE
    honest_set, rejected = check_submissions(store, 1, subs, previous, gates=strict, **common)
    flipped = {subs[i].node for i in FLIPPED}
    assert {r.node for r in rejected} == flipped, [(r.node, r.gate) for r in rejected]
    honest = [u.submission.node for u in honest_set]
    honest_cid = build_aggregate(store, 1, previous, honest_set, tiny_model_dir, tiny_train_params, pin=False,
                                 max_sample_count=10**6).cid

    # The knife edge: the probe-loss threshold exactly at one negated update's z as computed here (MI off, so
    # the probe decides alone). A leader whose CPU put that z one ulp lower accepts the update; on this
    # machine the strict rule rejects it.
    z: dict[str, float] = {}

    def record(assessed):
        z.update({d.node: c.value for d in assessed if d.gate == "probe_loss" and d.rejected
                  for c in d.comparisons if c.statistic == "probe_z"})
        return {d.node: d.reason for d in assessed if d.rejected}

    check_submissions(store, 1, subs, previous, gates=strict, settle=record, **common)
    edge = min((n for n in z if math.isfinite(z[n])), key=str.lower)
    other = next(n for n in flipped if n != edge)
    knife = dict(direction=False, mutual_information=False, probe_loss_spread_z=None,  # the probe-loss z alone
                 probe_loss_outlier_z=None)
    edge_settings = GateSettings(**knife, probe_loss_z=z[edge])
    leader_view = GateSettings(**knife, probe_loss_z=math.nextafter(z[edge], math.inf))
    edge_leader, _ = check_submissions(store, 1, subs, previous, gates=leader_view, **common)
    edge_set = [u.submission.node for u in edge_leader]
    assert edge in edge_set and other not in edge_set
    edge_cid = build_aggregate(store, 1, previous, edge_leader, tiny_model_dir, tiny_train_params, pin=False,
                               max_sample_count=10**6).cid
    here, _ = check_submissions(store, 1, subs, previous, gates=edge_settings, **common)
    assert edge not in [u.submission.node for u in here]  # strict comparison: this member would vote no

    def job(settings: GateSettings, scenarios: dict[str, list[str]], name: str) -> Path:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({
            "store": str(store.root), "model_dir": str(tiny_model_dir), "params": tiny_train_params.model_dump_json(),
            "gates": settings.model_dump_json(), "previous_cid": previous.cid, "seed": SEED.hex(),
            "submissions": [{"round_id": s.round_id, "node": s.node, "cid": s.cid.hex(),
                             "sample_count": s.sample_count, "manifest_hash": s.manifest_hash.hex()} for s in subs],
            "scenarios": scenarios}))
        return path

    default_job = job(strict, {
        "honest": honest,
        "leaves_out_honest": [n for n in honest if n != honest[0]],   # an honest update far from any threshold
        "includes_flipped": sorted([*honest, other], key=str.lower),  # z far above 3
    }, "default")
    edge_job = job(edge_settings, {"edge": edge_set}, "edge")

    spread: dict[str, float] = defaultdict(float)
    reference: dict[tuple[str, str, str], float] = {}
    for capability in _supported():
        tag = capability or "native"
        out = _member(default_job, tmp_path / f"default-{tag}.out", capability)
        if capability is not None:
            assert out["capability"].lower() == capability.lower()
        v = out["verdicts"]
        assert v["honest"]["defensible"] and v["honest"]["cid"] == honest_cid, (tag, v["honest"])
        assert [n for n, _ in v["leaves_out_honest"]["disputes"]] == [honest[0]], tag
        assert [n for n, _ in v["includes_flipped"]["disputes"]] == [other], tag
        for s in out["statistics"]:
            key = (s["gate"], s["node"], s["statistic"])
            if key in reference and math.isfinite(s["value"]):
                spread[s["statistic"]] = max(spread[s["statistic"]], abs(s["value"] - reference[key]))
            reference.setdefault(key, s["value"])

        edge_out = _member(edge_job, tmp_path / f"edge-{tag}.out", capability)
        e = edge_out["verdicts"]["edge"]
        assert e["defensible"] and e["cid"] == edge_cid, (tag, e)
        # The strict rule's vote on this member depends on the last bits of its z; the band rule's does not.
        strict_yes = sorted(edge_out["strict_accepted"], key=str.lower) == sorted(edge_set, key=str.lower)
        assert strict_yes == (not any(edge in t and "kept" in t for t in e["tolerated"])), (tag, e)

    # What differs between CPU kernels stays inside half of every band (the bands have no relative part).
    bands = strict.bands
    for statistic, delta in spread.items():
        assert delta <= bands.band(statistic).width(0.0) / 2, (statistic, delta)
    print("largest difference between CPU capabilities per statistic:", dict(spread))


# The default probe rule on a records corpus: responses scored, a harmful update standing out by the round's
# spread or by its rise share (probe_standout), every band-judged statistic of it compared across kernels.
RECORDS_COMMITTEE = GateSettings(direction=False)


@pytest.fixture(scope="module")
def records_round_on_disk(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tiny_train_params):
    """Six first-round updates trained on skills records (two negated), a records probe corpus, round 0."""
    return _pin_round(ContentStore(tmp_path_factory.mktemp("cross-cpu-records-ipfs")), tiny_model_dir,
                      tiny_train_params, skills_probe_corpus(records=96),
                      [skills_node_data(i, 6, records_per_node=60) for i in range(6)])


def test_members_agree_on_a_records_probe_under_the_default_probe_rule(records_round_on_disk, tiny_model_dir,
                                                                       tiny_train_params, tmp_path: Path) -> None:
    store, previous, subs = records_round_on_disk
    common = dict(model_dir=tiny_model_dir, params=tiny_train_params, probe_seed=SEED)
    statistics: list[tuple[str, str, str, float]] = []

    def record(assessed):
        statistics.extend((d.gate, d.node, c.statistic, c.value) for d in assessed for c in d.comparisons)
        return {d.node: d.reason for d in assessed if d.rejected}

    accepted, rejected = check_submissions(store, 1, subs, previous, gates=RECORDS_COMMITTEE, settle=record,
                                           **common)
    flipped = {subs[i].node for i in FLIPPED}
    # On this tiny model one negated update stands out (by its rise share) and is left out; the other does
    # not stand out and passes. What matters here is that every member draws the same line. No honest update
    # is left out.
    assert {r.node for r in rejected} and {r.node for r in rejected} <= flipped, [(r.node, r.gate) for r in rejected]
    probe_stats = {s for g, _, s, _ in statistics if g == "probe_loss"}
    assert {"probe_z", "probe_standout"} <= probe_stats, probe_stats  # the whole rule ran, not a stand-down
    leader = [u.submission.node for u in accepted]
    leader_cid = build_aggregate(store, 1, previous, accepted, tiny_model_dir, tiny_train_params, pin=False,
                                 max_sample_count=10**6).cid
    job = tmp_path / "records.json"
    job.write_text(json.dumps({
        "store": str(store.root), "model_dir": str(tiny_model_dir), "params": tiny_train_params.model_dump_json(),
        "gates": RECORDS_COMMITTEE.model_dump_json(), "previous_cid": previous.cid, "seed": SEED.hex(),
        "submissions": [{"round_id": s.round_id, "node": s.node, "cid": s.cid.hex(), "sample_count": s.sample_count,
                         "manifest_hash": s.manifest_hash.hex()} for s in subs],
        "scenarios": {"leader": leader}}))
    reference = {(g, n, s): v for g, n, s, v in statistics}
    spread: dict[str, float] = defaultdict(float)
    for capability in _supported():
        tag = capability or "native"
        out = _member(job, tmp_path / f"records-{tag}.out", capability)
        assert sorted(out["strict_accepted"], key=str.lower) == sorted(leader, key=str.lower), tag
        verdict = out["verdicts"]["leader"]
        assert verdict["defensible"] and verdict["cid"] == leader_cid, (tag, verdict)
        for s in out["statistics"]:
            key = (s["gate"], s["node"], s["statistic"])
            assert key in reference, (tag, key)  # the member judged what the leader judged
            if math.isfinite(s["value"]) and math.isfinite(reference[key]):
                spread[s["statistic"]] = max(spread[s["statistic"]], abs(s["value"] - reference[key]))
    for statistic, delta in spread.items():
        assert delta <= RECORDS_COMMITTEE.bands.band(statistic).width(0.0) / 2, (statistic, delta)
    print("records probe: largest difference between CPU capabilities per statistic:", dict(spread))
