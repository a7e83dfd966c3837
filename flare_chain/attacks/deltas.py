"""Update-level attacks: pure functions from honest deltas to what a malicious node sends.

Each takes the delta(s) it needs and returns a fresh float32 dict (inputs are
never touched); randomness comes from an explicit ``seed``, so an attacked
run repeats exactly.

* :func:`sign_flip` — ``−delta``: pushes the model up the loss surface;
* :func:`scale` — ``k · delta`` (×10, ×100): a boosted update that dominates a mean;
* :func:`gaussian_noise` — ``delta + N(0, σ²)``, σ relative to the delta's RMS by default;
* :func:`non_finite` — NaN or Inf written into the delta;
* :func:`wrong_shape` — one tensor with an extra column: a malformed update;
* :func:`colluding_update` — the negated mean of the honest deltas, rescaled to
  the median honest norm (its size looks honest);
* :func:`rescale_to` / :func:`with_relative_noise` — the two disguises the
  adaptive attacks share: an honest-looking norm, and independent noise so
  that colluders sending "the same" vector are not bit-identical;
* :func:`adapter_negation` — ``(s·A, −s·B)`` on every LoRA pair: the model at
  ``g + Δ`` and at ``g − Δ`` is the same, ``(1 − s²)·B·A``, so a symmetric
  (first-order) probe-loss test reads exactly 0 while the update erases
  (s = 1) or negates (s = √2) everything learned so far.

The omniscient attacks of the literature (ALIE, IPM, min-max, min-sum) live
in :mod:`flare_chain.attacks.omniscient`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from flare_chain.errors import ConfigError

__all__ = [
    "Delta",
    "adapter_negation",
    "colluding_update",
    "delta_norm",
    "gaussian_noise",
    "median_norm",
    "non_finite",
    "rescale_to",
    "scale",
    "sign_flip",
    "with_relative_noise",
    "wrong_shape",
]

Delta = Mapping[str, torch.Tensor]


def _clone(delta: Delta) -> dict[str, torch.Tensor]:
    return {k: delta[k].detach().to(torch.float32).clone() for k in sorted(delta)}


def sign_flip(delta: Delta) -> dict[str, torch.Tensor]:
    """``−delta``."""
    return {k: -v for k, v in _clone(delta).items()}


def scale(delta: Delta, factor: float = 10.0) -> dict[str, torch.Tensor]:
    """``factor · delta`` (a boosting attack)."""
    if not math.isfinite(factor):
        raise ConfigError(f"scaling factor must be finite, got {factor!r}")
    return {k: v * factor for k, v in _clone(delta).items()}


def _rms(delta: Delta) -> float:
    total = sum(float((v.to(torch.float64) ** 2).sum()) for v in delta.values())
    count = sum(v.numel() for v in delta.values())
    return math.sqrt(total / count) if count else 0.0


def gaussian_noise(delta: Delta, *, relative_sigma: float = 10.0, sigma: float | None = None,
                   seed: int = 0) -> dict[str, torch.Tensor]:
    """``delta`` plus i.i.d. Gaussian noise; σ is ``sigma`` or ``relative_sigma`` × the delta's RMS."""
    s = float(sigma) if sigma is not None else relative_sigma * _rms(delta)
    if not s >= 0 or not math.isfinite(s):
        raise ConfigError(f"noise sigma must be a finite number >= 0, got {s!r}")
    gen = torch.Generator().manual_seed(seed)
    return {k: v + s * torch.randn(v.shape, generator=gen, dtype=torch.float32) for k, v in _clone(delta).items()}


def non_finite(delta: Delta, *, value: float = math.nan, fraction: float = 0.01,
               seed: int = 0) -> dict[str, torch.Tensor]:
    """``delta`` with ``value`` (NaN by default, or ±Inf) in about ``fraction`` of the entries (at least one)."""
    if math.isfinite(value):
        raise ConfigError(f"non_finite wants NaN or ±Inf, got {value!r}")
    out = _clone(delta)
    gen = torch.Generator().manual_seed(seed)
    for k in sorted(out):
        mask = torch.rand(out[k].shape, generator=gen) < fraction
        out[k][mask] = value
    first = sorted(out)[0]
    out[first].view(-1)[0] = value
    return out


