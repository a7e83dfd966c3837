"""Where a model runs: ``"auto" | "cpu" | "cuda"`` resolved once, and the matching autocast.

Training and a committee member's model runs take the device from the node's
settings (``[model] device``, ``flare-chain demo --device``, ``flare-chain audit
--device``); CPU stays the default and the tests' path. On a GPU that supports
it, training and held-out evaluation run under bf16 autocast (weights and the
LoRA tensors stay float32, so the adapter a node pins is float32 whatever the
device). The gates' model runs stay float32 on every device
(:mod:`flare_chain.aggregation.candidate_model`), and committee verdicts
compare their statistics with a tolerance band, never bit for bit
(:mod:`flare_chain.committee.verdict`), so they do not depend on the device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from flare_chain.errors import ConfigError

__all__ = ["DEVICE_CHOICES", "autocast_for", "resolve_device"]

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """``"auto"``: the first CUDA device when torch sees one, else the CPU; ``"cuda"`` insists on a GPU."""
    if name not in DEVICE_CHOICES:
        raise ConfigError(f"device {name!r} is not one of {', '.join(DEVICE_CHOICES)}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device = \"cuda\" but torch sees no CUDA GPU (a CPU build of torch, or no driver); "
                          "set device = \"auto\" or \"cpu\"")
    return torch.device("cuda", torch.cuda.current_device())


@contextlib.contextmanager
def autocast_for(device: torch.device) -> Iterator[None]:
    """bf16 autocast on a CUDA device that supports bf16; nothing on the CPU (exact float32 there)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield
