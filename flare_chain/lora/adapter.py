"""LoRA adapters in memory: wrap a base model with PEFT, read and write its LoRA tensors.

An adapter is a plain ``dict[str, torch.Tensor]`` keyed exactly as
``peft.get_peft_model_state_dict`` keys it (``base_model.model.…q_proj.lora_A.weight``),
so it round-trips through ``set_peft_model_state_dict`` and PEFT's own files.
Every node starts round 1 from the same :func:`initial_adapter`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from flare_chain.errors import UpdateError
from flare_chain.lora._runtime import seeded
from flare_chain.lora.base import check_params_for_model, load_base_model
from flare_chain.lora.params import LoraTrainParams
from flare_chain.lora.targets import needs_fan_in_fan_out, resolve_params

__all__ = [
    "adapter_shapes",
    "adapter_tensors",
    "check_adapter",
    "initial_adapter",
    "lora_config",
    "set_adapter_tensors",
    "wrap_with_lora",
]


def lora_config(
    params: LoraTrainParams, *, inference_mode: bool = False, fan_in_fan_out: bool = False
):  # -> peft.LoraConfig
    """The PEFT ``LoraConfig`` for resolved ``params`` (plain LoRA: no DoRA, no rsLoRA, no bias).

    ``fan_in_fan_out`` must be True when the targets are GPT-2-style ``Conv1D`` layers.
    """
    from peft import LoraConfig

    return LoraConfig(
        r=params.rank,
        lora_alpha=params.alpha,  # type: ignore[arg-type]  # PEFT hints int, scales by any number
        lora_dropout=params.dropout,
        target_modules=list(params.targets),
        fan_in_fan_out=fan_in_fan_out,
        bias="none",
        task_type="CAUSAL_LM",
        init_lora_weights=True,
        inference_mode=inference_mode,
    )


def wrap_with_lora(base: nn.Module, params: LoraTrainParams, *, seed: int | None = None) -> nn.Module:
    """Wrap ``base`` (in place) as a PEFT LoRA model; the LoRA init is drawn from ``seed``.

    PEFT's default init: ``lora_A`` Kaiming-uniform, ``lora_B`` zeros, so the
    wrapped model computes exactly what the base does. Unset target modules
    are detected from ``base`` (:mod:`flare_chain.lora.targets`).
    """
    from peft import get_peft_model

    params = resolve_params(base, params)
    check_params_for_model(base, params)
    config = lora_config(params, fan_in_fan_out=needs_fan_in_fan_out(base, params.targets))
    with seeded(params.seed if seed is None else seed, params.num_threads), warnings.catch_warnings():
        # PEFT asks transformers about gradient checkpointing through a name v5 deprecated.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(base, config)


def adapter_tensors(peft_model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached float32 CPU copies of the model's LoRA tensors, in sorted key order (wherever the model runs)."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(peft_model)
    return {k: state[k].detach().to("cpu", torch.float32).clone().contiguous() for k in sorted(state)}


def adapter_shapes(peft_model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Expected key → shape of this model's adapter."""
    return {k: tuple(v.shape) for k, v in adapter_tensors(peft_model).items()}


def check_adapter(
    tensors: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], *, what: str = "adapter"
) -> None:
    """Raise UpdateError unless ``tensors`` has exactly the expected keys and shapes, float and finite."""
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing:
        raise UpdateError(
            f"{what} is missing {len(missing)} tensor(s), e.g. {missing[0]!r}; "
            f"it was made for a different model or target_modules"
        )
    if extra:
        raise UpdateError(
            f"{what} has {len(extra)} unexpected tensor(s), e.g. {extra[0]!r}; "
            f"it was made for a different model or target_modules"
        )
    for key in sorted(expected):
        t = tensors[key]
        if not isinstance(t, torch.Tensor) or not t.dtype.is_floating_point:
            raise UpdateError(
                f"{what} tensor {key!r} has dtype {getattr(t, 'dtype', type(t))}; expected float"
            )
        if tuple(t.shape) != tuple(expected[key]):
            raise UpdateError(
                f"{what} tensor {key!r} has shape {tuple(t.shape)}, expected {tuple(expected[key])}"
            )
        if not bool(torch.isfinite(t).all()):
            raise UpdateError(f"{what} tensor {key!r} contains NaN or Inf; refusing it")


def set_adapter_tensors(
    peft_model: nn.Module, tensors: dict[str, torch.Tensor], *, what: str = "adapter"
) -> None:
    """Load ``tensors`` into the PEFT model after checking keys, shapes and values."""
    from peft import set_peft_model_state_dict

    check_adapter(tensors, adapter_shapes(peft_model), what=what)
    result = set_peft_model_state_dict(peft_model, {k: v.to(torch.float32) for k, v in tensors.items()})
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if unexpected:  # pragma: no cover - guarded by check_adapter
        raise UpdateError(f"{what}: PEFT did not accept tensor {unexpected[0]!r}")


def initial_adapter(
    model_dir: Path, params: LoraTrainParams, seed: int | None = None
) -> dict[str, torch.Tensor]:
    """The round-1 adapter every node shares: PEFT's default LoRA init drawn from ``seed``.

    Deterministic: the same base architecture, params and seed give identical
    tensors (``lora_B`` is all zeros, so the adapted model equals the base).
    """
    model = wrap_with_lora(load_base_model(model_dir), params, seed=seed)
    return adapter_tensors(model)
