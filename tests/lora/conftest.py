"""Shared fixtures: one tiny reference model per session, built by the real builder."""

from __future__ import annotations

from pathlib import Path

import pytest

from flare_chain.lora.domains import domain_texts
from flare_chain.lora.params import LoraTrainParams
from flare_chain.lora.reference import ReferenceSpec, ensure_reference_model

TINY_SPEC = ReferenceSpec(
    hidden_size=32,
    num_layers=2,
    num_heads=2,
    intermediate_size=64,
    max_positions=64,
    pretrain_steps=30,
    batch_size=8,
    seq_len=32,
    learning_rate=1e-2,
    warmup_steps=3,
)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide Llama pretrained for 30 steps on stdlib source (a few seconds)."""
    return ensure_reference_model(tmp_path_factory.mktemp("cache"), spec=TINY_SPEC, show_progress=False)


@pytest.fixture(scope="session")
def tiny_params() -> LoraTrainParams:
    return LoraTrainParams(
        rank=4,
        alpha=8,
        seq_len=32,
        batch_size=8,
        epochs=2,
        learning_rate=2e-2,
        max_train_windows=48,
        max_val_windows=16,
        num_threads=1,
    )


@pytest.fixture(scope="session")
def json_texts() -> list[str]:
    return domain_texts("json")
