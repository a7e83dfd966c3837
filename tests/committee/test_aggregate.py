"""The committee's gate run on real trained updates: the probe-loss gate reads the corpus the chain names."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flare_chain import attacks
from flare_chain.aggregation import GateSettings
from flare_chain.chain import Submission
from flare_chain.committee.aggregate import check_submissions
from flare_chain.errors import StoreError
from flare_chain.ipfs import ContentStore, cid_to_bytes
from flare_chain.lora.adapter import initial_adapter
from flare_chain.lora.domains import available_domains, domain_texts
from flare_chain.lora.files import Manifest
from flare_chain.lora.probe_corpus import reference_probe_texts
from flare_chain.lora.train import train_lora
from flare_chain.node.bundles import GlobalAdapter, pin_probe_corpus, pin_update_bundle
from flare_chain.node.participant import initial_global_manifest

FLIPPED = (1, 4)
# Weight-space gates off: what is left to catch the negated updates is the probe.
PROBE_ONLY = GateSettings(direction=False, mutual_information=False, norm=False)


@pytest.fixture(scope="module")
def trained_round(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tiny_train_params):
    """Six nodes' first-round deltas on six stdlib domains, the ones in FLIPPED negated, pinned."""
    store = ContentStore(tmp_path_factory.mktemp("ipfs"), durable=False)
    start = initial_adapter(tiny_model_dir, tiny_train_params, seed=0)
    subs = []
    for i, domain in enumerate(available_domains()[:6]):
        node = f"0x{i + 1:040x}"
        result = train_lora(tiny_model_dir, domain_texts(domain), tiny_train_params, start_adapter=start,
                            show_progress=False)
        delta = attacks.sign_flip(result.delta) if i in FLIPPED else result.delta
        manifest = initial_global_manifest(tiny_model_dir, tiny_train_params, start).model_copy(update={
            "kind": "delta", "round": 1, "node": node, "sample_count": result.sample_count})
        cid, digest = pin_update_bundle(store, delta, manifest)
        subs.append(Submission(round_id=1, node=node, cid=cid_to_bytes(cid), sample_count=result.sample_count,
                               manifest_hash=digest, block_number=1, tx_hash="0x"))
    return store, start, subs


def _previous(store: ContentStore, start: dict[str, torch.Tensor], model_dir: Path, params,
              probe_cid: str | None) -> GlobalAdapter:
    manifest: Manifest = initial_global_manifest(model_dir, params, start, probe_cid=probe_cid)
    return GlobalAdapter(cid="bafy-round-0", tensors=start, manifest=manifest)


def test_sign_flipped_updates_are_left_out_by_the_probe_loss_gate(trained_round, tiny_model_dir: Path,
                                                                    tiny_train_params) -> None:
    store, start, subs = trained_round
    probe_cid = pin_probe_corpus(store, reference_probe_texts(bytes_per_domain=2048))
    previous = _previous(store, start, tiny_model_dir, tiny_train_params, probe_cid)
    accepted, rejected = check_submissions(store, 1, subs, previous, gates=PROBE_ONLY, model_dir=tiny_model_dir,
                                           params=tiny_train_params, probe_seed=b"\x07" * 32)
    # Both negated updates leave at the probe gates: the first by harm (it raises the probe loss, far beyond the
    # round's spread), the other, once the first no longer widens that spread, at the spread rule.
    assert {r.node for r in rejected} == {subs[i].node for i in FLIPPED}
    gates = {r.gate for r in rejected}
    assert "probe_loss" in gates and gates <= {"probe_loss", "probe_spread"}
    assert all("public probe text" in r.reason for r in rejected)
    assert [u.submission.node for u in accepted] == [s.node for i, s in enumerate(subs) if i not in FLIPPED]


def test_without_a_probe_corpus_in_the_manifest_the_gate_does_not_run(trained_round, tiny_model_dir: Path,
                                                                        tiny_train_params) -> None:
    store, start, subs = trained_round
    previous = _previous(store, start, tiny_model_dir, tiny_train_params, None)
    accepted, rejected = check_submissions(store, 1, subs, previous, gates=PROBE_ONLY, model_dir=tiny_model_dir,
                                           params=tiny_train_params, probe_seed=b"\x07" * 32)
    assert rejected == [] and len(accepted) == len(subs)


def test_a_probe_corpus_nobody_can_fetch_stops_the_review_with_what_to_do(trained_round, tiny_model_dir: Path,
                                                                           tiny_train_params, tmp_path: Path) -> None:
    store, start, subs = trained_round
    elsewhere = pin_probe_corpus(ContentStore(tmp_path / "elsewhere"), ["a corpus pinned on another node only"])
    previous = _previous(store, start, tiny_model_dir, tiny_train_params, elsewhere)
    with pytest.raises(StoreError, match=f"ipfs pin add {elsewhere}"):
        check_submissions(store, 1, subs, previous, gates=PROBE_ONLY, model_dir=tiny_model_dir,
                          params=tiny_train_params, probe_seed=b"\x07" * 32)


# ------------------------------------------------ which model-based gates run (synthetic updates, no training)

ALL_NODES_JUDGED = 6


