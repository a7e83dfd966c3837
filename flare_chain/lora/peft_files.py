"""The global adapter as a PEFT adapter directory, written byte-deterministically.

The folder's IPFS CID goes on-chain and committee members recompute it, so the
same tensors must always give the same bytes. ``PeftModel.save_pretrained`` does
not: it writes ``target_modules`` in set order (which changes with Python's hash
seed), the local base-model path, the PEFT version and a README. We write the
same layout — ``adapter_config.json`` + ``adapter_model.safetensors`` — ourselves:
a fixed set of config keys in sorted order, and safetensors with sorted keys
and only the ``{"format": "pt"}`` metadata PEFT writes. ``PeftModel.from_pretrained``
loads it like any adapter it saved itself.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from flare_chain.errors import UpdateError
from flare_chain.lora.adapter import adapter_shapes, check_adapter, wrap_with_lora
from flare_chain.lora.base import base_model_id, load_base_model
from flare_chain.lora.params import LoraTrainParams
from flare_chain.lora.targets import needs_fan_in_fan_out, resolve_params

__all__ = [
    "ADAPTER_CONFIG_FILE",
    "ADAPTER_WEIGHTS_FILE",
    "adapter_config_dict",
    "adapter_safetensors_bytes",
    "load_peft_adapter",
    "save_peft_adapter",
]

ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"


def adapter_config_dict(params: LoraTrainParams, base_id: str, *, fan_in_fan_out: bool = False) -> dict[str, Any]:
    """The PEFT LoRA config we write: only fields that define the adapter, nothing host-specific.

    ``params`` must have its targets resolved; ``fan_in_fan_out`` is True for GPT-2-style Conv1D targets.
    Fields left out take PEFT's defaults when loaded (``LoraConfig.from_pretrained``).
    ``base_model_name_or_path`` is the base's stable id, not a local path.
    """
    return {
        "base_model_name_or_path": base_id,
        "bias": "none",
        "fan_in_fan_out": fan_in_fan_out,
        "inference_mode": True,
        "init_lora_weights": True,
        "lora_alpha": params.alpha,
        "lora_dropout": params.dropout,
        "modules_to_save": None,
        "peft_type": "LORA",
        "r": params.rank,
        "target_modules": list(params.targets),
        "task_type": "CAUSAL_LM",
        "use_dora": False,
        "use_rslora": False,
    }


def adapter_safetensors_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    """Safetensors bytes of ``tensors`` (float32, contiguous, sorted keys, PEFT's metadata)."""
    ordered = {k: tensors[k].detach().to(torch.float32).contiguous().cpu() for k in sorted(tensors)}
    return st_save(ordered, metadata={"format": "pt"})


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_peft_adapter(
    out_dir: Path,
    adapter: dict[str, torch.Tensor],
    base_model_dir: Path,
    params: LoraTrainParams,
    *,
    base_id: str | None = None,
) -> Path:
    """Write ``adapter`` as a PEFT adapter directory for ``base_model_dir``; returns ``out_dir``.

    The tensors are checked against the keys and shapes PEFT expects for this
    base and params (UpdateError otherwise). Same tensors, params and base id →
    byte-identical files. Each file is replaced atomically.
    """
    base = load_base_model(base_model_dir)
    params = resolve_params(base, params)
    fan_in_fan_out = needs_fan_in_fan_out(base, params.targets)
    peft_model = wrap_with_lora(base, params)
    check_adapter(adapter, adapter_shapes(peft_model), what="global adapter")
    config = adapter_config_dict(params, base_id or base_model_id(base_model_dir), fan_in_fan_out=fan_in_fan_out)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / ADAPTER_WEIGHTS_FILE, adapter_safetensors_bytes(adapter))
    _write_atomic(out / ADAPTER_CONFIG_FILE, (json.dumps(config, indent=2, sort_keys=True) + "\n").encode())
    return out


def load_peft_adapter(adapter_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a PEFT LoRA adapter directory: ``(tensors, config dict)``; UpdateError if unusable."""
    path = Path(adapter_dir)
    cfg_path, w_path = path / ADAPTER_CONFIG_FILE, path / ADAPTER_WEIGHTS_FILE
    for f in (cfg_path, w_path):
        if not f.is_file():
            raise UpdateError(f"adapter directory {path} has no {f.name}; it is not a PEFT adapter")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UpdateError(f"{cfg_path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        raise UpdateError(f"{cfg_path} does not describe a LoRA adapter (peft_type must be 'LORA')")
    try:
        raw = st_load(w_path.read_bytes())
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise UpdateError(f"{w_path} is not a readable safetensors file: {exc}") from exc
    tensors = {k: raw[k] for k in sorted(raw)}
    check_adapter(tensors, {k: tuple(v.shape) for k, v in tensors.items()}, what=str(w_path))
    return tensors, config
