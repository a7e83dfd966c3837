"""Attacks as node behaviours, for tests, the demo and the learning benchmark.

Each attack is a small pure function of what an honest node would send (its
delta) or of its local data, returning what a malicious node sends instead.
Randomness comes from an explicit ``seed``, so an attacked run can be
repeated exactly. :data:`DELTA_ATTACKS` names the update-level ones for
command lines and benchmark tables.

* :func:`sign_flip` — ``−delta``: pushes the model up the loss surface;
* :func:`scale` — ``k · delta`` (×10, ×100): a boosted update that dominates a mean;
* :func:`gaussian_noise` — ``delta + N(0, σ²)``, σ relative to the delta's RMS by default;
* :func:`non_finite` — NaN or Inf written into the delta;
* :func:`wrong_shape` — one tensor with an extra column: a malformed update;
* :func:`poison_texts` — label/data poisoning of the local set: every text's
  bytes are shuffled within lines (so the node learns noise in the shape of code);
* :func:`colluding_update` — one crafted delta every colluder sends bit for bit:
  the negated mean of the honest deltas, rescaled to the median honest norm
  (so its size looks honest and the colluders look like a tight cluster).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence

import torch

from flare_chain.errors import ConfigError

__all__ = [
    "DELTA_ATTACKS",
    "colluding_update",
    "gaussian_noise",
    "non_finite",
    "poison_texts",
    "scale",
    "sign_flip",
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


def poison_texts(texts: Sequence[str], *, seed: int = 0) -> list[str]:
    """Data poisoning of a local set: the characters of every line shuffled (seeded), line breaks kept.

    The node still trains "normally", so its update has an honest size, but
    it teaches the model noise in place of the language.
    """
    rng = random.Random(seed)
    out = []
    for text in texts:
        lines = []
        for line in text.split("\n"):
            chars = list(line)
            rng.shuffle(chars)
            lines.append("".join(chars))
        out.append("\n".join(lines))
    return out


def colluding_update(honest: Sequence[Delta]) -> dict[str, torch.Tensor]:
    """The delta every colluder sends: the negated honest mean, rescaled to the median honest norm."""
    if not honest:
        raise ConfigError("colluding_update needs at least one honest delta to imitate")
    keys = sorted(honest[0])
    mean = {k: torch.stack([h[k].to(torch.float64) for h in honest]).mean(dim=0) for k in keys}
    norms = sorted(math.sqrt(sum(float((h[k].to(torch.float64) ** 2).sum()) for k in keys)) for h in honest)
    target = norms[len(norms) // 2]
    current = math.sqrt(sum(float((mean[k] ** 2).sum()) for k in keys))
    factor = -target / current if current > 0 else 0.0
    return {k: (mean[k] * factor).to(torch.float32) for k in keys}


DELTA_ATTACKS: dict[str, Callable[[Delta], dict[str, torch.Tensor]]] = {
    "sign_flip": sign_flip,
    "scale10": lambda d: scale(d, 10.0),
    "scale100": lambda d: scale(d, 100.0),
    "noise": gaussian_noise,
    "nan": non_finite,
    "inf": lambda d: non_finite(d, value=math.inf),
    "wrong_shape": wrong_shape,
}
"""Update-level attacks by name, each ``delta → malicious delta`` with default settings."""
