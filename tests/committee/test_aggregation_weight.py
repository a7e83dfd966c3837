"""One update's FedAvg weight is its sample count clipped to the deployment's cap.

The contract refuses a submission above ``maxSampleCount``; the aggregator clips
as well, so an update whose count reached it some other way (a cap read wrong, a
contract redeployed with another cap, a replayed record) weighs no more than the
cap: a claim of 2^64 − 1 samples must not take the aggregate over.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flare_chain.chain import Submission
from flare_chain.committee.aggregate import CheckedUpdate, aggregation_weight, build_aggregate
from flare_chain.errors import ConfigError
from flare_chain.ipfs import ContentStore
from flare_chain.lora.adapter import initial_adapter
from flare_chain.node.bundles import GlobalAdapter
from flare_chain.node.participant import initial_global_manifest

CAP = 1000


@pytest.fixture(scope="module")
def start(tiny_model_dir: Path, tiny_train_params):
    tensors = initial_adapter(tiny_model_dir, tiny_train_params, seed=0)
    manifest = initial_global_manifest(tiny_model_dir, tiny_train_params, tensors)
    return GlobalAdapter(cid="bafy-round-0", tensors=tensors, manifest=manifest)


def _update(previous: GlobalAdapter, node: str, value: float, samples: int) -> CheckedUpdate:
    delta = {k: torch.full_like(v, value) for k, v in previous.tensors.items()}
    manifest = previous.manifest.model_copy(update={"kind": "delta", "round": 1, "node": node,
                                                    "sample_count": min(samples, 2**63)})
    sub = Submission(round_id=1, node=node, cid=b"\x01\x55", sample_count=samples, manifest_hash=bytes(32),
                     block_number=1, tx_hash="0x")
    return CheckedUpdate(submission=sub, delta=delta, manifest=manifest)


def _moved(previous: GlobalAdapter, result_adapter: dict[str, torch.Tensor]) -> float:
    """How far the aggregate moved the first tensor, element 0 (the weighted mean of the deltas)."""
    key = sorted(previous.tensors)[0]
    return float((result_adapter[key] - previous.tensors[key]).flatten()[0])


@pytest.mark.parametrize("inflated", [CAP + 1, 2**64 - 1])
def test_an_inflated_sample_count_weighs_no_more_than_the_cap(tmp_path, start, tiny_model_dir, tiny_train_params,
                                                              inflated):
    store = ContentStore(tmp_path, durable=False)
    honest = _update(start, "0x" + "01" * 20, 0.0, CAP)
    loud = _update(start, "0x" + "02" * 20, 1.0, inflated)

    result = build_aggregate(store, 1, start, [honest, loud], tiny_model_dir, tiny_train_params,
                             max_sample_count=CAP, pin=False)

    # both weigh CAP: the mean of 0 and 1; unclipped, the loud update would move it to ~1
    assert _moved(start, result.adapter) == pytest.approx(0.5, abs=1e-6)
    assert result.manifest.sample_count == 2 * CAP


def test_a_lower_cap_clips_every_update_alike(tmp_path, start, tiny_model_dir, tiny_train_params):
    store = ContentStore(tmp_path, durable=False)
    a = _update(start, "0x" + "01" * 20, 0.0, 300)
    b = _update(start, "0x" + "02" * 20, 1.0, 100)

    clipped = build_aggregate(store, 1, start, [a, b], tiny_model_dir, tiny_train_params, max_sample_count=100,
                              pin=False)
    unclipped = build_aggregate(store, 1, start, [a, b], tiny_model_dir, tiny_train_params, max_sample_count=CAP,
                                pin=False)

    assert _moved(start, clipped.adapter) == pytest.approx(0.5, abs=1e-6)  # 100 and 100
    assert _moved(start, unclipped.adapter) == pytest.approx(0.25, abs=1e-6)  # 300 and 100
    assert clipped.cid != unclipped.cid


def test_aggregation_weight_clips_and_refuses_a_cap_below_one():
    assert aggregation_weight(5, CAP) == 5
    assert aggregation_weight(2**64 - 1, CAP) == CAP
    with pytest.raises(ConfigError, match="maxSampleCount"):
        aggregation_weight(5, 0)
