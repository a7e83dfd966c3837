"""Rounds judged with a public probe corpus: the auditor re-runs the probe-loss gate, or says it cannot."""

from __future__ import annotations

import shutil
from pathlib import Path

from flare_chain.audit import UNVERIFIABLE, ContentSource, run_audit
from flare_chain.audit.simulate import simulate
from flare_chain.ipfs import ContentStore, KuboClient, serve_in_thread
from flare_chain.node.bundles import fetch_global_bundle


def test_the_auditor_reproduces_probe_gated_rounds_and_needs_the_corpus_to(tmp_path: Path, tiny_model_dir: Path,
                                                                           tiny_train_params) -> None:
    fed = simulate(tmp_path / "store", tiny_model_dir, tiny_train_params, nodes=5, probe_corpus=True)
    fed.run_round()
    probe_cid = fetch_global_bundle(fed.store, fed.initial_cid).manifest.probe_cid
    assert probe_cid is not None

    def audit(store: ContentStore):  # -> AuditReport
        return run_audit(fed.coordinator.w3, fed.target, ContentSource(store), model_dir=fed.model_dir,
                         model_search=[], show_progress=False)

    assert audit(fed.store).ok
    # Over a Kubo endpoint with an empty cache (how `flare-chain audit --ipfs` runs against a devnet), the
    # corpus is pulled like every other object before the gates read it.
    server = serve_in_thread(fed.store)
    try:
        with KuboClient(server.url) as kubo:
            over_http = run_audit(fed.coordinator.w3, fed.target, ContentSource(ContentStore(tmp_path / "cache"), kubo),
                                  model_dir=fed.model_dir, model_search=[], show_progress=False)
    finally:
        server.close()
    assert over_http.ok, [f.line() for f in over_http.findings if f.status != "pass"]
    shutil.copytree(fed.store.root, tmp_path / "without-corpus")
    partial = ContentStore(tmp_path / "without-corpus")
    partial.block_path(probe_cid).unlink()

    report = audit(partial)

    assert not report.failures and not report.ok
    details = [f.detail for f in report.unverifiable if f.check == "accepted-set"]
    assert details and all(probe_cid in d and "cannot be re-run" in d for d in details)
    assert {f.status for f in report.findings if f.check == "aggregate-cid"} == {UNVERIFIABLE}