def wrong_shape(delta: Delta) -> dict[str, torch.Tensor]:
    """``delta`` with one extra column of zeros on its first tensor (by name)."""
    out = _clone(delta)
    key = sorted(out)[0]
    t = out[key]
    out[key] = torch.cat([t.reshape(t.shape[0], -1), torch.zeros(t.shape[0], 1)], dim=1)
    return out


def delta_norm(delta: Delta) -> float:
    """L2 norm of the whole delta (all tensors), float64."""
    return math.sqrt(sum(float((delta[k].to(torch.float64) ** 2).sum()) for k in sorted(delta)))


def median_norm(honest: Sequence[Delta]) -> float:
    """The median L2 norm of ``honest`` (upper median for an even count)."""
    if not honest:
        raise ConfigError("an attack that imitates honest norms needs at least one honest delta")
    norms = sorted(delta_norm(h) for h in honest)
    return norms[len(norms) // 2]


def rescale_to(delta: Delta, norm: float) -> dict[str, torch.Tensor]:
    """``delta`` scaled to L2 norm ``norm`` (a zero delta stays zero)."""
    if not norm >= 0 or not math.isfinite(norm):
        raise ConfigError(f"target norm must be a finite number >= 0, got {norm!r}")
    current = delta_norm(delta)
    factor = norm / current if current > 0 else 0.0
    return {k: (delta[k].to(torch.float64) * factor).to(torch.float32) for k in sorted(delta)}


def with_relative_noise(delta: Delta, relative: float, *, seed: int) -> dict[str, torch.Tensor]:
    """``delta`` plus Gaussian noise whose total L2 norm is about ``relative`` × the delta's norm.

    Colluders that each add their own (seeded) noise send vectors that are
    not bit-identical, which is all a bit-exact duplicate check looks at.
    """
    if not relative >= 0 or not math.isfinite(relative):
        raise ConfigError(f"relative noise must be a finite number >= 0, got {relative!r}")
    out = _clone(delta)
    if relative == 0:
        return out
    count = sum(v.numel() for v in out.values())
    sigma = relative * delta_norm(delta) / math.sqrt(count) if count else 0.0
    gen = torch.Generator().manual_seed(seed)
    return {k: v + sigma * torch.randn(v.shape, generator=gen, dtype=torch.float32) for k, v in out.items()}


def colluding_update(honest: Sequence[Delta]) -> dict[str, torch.Tensor]:
    """The delta every colluder sends: the negated honest mean, rescaled to the median honest norm."""
    if not honest:
        raise ConfigError("colluding_update needs at least one honest delta to imitate")
    keys = sorted(honest[0])
    mean = {k: -torch.stack([h[k].to(torch.float64) for h in honest]).mean(dim=0) for k in keys}
    return rescale_to(mean, median_norm(honest))


def adapter_negation(global_tensors: Delta, factor: float = math.sqrt(2.0)) -> dict[str, torch.Tensor]:
    """``(factor·A, −factor·B)`` for every LoRA pair of the global adapter (other tensors: zero).

    ``(B − sB)(A + sA) = (B + sB)(A − sA) = (1 − s²)·B·A``: applied with either
    sign the update leaves the same model, so any test of ``L(g + Δ) − L(g − Δ)``
    sees no change at all, while the learned product is scaled by ``1 − s²``
    (0 at s = 1, −B·A at s = √2). It needs only the global adapter, which every node has.
    """
    if not math.isfinite(factor):
        raise ConfigError(f"adapter_negation factor must be finite, got {factor!r}")
    out: dict[str, torch.Tensor] = {}
    for key in sorted(global_tensors):
        value = global_tensors[key].detach().to(torch.float32)
        if ".lora_A" in key:
            out[key] = value * factor
        elif ".lora_B" in key:
            out[key] = value * -factor
        else:
            out[key] = torch.zeros_like(value)
    return out


