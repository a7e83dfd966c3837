"""A federation on the nodes' own data, one format per node, on a model with its own tokenizer and chat template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flare_chain.audit import PASS, ContentSource, run_audit
from flare_chain.audit.deployment import AuditTarget
from flare_chain.chain import RoundStatus
from flare_chain.errors import TrainingError
from flare_chain.federation import FederationConfig, run_federation, run_round, setup_federation
from flare_chain.ipfs import ContentStore

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _write_node_data(root: Path) -> Path:
    """node-1 chat, node-2 instruction, node-3 a folder of text files, node-4 JSONL text."""
    root.mkdir()
    chat = [{"messages": [{"role": "user", "content": f"double {i}"}, {"role": "assistant", "content": str(2 * i)}]}
            for i in range(40)]
    (root / "node-1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chat))
    ins = [{"instruction": "Add one.", "input": str(i), "output": str(i + 1)} for i in range(40)]
    (root / "node-2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ins))
    (root / "node-3").mkdir()
    for i in range(4):
        (root / "node-3" / f"part-{i}.txt").write_text(" ".join(f"the node sends update {j}." for j in range(60)))
    texts = [{"text": " ".join(f"the committee checks delta {j}." for j in range(i, i + 30))} for i in range(8)]
    (root / "node-4.jsonl").write_text("".join(json.dumps(r) + "\n" for r in texts))
    return root


def test_a_round_commits_and_audits_with_each_node_on_its_own_format(
    tmp_path: Path, arch_model_dirs: dict[str, Path], tiny_train_params
) -> None:
    # Prepare
    data = _write_node_data(tmp_path / "data")
    config = FederationConfig(nodes=4, rounds=1, work_dir=tmp_path / "work", model_dir=arch_model_dirs["qwen2"],
                              data_dir=data, train=tiny_train_params.model_copy(update={"seq_len": 64}),
                              expected_committee_size=20, min_committee_size=2, show_progress=False)
    # Execute
    fed = setup_federation(config)
    r = run_round(fed)
    # Assert: supervised nodes hold padded examples, text nodes windows; the round commits and audits clean
    assert [p.val_windows.attention_mask is not None for p in fed.participants] == [True, True, False, False]
    assert r.status == RoundStatus.COMMITTED and (r.submissions, r.accepted, r.rejected) == (4, 4, 0)
    assert [n.domain for n in r.nodes] == ["node-1.jsonl", "node-2.jsonl", "node-3", "node-4.jsonl"]
    assert r.committed_cid in ContentStore(tmp_path / "work" / "ipfs").pins()
    target = AuditTarget(chain_id=int(fed.coordinator.w3.eth.chain_id), address=fed.coordinator.address,
                         block=fed.coordinator.deployment_block)
    audit = run_audit(fed.coordinator.w3, target, ContentSource(fed.store), model_dir=fed.model_dir,
                      model_search=[], show_progress=False)
    # every check, seed-chain included: in-process blocks report the prevrandao their transactions saw
    failing = [f.line() for f in audit.failures]
    assert not failing, failing
    assert {f.check for f in audit.findings if f.status == PASS} >= {"accepted-set", "aggregate-cid", "cid-bytes",
                                                                       "seed-chain"}


def test_a_bad_line_in_one_nodes_data_stops_the_federation_before_anything_is_built(
    tmp_path: Path, arch_model_dirs: dict[str, Path], tiny_train_params
) -> None:
    data = _write_node_data(tmp_path / "data")
    with (data / "node-2.jsonl").open("a") as fh:
        fh.write('{"instruction": "Add one.", "input": "5"}\n')
    config = FederationConfig(nodes=4, rounds=1, work_dir=tmp_path / "work", model_dir=arch_model_dirs["qwen2"],
                              data_dir=data, train=tiny_train_params, show_progress=False,
                              expected_committee_size=20, min_committee_size=2)
    with pytest.raises(TrainingError, match=r'node-2.jsonl line 41: field "output" is missing'):
        run_federation(config)
    assert not (tmp_path / "work").exists()  # no store was created, nothing pinned
