"""Exact aggregation of LoRA adapters: average the products B·A, then re-factor.

A LoRA module adds ``B A`` (``B`` ``[out, r]``, ``A`` ``[r, in]``) to a frozen
weight. Averaging the factors separately, ``(Σ wᵢ Bᵢ)(Σ wᵢ Aᵢ)``, is not the
average of the updates ``Σ wᵢ Bᵢ Aᵢ``: the cross terms ``wᵢ wⱼ Bᵢ Aⱼ`` do
not belong to any client. FedEx-LoRA (Singhal, Ponkshe & Vepakomma, "FedEx-LoRA:
Exact Aggregation for Federated and Efficient Fine-Tuning of Foundation
Models", 2024) computes the exact mean and folds the part that rank r cannot
hold into the frozen weights. Our base model is pinned by hash, so instead of
touching it we keep that part as a **residual** and add it to the next
round's mean before re-factoring (error feedback on the server): the error is
carried, not lost.

Per module, with weights ``wᵢ = nᵢ / Σn`` and client factors ``Aᵢ = A + ΔAᵢ``,
``Bᵢ = B + ΔBᵢ`` (global plus delta):

    T = Σ wᵢ Bᵢ Aᵢ (+ carried residual)  = L R,  L = [w₁B₁ … wₙBₙ Bᵣₑₛ],  R = [A₁; …; Aₙ; Aᵣₑₛ]

``T`` (``out × in``, rank ≤ k = n·r + carried) is never formed. Only its top r
singular triplets are needed, and how they are found depends on k:

* **k ≤ 4·w**, ``w = r + max(r, 10)`` (few clients), or **k > min(out, in)**
  (a carried residual has grown past the module's dimension): exactly. ``L = Q_L R_L``, ``Rᵀ = Q_R R_R``,
  ``R_L R_Rᵀ = U S Vᵀ``, so ``T = (Q_L U) S (Q_R V)ᵀ``; the residual is the
  remaining triplets (σ above rounding level), kept factored.
* **larger k**: a thin QR of ``out × k`` factors costs ``out·k²`` per module
  (1,034 s for 100 full-size updates), so the top r come from randomized
  subspace iteration on the factored product (Halko, Martinsson & Tropp,
  "Finding structure with randomness", SIAM Review 2011, Alg. 4.4 + 5.1):
  a fixed-seed Gaussian start of width w, two power iterations and the
  projection in float32 (the factors arrive as float32), the small SVD in
  float64. Cost ``out·k·w``; the truncation error is within 1% of the exact
  one (``tests/aggregation/test_exact_lora.py``; 100 full-size updates in
  the README). The residual is ``T − B'A' = [L, −B'] [R; A']``, kept as
  those two factors (rank k + r): a carried residual adds its rank to the
  next round's k, until k passes min(out, in) and the exact path compresses
  it back to at most min(out, in) − r triplets.

    B' = U[:, :r] S[:r],   A' = (V[:, :r])ᵀ,   residual = T − B'A'.

``A'`` has orthonormal rows and ``B'`` carries the singular values: a
direction with zero singular value keeps a unit row in A and a zero column in
B, which training can still move (a zero row in both would be dead, since each
factor's gradient is proportional to the other). Signs are fixed so that the
largest-magnitude entry of each left singular vector is positive. The exact
path runs in float64; both run in canonical node order with a fixed seed and
round once to float32, so the same inputs give the same bytes.

Tensors that are not LoRA factors (e.g. ``modules_to_save``) get the global
value plus the sample-weighted mean of their deltas.

**Bounded residual.** Left alone, the carried residual's rank grows by n·r a
round until it reaches min(out, in): on a 4096-wide model that is 4096·8192
floats per module, pinned with every adapter. ``max_residual_rank`` keeps
only the residual's top m singular triplets and drops the rest. What is
dropped is the part of the exact mean that neither the rank-r adapter nor
the m strongest residual directions hold; it is the smallest part of the
clients' mean (its singular values are below every kept one), it is never
replaced by anything the clients did not send, and with m = 0 the method is
plain truncated SVD of the exact mean (no error feedback at all), which is
still exact in B·A up to the rank-r truncation. So the bound trades how much
of the truncation error is carried forward, not correctness.

**Comparing results across machines.** Another CPU's LAPACK may flip the
signs of singular vectors, rotate them inside a (near-)degenerate singular
value, or round differently, so the bytes of two honest results can differ
while both are equally good rank-r approximations of the same mean. What a
second party checks (:func:`approximation_gap`) is therefore what the
result is for: with the exact target ``T`` (mean plus carried residual),
the adapter ``X = B'A'`` and the carried part ``X + residual``,
``‖T − X‖²`` and ``‖T − X − residual‖²`` of the proposal may exceed one's
own by at most a small share of ``‖X + residual‖²``. Both are best
low-rank approximations (Eckart–Young), so any honest rebuild lands on the
same errors, whatever its sign or rotation choice, and a proposal that moves
the adapter by ``Δ`` raises the first by about ``‖Δ‖²``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import torch

from flare_chain.aggregation.base import ClientUpdate, canonical_order, check_compatible
from flare_chain.errors import UpdateError

__all__ = [
    "LORA_A_SUFFIX",
    "LORA_B_SUFFIX",
    "POWER_ITERATIONS",
    "SKETCH_SEED",
    "ExactLoraAggregator",
    "ExactResult",
    "approximation_gap",
    "check_residual",
    "factorwise_fedavg_error",
    "lora_modules",
    "lora_products",
    "mean_lora_product",
    "product_error",
    "sketch_width",
]

LORA_A_SUFFIX = "lora_A.weight"
LORA_B_SUFFIX = "lora_B.weight"


SKETCH_SEED = 0x464C415245
"""Seed of the Gaussian start of the subspace iteration; part of the result, so fixed."""
POWER_ITERATIONS = 2
"""Power iterations of the subspace iteration; two bring the error within 1% of the exact one."""


@dataclass(frozen=True)
class ExactResult:
    """Outcome of one exact aggregation.

    ``adapter``: the new global adapter (float32, keys sorted, same keys and
    shapes as the old one). ``residual``: per LoRA module, factors
    ``<prefix>lora_B.weight`` ``[out, k]`` and ``<prefix>lora_A.weight`` ``[k, in]``
    (float32, ``k`` may be 0) whose product is the part of the mean that rank r
    could not hold; pass it as ``carried_residual`` next round (at most
    ``max_residual_rank`` triplets per module when the aggregator has a bound).
    ``rel_error``: ``‖target − B'A'‖_F / ‖target‖_F`` over all modules (0 when
    rank r sufficed); for a sketched module whose residual was cut to the
    bound it counts only the kept residual, so it is then a lower bound.
    """

    adapter: dict[str, torch.Tensor]
    residual: dict[str, torch.Tensor]
    norms: tuple[tuple[str, float, float | None], ...] = field(default=(), repr=False)
    """Per module: ``(prefix, ‖target‖²_F, ‖residual‖²_F)``, or ``(prefix, ‖B'A'‖²_F, None)`` when sketched."""

    @cached_property
    def rel_error(self) -> float:
        """``‖residual‖_F / ‖target‖_F``; for modules aggregated by sketch, computed here on first use.

        Those modules' residual norm needs the Gram matrices of the residual
        factors (``out·k²`` work), which the aggregate itself does not, so it
        is paid only by whoever reads this number.
        """
        err_sq = 0.0
        total_sq = 0.0
        for prefix, norm_sq, tail_sq in self.norms:
            if tail_sq is None:  # sketched: B'A' ⊥ residual, so ‖target‖² = ‖B'A'‖² + ‖residual‖²
                tail_sq = _frobenius_sq_gram(
                    self.residual[prefix + LORA_B_SUFFIX], self.residual[prefix + LORA_A_SUFFIX]
                )
                norm_sq += tail_sq
            err_sq += tail_sq
            total_sq += norm_sq
        return math.sqrt(err_sq / total_sq) if total_sq > 0 else 0.0


def lora_modules(keys: Sequence[str] | Mapping[str, object]) -> tuple[list[str], list[str]]:
    """``(module prefixes with a lora_A/lora_B pair, other keys)``, both sorted.

    A prefix is the key without its ``lora_A.weight`` suffix, e.g.
    ``base_model.model.model.layers.0.self_attn.q_proj.``. UpdateError when a
    factor has no partner.
    """
    names = set(keys)
    prefixes: set[str] = set()
    others: list[str] = []
    for key in sorted(names):
        if key.endswith(LORA_A_SUFFIX):
            prefix = key[: -len(LORA_A_SUFFIX)]
            if prefix + LORA_B_SUFFIX not in names:
                raise UpdateError(f"tensor {key!r} has no matching {prefix + LORA_B_SUFFIX!r}")
            prefixes.add(prefix)
        elif key.endswith(LORA_B_SUFFIX):
            prefix = key[: -len(LORA_B_SUFFIX)]
            if prefix + LORA_A_SUFFIX not in names:
                raise UpdateError(f"tensor {key!r} has no matching {prefix + LORA_A_SUFFIX!r}")
        else:
            others.append(key)
    return sorted(prefixes), others


def lora_products(adapter: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{prefix: B @ A}`` (float64, dense ``[out, in]``) for every LoRA module of ``adapter``."""
    prefixes, _ = lora_modules(adapter)
    return {
        p: adapter[p + LORA_B_SUFFIX].to(torch.float64) @ adapter[p + LORA_A_SUFFIX].to(torch.float64)
        for p in prefixes
    }


def _weights(updates: Sequence[ClientUpdate]) -> list[float]:
    total = sum(u.sample_count for u in updates)
    return [u.sample_count / total for u in updates]


def _validate(
    global_adapter: Mapping[str, torch.Tensor], updates: Sequence[ClientUpdate]
) -> list[ClientUpdate]:
    ordered = canonical_order(updates)
    check_compatible(ordered)
    keys = set(global_adapter)
    got = set(ordered[0].delta)
    if got != keys:
        missing = sorted(keys - got)
        extra = sorted(got - keys)
        raise UpdateError(
            f"updates do not match the global adapter (missing {missing[:3]}, extra {extra[:3]}); "
            "deltas must be taken against this round's global adapter"
        )
    for key in sorted(keys):
        g = global_adapter[key]
        if tuple(g.shape) != tuple(ordered[0].delta[key].shape):
            raise UpdateError(
                f"tensor {key!r} has shape {tuple(ordered[0].delta[key].shape)} in the updates, "
                f"{tuple(g.shape)} in the global adapter"
            )
        if not bool(torch.isfinite(g).all()):
            raise UpdateError(f"global adapter tensor {key!r} contains NaN or Inf")
    return ordered


def _stacks(
    global_adapter: Mapping[str, torch.Tensor],
    updates: Sequence[ClientUpdate],
    weights: Sequence[float],
    prefix: str,
    carried: Mapping[str, torch.Tensor] | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    spare: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``L = [w₁B₁ … wₙBₙ (Bᵣₑₛ) | spare]`` and ``R = [A₁; …; Aₙ; (Aᵣₑₛ); spare]``, canonical order, in ``dtype``.

    Client factors are global + delta, written straight into the stacked
    buffers (no temporaries). ``spare`` trailing columns of L and rows of R
    are left unset for the caller (the sketched path writes ``−B'`` and
    ``A'`` there, so the buffers become the residual without another copy).
    """
    key_a, key_b = prefix + LORA_A_SUFFIX, prefix + LORA_B_SUFFIX
    g_a, g_b = global_adapter[key_a].to(dtype), global_adapter[key_b].to(dtype)
    rank = g_a.shape[0]
    extra_a = carried[key_a] if carried and key_a in carried else None
    extra_b = carried[key_b] if carried and key_b in carried else None
    k = rank * len(updates) + (0 if extra_a is None else extra_a.shape[0])
    left = torch.empty(g_b.shape[0], k + spare, dtype=dtype)
    right = torch.empty(k + spare, g_a.shape[1], dtype=dtype)
    for i, (update, w) in enumerate(zip(updates, weights, strict=True)):
        block = slice(i * rank, (i + 1) * rank)
        left[:, block].copy_(update.delta[key_b]).add_(g_b).mul_(w)
        right[block].copy_(update.delta[key_a]).add_(g_a)
    if extra_a is not None and extra_b is not None:
        left[:, rank * len(updates) : k].copy_(extra_b)
        right[rank * len(updates) : k].copy_(extra_a)
    return left, right


def _low_rank_svd(left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD ``U S Vᵀ`` of ``left @ right`` without forming it; deterministic signs; float64."""
    q_l, r_l = torch.linalg.qr(left, mode="reduced")
    q_r, r_r = torch.linalg.qr(right.T, mode="reduced")
    u, s, vh = torch.linalg.svd(r_l @ r_r.T, full_matrices=False)
    return _fix_signs(q_l @ u, s, q_r @ vh.T)


def _sketched_svd(
    left: torch.Tensor, right: torch.Tensor, width: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The top ``width`` singular triplets of ``left @ right`` (float32 factors) by randomized subspace iteration.

    Halko, Martinsson & Tropp (2011), Alg. 4.4 with Rayleigh–Ritz (Alg. 5.1):
    every step multiplies by one factor at a time, so the cost is
    ``O((out + in) · k · width)``. The products run in float32, because
    skinny float64 matrix products are several times slower here and the
    factors came as float32; the basis is re-orthonormalised and the small
    SVD taken in float64, so the returned float64 ``u`` and ``v`` are
    orthonormal to float64 rounding. The start is a Gaussian from
    :data:`SKETCH_SEED`: the result is deterministic.
    """
    gen = torch.Generator().manual_seed(SKETCH_SEED)
    omega = torch.randn(right.shape[1], width, generator=gen, dtype=left.dtype)
    q, _ = torch.linalg.qr(left @ (right @ omega), mode="reduced")
    for _ in range(POWER_ITERATIONS):
        z, _ = torch.linalg.qr(right.T @ (left.T @ q), mode="reduced")
        q, _ = torch.linalg.qr(left @ (right @ z), mode="reduced")
    q64, _ = torch.linalg.qr(q.to(torch.float64), mode="reduced")
    projected = (q64.T.to(left.dtype) @ left) @ right
    u, s, vh = torch.linalg.svd(projected.to(torch.float64), full_matrices=False)
    return _fix_signs(q64 @ u, s, vh.T)


def _fix_signs(
    u: torch.Tensor, s: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # Sign convention (as scikit-learn's svd_flip): the largest |entry| of each left vector is positive.
    pivots = torch.argmax(u.abs(), dim=0)
    signs = torch.where(u[pivots, torch.arange(u.shape[1])] < 0, -1.0, 1.0).to(torch.float64)
    return u * signs, s, v * signs


def sketch_width(rank: int, fan_out: int, fan_in: int) -> int:
    """Columns of the subspace iteration for a rank-r module: r + max(r, 10) (oversampling), at most min(out, in)."""
    return min(rank + max(rank, 10), fan_out, fan_in)


def _frobenius_sq(left: torch.Tensor, right: torch.Tensor) -> float:
    """``‖left @ right‖_F²`` from the thin QRs of the factors (never forms the product)."""
    _, r_l = torch.linalg.qr(left, mode="reduced")
    _, r_r = torch.linalg.qr(right.T, mode="reduced")
    return float(((r_l @ r_r.T) ** 2).sum())


def _frobenius_sq_gram(b: torch.Tensor, a: torch.Tensor) -> float:
    """``‖b @ a‖_F²`` as ``Σ (bᵀb) ∘ (a aᵀ)`` in float64 (never forms the product)."""
    b64, a64 = b.to(torch.float64), a.to(torch.float64)
    return float(((b64.T @ b64) * (a64 @ a64.T)).sum())


class ExactLoraAggregator:
    """Exact FedAvg of LoRA products with rank-r re-factoring and a carried residual.

    Not an :class:`~flare_chain.aggregation.base.Aggregator`: it needs the
    global adapter the deltas were taken against (a client's factors are
    global + delta, and the product of sums is not the sum of products), so
    its verb is :meth:`aggregate_adapters`, which returns a full adapter, not
    a delta.
    """

    name = "exact_lora"

    def __init__(self, max_residual_rank: int | None = None, tolerance: float = 1e-6) -> None:
        """``max_residual_rank``: keep at most this many residual triplets per module (None: all; see the
        module docstring for what is dropped). ``tolerance``: the :func:`approximation_gap` a second party
        accepts between a proposal and its own rebuild."""
        if max_residual_rank is not None and max_residual_rank < 0:
            raise ValueError(f"max_residual_rank must be >= 0, got {max_residual_rank}")
        if not tolerance > 0:
            raise ValueError(f"tolerance must be > 0, got {tolerance}")
        self.max_residual_rank = max_residual_rank
        self.tolerance = tolerance

    def aggregate_adapters(
        self,
        global_adapter: Mapping[str, torch.Tensor],
        updates: Sequence[ClientUpdate],
        carried_residual: Mapping[str, torch.Tensor] | None = None,
    ) -> ExactResult:
        """The new global adapter from this round's accepted deltas, plus the residual to carry.

        Deterministic: the same global adapter, updates (in any order) and
        carried residual give byte-identical tensors on the same machine.
        Raises UpdateError naming the tensor for mismatched keys or shapes,
        NaN/Inf, a LoRA factor without its partner, rank above ``min(out, in)``,
        or a malformed carried residual (or one above ``max_residual_rank``).
        """
        ordered = _validate(global_adapter, updates)
        weights = _weights(ordered)
        prefixes, others = lora_modules(global_adapter)
        carried = dict(carried_residual or {})
        check_residual(global_adapter, carried, max_rank=self.max_residual_rank)
        limit = self.max_residual_rank

        adapter: dict[str, torch.Tensor] = {}
        residual: dict[str, torch.Tensor] = {}
        norms: list[tuple[str, float, float | None]] = []
        for prefix in prefixes:
            key_a, key_b = prefix + LORA_A_SUFFIX, prefix + LORA_B_SUFFIX
            rank, fan_in = global_adapter[key_a].shape
            fan_out = global_adapter[key_b].shape[0]
            if global_adapter[key_b].shape[1] != rank:
                raise UpdateError(
                    f"{key_b!r} has shape {tuple(global_adapter[key_b].shape)} but {key_a!r} has rank {rank}"
                )
            if rank > min(fan_in, fan_out):
                raise UpdateError(
                    f"LoRA rank {rank} of {prefix!r} exceeds min(out, in) = {min(fan_in, fan_out)}"
                )
            width = sketch_width(rank, fan_out, fan_in)
            stacked = rank * len(ordered) + (carried[key_a].shape[0] if key_a in carried else 0)
            if stacked <= 4 * width or stacked > min(fan_out, fan_in):
                left, right = _stacks(global_adapter, ordered, weights, prefix, carried)
                u, s, v = _low_rank_svd(left, right)
                tail = s[rank:]
                tol = float(s[0]) * max(fan_in, fan_out) * torch.finfo(torch.float64).eps if s.numel() else 0.0
                keep = rank + int((tail > tol).sum())
                if limit is not None:
                    keep = min(keep, rank + limit)  # the singular values are sorted: the tail is the smallest
                residual[key_b] = (u[:, rank:keep] * s[rank:keep]).to(torch.float32).contiguous()
                residual[key_a] = v[:, rank:keep].T.to(torch.float32).contiguous()
                norms.append((prefix, float((s**2).sum()), float((tail**2).sum())))
                adapter[key_b] = (u[:, :rank] * s[:rank]).to(torch.float32).contiguous()
                adapter[key_a] = v[:, :rank].T.to(torch.float32).contiguous()
            else:
                left, right = _stacks(
                    global_adapter, ordered, weights, prefix, carried, dtype=torch.float32, spare=rank
                )
                u, s, v = _sketched_svd(left[:, :stacked], right[:stacked], width)
                adapter[key_b] = (u[:, :rank] * s[:rank]).to(torch.float32).contiguous()
                adapter[key_a] = v[:, :rank].T.to(torch.float32).contiguous()
                # T − B'A' = [L, −B'] [R; A']: the whole target, less what the adapter delivers.
                left[:, stacked:].copy_(adapter[key_b]).neg_()
                right[stacked:].copy_(adapter[key_a])
                if limit is not None and stacked + rank > limit:
                    left, right = _top_triplets(left, right, limit)
                residual[key_b], residual[key_a] = left, right
                norms.append((prefix, float((s[:rank] ** 2).sum()), None))
        for key in others:
            acc = global_adapter[key].to(torch.float64).clone()
            for u_, w in zip(ordered, weights, strict=True):
                acc += u_.delta[key].to(torch.float64) * w
            adapter[key] = acc
        return ExactResult(
            adapter={k: adapter[k].to(torch.float32).contiguous() for k in sorted(adapter)},
            residual={k: residual[k] for k in sorted(residual)},
            norms=tuple(norms),
        )


def check_residual(
    global_adapter: Mapping[str, torch.Tensor],
    residual: Mapping[str, torch.Tensor],
    *,
    max_rank: int | None = None,
) -> None:
    """UpdateError unless ``residual`` is a well-formed carried residual for ``global_adapter``.

    Well-formed: only LoRA factor keys of the adapter, each module with both
    factors or neither, ``B`` ``[out, k]`` and ``A`` ``[k, in]`` with the
    adapter's out/in, finite values, and ``k <= max_rank`` when given.
    """
    prefixes, _ = lora_modules(global_adapter)
    expected = {p + s for p in prefixes for s in (LORA_A_SUFFIX, LORA_B_SUFFIX)}
    extra = sorted(set(residual) - expected)
    if extra:
        raise UpdateError(f"carried residual holds {extra[0]!r}, which is not a LoRA factor of the global adapter")
    for prefix in prefixes:
        key_a, key_b = prefix + LORA_A_SUFFIX, prefix + LORA_B_SUFFIX
        if (key_a in residual) != (key_b in residual):
            raise UpdateError(f"carried residual for {prefix!r} has only one of lora_A/lora_B")
        if key_a not in residual:
            continue
        res_a, res_b = residual[key_a], residual[key_b]
        fan_in = global_adapter[key_a].shape[1]
        fan_out = global_adapter[key_b].shape[0]
        if (
            res_a.ndim != 2
            or res_b.ndim != 2
            or res_a.shape[1] != fan_in
            or res_b.shape[0] != fan_out
            or (res_a.shape[0] != res_b.shape[1])
        ):
            raise UpdateError(
                f"carried residual for {prefix!r} has shapes B {tuple(res_b.shape)}, A {tuple(res_a.shape)}; "
                f"expected [{fan_out}, k] and [k, {fan_in}]"
            )
        if max_rank is not None and res_a.shape[0] > max_rank:
            raise UpdateError(
                f"carried residual for {prefix!r} has rank {res_a.shape[0]}, above the bound {max_rank}"
            )
        for key, t in ((key_a, res_a), (key_b, res_b)):
            if not t.is_floating_point():
                raise UpdateError(f"carried residual {key!r} has dtype {t.dtype}; it must be floating point")
            if not bool(torch.isfinite(t).all()):
                raise UpdateError(f"carried residual {key!r} contains NaN or Inf")


def _top_triplets(left: torch.Tensor, right: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors ``(U_m S_m, V_mᵀ)`` (float32) of the top ``count`` singular triplets of ``left @ right``.

    Chosen like the aggregate itself: exactly for few columns or past the
    module's dimension, else by the seeded subspace iteration.
    """
    k = left.shape[1]
    fan_out, fan_in = left.shape[0], right.shape[1]
    if count == 0:
        return left.new_zeros(fan_out, 0, dtype=torch.float32), right.new_zeros(0, fan_in, dtype=torch.float32)
    width = sketch_width(count, fan_out, fan_in)
    if k <= 4 * width or k > min(fan_out, fan_in):
        u, s, v = _low_rank_svd(left.to(torch.float64), right.to(torch.float64))
    else:
        u, s, v = _sketched_svd(left.to(torch.float32), right.to(torch.float32), width)
    count = min(count, int(s.numel()))
    return ((u[:, :count] * s[:count]).to(torch.float32).contiguous(),
            v[:, :count].T.to(torch.float32).contiguous())


def _factors(
    tensors: Mapping[str, torch.Tensor], extra: Mapping[str, torch.Tensor] | None, prefix: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, A)`` of one module in float64, with ``extra``'s factors (a residual) appended when given."""
    b = tensors[prefix + LORA_B_SUFFIX].to(torch.float64)
    a = tensors[prefix + LORA_A_SUFFIX].to(torch.float64)
    if extra is not None and prefix + LORA_A_SUFFIX in extra:
        b = torch.cat([b, extra[prefix + LORA_B_SUFFIX].to(torch.float64)], dim=1)
        a = torch.cat([a, extra[prefix + LORA_A_SUFFIX].to(torch.float64)], dim=0)
    return b, a


def _error_offset(target: tuple[torch.Tensor, torch.Tensor], approx: tuple[torch.Tensor, torch.Tensor]) -> float:
    """``‖T − BA‖² − ‖T‖² = ‖BA‖² − 2⟨T, BA⟩`` for ``T = left @ right``, from ``k × r`` products only."""
    (left, right), (b, a) = target, approx
    inner = float(((left.T @ b) * (right @ a.T)).sum())
    return _frobenius_sq_gram(b, a) - 2.0 * inner


def approximation_gap(
    global_adapter: Mapping[str, torch.Tensor],
    updates: Sequence[ClientUpdate],
    carried_residual: Mapping[str, torch.Tensor] | None,
    reference: ExactResult,
    adapter: Mapping[str, torch.Tensor],
    residual: Mapping[str, torch.Tensor],
) -> tuple[str, float]:
    """How much worse ``adapter`` and ``residual`` approximate the exact target than ``reference`` does.

    Per LoRA module, with ``T`` the exact mean plus the carried residual (the
    target both were built from), ``X = B'A'`` and ``Y = X + residual``:
    ``max(‖T − X‖² − ‖T − X_ref‖², ‖T − Y‖² − ‖T − Y_ref‖²) / ‖Y_ref‖²``
    (``‖Y_ref‖²`` replaced by 1 for an all-zero module). Returns the worst
    module's ``(prefix, gap)``; ``("", 0.0)`` when every module is at least as
    good. Non-LoRA tensors must be equal (they are elementwise float64 sums,
    the same bytes on every CPU), and keys and shapes must be the reference's;
    otherwise the gap is infinite for the key that differs.

    Invariant to sign flips and rotations of singular vectors, because only
    products and norms enter. ``‖T‖²`` cancels, so ``T`` is never formed:
    ``‖T − BA‖² − ‖T‖² = ‖BA‖² − 2⟨T, BA⟩``, both from ``k × r`` products.
    """
    ordered = _validate(global_adapter, updates)
    weights = _weights(ordered)
    prefixes, others = lora_modules(global_adapter)
    carried = dict(carried_residual or {})
    for key, ref in reference.adapter.items():
        if key not in adapter or tuple(adapter[key].shape) != tuple(ref.shape):
            return key, math.inf
    if set(adapter) != set(reference.adapter):
        return sorted(set(adapter) ^ set(reference.adapter))[0], math.inf
    for key in others:
        if not torch.equal(adapter[key].to(torch.float32), reference.adapter[key]):
            return key, math.inf
    worst = ("", 0.0)
    for prefix in prefixes:
        target = _stacks(global_adapter, ordered, weights, prefix, carried)
        ref_x, ref_y = _factors(reference.adapter, None, prefix), _factors(reference.adapter, reference.residual, prefix)
        own_x, own_y = _factors(adapter, None, prefix), _factors(adapter, residual, prefix)
        scale = _frobenius_sq_gram(*ref_y) or 1.0
        gap = max(_error_offset(target, own_x) - _error_offset(target, ref_x),
                  _error_offset(target, own_y) - _error_offset(target, ref_y)) / scale
        if gap > worst[1]:
            worst = (prefix, gap)
    return worst


def mean_lora_product(
    global_adapter: Mapping[str, torch.Tensor], updates: Sequence[ClientUpdate]
) -> dict[str, torch.Tensor]:
    """The true target ``{prefix: Σ wᵢ Bᵢ Aᵢ}`` (float64, dense ``[out, in]``); for tests and benchmarks."""
    ordered = _validate(global_adapter, updates)
    weights = _weights(ordered)
    prefixes, _ = lora_modules(global_adapter)
    out: dict[str, torch.Tensor] = {}
    for prefix in prefixes:
        left, right = _stacks(global_adapter, ordered, weights, prefix)
        out[prefix] = left @ right
    return out


def product_error(
    adapter: Mapping[str, torch.Tensor],
    global_adapter: Mapping[str, torch.Tensor],
    updates: Sequence[ClientUpdate],
) -> float:
    """``‖B'A' − Σ wᵢ Bᵢ Aᵢ‖_F / ‖Σ wᵢ Bᵢ Aᵢ‖_F`` over all modules, for any aggregated ``adapter``.

    Computed from stacked factors and thin QRs, so it is cheap at realistic
    sizes (4096-wide layers) too.
    """
    ordered = _validate(global_adapter, updates)
    weights = _weights(ordered)
    prefixes, _ = lora_modules(global_adapter)
    num = 0.0
    den = 0.0
    for prefix in prefixes:
        left, right = _stacks(global_adapter, ordered, weights, prefix)
        den += _frobenius_sq(left, right)
        agg_b = adapter[prefix + LORA_B_SUFFIX].to(torch.float64)
        agg_a = adapter[prefix + LORA_A_SUFFIX].to(torch.float64)
        num += _frobenius_sq(torch.cat([agg_b, -left], dim=1), torch.cat([agg_a, right], dim=0))
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return math.sqrt(num / den)


def factorwise_fedavg_error(
    global_adapter: Mapping[str, torch.Tensor], updates: Sequence[ClientUpdate]
) -> float:
    """Relative error of factor-wise FedAvg, ``(Σ wᵢ Bᵢ)(Σ wᵢ Aᵢ)``, against the true mean ``Σ wᵢ Bᵢ Aᵢ``."""
    ordered = _validate(global_adapter, updates)
    weights = _weights(ordered)
    averaged: dict[str, torch.Tensor] = {}
    for key in sorted(global_adapter):
        acc = global_adapter[key].to(torch.float64).clone()
        for u, w in zip(ordered, weights, strict=True):
            acc += u.delta[key].to(torch.float64) * w
        averaged[key] = acc
    return product_error(averaged, global_adapter, ordered)
