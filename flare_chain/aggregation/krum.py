"""Krum and Multi-Krum (Blanchard, El Mhamdi, Guerraoui & Stainer, NeurIPS 2017).

Each update, flattened over all its tensors (sorted by name), is scored by
the sum of squared distances to its ``n − f − 2`` nearest other updates,
where ``f`` is the number of Byzantine updates tolerated. An update inside
the honest cluster has close neighbours and a low score; an outlier does not.
Krum returns the best-scored update; Multi-Krum the mean of the ``m`` best
(scores computed once, as in the paper and Flower's ``MultiKrum``).

The guarantee needs ``n > 2f + 2``; fewer updates raise ConfigError. Ties in
score go to the update that comes first in canonical node order, so the
selection is deterministic.

Sample counts do not affect the selection (a distance filter must not be
swayed by a claimed count). Multi-Krum's mean over the selected updates is
weighted by sample count, like FedAvg and Flower's ``aggregate_krum``;
``weighted=False`` gives the plain mean.

Distances are accumulated tensor by tensor in float64 from Gram matrices of
the centred updates (centring removes the common part, so the
``‖x‖² + ‖y‖² − 2x·y`` form does not cancel catastrophically); memory stays
at one tensor's worth of n updates at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from flare_chain.aggregation.base import Aggregator, ClientUpdate, canonical_order, check_compatible
from flare_chain.errors import ConfigError

__all__ = ["Krum", "MultiKrum", "krum_scores", "krum_select", "pairwise_sq_distances"]


def pairwise_sq_distances(updates: Sequence[ClientUpdate]) -> torch.Tensor:
    """``[n, n]`` float64 squared Euclidean distances between the flattened deltas; symmetric, zero diagonal."""
    n = len(updates)
    dist = torch.zeros(n, n, dtype=torch.float64)
    for key in sorted(updates[0].delta):
        x = torch.stack([u.delta[key].reshape(-1).to(torch.float64) for u in updates])
        x = x - x.mean(dim=0, keepdim=True)
        gram = x @ x.T
        sq = torch.diagonal(gram)
        dist += (sq[:, None] + sq[None, :] - 2.0 * gram).clamp_min(0.0)
    upper = torch.triu(dist, diagonal=1)
    return upper + upper.T


def _check_byzantine(n: int, num_byzantine: int) -> None:
    if n <= 2 * num_byzantine + 2:
        raise ConfigError(
            f"Krum with num_byzantine={num_byzantine} needs more than {2 * num_byzantine + 2} updates "
            f"(n > 2f + 2), got {n}; lower num_byzantine or accept more updates"
        )


def krum_scores(distances: torch.Tensor, num_byzantine: int) -> list[float]:
    """Score of each update: sum of its ``n − f − 2`` smallest squared distances to the others."""
    n = distances.shape[0]
    _check_byzantine(n, num_byzantine)
    neighbours = n - num_byzantine - 2
    scores = []
    for i in range(n):
        others = torch.cat([distances[i, :i], distances[i, i + 1 :]])
        nearest, _ = torch.sort(others)
        scores.append(float(nearest[:neighbours].sum()))
    return scores


def krum_select(updates: Sequence[ClientUpdate], num_byzantine: int, num_selected: int) -> list[int]:
    """Indices (into ``updates``) of the ``num_selected`` best-scored updates, best first; ties by index."""
    n = len(updates)
    _check_byzantine(n, num_byzantine)
    if not 1 <= num_selected <= n:
        raise ConfigError(f"Multi-Krum num_selected must be in [1, {n}] for {n} updates, got {num_selected}")
    scores = krum_scores(pairwise_sq_distances(updates), num_byzantine)
    return sorted(range(n), key=lambda i: (scores[i], i))[:num_selected]


def _validated(updates: Sequence[ClientUpdate]) -> list[ClientUpdate]:
    ordered = canonical_order(updates)
    check_compatible(ordered)
    return ordered


def _check_num_byzantine(num_byzantine: int) -> None:
    if isinstance(num_byzantine, bool) or not isinstance(num_byzantine, int) or num_byzantine < 0:
        raise ConfigError(f"Krum num_byzantine (f) must be an integer >= 0, got {num_byzantine!r}")


class Krum(Aggregator):
    """The single update with the best Krum score, as is."""

    name = "krum"

    def __init__(self, num_byzantine: int) -> None:
        _check_num_byzantine(num_byzantine)
        self.num_byzantine = num_byzantine

    def selected(self, updates: Sequence[ClientUpdate]) -> list[str]:
        """Node of the chosen update (canonical order applied first), for detection metrics."""
        ordered = _validated(updates)
        return [ordered[i].node for i in krum_select(ordered, self.num_byzantine, 1)]

    def combine(self, updates: Sequence[ClientUpdate]) -> dict[str, torch.Tensor]:
        best = updates[krum_select(updates, self.num_byzantine, 1)[0]]
        return {key: best.delta[key].to(torch.float64).clone() for key in sorted(best.delta)}


class MultiKrum(Aggregator):
    """Mean of the ``num_selected`` best-scored updates (default ``n − f``), weighted by sample count."""

    name = "multikrum"

    def __init__(self, num_byzantine: int, num_selected: int | None = None, *, weighted: bool = True) -> None:
        _check_num_byzantine(num_byzantine)
        if num_selected is not None and (
            isinstance(num_selected, bool) or not isinstance(num_selected, int) or num_selected < 1
        ):
            raise ConfigError(
                f"Multi-Krum num_selected must be an integer >= 1 or None, got {num_selected!r}"
            )
        self.num_byzantine = num_byzantine
        self.num_selected = num_selected
        self.weighted = weighted

    def _m(self, n: int) -> int:
        return self.num_selected if self.num_selected is not None else max(1, n - self.num_byzantine)

    def selected(self, updates: Sequence[ClientUpdate]) -> list[str]:
        """Nodes of the chosen updates, best first (canonical order applied first), for detection metrics."""
        ordered = _validated(updates)
        return [ordered[i].node for i in krum_select(ordered, self.num_byzantine, self._m(len(ordered)))]

    def combine(self, updates: Sequence[ClientUpdate]) -> dict[str, torch.Tensor]:
        # Accumulate in canonical order (sorted indices), not score order, so equal
        # selections give equal bytes.
        chosen = sorted(krum_select(updates, self.num_byzantine, self._m(len(updates))))
        weights = [float(updates[i].sample_count) if self.weighted else 1.0 for i in chosen]
        total = sum(weights)
        out: dict[str, torch.Tensor] = {}
        for key in sorted(updates[0].delta):
            acc = torch.zeros(updates[0].delta[key].shape, dtype=torch.float64)
            for i, w in zip(chosen, weights, strict=True):
                acc += updates[i].delta[key].to(torch.float64) * (w / total)
            out[key] = acc
        return out
