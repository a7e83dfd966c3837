"""LoRA targets are read off each architecture's attention; an explicit list overrides them."""

from __future__ import annotations

from pathlib import Path

import pytest

from flare_chain.errors import ConfigError
from flare_chain.lora.adapter import wrap_with_lora
from flare_chain.lora.base import load_base_model
from flare_chain.lora.params import DEFAULT_TARGET_MODULES, LoraTrainParams
from flare_chain.lora.targets import detect_target_modules, lora_layers, model_skeleton, resolve_params

EXPECTED = {
    "llama": ("k_proj", "o_proj", "q_proj", "v_proj"),
    "gpt2": ("attn.c_proj", "c_attn"),  # c_proj alone would also adapt the MLP's c_proj
    "gpt_neox": ("dense", "query_key_value"),
    "qwen2": ("k_proj", "o_proj", "q_proj", "v_proj"),
    "phi": ("dense", "k_proj", "q_proj", "v_proj"),
}


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_attention_projections_are_detected_per_architecture(family: str, arch_model_dirs: dict[str, Path]) -> None:
    model = load_base_model(arch_model_dirs[family])
    assert detect_target_modules(model) == EXPECTED[family]
    assert detect_target_modules(model_skeleton(arch_model_dirs[family])) == EXPECTED[family]


def test_the_reference_model_gets_the_llama_projections(tiny_model_dir: Path) -> None:
    resolved = resolve_params(tiny_model_dir, LoraTrainParams())
    assert resolved.targets == tuple(sorted(DEFAULT_TARGET_MODULES))


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_the_head_and_embeddings_are_never_lora_layers(family: str, arch_model_dirs: dict[str, Path]) -> None:
    names = lora_layers(load_base_model(arch_model_dirs[family]))
    assert names and not any("lm_head" in n or "embed" in n or n.endswith("wte") for n in names)


def test_gpt2_conv1d_targets_are_wrapped_fan_in_fan_out_and_only_in_attention(
    arch_model_dirs: dict[str, Path]
) -> None:
    peft_model = wrap_with_lora(load_base_model(arch_model_dirs["gpt2"]), LoraTrainParams(rank=2, seq_len=32))
    config = peft_model.peft_config["default"]  # type: ignore[index]
    assert config.fan_in_fan_out is True
    adapted = sorted({n.split(".lora_")[0] for n, _ in peft_model.named_parameters() if "lora_" in n})
    assert all(".attn." in n for n in adapted) and len(adapted) == 4  # c_attn + c_proj in each of 2 layers


def test_an_explicit_target_list_overrides_detection(arch_model_dirs: dict[str, Path]) -> None:
    params = LoraTrainParams(rank=2, seq_len=32, target_modules=["query_key_value"])
    assert resolve_params(arch_model_dirs["gpt_neox"], params).targets == ("query_key_value",)
    peft_model = wrap_with_lora(load_base_model(arch_model_dirs["gpt_neox"]), params)
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n, _ in peft_model.named_parameters() if "lora_" in n}
    assert adapted == {"query_key_value"}


def test_auto_in_a_config_file_means_detect() -> None:
    assert LoraTrainParams.from_mapping({"target_modules": "auto"}).target_modules is None


def test_a_target_the_architecture_lacks_is_named_with_the_layers_it_has(arch_model_dirs: dict[str, Path]) -> None:
    params = LoraTrainParams(rank=2, seq_len=32, target_modules=["q_proj"])
    with pytest.raises(ConfigError, match=r"contains 'q_proj', which is not a linear module.*c_attn, c_fc, c_proj"):
        wrap_with_lora(load_base_model(arch_model_dirs["gpt2"]), params)