@pytest.fixture(scope="module")
def synthetic_round(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tiny_train_params):
    """Six small updates around one direction, pinned with the public probe corpus (no training: seconds)."""
    store = ContentStore(tmp_path_factory.mktemp("ipfs-synthetic"), durable=False)
    start = initial_adapter(tiny_model_dir, tiny_train_params, seed=0)
    gen = torch.Generator().manual_seed(5)
    common = {k: torch.randn(v.shape, generator=gen) for k, v in start.items()}
    subs = []
    for i in range(ALL_NODES_JUDGED):
        node = f"0x{i + 1:040x}"
        delta = {k: (common[k] + 0.3 * torch.randn(v.shape, generator=gen)) * 1e-3 for k, v in start.items()}
        manifest = initial_global_manifest(tiny_model_dir, tiny_train_params, start).model_copy(update={
            "kind": "delta", "round": 1, "node": node, "sample_count": 10})
        cid, digest = pin_update_bundle(store, delta, manifest)
        subs.append(Submission(round_id=1, node=node, cid=cid_to_bytes(cid), sample_count=10,
                               manifest_hash=digest, block_number=1, tx_hash="0x"))
    probe_cid = pin_probe_corpus(store, reference_probe_texts(bytes_per_domain=1024))
    return store, start, subs, probe_cid


def _judged_by(store, previous, subs, settings: GateSettings, model_dir: Path, params) -> dict[str, set[str]]:
    """gate name -> the nodes it judged with a statistic, in one committee gate run."""
    judged: dict[str, set[str]] = {}

    def record(assessed):
        for d in assessed:
            if d.comparisons:
                judged.setdefault(d.gate, set()).add(d.node)
        return {d.node: str(d.reason) for d in assessed if d.rejected}

    check_submissions(store, 1, subs, previous, gates=settings, model_dir=model_dir, params=params,
                      probe_seed=b"\x05" * 32, settle=record)
    return judged


MODEL_GATES_ONLY = dict(direction=False, norm=False, duplicates=False, probe_loss_windows=4, probe_loss_seq_len=16,
                        probe_windows=2, probe_seq_len=16)


def test_the_probe_loss_gate_judges_every_update_when_the_chain_names_a_corpus(synthetic_round, tiny_model_dir: Path,
                                                                               tiny_train_params) -> None:
    store, start, subs, probe_cid = synthetic_round
    previous = _previous(store, start, tiny_model_dir, tiny_train_params, probe_cid)
    settings = GateSettings(mutual_information=False, **MODEL_GATES_ONLY)

    judged = _judged_by(store, previous, subs, settings, tiny_model_dir, tiny_train_params)

    assert judged.get("probe_loss") == {s.node for s in subs}
    assert "mutual_information" not in judged


def test_the_mi_filter_judges_every_update_on_the_public_probe_text(synthetic_round, tiny_model_dir: Path,
                                                                    tiny_train_params) -> None:
    store, start, subs, probe_cid = synthetic_round
    previous = _previous(store, start, tiny_model_dir, tiny_train_params, probe_cid)
    settings = GateSettings(probe_loss=False, **MODEL_GATES_ONLY)

    judged = _judged_by(store, previous, subs, settings, tiny_model_dir, tiny_train_params)

    assert judged.get("mutual_information") == {s.node for s in subs}
    assert "probe_loss" not in judged


def test_without_a_probe_corpus_the_mi_filter_judges_on_seed_windows_and_probe_loss_stays_off(
        synthetic_round, tiny_model_dir: Path, tiny_train_params) -> None:
    # Both model gates enabled, as by default, in a federation whose manifest names no probe corpus
    store, start, subs, _ = synthetic_round
    previous = _previous(store, start, tiny_model_dir, tiny_train_params, None)

    judged = _judged_by(store, previous, subs, GateSettings(**MODEL_GATES_ONLY), tiny_model_dir, tiny_train_params)

    assert judged.get("mutual_information") == {s.node for s in subs}
    assert "probe_loss" not in judged and "probe_spread" not in judged


@pytest.mark.parametrize("gate", ["probe_loss", "mutual_information"])
def test_too_few_updates_for_a_model_gate_never_fetch_its_corpus(synthetic_round, tiny_model_dir: Path,
                                                                 tiny_train_params, tmp_path: Path, gate: str) -> None:
    # Below min_candidates the model gates pass everyone: a probe corpus nobody can fetch must not stop the review
    store, start, subs, _ = synthetic_round
    elsewhere = pin_probe_corpus(ContentStore(tmp_path / "elsewhere"), ["a corpus pinned on another node only"])
    previous = _previous(store, start, tiny_model_dir, tiny_train_params, elsewhere)
    only = {"probe_loss": dict(mutual_information=False), "mutual_information": dict(probe_loss=False)}[gate]
    settings = GateSettings(min_candidates=5, **only, **MODEL_GATES_ONLY)

    accepted, rejected = check_submissions(store, 1, subs[:3], previous, gates=settings, model_dir=tiny_model_dir,
                                           params=tiny_train_params, probe_seed=b"\x05" * 32)

    assert rejected == [] and [u.submission.node for u in accepted] == [s.node for s in subs[:3]]
