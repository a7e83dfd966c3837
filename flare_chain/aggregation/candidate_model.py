"""One loaded base model that runs candidate adapters on probe windows, for the model-based gates.

The MI filter needs each candidate's predictions and the probe-loss gate its
per-window losses; loading the base model costs far more than one probe run,
so both share one :class:`CandidateModel`. Every run swaps the candidate's
adapter tensors in and computes in eval mode under a fixed seed and thread
count, so the same adapter gives the same numbers on the same machine.

Gate runs stay in float32 on every device, GPUs included (no bf16 autocast;
PyTorch's default keeps TF32 off for matmuls): members on other CPUs or GPUs
then differ from the leader only by kernel rounding (~1e-6 of a loss), which
the tolerance bands (:mod:`flare_chain.aggregation.tolerance`) absorb. bf16
would move window losses by ~1e-2, as much as the signal the probe-loss gate
looks for. Training and a member's held-out evaluation do use bf16 on a GPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from flare_chain.lora.examples import TokenExamples
    from flare_chain.lora.params import LoraTrainParams

__all__ = ["CandidateModel", "window_losses"]


@torch.no_grad()
def window_losses(model: torch.nn.Module, windows: TokenExamples | torch.Tensor, batch_size: int) -> np.ndarray:
    """Mean next-token cross-entropy over each example's labelled tokens under ``model`` (float64 on the CPU).

    ``windows`` are probe examples (:func:`~flare_chain.lora.probe_corpus.probe_windows`): every token
    of a text window is a label, only the response tokens of a record's example are. A plain
    tensor of token ids is text windows. Runs where the model is (its parameters' device), in
    float32 (see the module docstring).
    """
    from flare_chain.lora.examples import IGNORE_INDEX, TokenExamples

    examples = windows if isinstance(windows, TokenExamples) else TokenExamples.from_windows(windows)
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        inputs = {"input_ids": batch.input_ids.to(device, torch.long)}
        if batch.attention_mask is not None:
            inputs["attention_mask"] = batch.attention_mask.to(device, torch.long)
        logits = model(**inputs).logits[:, :-1, :].float()
        targets = batch.labels[:, 1:].to(device, torch.long)
        per_token = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none", ignore_index=IGNORE_INDEX)
        scored = (targets != IGNORE_INDEX).to(torch.float64)
        out.append(((per_token.to(torch.float64) * scored).sum(dim=1) / scored.sum(dim=1).clamp(min=1.0)).cpu())
    return torch.cat(out).numpy()


class CandidateModel:
    """The base model at ``model_dir`` wrapped with LoRA per ``params``; loaded once, on ``device``."""

    def __init__(self, model_dir: Path, params: LoraTrainParams, *, device: str = "cpu") -> None:
        from flare_chain.lora.adapter import wrap_with_lora
        from flare_chain.lora.base import load_base_model
        from flare_chain.lora.device import resolve_device

        self.params = params
        self.device = resolve_device(device)
        self.model = wrap_with_lora(load_base_model(Path(model_dir)), params).to(self.device)
        self.model.eval()

    def _load(self, adapter: Mapping[str, torch.Tensor]) -> None:
        from flare_chain.lora.adapter import set_adapter_tensors

        set_adapter_tensors(self.model, dict(adapter), what="candidate adapter")

    def predictions(self, adapter: Mapping[str, torch.Tensor], windows: torch.Tensor) -> np.ndarray:
        """Argmax next-token ids at every position of ``windows`` (int64, flat)."""
        from flare_chain.lora._runtime import seeded

        self._load(adapter)
        ids = windows.to(self.device, torch.long)
        out = []
        with seeded(self.params.seed, self.params.num_threads), torch.no_grad():
            for start in range(0, ids.shape[0], self.params.batch_size):
                logits = self.model(input_ids=ids[start : start + self.params.batch_size]).logits
                out.append(logits.argmax(dim=-1).reshape(-1).cpu())
        return torch.cat(out).numpy().astype(np.int64)

    def window_losses(self, adapter: Mapping[str, torch.Tensor], windows: TokenExamples | torch.Tensor
                      ) -> np.ndarray:
        """Mean next-token cross-entropy over each probe example's labelled tokens (float64, one per example)."""
        from flare_chain.lora._runtime import seeded

        self._load(adapter)
        with seeded(self.params.seed, self.params.num_threads):
            return window_losses(self.model, windows, self.params.batch_size)
