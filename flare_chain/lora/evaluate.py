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
from flare_chain.lora.params import LoraTrainParams
from flare_chain.lora.tokenizer import load_tokenizer

__all__ = ["evaluate_loss", "held_out_windows", "mean_token_loss"]


@torch.no_grad()
def mean_token_loss(model: nn.Module, windows: torch.Tensor, batch_size: int) -> float:
    """Mean cross-entropy (nats/token) of predicting each window's tokens 2..n from their prefix.

    Every predicted token counts equally. The model is put in eval mode (no
    dropout), so the result is deterministic.
    """
    if windows.ndim != 2 or windows.shape[0] == 0 or windows.shape[1] < 2:
        raise TrainingError(
            f"need at least one window of >= 2 tokens to evaluate, got shape {tuple(windows.shape)}"
        )
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for start in range(0, windows.shape[0], batch_size):
            batch = windows[start : start + batch_size]
            logits = model(input_ids=batch).logits[:, :-1, :]
            targets = batch[:, 1:]
            loss = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="sum"
            )
            total += float(loss)
            count += targets.numel()
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


def evaluate_loss(
    model_dir: Path,
    adapter: dict[str, torch.Tensor] | None,
    texts_or_windows: Sequence[str] | torch.Tensor,
    params: LoraTrainParams,
) -> float:
    """Mean token cross-entropy of the base at ``model_dir`` with ``adapter`` applied (None: the base).

    Texts are tokenized with the model's own tokenizer and windowed whole at ``params.seq_len`` (use :func:`held_out_windows`
    for the validation split); a ``(n, seq_len)`` tensor is used as given.
    """
    if isinstance(texts_or_windows, torch.Tensor):
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
    with seeded(params.seed, params.num_threads):
        return mean_token_loss(model, windows, params.batch_size)
