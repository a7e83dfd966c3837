"""Optional differential privacy: per-update L2 clipping, Gaussian noise, and the budget it costs.

The Gaussian mechanism of DP-FedAvg (McMahan, Ramage, Talwar & Zhang, ICLR
2018): every accepted update is clipped to L2 norm ``clip_norm``, the clipped
updates are averaged with equal weights (so one node moves the mean by at most
``clip_norm / n``), and Gaussian noise of standard deviation
``noise_multiplier · clip_norm / n`` is added to every coordinate. The
privacy budget (ε at a stated δ, node-level) is tracked by Google's
``dp-accounting`` RDP accountant, composing one Gaussian event per round
(every registered node takes part each round, so no subsampling
amplification is claimed).

Determinism: the noise is drawn from a generator seeded with ``seed`` (use the
round's on-chain seed), so committee members recompute the same noisy
aggregate. This protects what the *published global adapter* reveals about a
node's data. It does not hide the individual updates, which sit on IPFS for
the committee to check; a node that wants that applies :func:`privatize_update`
to its own delta before pinning (local DP), at a larger cost in accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from flare_chain.aggregation.base import Aggregator, ClientUpdate
from flare_chain.errors import ConfigError

__all__ = [
    "DP_NOISE_TAIL",
    "DPFedAvg",
    "PrivacyAccountant",
    "add_noise",
    "clip_update",
    "l2_norm",
    "local_dp_norm_bound",
    "privatize_update",
]

DP_NOISE_TAIL = 6.0
"""Standard deviations of slack in :func:`local_dp_norm_bound`: an honest update exceeds it with probability
below exp(-6²/2) ≈ 1.5·10⁻⁸."""


def _positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ConfigError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {value!r}")
    return v


def clip_update(delta: Mapping[str, torch.Tensor], clip_norm: float) -> tuple[dict[str, torch.Tensor], float]:
    """``(delta scaled so its global L2 norm is at most clip_norm, the norm before clipping)``; float64."""
    c = _positive("clip_norm", clip_norm)
    keys = sorted(delta)
    norm = math.sqrt(sum(float((delta[k].to(torch.float64) ** 2).sum()) for k in keys))
    factor = min(1.0, c / norm) if norm > 0 else 1.0
    return {k: delta[k].to(torch.float64) * factor for k in keys}, norm


def l2_norm(tensors: Mapping[str, torch.Tensor]) -> float:
    """Global L2 norm over every tensor, accumulated in float64 in sorted key order."""
    return math.sqrt(sum(float((tensors[k].to(torch.float64) ** 2).sum()) for k in sorted(tensors)))


def local_dp_norm_bound(clip_norm: float, noise_multiplier: float, dimension: int) -> float:
    """The largest L2 norm an honestly clipped-and-noised update may have (the committee's check).

    The clipped part has norm at most ``clip_norm``; the noise is N(0, σ²I_d) with
    σ = noise_multiplier·clip_norm, whose norm is at most σ(√d + t) except with
    probability exp(−t²/2) (Gaussian concentration of a 1-Lipschitz function).
    With t = :data:`DP_NOISE_TAIL` an honest node is refused about once in 10⁸
    updates, while a node that skipped clipping (or sent a larger delta) is caught
    as soon as its excess passes the noise's slack.
    """
    sigma = _positive("noise_multiplier", noise_multiplier, allow_zero=True) * _positive("clip_norm", clip_norm)
    return clip_norm + sigma * (math.sqrt(dimension) + DP_NOISE_TAIL)


def add_noise(tensors: Mapping[str, torch.Tensor], std: float, seed: int) -> dict[str, torch.Tensor]:
    """``tensors`` plus i.i.d. N(0, std²) per coordinate, drawn in sorted key order from ``seed``; float64."""
    s = _positive("noise std", std, allow_zero=True)
    gen = torch.Generator().manual_seed(int(seed) & (2**63 - 1))
    return {k: tensors[k].to(torch.float64) + s * torch.randn(tensors[k].shape, generator=gen, dtype=torch.float64)
            for k in sorted(tensors)}


def privatize_update(delta: Mapping[str, torch.Tensor], clip_norm: float, noise_multiplier: float,
                     seed: int) -> dict[str, torch.Tensor]:
    """Local DP for one node: clip to ``clip_norm``, add N(0, (noise_multiplier·clip_norm)²); float32."""
    clipped, _ = clip_update(delta, clip_norm)
    noisy = add_noise(clipped, _positive("noise_multiplier", noise_multiplier, allow_zero=True) * clip_norm, seed)
    return {k: v.to(torch.float32) for k, v in noisy.items()}


class DPFedAvg(Aggregator):
    """Equal-weight mean of clipped updates plus seeded Gaussian noise (DP-FedAvg, fixed clipping)."""

    name = "dp_fedavg"

    def __init__(self, clip_norm: float, noise_multiplier: float, *, seed: int = 0) -> None:
        self.clip_norm = _positive("clip_norm", clip_norm)
        self.noise_multiplier = _positive("noise_multiplier", noise_multiplier, allow_zero=True)
        self.seed = int(seed)

    def noise_std(self, n: int) -> float:
        """Per-coordinate noise standard deviation for ``n`` accepted updates."""
        return self.noise_multiplier * self.clip_norm / n

    def combine(self, updates: Sequence[ClientUpdate]) -> dict[str, torch.Tensor]:
        n = len(updates)
        acc: dict[str, torch.Tensor] = {}
        for update in updates:
            clipped, _ = clip_update(update.delta, self.clip_norm)
            for k, v in clipped.items():
                acc[k] = acc[k] + v if k in acc else v.clone()
        mean = {k: acc[k] / n for k in sorted(acc)}
        return add_noise(mean, self.noise_std(n), self.seed)


class PrivacyAccountant:
    """ε spent so far at a fixed δ, by the RDP accountant of Google's ``dp-accounting``.

    One :meth:`step` per round composes a Gaussian mechanism with
    ``noise_multiplier`` (optionally Poisson-subsampled with
    ``sampling_probability`` when only a random share of nodes takes part).
    """

    def __init__(self, noise_multiplier: float, *, target_delta: float = 1e-5,
                 sampling_probability: float = 1.0) -> None:
        self.noise_multiplier = _positive("noise_multiplier", noise_multiplier)
        if not 0 < target_delta < 1:
            raise ConfigError(f"target_delta must be in (0, 1), got {target_delta!r}")
        if not 0 < sampling_probability <= 1:
            raise ConfigError(f"sampling_probability must be in (0, 1], got {sampling_probability!r}")
        self.target_delta = float(target_delta)
        self.sampling_probability = float(sampling_probability)
        self.rounds = 0

    def _event(self):  # -> dp_accounting.DpEvent
        try:
            from dp_accounting import dp_event
        except ImportError as exc:  # pragma: no cover - dependency is declared
            raise ConfigError("privacy accounting needs dp-accounting: pip install 'dp-accounting>=0.4,<0.6'") from exc
        event = dp_event.GaussianDpEvent(self.noise_multiplier)
        if self.sampling_probability < 1:
            event = dp_event.PoissonSampledDpEvent(self.sampling_probability, event)
        return event

    def step(self, rounds: int = 1) -> float:
        """Account for ``rounds`` more rounds; returns ε spent in total."""
        if rounds < 0:
            raise ConfigError(f"rounds must be >= 0, got {rounds}")
        self.rounds += rounds
        return self.epsilon

    def epsilon_after(self, rounds: int) -> float:
        """ε at ``target_delta`` after ``rounds`` rounds (0 for none)."""
        if rounds == 0:
            return 0.0
        from dp_accounting import dp_event
        from dp_accounting.rdp import RdpAccountant

        accountant = RdpAccountant()
        accountant.compose(dp_event.SelfComposedDpEvent(self._event(), rounds))
        return float(accountant.get_epsilon(self.target_delta))

    @property
    def epsilon(self) -> float:
        """ε spent over the rounds stepped so far."""
        return self.epsilon_after(self.rounds)
