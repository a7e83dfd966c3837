from pathlib import Path

import pytest

from flare_chain.errors import ConfigError, TrainingError
from flare_chain.lora.base import check_params_for_model, load_base_model
from flare_chain.lora.params import LoraTrainParams
from flare_chain.lora.train import train_lora


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("rank", 0, ">= 1"),
        ("alpha", 0, "> 0"),
        ("alpha", -1.5, "> 0"),
        ("dropout", 1.0, r"\[0, 1\)"),
        ("learning_rate", 0, r"\(0, 1\]"),
        ("learning_rate", 2.0, r"\(0, 1\]"),
        ("epochs", 0, ">= 1"),
        ("batch_size", 0, ">= 1"),
        ("seq_len", 4, r"\[8, 4096\]"),
        ("val_fraction", 0.0, r"\(0, 0.5\]"),
        ("max_train_windows", 0, ">= 1"),
        ("target_modules", [], "non-empty list"),
        ("target_modules", ["q_proj", "q_proj"], "distinct"),
    ],
)
def test_bad_parameter_is_named_with_its_allowed_range(name: str, value: object, allowed: str) -> None:
    with pytest.raises(ConfigError, match=rf"parameter {name}=.*it must be .*{allowed}"):
        LoraTrainParams(**{name: value})


def test_unknown_parameter_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="unknown LoRA training parameter 'rnak'"):
        LoraTrainParams.from_mapping({"rnak": 4})


def test_target_modules_accept_a_comma_separated_string() -> None:
    assert LoraTrainParams(target_modules="q_proj, v_proj").target_modules == ("q_proj", "v_proj")


def test_rank_above_the_smallest_targeted_layer_is_refused(tiny_model_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"rank=33 is too large.*between 1 and 32"):
        check_params_for_model(load_base_model(tiny_model_dir), LoraTrainParams(rank=33, seq_len=32))


def test_unknown_target_module_lists_the_models_linear_modules(tiny_model_dir: Path) -> None:
    params = LoraTrainParams(target_modules=("q_proj", "c_attn"), seq_len=32)
    with pytest.raises(ConfigError, match=r"target_modules contains 'c_attn'.*down_proj, gate_proj.*v_proj"):
        check_params_for_model(load_base_model(tiny_model_dir), params)


def test_seq_len_beyond_the_models_context_is_refused(tiny_model_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"seq_len=128 exceeds the model's context of 64"):
        check_params_for_model(load_base_model(tiny_model_dir), LoraTrainParams(seq_len=128))


def test_missing_model_dir_is_named(
    tmp_path: Path, json_texts: list[str], tiny_params: LoraTrainParams
) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(TrainingError, match=rf"{missing}.* does not exist"):
        train_lora(missing, json_texts, tiny_params, show_progress=False)


def test_dir_without_a_loadable_model_is_named(tmp_path: Path, tiny_params: LoraTrainParams) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(TrainingError, match=rf"cannot load a causal LM from {tmp_path}"):
        load_base_model(tmp_path)


def test_empty_and_too_short_datasets_are_refused(tiny_model_dir: Path, tiny_params: LoraTrainParams) -> None:
    with pytest.raises(TrainingError, match="dataset is empty"):
        train_lora(tiny_model_dir, [], tiny_params, show_progress=False)
    with pytest.raises(TrainingError, match="at least 64 tokens are needed"):
        train_lora(tiny_model_dir, ["x = 1\n"], tiny_params, show_progress=False)
