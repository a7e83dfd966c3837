"""The candidate model the model-based gates share: per-window losses and predictions, checked one window at a time.

The batched helpers must give, for every probe window and in its order, what the
model itself says about that window alone; a window skipped, shifted or cut at a
batch edge would move the probe-loss gate's statistic without any error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from flare_chain.aggregation.candidate_model import CandidateModel
from flare_chain.aggregation.mi_filter import seed_probe_windows
from flare_chain.lora.adapter import initial_adapter

WINDOWS = 7  # two full batches of 3 and a last batch of one window


@pytest.fixture(scope="module")
def candidate(tiny_model_dir: Path, tiny_train_params) -> tuple[CandidateModel, dict[str, torch.Tensor]]:
    params = tiny_train_params.model_copy(update={"batch_size": 3})
    start = initial_adapter(tiny_model_dir, params, seed=0)
    gen = torch.Generator().manual_seed(3)
    adapter = {k: v + torch.randn(v.shape, generator=gen) * 0.05 for k, v in start.items()}  # moves the outputs
    return CandidateModel(tiny_model_dir, params), adapter


def _windows() -> torch.Tensor:
    return seed_probe_windows(b"\x09" * 32, count=WINDOWS, seq_len=16)


def test_window_losses_are_each_windows_own_next_token_loss_in_order(candidate) -> None:
    model, adapter = candidate
    windows = _windows()

    losses = model.window_losses(adapter, windows)

    # the model's own loss (Hugging Face shifts the labels itself), one window at a time
    with torch.no_grad():
        alone = [float(model.model(input_ids=w[None], labels=w[None]).loss) for w in windows]
    assert losses.dtype == np.float64 and losses.shape == (WINDOWS,)
    np.testing.assert_allclose(losses, alone, rtol=1e-5)
    assert len(set(np.round(alone, 6))) == WINDOWS  # distinct windows: an order mix-up could not pass


def test_window_losses_depend_on_the_adapter_swapped_in(candidate, tiny_model_dir: Path, tiny_train_params) -> None:
    model, adapter = candidate
    windows = _windows()

    moved = model.window_losses(adapter, windows)
    plain = model.window_losses(initial_adapter(tiny_model_dir, model.params, seed=0), windows)

    assert not np.allclose(moved, plain)
    np.testing.assert_array_equal(model.window_losses(adapter, windows), moved)  # swapping back gives it again


def test_predictions_are_each_positions_argmax_in_window_order(candidate) -> None:
    model, adapter = candidate
    windows = _windows()

    predicted = model.predictions(adapter, windows)

    with torch.no_grad():
        alone = np.concatenate([model.model(input_ids=w[None]).logits.argmax(dim=-1).reshape(-1).numpy()
                                for w in windows])
    assert predicted.dtype == np.int64 and predicted.shape == (WINDOWS * windows.shape[1],)
    np.testing.assert_array_equal(predicted, alone)


def test_record_examples_score_their_response_tokens_only(candidate, tiny_model_dir: Path) -> None:
    """A records probe corpus (instruction/chat): each example's loss is the model's own loss over its
    response labels, padding and prompt left out, and it is not the loss over every token."""
    from flare_chain.lora.datasets import NodeData, Record
    from flare_chain.lora.probe_corpus import probe_windows
    from flare_chain.lora.tokenizer import load_tokenizer

    model, adapter = candidate
    corpus = NodeData(format="instruction", records=tuple(
        Record(instruction=f"count to {i}", output=" ".join(str(k) for k in range(i % 4 + 1))) for i in range(9)))
    examples = probe_windows(corpus, b"records", count=WINDOWS, seq_len=48, tokenizer=load_tokenizer(tiny_model_dir))
    assert examples.attention_mask is not None and bool((examples.attention_mask == 0).any())  # some padding

    losses = model.window_losses(adapter, examples)

    with torch.no_grad():
        alone = [float(model.model(input_ids=e.input_ids[None], attention_mask=e.attention_mask[None],
                                   labels=e.labels[None]).loss) for e in examples]
        every_token = [float(model.model(input_ids=e.input_ids[None], labels=e.input_ids[None]).loss)
                       for e in examples]
    np.testing.assert_allclose(losses, alone, rtol=1e-5)
    assert not np.allclose(losses, every_token, rtol=1e-3)
