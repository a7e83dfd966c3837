"""A node whose resolved LoRA targets differ from the global adapter's refuses to train, naming both lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from flare_chain.errors import ConfigError
from flare_chain.lora.domains import domain_texts
from flare_chain.lora.files import Manifest
from flare_chain.lora.params import LoraTrainParams
from flare_chain.node.bundles import GlobalAdapter
from flare_chain.node.participant import Participant


def _global(targets: list[str]) -> GlobalAdapter:
    manifest = Manifest(kind="adapter", base_model_id="gpt2", base_model_sha256="ab" * 32, rank=4, alpha=8.0,
                        target_modules=targets, sample_count=0, shapes={}, round=0)
    return GlobalAdapter(cid="bafy-test", tensors={}, manifest=manifest)


@pytest.fixture(scope="module")
def gpt2_node(arch_model_dirs: dict[str, Path]) -> Participant:
    params = LoraTrainParams(rank=4, alpha=8, seq_len=32, max_train_windows=8, max_val_windows=4)
    none: Any = None  # neither chain nor store is touched by the check
    return Participant("node-1", Account.from_key(b"\x01" * 32), domain_texts("json")[:2],
                       model_dir=arch_model_dirs["gpt2"], params=params, coordinator=none, store=none)


def test_detected_targets_are_what_the_node_trains_and_records(gpt2_node: Participant) -> None:
    assert gpt2_node.params.targets == ("attn.c_proj", "c_attn")
    gpt2_node.check_targets(_global(["c_attn", "attn.c_proj"]))


def test_other_targets_in_the_global_adapter_stop_the_node_before_training(gpt2_node: Participant) -> None:
    with pytest.raises(ConfigError, match=r"\['attn.c_proj', 'c_attn'\] .* differ from the global adapter's "
                                          r"\['k_proj', 'q_proj'\]"):
        gpt2_node.train_and_submit(1, _global(["q_proj", "k_proj"]))
