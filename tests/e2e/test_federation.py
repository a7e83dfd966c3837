"""A short federation on the tiny model: every part real, in one process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flare_chain.chain import RoundStatus
from flare_chain.federation import FederationConfig, run_federation
from flare_chain.ipfs import ContentStore

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_federation_commits_every_round_and_global_loss_falls(tmp_path: Path, tiny_model_dir: Path,
                                                               tiny_train_params) -> None:
    # Prepare
    config = FederationConfig(nodes=3, rounds=2, work_dir=tmp_path, model_dir=tiny_model_dir,
                              train=tiny_train_params, show_progress=False)
    seen = []
    # Execute
    report = run_federation(config, on_round=seen.append)
    # Assert
    assert [r.round_id for r in report.rounds] == [1, 2]
    assert seen == report.rounds
    for r in report.rounds:
        assert r.status == RoundStatus.COMMITTED
        assert (r.submissions, r.accepted, r.rejected) == (3, 3, 0)
        assert r.approvals >= 2 and r.committee_size == 3
        assert r.committed_cid is not None and r.committed_cid.startswith("bafy")
        assert r.gas_used > 0
    assert report.rounds[0].committed_cid != report.rounds[1].committed_cid
    assert report.final_loss < report.base_loss
    # the committed adapter is a PEFT adapter whose bytes come back from the store under its CID
    store = ContentStore(tmp_path / "ipfs")
    assert report.rounds[-1].committed_cid in store.pins()
    names = sorted(e.name for e in store.ls(report.rounds[-1].committed_cid))
    assert names == ["adapter_config.json", "adapter_model.safetensors", "flare_manifest.json"]


def test_committed_adapter_loads_with_peft(tmp_path: Path, tiny_model_dir: Path, tiny_train_params) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    config = FederationConfig(nodes=2, rounds=1, work_dir=tmp_path, model_dir=tiny_model_dir,
                              train=tiny_train_params, show_progress=False)
    report = run_federation(config)
    cid = report.rounds[0].committed_cid
    assert cid is not None
    store = ContentStore(tmp_path / "ipfs")
    out = tmp_path / "fetched"
    out.mkdir()
    for entry in store.ls(cid):
        (out / entry.name).write_bytes(store.cat(f"{cid}/{entry.name}"))
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), out)
    ids = torch.arange(10).unsqueeze(0)
    with torch.no_grad():
        adapted = model(input_ids=ids).logits
        with model.disable_adapter():
            plain = model(input_ids=ids).logits
    assert not torch.allclose(adapted, plain), "the committed adapter should change the model's output"
