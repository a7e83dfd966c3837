"""A participant trains, compresses (PowerSGD with error feedback), pins and submits; the committee takes it.

On the tiny model (hidden 32, LoRA rank 4) the default rank 2 would leave
every tensor dense, so these tests compress at rank 1 with
``min_compression_rate=1``, where each LoRA factor goes low-rank.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flare_chain.chain import RoundStatus, advance_blocks
from flare_chain.compression import PowerSGDCompressor
from flare_chain.errors import ChainError
from flare_chain.federation import FederationConfig, run_round, setup_federation
from flare_chain.ipfs import cid_from_bytes
from flare_chain.node.bundles import COMPRESSED_DELTA_FILE, fetch_update_bundle
from flare_chain.node.config import CompressionSettings
from flare_chain.node.participant import Participant


class RecordingCompressor(PowerSGDCompressor):
    """A real compressor that also keeps each delta it was given, so the test can add them up."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.deltas: list[dict[str, torch.Tensor]] = []

    def step(self, delta):
        self.deltas.append({k: v.detach().clone().float() for k, v in delta.items()})
        return super().step(delta)


@pytest.fixture(scope="module")
def two_rounds(tmp_path_factory, tiny_model_dir, tiny_train_params):
    """A 2-node federation compressing at rank 1. Round 1 is a demo round, run whole by the nodes' daemons
    (committee and all); then each node's ``Participant`` with a recording compressor submits in rounds 2
    and 3 (round 2 ends without a committee), which is what error feedback across rounds needs. Built once
    for this module."""
    params = tiny_train_params.model_copy(update={"max_train_windows": 16, "max_val_windows": 8})
    config = FederationConfig(nodes=2, rounds=2, work_dir=tmp_path_factory.mktemp("fed"), model_dir=tiny_model_dir,
                              train=params, expected_committee_size=20, min_committee_size=2, show_progress=False,
                              compression=CompressionSettings(rank=1, min_compression_rate=1.0))
    fed = setup_federation(config)
    report = run_round(fed)
    powersgd = config.compression.powersgd_config()
    nodes = [Participant(d.name, d.account, fed.node_data[i], model_dir=fed.model_dir, params=d.params,
                         coordinator=fed.coordinator, store=fed.store, show_progress=False,
                         compressor=RecordingCompressor(powersgd), spec=fed.spec, base_model_cid=fed.net.base_cid)
             for i, d in enumerate(fed.daemons)]
    records, errors_after = [], []
    for _round in (2, 3):
        if _round == 3:  # nobody claimed a seat in round 2: it fails once its claim window is over
            info = fed.coordinator.round_info(fed.coordinator.current_round())
            advance_blocks(fed.coordinator.w3, max(0, info.claim_deadline + 1 - int(fed.coordinator.w3.eth.block_number)))
            fed.coordinator.finalize_round(fed.owner, info.round_id)
        round_id, _tx = fed.coordinator.open_round(fed.owner, config.submission_blocks, config.claim_blocks,
                                                   config.proposal_blocks, config.voting_blocks,
                                                   expected_committee_size=config.expected_committee_size)
        records += [p.train_and_submit(round_id, p.pull_global()) for p in nodes]
        errors_after.append({p.address: p.compressor.error for p in nodes})
    return fed, nodes, report, records, errors_after


def _sent(fed, round_id: int, address: str) -> dict[str, torch.Tensor]:
    sub = next(s for s in fed.coordinator.submissions(round_id) if s.node == address)
    shapes = {k: tuple(v.shape) for k, v in fed.participants[0].pull_global().tensors.items()}  # read-only use
    tensors, _manifest = fetch_update_bundle(fed.store, cid_from_bytes(sub.cid), sub.manifest_hash,
                                             expected_shapes=shapes)
    return tensors


def test_compressed_updates_record_rank_and_error_and_the_committee_aggregates_them(two_rounds) -> None:
    fed, _nodes, report, records, _errors = two_rounds
    assert report.status == RoundStatus.COMMITTED
    assert (report.submissions, report.accepted, report.rejected) == (2, 2, 0)
    assert report.global_loss < fed.base_loss
    for compression in [n.compression for n in report.nodes] + [r.compression for r in records]:
        assert compression["powersgd_rank"] == 1.0
        assert 0 < compression["powersgd_rel_error"] < 1
        assert compression["powersgd_compressed_tensors"] > 0
        # at this tiny size the safetensors header is most of the file; the factors are still smaller
        assert compression["powersgd_encoded_bytes"] < compression["powersgd_fp32_bytes"]
    # what went on IPFS is the factor file, not the dense delta
    sub = fed.coordinator.submissions(1)[0]
    names = {e.name for e in fed.store.ls(cid_from_bytes(sub.cid))}
    assert names == {COMPRESSED_DELTA_FILE, "manifest.json"}


def test_error_feedback_carries_the_unsent_part_into_the_next_round(two_rounds) -> None:
    fed, nodes, _report, _records, errors = two_rounds
    for p in nodes:
        d1, d2 = p.compressor.deltas
        s1, s2 = _sent(fed, 2, p.address), _sent(fed, 3, p.address)
        e1, e2 = errors[0][p.address], errors[1][p.address]
        assert sum(float(v.norm()) for v in e1.values()) > 0  # rank 1 left something behind in round 1
        for k in d1:
            # nothing lost over the two rounds: what was sent plus what is still held is what was trained
            torch.testing.assert_close(s1[k] + s2[k] + e2[k], d1[k] + d2[k], rtol=0, atol=1e-6)
            # and round 2 sent its own delta plus round 1's residual, not its delta alone
            torch.testing.assert_close(s2[k] + e2[k], d2[k] + e1[k], rtol=0, atol=1e-6)


def test_a_failed_submission_leaves_the_residual_as_it_was(two_rounds) -> None:
    fed, nodes, _report, _records, _errors = two_rounds
    p = nodes[0]
    before = p.compressor.state_bytes()
    # This node already submitted in the open round: the contract refuses a second submission after the
    # update is compressed and pinned.
    with pytest.raises(ChainError):
        p.train_and_submit(fed.coordinator.current_round(), p.pull_global())
    assert p.compressor.state_bytes() == before


def test_compression_settings_validate_and_map_to_powersgd(tmp_path: Path) -> None:
    assert CompressionSettings().powersgd_config().rank == 2
    assert CompressionSettings(rank=0).powersgd_config() is None
    assert CompressionSettings(rank=None).powersgd_config() is None
    assert CompressionSettings(dtype="bf16").powersgd_config().dtype == "bfloat16"
    from flare_chain.errors import ConfigError

    with pytest.raises(ConfigError, match="compression"):
        FederationConfig.build(compression={"rank": -1})
    with pytest.raises(ConfigError, match=r"compression\.dtype"):
        FederationConfig.build(compression={"dtype": "int8"})
