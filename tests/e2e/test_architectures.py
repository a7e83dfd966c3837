"""A federation runs unchanged on other architectures, each with its own tokenizer, and audits clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from flare_chain.aggregation import GateSettings
from flare_chain.audit import PASS, ContentSource, run_audit
from flare_chain.audit.simulate import simulate
from flare_chain.chain import RoundStatus
from flare_chain.federation import FederationConfig, run_federation
from flare_chain.ipfs import ContentStore
from flare_chain.lora.files import Manifest
from flare_chain.node.bundles import GLOBAL_MANIFEST_FILE
from flare_chain.protocol.spec import FederationSpec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TARGETS = {"gpt2": ["attn.c_proj", "c_attn"], "gpt_neox": ["dense", "query_key_value"]}


@pytest.mark.parametrize("family", sorted(TARGETS))
def test_a_round_commits_on_the_architecture_with_its_detected_targets(
    family: str, tmp_path: Path, arch_model_dirs: dict[str, Path], tiny_train_params
) -> None:
    # Prepare: 4 nodes, k=20, on a random-weight checkpoint with its own BPE tokenizer. The MI filter is off:
    # a random-weight model's argmax predictions carry no task signal, so its NMI scores are noise (it left
    # one honest node out at z -3.6 against a threshold of -3.5); this test is about the architecture.
    spec = FederationSpec(lora=tiny_train_params, gates=GateSettings(mutual_information=False))
    config = FederationConfig(nodes=4, rounds=1, work_dir=tmp_path, model_dir=arch_model_dirs[family],
                              train=tiny_train_params, expected_committee_size=20, min_committee_size=2,
                              show_progress=False, spec=spec)
    # Execute
    report = run_federation(config)
    # Assert: every update passed the gates and the committed adapter records the detected targets
    (r,) = report.rounds
    assert r.status == RoundStatus.COMMITTED and (r.submissions, r.accepted, r.rejected) == (4, 4, 0)
    assert report.final_loss < report.base_loss
    store = ContentStore(tmp_path / "ipfs")
    manifest = Manifest.from_bytes(store.cat(f"{r.committed_cid}/{GLOBAL_MANIFEST_FILE}"))
    assert manifest.target_modules == TARGETS[family]


def test_an_audit_of_a_gpt2_history_reproduces_every_round(
    tmp_path: Path, arch_model_dirs: dict[str, Path], tiny_train_params
) -> None:
    fed = simulate(tmp_path / "store", arch_model_dirs["gpt2"], tiny_train_params, nodes=4)
    fed.run_round()
    fed.run_round()
    report = run_audit(fed.coordinator.w3, fed.target, ContentSource(fed.store), model_dir=fed.model_dir,
                       model_search=[], show_progress=False)
    assert report.ok, [f.line() for f in report.findings if f.status != PASS]
    assert [r.result for r in report.rounds] == [PASS, PASS]
