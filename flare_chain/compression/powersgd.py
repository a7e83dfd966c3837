"""PowerSGD low-rank compression of one update (Vogels, Karimireddy & Jaggi, NeurIPS 2019).

Each tensor ``M`` of an update, viewed as a matrix (``[shape[0], prod(rest)]``),
is approximated by ``P Qᵀ`` with ``P`` of shape ``[rows, q]`` and ``Q`` of shape
``[cols, q]``: one step of subspace (power) iteration,

    Q ← orthonormalize(Q_prev)     warm start: the Q this key ended the previous round with
    P ← orthonormalize(M Q)
    Q ← Mᵀ P                       so that P Qᵀ = P Pᵀ M, the projection of M on span(P)

and ``P``, ``Q`` are sent in a 16-bit wire dtype. Tensors for which the factors
would not be ``min_compression_rate`` times smaller than the dense tensor (or
that are not at least 2-D) are sent dense, as PyTorch's PowerSGD DDP hook does.

Everything here is pure: tensors in, tensors out. The node-side state (warm
starts and error feedback) lives in :mod:`flare_chain.compression.error_feedback`,
the wire format in :mod:`flare_chain.compression.codec`.

Reconstruction (:func:`reconstruct`) multiplies the wire-dtype factors in
float64 and rounds once to float32. Products of two 16-bit floats are exact
in float64, and the ``q`` rank-one terms are added one after another in rank
order with elementwise operations, never by a BLAS matmul, whose summation
order (and use of fused multiply-adds) depends on the CPU. So every machine
reconstructs the same bits (committee members on different CPUs must reach
the leader's aggregate CID), and what the receiver reconstructs is what the
sender's error feedback accounted for.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from flare_chain.errors import ConfigError, UpdateError

__all__ = [
    "WIRE_DTYPES",
    "CompressedUpdate",
    "LowRankFactors",
    "PowerSGDConfig",
    "compress",
    "decompress",
    "initial_q",
    "matrix_shape",
    "orthonormalize",
    "power_step",
    "reconstruct",
    "relative_error",
    "worth_compressing",
]

WIRE_DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
}


@dataclass(frozen=True)
class PowerSGDConfig:
    """How a node compresses its updates.

    ``rank`` is q, the number of columns of P and Q. ``min_compression_rate``:
    a tensor is compressed only when ``(rows + cols) * q * rate < rows * cols``
    (PyTorch's ``PowerSGDState.min_compression_rate``, default 2). ``dtype``
    is the wire dtype of factors and dense tensors (``float16``, ``bfloat16``,
    or ``float32`` for tests). ``seed`` fixes the first round's random Q.
    """

    rank: int = 4
    min_compression_rate: float = 2.0
    dtype: str = "float16"
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"PowerSGD rank must be an integer >= 1, got {self.rank!r}")
        if not math.isfinite(self.min_compression_rate) or self.min_compression_rate < 1.0:
            raise ConfigError(
                f"PowerSGD min_compression_rate must be a finite number >= 1, got {self.min_compression_rate!r}"
            )
        if self.dtype not in WIRE_DTYPES:
            raise ConfigError(f"PowerSGD dtype {self.dtype!r} is not one of {', '.join(WIRE_DTYPES)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"PowerSGD seed must be a non-negative integer, got {self.seed!r}")

    @property
    def wire_dtype(self) -> torch.dtype:
        return WIRE_DTYPES[self.dtype]


@dataclass(frozen=True)
class LowRankFactors:
    """``P`` ``[rows, q]`` and ``Q`` ``[cols, q]`` in the wire dtype; ``shape`` is the original tensor's."""

    p: torch.Tensor
    q: torch.Tensor
    shape: tuple[int, ...]

    @property
    def rank(self) -> int:
        return int(self.p.shape[1])


@dataclass(frozen=True)
class CompressedUpdate:
    """What crosses the wire: low-rank factors for some tensors, dense (wire-dtype) values for the rest."""

    dtype: str
    low_rank: Mapping[str, LowRankFactors] = field(default_factory=dict)
    dense: Mapping[str, torch.Tensor] = field(default_factory=dict)

    def names(self) -> list[str]:
        """All tensor names, sorted."""
        return sorted([*self.low_rank, *self.dense])

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Original shape of every tensor, sorted by name."""
        out = {k: f.shape for k, f in self.low_rank.items()}
        out.update({k: tuple(v.shape) for k, v in self.dense.items()})
        return {k: out[k] for k in sorted(out)}

    def payload_bytes(self) -> int:
        """Bytes of tensor data sent (factors and dense values), without the file header."""
        tensors = [
            *self.dense.values(),
            *(f.p for f in self.low_rank.values()),
            *(f.q for f in self.low_rank.values()),
        ]
        return sum(t.numel() * t.element_size() for t in tensors)


def matrix_shape(shape: tuple[int, ...]) -> tuple[int, int] | None:
    """The 2-D view PowerSGD works on (``[shape[0], prod(rest)]``), or None for 0-D/1-D tensors."""
    if len(shape) < 2:
        return None
    return int(shape[0]), int(math.prod(shape[1:]))


def worth_compressing(shape: tuple[int, ...], rank: int, min_compression_rate: float) -> bool:
    """True when rank-``rank`` factors are at least ``min_compression_rate`` times smaller than the tensor."""
    view = matrix_shape(shape)
    if view is None:
        return False
    rows, cols = view
    return (rows + cols) * rank * min_compression_rate < rows * cols


def orthonormalize(m: torch.Tensor) -> torch.Tensor:
    """Orthonormal columns spanning ``m``'s column space (Householder QR, float32).

    Deterministic: the sign of each column is fixed so that ``R``'s diagonal is
    non-negative. Householder QR returns orthonormal columns even for a
    rank-deficient (e.g. all-zero) ``m``, so ``P Pᵀ M`` stays a projection.
    """
    q, r = torch.linalg.qr(m.to(torch.float32), mode="reduced")
    signs = torch.where(torch.diagonal(r) < 0, -1.0, 1.0).to(q.dtype)
    return (q * signs).contiguous()


def initial_q(key: str, cols: int, rank: int, seed: int) -> torch.Tensor:
    """The first round's Q for tensor ``key``: standard normal, seeded by ``(seed, key)``, float32 ``[cols, rank]``.

    Seeding by the key's name (not by dict order) makes the start independent
    of which other tensors the update holds.
    """
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    return torch.randn(cols, rank, generator=gen, dtype=torch.float32)


def power_step(m: torch.Tensor, q_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One PowerSGD step on matrix ``m`` ``[rows, cols]`` from warm start ``q_prev`` ``[cols, q]``.

    Returns float32 ``(P, Q)`` with orthonormal ``P`` and ``P Qᵀ = P Pᵀ m``.
    """
    m32 = m.to(torch.float32)
    q = orthonormalize(q_prev)
    p = orthonormalize(m32 @ q)
    return p, (m32.T @ p).contiguous()


def reconstruct(factors: LowRankFactors) -> torch.Tensor:
    """``P Qᵀ`` from the wire-dtype factors, computed in float64, rounded once to float32, original shape."""
    view = matrix_shape(factors.shape)
    expected = None if view is None else ((view[0], factors.rank), (view[1], factors.rank))
    if expected is None or (tuple(factors.p.shape), tuple(factors.q.shape)) != expected:
        raise UpdateError(
            f"factors P {tuple(factors.p.shape)} and Q {tuple(factors.q.shape)} do not fit a tensor of shape "
            f"{factors.shape}"
        )
    p = factors.p.to(torch.float64)
    q = factors.q.to(torch.float64)
    product = torch.zeros((p.shape[0], q.shape[0]), dtype=torch.float64)
    for k in range(factors.rank):  # fixed order, exact products, one rounding per addition: CPU-independent
        product += p[:, k : k + 1] * q[:, k].unsqueeze(0)
    return product.to(torch.float32).reshape(factors.shape).contiguous()


def _check_finite(key: str, t: torch.Tensor, what: str) -> None:
    if not bool(torch.isfinite(t).all()):
        raise UpdateError(f"{what} {key!r} contains NaN or Inf; refusing to compress it")


def _to_wire(key: str, t: torch.Tensor, config: PowerSGDConfig) -> torch.Tensor:
    out = t.to(config.wire_dtype).contiguous()
    if not bool(torch.isfinite(out).all()):
        raise UpdateError(
            f"tensor {key!r} overflows {config.dtype} on the wire (max |value| {t.abs().max().item():.3g}); "
            "use dtype='bfloat16' or 'float32'"
        )
    return out


def compress(
    tensors: Mapping[str, torch.Tensor],
    config: PowerSGDConfig,
    warm_q: Mapping[str, torch.Tensor] | None = None,
) -> tuple[CompressedUpdate, dict[str, torch.Tensor]]:
    """Compress ``tensors`` once; returns ``(what to send, the float32 Q of each compressed key)``.

    ``warm_q`` holds the previous round's Q per key (a missing key starts from
    :func:`initial_q`). The returned Qs are the warm start for the next round.
    Raises UpdateError naming the tensor for NaN/Inf input, a warm start of the
    wrong shape, or a value that overflows the wire dtype.
    """
    warm_q = warm_q or {}
    low_rank: dict[str, LowRankFactors] = {}
    dense: dict[str, torch.Tensor] = {}
    next_q: dict[str, torch.Tensor] = {}
    for key in sorted(tensors):
        t = tensors[key].detach().cpu()
        _check_finite(key, t, "tensor")
        shape = tuple(int(d) for d in t.shape)
        view = matrix_shape(shape)
        if view is None or not worth_compressing(shape, config.rank, config.min_compression_rate):
            dense[key] = _to_wire(key, t, config)
            continue
        rows, cols = view
        q_prev = warm_q.get(key)
        if q_prev is None:
            q_prev = initial_q(key, cols, config.rank, config.seed)
        elif tuple(q_prev.shape) != (cols, config.rank):
            raise UpdateError(
                f"warm-start Q for {key!r} has shape {tuple(q_prev.shape)}, expected {(cols, config.rank)}; "
                "the tensor's shape or the rank changed, so reset the compressor state"
            )
        p, q = power_step(t.reshape(rows, cols), q_prev)
        low_rank[key] = LowRankFactors(p=_to_wire(key, p, config), q=_to_wire(key, q, config), shape=shape)
        next_q[key] = q
    return CompressedUpdate(dtype=config.dtype, low_rank=low_rank, dense=dense), next_q


def decompress(update: CompressedUpdate) -> dict[str, torch.Tensor]:
    """The float32 tensors the receiver gets, sorted by name: ``P Qᵀ`` (see :func:`reconstruct`) or dense values."""
    out: dict[str, torch.Tensor] = {}
    for key in update.names():
        if key in update.low_rank:
            out[key] = reconstruct(update.low_rank[key])
        else:
            out[key] = update.dense[key].to(torch.float32).contiguous()
    return out


def relative_error(target: Mapping[str, torch.Tensor], approx: Mapping[str, torch.Tensor]) -> float:
    """``‖target − approx‖_F / ‖target‖_F`` over all tensors together (float64); 0 when both are zero."""
    if set(target) != set(approx):
        raise UpdateError("cannot compare updates with different tensor names")
    num = 0.0
    den = 0.0
    for key in sorted(target):
        t = target[key].to(torch.float64)
        num += float(((t - approx[key].to(torch.float64)) ** 2).sum())
        den += float((t**2).sum())
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return math.sqrt(num / den)
