"""Held-out loss: mean next-token cross-entropy of a base model, optionally with an adapter.

This is the number nodes report before/after training and committee members
use to judge a proposed global adapter. Lower is better; ln(256) ≈ 5.55 is
what a model that knows nothing about bytes scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from flare_chain.errors import TrainingError
from flare_chain.lora._runtime import seeded
from flare_chain.lora.adapter import set_adapter_tensors, wrap_with_lora
from flare_chain.lora.base import load_base_model
from flare_chain.lora.data import texts_to_windows, windows_for_training
from flare_chain.lora.datasets import NodeData
from flare_chain.lora.device import autocast_for, resolve_device
from flare_chain.lora.examples import IGNORE_INDEX, TokenExamples, prepare_examples
from flare_chain.lora.params import LoraTrainParams
from flare_chain.lora.tokenizer import load_tokenizer

__all__ = ["evaluate_loss", "held_out_examples", "held_out_windows", "mean_token_loss"]


@torch.no_grad()
def mean_token_loss(model: nn.Module, windows: torch.Tensor | TokenExamples, batch_size: int) -> float:
    """Mean cross-entropy (nats/token) of predicting each labelled token from its prefix.

    A plain ``(n, seq_len)`` tensor labels every token 2..n; :class:`TokenExamples`
    count only their labels (responses of instruction/chat data, never padding).
    Every counted token weighs the same. The model is put in eval mode (no
    dropout), so the result is deterministic.
    """
    data = windows if isinstance(windows, TokenExamples) else TokenExamples.from_windows(windows)
    shape = tuple(data.input_ids.shape)
    if len(shape) != 2 or shape[0] == 0 or shape[1] < 2:
        raise TrainingError(f"need at least one window of >= 2 tokens to evaluate, got shape {shape}")
    if data.label_count == 0:
        raise TrainingError("the evaluation examples have no response tokens to score")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device  # the model's device decides where the batches go
    total, count = 0.0, 0
    try:
        for start in range(0, len(data), batch_size):
            batch = data[start : start + batch_size]
            inputs = batch.model_inputs(device)
            inputs.pop("labels")
            with autocast_for(device):
                logits = model(**inputs).logits[:, :-1, :]
            targets = batch.labels[:, 1:].to(device)
            loss = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="sum",
                ignore_index=IGNORE_INDEX,
            )
            total += float(loss)
            count += int((targets != IGNORE_INDEX).sum())
    finally:
        model.train(was_training)
    return total / count


def held_out_windows(texts: Sequence[str], params: LoraTrainParams, tokenizer: Any) -> torch.Tensor:
    """The validation windows :func:`~flare_chain.lora.train.train_lora` holds out for these texts.

    ``tokenizer`` is the base model's (:func:`~flare_chain.lora.tokenizer.load_tokenizer`).
    """
    return windows_for_training(
        texts,
        tokenizer=tokenizer,
        seq_len=params.seq_len,
        val_fraction=params.val_fraction,
        seed=params.seed,
        max_train=params.max_train_windows,
        max_val=params.max_val_windows,
    ).val


def held_out_examples(data: NodeData | Sequence[str], params: LoraTrainParams, tokenizer: Any) -> TokenExamples:
    """The held-out examples :func:`~flare_chain.lora.train.train_lora` keeps aside for this node's data."""
    return prepare_examples(data, tokenizer, params).val


def evaluate_loss(
    model_dir: Path,
    adapter: dict[str, torch.Tensor] | None,
    texts_or_windows: Sequence[str] | torch.Tensor | TokenExamples,
    params: LoraTrainParams,
    *,
    device: str = "cpu",
) -> float:
    """Mean token cross-entropy of the base at ``model_dir`` with ``adapter`` applied (None: the base).

    ``device`` (``"auto" | "cpu" | "cuda"``) is where the model runs (bf16 autocast on a GPU that has it).

    Texts are tokenized with the model's own tokenizer and windowed whole at ``params.seq_len`` (use :func:`held_out_windows`
    for the validation split); a ``(n, seq_len)`` tensor or :class:`TokenExamples` is used as given.
    """
    windows: torch.Tensor | TokenExamples
    if isinstance(texts_or_windows, TokenExamples):
        windows = texts_or_windows
    elif isinstance(texts_or_windows, torch.Tensor):
        windows = texts_or_windows.to(torch.long)
    else:
        windows = texts_to_windows(list(texts_or_windows), params.seq_len, load_tokenizer(model_dir))
        if windows.shape[0] == 0:
            raise TrainingError(
                f"evaluation text is too short: it needs at least {params.seq_len} tokens (one window of "
                f"seq_len={params.seq_len})"
            )
    model = load_base_model(model_dir)
    if adapter is not None:
        model = wrap_with_lora(model, params)
        set_adapter_tensors(model, adapter)
    model = model.to(resolve_device(device))
    with seeded(params.seed, params.num_threads):
        return mean_token_loss(model, windows, params.batch_size)
