"""The mutual-information filter: drop candidates whose model disagrees with the rest.

Every candidate model (global adapter + one update) predicts the next token
(argmax) at every position of a probe set. For every pair of candidates the
normalised mutual information of their two prediction sequences is computed
with scikit-learn's ``normalized_mutual_info_score`` (arithmetic
normalisation, in [0, 1]; 1 when one prediction determines the other). A
candidate's *agreement* is the median of its NMI with every other candidate;
candidates whose agreement has a robust z-score below ``−threshold`` are
dropped. This looks at what a model *does*, not at its weights, so it catches
updates that are harmless in norm and direction but change behaviour (data
poisoning), and it needs no labelled data.

**Probe set.** Every committee member and auditor must use the same probe.
:func:`seed_probe_windows` derives it from the round's on-chain seed alone:
printable-ASCII byte windows drawn by SHA-256 in counter mode. No data set has
to be agreed on or shipped, nothing depends on the Python version or the
machine, and a node cannot tune its update to the probe before the seed is
revealed. Callers may pass their own public probe windows instead (the
learning benchmark also does so with public held-out text).

NMI as defined by Strehl & Ghosh (2002), arithmetic-mean normalisation as
in scikit-learn's default.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from flare_chain.aggregation.base import ClientUpdate
from flare_chain.aggregation.candidate_model import CandidateModel
from flare_chain.aggregation.gates import Comparison, Gate, GateContext, GateDecision, reasons_of
from flare_chain.aggregation.robust import median, robust_z
from flare_chain.errors import ConfigError

if TYPE_CHECKING:
    from flare_chain.lora.params import LoraTrainParams

__all__ = [
    "MutualInformationFilter",
    "Predictor",
    "agreement_scores",
    "model_predictor",
    "nmi_decisions",
    "nmi_matrix",
    "nmi_outliers",
    "seed_probe_windows",
]

Predictor = Callable[[Mapping[str, torch.Tensor]], np.ndarray]
"""Maps an adapter (global + update) to its flat int array of next-token predictions on the probe."""

_PRINTABLE = [*range(32, 127), 10]


MI_MIN_SCALE = 0.1
"""Floor of the agreement scores' robust spread. Honest candidates often agree almost perfectly (spread
near 0), and without a floor a drop of a few hundredths in NMI would count as a gross outlier; with it a
candidate is dropped only when its agreement falls ``threshold`` × 0.1 below the round's median."""
MI_MIN_CANDIDATES = 4
"""Fewest candidates the filter judges: with fewer, a median agreement says too little and all pass."""


def seed_probe_windows(seed: bytes | int, *, count: int = 8, seq_len: int = 64) -> torch.Tensor:
    """``[count, seq_len]`` int64 token windows of printable ASCII bytes derived from ``seed`` only.

    SHA-256 of ``seed ‖ counter`` supplies the bytes; each picks one of the 96
    printable characters (95 visible + newline). The same seed gives the same
    windows on every machine.
    """
    if count < 1 or seq_len < 2:
        raise ConfigError(f"a probe needs count >= 1 and seq_len >= 2, got count={count}, seq_len={seq_len}")
    raw = seed if isinstance(seed, bytes) else int(seed).to_bytes(32, "big", signed=False)
    need = count * seq_len
    stream = bytearray()
    counter = 0
    while len(stream) < need:
        stream += hashlib.sha256(b"flare-chain probe" + raw + counter.to_bytes(8, "big")).digest()
        counter += 1
    ids = [_PRINTABLE[b % len(_PRINTABLE)] for b in stream[:need]]
    return torch.tensor(ids, dtype=torch.int64).reshape(count, seq_len)


def nmi_matrix(predictions: Sequence[np.ndarray]) -> np.ndarray:
    """Symmetric ``[n, n]`` matrix of pairwise NMI (scikit-learn), ones on the diagonal.

    Where either labelling is constant the entry is the share of equal predictions instead.
    """
    from sklearn.metrics import normalized_mutual_info_score

    n = len(predictions)
    out = np.ones((n, n), dtype=np.float64)
    constant = [len(np.unique(p)) < 2 for p in predictions]
    for i in range(n):
        for j in range(i + 1, n):
            if constant[i] or constant[j]:
                # NMI ignores label names, so it calls any two constant labellings identical and a constant one
                # unrelated to everything else; a small model that predicts one token almost everywhere would
                # then look like an outlier for its few other tokens. The share of equal predictions is the
                # agreement that still means something there.
                v = float(np.mean(np.asarray(predictions[i]) == np.asarray(predictions[j])))
            else:
                v = float(normalized_mutual_info_score(predictions[i], predictions[j]))
            out[i, j] = out[j, i] = v
    return out


