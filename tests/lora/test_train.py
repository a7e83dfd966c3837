from pathlib import Path

import pytest
import torch

from flare_chain.errors import UpdateError
from flare_chain.lora.adapter import initial_adapter
from flare_chain.lora.evaluate import evaluate_loss, held_out_windows
from flare_chain.lora.files import Manifest, encode_delta, tensor_shapes
from flare_chain.lora.params import LoraTrainParams
from flare_chain.lora.tokenizer import load_tokenizer
from flare_chain.lora.train import TrainResult, train_lora


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, json_texts: list[str], tiny_params: LoraTrainParams) -> TrainResult:
    start = initial_adapter(tiny_model_dir, tiny_params, seed=0)
    return train_lora(tiny_model_dir, json_texts, tiny_params, start_adapter=start, show_progress=False)


def _delta_bytes(result: TrainResult) -> bytes:
    manifest = Manifest(
        kind="delta",
        base_model_id="tiny",
        base_model_sha256="0" * 64,
        rank=4,
        alpha=8,
        target_modules=["q_proj"],
        sample_count=result.sample_count,
        shapes=tensor_shapes(result.delta),
    )
    return encode_delta(result.delta, manifest)[0]


def test_training_lowers_held_out_loss(trained: TrainResult) -> None:
    m = trained.metrics
    assert m["val_loss_after"] < m["val_loss_before"] - 0.01
    assert trained.sample_count == 48
    assert m["steps"] == 12 and m["val_windows"] == 16


def test_delta_is_adapter_minus_start_with_peft_keys(
    trained: TrainResult, tiny_model_dir: Path, tiny_params: LoraTrainParams
) -> None:
    start = initial_adapter(tiny_model_dir, tiny_params, seed=0)
    assert list(trained.adapter) == list(trained.delta) == sorted(start)
    assert all(k.startswith("base_model.model.") and ".lora_" in k for k in start)
    for key in start:
        torch.testing.assert_close(trained.adapter[key] - start[key], trained.delta[key], rtol=0, atol=0)


def test_same_seed_gives_identical_delta_bytes(
    trained: TrainResult, tiny_model_dir: Path, json_texts: list[str], tiny_params: LoraTrainParams
) -> None:
    again = train_lora(tiny_model_dir, json_texts, tiny_params, show_progress=False)
    assert _delta_bytes(again) == _delta_bytes(trained)


def test_initial_adapter_is_seeded_with_zero_b(tiny_model_dir: Path, tiny_params: LoraTrainParams) -> None:
    a, b = (initial_adapter(tiny_model_dir, tiny_params, seed=5) for _ in range(2))
    c = initial_adapter(tiny_model_dir, tiny_params, seed=6)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if "lora_A" in k)
    assert all(not a[k].any() for k in a if "lora_B" in k)


def test_evaluate_loss_matches_the_training_metrics(
    trained: TrainResult, tiny_model_dir: Path, json_texts: list[str], tiny_params: LoraTrainParams
) -> None:
    val = held_out_windows(json_texts, tiny_params, load_tokenizer(tiny_model_dir))
    after = evaluate_loss(tiny_model_dir, trained.adapter, val, tiny_params)
    before = evaluate_loss(tiny_model_dir, None, val, tiny_params)
    assert after == pytest.approx(trained.metrics["val_loss_after"], abs=1e-6)
    assert before == pytest.approx(trained.metrics["val_loss_before"], abs=1e-6)


def test_start_adapter_with_wrong_keys_is_refused(
    trained: TrainResult, tiny_model_dir: Path, json_texts: list[str], tiny_params: LoraTrainParams
) -> None:
    bad = dict(trained.adapter)
    bad.pop(next(iter(bad)))
    with pytest.raises(UpdateError, match="start adapter is missing 1 tensor"):
        train_lora(tiny_model_dir, json_texts, tiny_params, start_adapter=bad, show_progress=False)
