"""Local LoRA fine-tuning of one node on its own texts.

``train_lora`` is the whole local step of a round: tokenize and split the node's
data (text windows, or instruction/chat examples whose loss covers only the
responses; see :mod:`flare_chain.lora.examples`),
load the base, apply the starting adapter (the current global one, or the
shared initial one), run AdamW over the LoRA tensors only, and return the new
adapter, the delta from the start, and metrics. Given the same inputs, params
and seed it returns bit-identical tensors (fixed threads, private seeded RNG).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from flare_chain.errors import TrainingError
from flare_chain.lora._runtime import seeded
from flare_chain.lora.adapter import adapter_tensors, set_adapter_tensors, wrap_with_lora
from flare_chain.lora.base import load_base_model
from flare_chain.lora.datasets import NodeData
from flare_chain.lora.device import autocast_for, resolve_device
from flare_chain.lora.evaluate import mean_token_loss
from flare_chain.lora.examples import prepare_examples
from flare_chain.lora.params import LoraTrainParams
from flare_chain.lora.tokenizer import load_tokenizer
from flare_chain.progress import progress

__all__ = ["TrainResult", "train_lora"]

_GRAD_CLIP = 1.0


@dataclass(frozen=True)
class TrainResult:
    """Outcome of one local fine-tune.

    ``adapter`` and ``delta`` share PEFT's state-dict keys (sorted);
    ``delta = adapter - start``. ``sample_count`` is the number of training
    windows (or examples) used (the FedAvg weight). ``metrics``: train_loss
    (mean over the last epoch), val_loss_before, val_loss_after, val_windows
    (held-out windows or examples), val_fraction and split_seed (the held-out
    rule), steps, seconds (all of it). ``train_seconds`` is the optimisation
    loop alone (for throughput figures; kept out of ``metrics``, which manifests carry).
    """

    adapter: dict[str, torch.Tensor]
    delta: dict[str, torch.Tensor]
    sample_count: int
    metrics: dict[str, float] = field(default_factory=dict)
    train_seconds: float = 0.0


def train_lora(
    model_dir: Path,
    texts: NodeData | Sequence[str],
    params: LoraTrainParams,
    *,
    start_adapter: dict[str, torch.Tensor] | None = None,
    progress_desc: str = "train",
    show_progress: bool = True,
    device: str = "cpu",
) -> TrainResult:
    """Fine-tune a LoRA adapter on ``texts`` (plain texts or validated NodeData) from ``start_adapter``
    (default: the seed's initial adapter).

    The texts are tokenized with the model's own tokenizer (from ``model_dir``).
    ``device`` (``"auto" | "cpu" | "cuda"``) is where the model runs; on a GPU
    forward passes use bf16 autocast and results are no longer bit-identical
    across machines (the committee judges with tolerances, not bits).
    Raises ConfigError for params the model cannot take, TrainingError for a
    bad model directory (no weights, no usable tokenizer) or too little data, UpdateError for a start adapter
    with wrong keys, shapes or values.
    """
    if not isinstance(params, LoraTrainParams):
        raise TrainingError(f"params must be a LoraTrainParams, got {type(params).__name__}")
    began = time.perf_counter()
    split = prepare_examples(texts, load_tokenizer(model_dir), params)
    where = resolve_device(device)
    model = wrap_with_lora(load_base_model(model_dir), params).to(where)
    start = adapter_tensors(model) if start_adapter is None else start_adapter
    set_adapter_tensors(model, start, what="start adapter")
    start = {k: start[k].detach().to(torch.float32).clone() for k in sorted(start)}

    n_train = len(split.train)
    steps_per_epoch = math.ceil(n_train / params.batch_size)
    total_steps = steps_per_epoch * params.epochs
    trainable = [p for p in model.parameters() if p.requires_grad]

    with seeded(params.seed, params.num_threads):
        val_before = mean_token_loss(model, split.val, params.batch_size)
        optimizer = torch.optim.AdamW(trainable, lr=params.learning_rate, weight_decay=params.weight_decay)
        shuffle = torch.Generator().manual_seed(params.seed)
        epoch_losses: list[float] = []
        loop_began = time.perf_counter()
        model.train()
        with progress(progress_desc, total=total_steps, unit="step", enabled=show_progress) as bar:
            for _epoch in range(params.epochs):
                epoch_losses = []
                order = torch.randperm(n_train, generator=shuffle)
                for s in range(steps_per_epoch):
                    batch = split.train[order[s * params.batch_size : (s + 1) * params.batch_size]]
                    with autocast_for(where):
                        loss = model(**batch.model_inputs(where)).loss
                    if not math.isfinite(loss.item()):
                        raise TrainingError(
                            f"training diverged (loss={float(loss)}) at step {len(epoch_losses) + 1}; "
                            f"lower learning_rate (now {params.learning_rate})"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(trainable, _GRAD_CLIP)
                    optimizer.step()
                    epoch_losses.append(loss.item())
                    bar.update(1, loss=f"{epoch_losses[-1]:.3f}")
        if where.type == "cuda":
            torch.cuda.synchronize(where)
        train_seconds = time.perf_counter() - loop_began
        model.eval()
        val_after = mean_token_loss(model, split.val, params.batch_size)

    adapter = adapter_tensors(model)
    delta = {k: adapter[k] - start[k] for k in adapter}
    metrics = {
        "train_loss": sum(epoch_losses) / len(epoch_losses),
        "val_loss_before": val_before,
        "val_loss_after": val_after,
        "val_windows": float(len(split.val)),
        "val_fraction": params.val_fraction,
        "split_seed": float(params.seed),
        "steps": float(total_steps),
        "seconds": time.perf_counter() - began,
    }
    return TrainResult(adapter=adapter, delta=delta, sample_count=n_train, metrics=metrics,
                       train_seconds=train_seconds)