def agreement_scores(matrix: np.ndarray) -> list[float]:
    """Each candidate's median NMI with every other candidate."""
    n = matrix.shape[0]
    return [median([float(matrix[i, j]) for j in range(n) if j != i]) for i in range(n)]


def nmi_outliers(
    predictions: Mapping[str, np.ndarray], *, threshold: float = 3.5, min_scale: float = MI_MIN_SCALE,
    min_candidates: int = MI_MIN_CANDIDATES,
) -> dict[str, str]:
    """``{node: reason}`` for the candidates whose agreement is a low outlier; pure and deterministic.

    ``predictions`` maps node → its flat prediction array (all the same
    length); nodes are taken in case-insensitive sorted order.
    """
    return reasons_of(nmi_decisions(predictions, threshold=threshold, min_scale=min_scale,
                                    min_candidates=min_candidates))


def nmi_decisions(
    predictions: Mapping[str, np.ndarray], *, threshold: float = 3.5, min_scale: float = MI_MIN_SCALE,
    min_candidates: int = MI_MIN_CANDIDATES,
) -> list[GateDecision]:
    """The MI rule, one decision per node (case-insensitive order): rejected when the agreement's robust z
    is below ``−threshold`` (statistic ``mi_z``); exact passes below ``min_candidates``."""
    nodes = sorted(predictions, key=str.lower)
    if len(nodes) < min_candidates:
        return [GateDecision(MutualInformationFilter.name, n, None) for n in nodes]
    lengths = {len(predictions[n]) for n in nodes}
    if len(lengths) != 1:
        raise ConfigError(f"all candidates must predict on the same probe; got lengths {sorted(lengths)}")
    scores = agreement_scores(nmi_matrix([np.asarray(predictions[n]) for n in nodes]))
    centre = median(scores)
    out: list[GateDecision] = []
    for node, s, z in zip(nodes, scores, robust_z(scores, min_scale=min_scale), strict=True):
        test = Comparison("mi_z", z, -threshold, rejects=z < -threshold)
        reason = (f"its model's predictions on the probe set agree with the others' far less than usual "
                  f"(median NMI {s:.3f} vs round median {centre:.3f}, robust z {z:+.1f}, "
                  f"threshold −{threshold:g})") if test.rejects else None
        out.append(GateDecision(MutualInformationFilter.name, node, reason, (test,)))
    return out


class MutualInformationFilter(Gate):
    """The MI filter as a gate; ``predictor`` runs a candidate adapter on the probe (injected I/O)."""

    name = "mutual_information"

    def __init__(self, predictor: Predictor, *, threshold: float = 3.5, min_scale: float = MI_MIN_SCALE,
                 min_candidates: int = MI_MIN_CANDIDATES) -> None:
        if not threshold > 0 or not math.isfinite(threshold):
            raise ConfigError(f"MI filter threshold must be a finite number > 0, got {threshold!r}")
        self.predictor = predictor
        self.threshold = float(threshold)
        self.min_scale = float(min_scale)
        self.min_candidates = int(min_candidates)

    def screen(self, candidates: Sequence[ClientUpdate], context: GateContext) -> dict[str, str]:
        return reasons_of(self.assess(candidates, context))

    def assess(self, candidates: Sequence[ClientUpdate], context: GateContext) -> list[GateDecision]:
        """:func:`nmi_decisions` on every candidate's predictions, in candidate order."""
        if len(candidates) < self.min_candidates:
            return [GateDecision(self.name, u.node, None) for u in candidates]
        predictions: dict[str, np.ndarray] = {}
        for update in candidates:
            predictions[update.node] = self.predictor(context.candidate(update.delta))
        by_node = {d.node: d for d in nmi_decisions(predictions, threshold=self.threshold, min_scale=self.min_scale,
                                                    min_candidates=self.min_candidates)}
        return [by_node[u.node] for u in candidates]


def model_predictor(model_dir: Path, params: LoraTrainParams, probe: torch.Tensor, *,
                    model: CandidateModel | None = None) -> Predictor:
    """A :data:`Predictor` that runs the base model at ``model_dir`` with a LoRA adapter on ``probe``.

    The base model is loaded once (or ``model`` is reused); each call swaps
    the adapter tensors in and returns the argmax next-token ids at every
    probe position (int64, flat), computed in eval mode under a fixed thread
    count, so it is deterministic.
    """
    runner = model if model is not None else CandidateModel(Path(model_dir), params)
    windows = probe.to(torch.long)

    def predict(adapter: Mapping[str, torch.Tensor]) -> np.ndarray:
        return runner.predictions(adapter, windows)

    return predict
