"""Loading the base causal LM and checking LoRA parameters against it.

Any Hugging Face causal-LM directory with safetensors weights works as a base
(the project's own reference model is one). Loading is strictly local — no
hub lookups — and every failure names the directory. The fingerprint is what
manifests and the chain use to say "this adapter belongs to that base".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from flare_chain.errors import ConfigError, TrainingError
from flare_chain.lora.params import LoraTrainParams
from flare_chain.lora.targets import lora_layers, matches_target, resolve_params

__all__ = [
    "REFERENCE_INFO_FILE",
    "base_model_id",
    "check_params_for_model",
    "linear_module_names",
    "load_base_model",
    "model_fingerprint",
    "weight_files",
]

REFERENCE_INFO_FILE = "flare_reference.json"
"""Written next to a reference model: how it was built (see :mod:`flare_chain.lora.reference`)."""


def weight_files(model_dir: Path) -> list[Path]:
    """The ``*.safetensors`` weight files of ``model_dir``, sorted by name."""
    files = sorted(p for p in Path(model_dir).glob("*.safetensors") if p.is_file())
    if not files:
        raise TrainingError(
            f"base model directory {model_dir} has no *.safetensors weights; "
            "save the model with save_pretrained(safe_serialization=True) (pickle weights are refused)"
        )
    return files


def model_fingerprint(model_dir: Path) -> str:
    """Hex sha256 over the bytes of the model's safetensors files, concatenated in name order.

    Two directories fingerprint alike exactly when their weight files are
    byte-identical; config or tokenizer files do not count.
    """
    digest = hashlib.sha256()
    for path in weight_files(Path(model_dir)):
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def base_model_id(model_dir: Path) -> str:
    """A human-readable name for the base: the reference model's id, else the directory name."""
    info = Path(model_dir) / REFERENCE_INFO_FILE
    if info.is_file():
        try:
            return str(json.loads(info.read_text(encoding="utf-8"))["model_id"])
        except (ValueError, KeyError):
            pass
    return Path(model_dir).resolve().name


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' per-load progress bars; our own progress reporting covers the work."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_base_model(model_dir: Path) -> nn.Module:
    """Load a causal LM from a local directory in float32, eval mode, without any network access."""
    path = Path(model_dir)
    if not path.is_dir():
        raise TrainingError(
            f"base model directory {path} does not exist; pass a Hugging Face model directory"
        )
    if not (path / "config.json").is_file():
        raise TrainingError(f"base model directory {path} has no config.json; it is not a Hugging Face model")
    weight_files(path)
    from transformers import AutoModelForCausalLM

    try:
        with _quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(
                str(path), local_files_only=True, use_safetensors=True, dtype=torch.float32
            )
    except Exception as exc:
        raise TrainingError(f"cannot load a causal LM from {path}: {type(exc).__name__}: {exc}") from exc
    model.eval()
    return model


def linear_module_names(model: nn.Module) -> dict[str, nn.Module]:
    """Every layer LoRA can target (``nn.Linear`` and GPT-2's ``Conv1D``, not the head) by full dotted name."""
    return lora_layers(model)


def _weight(module: nn.Module) -> torch.Tensor:
    weight = module.weight
    assert isinstance(weight, torch.Tensor)  # Linear and Conv1D both hold a 2-D weight
    return weight


def check_params_for_model(model: nn.Module, params: LoraTrainParams) -> None:
    """Refuse params the model cannot take: unknown target modules, rank above a layer's size,
    or windows longer than the model's context. Unset targets are detected first."""
    params = resolve_params(model, params)
    layers = lora_layers(model)
    short = sorted({n.rsplit(".", 1)[-1] for n in layers})
    for target in params.targets:
        if not any(matches_target(n, target) for n in layers):
            raise ConfigError(
                f"LoRA training parameter target_modules contains {target!r}, which is not a linear "
                f"module of this model; its linear modules are: {', '.join(short)}"
            )
    targeted = [m for n, m in layers.items() if any(matches_target(n, t) for t in params.targets)]
    max_rank = min(min(_weight(m).shape) for m in targeted)  # Linear (out, in), Conv1D (in, out)
    if params.rank > max_rank:
        raise ConfigError(
            f"LoRA training parameter rank={params.rank} is too large for this model: it must be "
            f"between 1 and {max_rank} (the smallest dimension of the targeted layers)"
        )
    max_pos = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if max_pos is None:  # GPT-2 names its context n_positions
        max_pos = getattr(getattr(model, "config", None), "n_positions", None)
    if isinstance(max_pos, int) and params.seq_len > max_pos:
        raise ConfigError(
            f"LoRA training parameter seq_len={params.seq_len} exceeds the model's context of "
            f"{max_pos} positions; use seq_len <= {max_pos}"
        )
