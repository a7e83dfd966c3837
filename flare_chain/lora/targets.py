"""Which layers of a causal LM LoRA adapts: detected from the model, or named by the operator.

Architectures name their attention projections differently — Llama, Qwen2,
Mistral and Phi ``q_proj``/``k_proj``/``v_proj`` (+ ``o_proj`` or ``dense``),
GPT-2 a fused ``c_attn`` and ``c_proj`` built from ``transformers``'
``Conv1D`` (a Linear with its weight transposed), GPT-NeoX and Falcon
``query_key_value``/``dense``, Phi-3 ``qkv_proj``. :func:`detect_target_modules`
reads them off the model: every Linear or Conv1D inside a module whose name
says attention (``attn``, ``attention``, ``self_attn``, …), never the output
head or an embedding. A name that also matches a layer outside attention
(GPT-2's ``c_proj`` is in the MLP too) is qualified with its parent
(``attn.c_proj``), so PEFT's suffix matching picks exactly the attention
layers. A model without attention-named modules gets every Linear/Conv1D
but the head.

``LoraTrainParams.target_modules`` left unset (None) means "detect";
:func:`resolve_params` turns it into the explicit, sorted list that PEFT,
manifests and the policy gate see, so every node of a federation and the
auditor agree on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from flare_chain.errors import ConfigError, TrainingError
from flare_chain.lora.params import LoraTrainParams

__all__ = [
    "detect_target_modules",
    "lora_layers",
    "matches_target",
    "model_skeleton",
    "needs_fan_in_fan_out",
    "resolve_params",
]

_ATTENTION_WORDS = ("attn", "attention")
_HEAD_NAMES = frozenset({"lm_head", "embed_out", "output", "score"})


def _conv1d_type() -> type[nn.Module] | None:
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - every supported transformers has it
        return None
    return Conv1D


def lora_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every layer LoRA can adapt, by full dotted name: ``nn.Linear`` and GPT-2's ``Conv1D``.

    The output head (``get_output_embeddings``, or a layer named lm_head /
    embed_out) and embeddings are left out: adapting them is not attention
    fine-tuning and ties them to the vocabulary.
    """
    conv1d = _conv1d_type()
    kinds: tuple[type[nn.Module], ...] = (nn.Linear,) if conv1d is None else (nn.Linear, conv1d)
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    out: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if not isinstance(module, kinds) or module is head:
            continue
        if name.rsplit(".", 1)[-1] in _HEAD_NAMES:
            continue
        out[name] = module
    return out


def matches_target(full_name: str, target: str) -> bool:
    """PEFT's rule for a list of target names: the full name, or a dotted suffix of it."""
    return full_name == target or full_name.endswith("." + target)


def _in_attention(name: str) -> bool:
    parents = name.split(".")[:-1]
    return any(word in part.lower() for part in parents for word in _ATTENTION_WORDS)


def detect_target_modules(model: nn.Module) -> tuple[str, ...]:
    """The attention projections of ``model`` as PEFT target names, sorted (see the module docstring)."""
    layers = lora_layers(model)
    if not layers:
        raise ConfigError(
            f"the model ({type(model).__name__}) has no Linear or Conv1D layers LoRA could adapt; "
            "it is not a supported causal LM"
        )
    chosen = [n for n in layers if _in_attention(n)] or list(layers)
    others = [n for n in layers if n not in set(chosen)]
    targets: set[str] = set()
    for name in chosen:
        parts = name.split(".")
        short = parts[-1]
        if any(matches_target(o, short) for o in others) and len(parts) >= 2:
            short = ".".join(parts[-2:])
        targets.add(short)
    return tuple(sorted(targets))


def needs_fan_in_fan_out(model: nn.Module, targets: tuple[str, ...]) -> bool:
    """Whether the targeted layers store their weight as (in, out), i.e. are Conv1D (PEFT must be told)."""
    conv1d = _conv1d_type()
    if conv1d is None:
        return False
    hit = [m for n, m in lora_layers(model).items() if any(matches_target(n, t) for t in targets)]
    kinds = {isinstance(m, conv1d) for m in hit}
    if len(kinds) > 1:
        raise ConfigError(
            "target_modules mixes Conv1D and Linear layers, which one LoRA config cannot adapt together; "
            "name layers of one kind in target_modules"
        )
    return kinds == {True}


def model_skeleton(model_dir: Path) -> nn.Module:
    """The model of ``model_dir`` built from its ``config.json`` on the meta device: module names, no weights.

    Enough to detect targets in milliseconds, whatever the model's size.
    """
    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise TrainingError(f"base model directory {path} has no config.json; it is not a Hugging Face model")
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        with torch.device("meta"), torch.random.fork_rng(devices=[]):
            return AutoModelForCausalLM.from_config(config)
    except (ValueError, KeyError, OSError, json.JSONDecodeError) as exc:
        raise TrainingError(f"cannot build a causal LM from {path / 'config.json'}: {exc}") from exc


def resolve_params(model: nn.Module | Path, params: LoraTrainParams) -> LoraTrainParams:
    """``params`` with ``target_modules`` filled in from ``model`` (a module or a model folder) when unset.

    Explicit targets are returned unchanged (checked against the model later,
    by :func:`flare_chain.lora.base.check_params_for_model`).
    """
    if params.target_modules is not None:
        return params
    module = model if isinstance(model, nn.Module) else model_skeleton(Path(model))
    return params.model_copy(update={"target_modules": detect_target_modules(module)})
