"""Every tested architecture fine-tunes with its own tokenizer, and its adapter round-trips through PEFT."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from flare_chain.errors import TrainingError
from flare_chain.lora.base import load_base_model
from flare_chain.lora.domains import domain_texts
from flare_chain.lora.evaluate import evaluate_loss, held_out_windows
from flare_chain.lora.params import LoraTrainParams
from flare_chain.lora.peft_files import load_peft_adapter, save_peft_adapter
from flare_chain.lora.tokenizer import load_tokenizer
from flare_chain.lora.train import train_lora

FAMILIES = ("llama", "gpt2", "gpt_neox", "qwen2", "phi")
PARAMS = LoraTrainParams(rank=4, alpha=8, seq_len=32, batch_size=8, epochs=2, learning_rate=2e-2,
                         max_train_windows=32, max_val_windows=8, num_threads=1)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return domain_texts("json")[:3]


@pytest.mark.parametrize("family", FAMILIES)
def test_each_architecture_trains_on_its_own_tokens(
    family: str, arch_model_dirs: dict[str, Path], texts: list[str]
) -> None:
    # Prepare
    model_dir = arch_model_dirs[family]
    tokenizer = load_tokenizer(model_dir)
    # Execute
    result = train_lora(model_dir, texts, PARAMS, show_progress=False)
    # Assert: the windows are the model's BPE ids (not bytes), and training lowered held-out loss
    val = held_out_windows(texts, PARAMS, tokenizer)
    assert int(val.max()) < len(tokenizer) and int(val.max()) > 258
    assert result.metrics["val_loss_after"] < result.metrics["val_loss_before"]
    assert evaluate_loss(model_dir, result.adapter, val, PARAMS) == pytest.approx(
        result.metrics["val_loss_after"], abs=1e-6)
    assert any(float(d.abs().max()) > 0 for d in result.delta.values())


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")
@pytest.mark.parametrize("family", ["gpt2", "gpt_neox"])
def test_a_saved_adapter_loads_in_peft_and_computes_what_we_trained(
    family: str, arch_model_dirs: dict[str, Path], texts: list[str], tmp_path: Path
) -> None:
    from peft import PeftModel

    model_dir = arch_model_dirs[family]
    result = train_lora(model_dir, texts, PARAMS, show_progress=False)
    save_peft_adapter(tmp_path / "adapter", result.adapter, model_dir, PARAMS)
    _tensors, config = load_peft_adapter(tmp_path / "adapter")
    assert config["fan_in_fan_out"] is (family == "gpt2")
    peft_model = PeftModel.from_pretrained(load_base_model(model_dir), str(tmp_path / "adapter"))
    peft_model.eval()
    val = held_out_windows(texts, PARAMS, load_tokenizer(model_dir))
    with torch.no_grad():
        logits = peft_model(input_ids=val).logits[:, :-1]
    ours = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), val[:, 1:].reshape(-1))
    assert float(ours) == pytest.approx(result.metrics["val_loss_after"], abs=1e-4)


def test_a_tokenizer_larger_than_the_models_embedding_is_refused(
    tmp_path: Path, texts: list[str], make_checkpoint: Callable[..., Path]
) -> None:
    folder = make_checkpoint(tmp_path / "small", "llama", vocab_size=256)
    with pytest.raises(TrainingError, match=rf"tokenizer in {folder} does not fit .* embedding has 256 rows"):
        train_lora(folder, texts, PARAMS, show_progress=False)
