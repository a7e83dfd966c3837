"""Session-wide fixtures: real things built once because they are costly."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny) Llama reference model, pretrained for a few steps on stdlib text."""
    from flare_chain.lora.reference import ReferenceSpec, ensure_reference_model

    spec = ReferenceSpec(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=128,
                         pretrain_steps=40, batch_size=8, seq_len=64, warmup_steps=4)
    return ensure_reference_model(tmp_path_factory.mktemp("models"), spec=spec, show_progress=False)


@pytest.fixture(scope="session")
def tiny_train_params():  # -> LoraTrainParams
    from flare_chain.lora.params import LoraTrainParams

    return LoraTrainParams(rank=4, alpha=8, learning_rate=1e-2, batch_size=8, seq_len=64, max_train_windows=48,
                           max_val_windows=16, num_threads=2)
