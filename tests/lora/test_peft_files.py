from pathlib import Path

import pytest
import torch

from flare_chain.errors import UpdateError
from flare_chain.lora.adapter import set_adapter_tensors, wrap_with_lora
from flare_chain.lora.base import load_base_model
from flare_chain.lora.params import LoraTrainParams
from flare_chain.lora.peft_files import load_peft_adapter, save_peft_adapter
from flare_chain.lora.train import TrainResult, train_lora


@pytest.fixture(scope="module")
def adapter(
    tiny_model_dir: Path, json_texts: list[str], tiny_params: LoraTrainParams
) -> dict[str, torch.Tensor]:
    params = tiny_params.model_copy(update={"epochs": 1})
    result: TrainResult = train_lora(tiny_model_dir, json_texts, params, show_progress=False)
    return result.adapter


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")
def test_peft_loads_the_saved_adapter_with_the_same_logits(
    tmp_path: Path, tiny_model_dir: Path, tiny_params: LoraTrainParams, adapter: dict[str, torch.Tensor]
) -> None:
    from peft import PeftModel

    save_peft_adapter(tmp_path / "global", adapter, tiny_model_dir, tiny_params)
    in_memory = wrap_with_lora(load_base_model(tiny_model_dir), tiny_params)
    set_adapter_tensors(in_memory, adapter)
    from_disk = PeftModel.from_pretrained(load_base_model(tiny_model_dir), str(tmp_path / "global"))
    ids = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = in_memory.eval()(input_ids=ids).logits
        got = from_disk.eval()(input_ids=ids).logits
        base = load_base_model(tiny_model_dir)(input_ids=ids).logits
    assert torch.equal(got, expected)
    assert not torch.allclose(got, base)  # the adapter really changes the model


def test_save_is_byte_deterministic(
    tmp_path: Path, tiny_model_dir: Path, tiny_params: LoraTrainParams, adapter: dict[str, torch.Tensor]
) -> None:
    reordered = {k: adapter[k].clone() for k in reversed(list(adapter))}
    a = save_peft_adapter(tmp_path / "a", adapter, tiny_model_dir, tiny_params)
    b = save_peft_adapter(tmp_path / "b", reordered, tiny_model_dir, tiny_params)
    names = sorted(p.name for p in a.iterdir())
    assert names == ["adapter_config.json", "adapter_model.safetensors"]
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_load_round_trips_tensors_and_config(
    tmp_path: Path, tiny_model_dir: Path, tiny_params: LoraTrainParams, adapter: dict[str, torch.Tensor]
) -> None:
    save_peft_adapter(tmp_path, adapter, tiny_model_dir, tiny_params)
    tensors, config = load_peft_adapter(tmp_path)
    assert list(tensors) == sorted(adapter)
    assert all(torch.equal(tensors[k], adapter[k]) for k in adapter)
    assert config["r"] == 4 and config["target_modules"] == ["k_proj", "o_proj", "q_proj", "v_proj"]  # detected


def test_save_refuses_tensors_for_another_model(
    tmp_path: Path, tiny_model_dir: Path, tiny_params: LoraTrainParams, adapter: dict[str, torch.Tensor]
) -> None:
    bad = dict(adapter)
    key = next(k for k in bad if "lora_A" in k)
    bad[key] = torch.zeros(3, 3)
    with pytest.raises(UpdateError, match=r"has shape \(3, 3\), expected \(4, 32\)"):
        save_peft_adapter(tmp_path, bad, tiny_model_dir, tiny_params)


def test_load_of_a_non_adapter_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UpdateError, match=r"no adapter_config\.json"):
        load_peft_adapter(tmp_path)
