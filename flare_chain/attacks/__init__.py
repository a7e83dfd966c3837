"""Attacks as node behaviours, for tests, the demo and the learning benchmark.

* :mod:`~flare_chain.attacks.deltas` — pure update-level attacks (sign flip,
  scaling, noise, non-finite, wrong shape, colluding, adapter negation);
* :mod:`~flare_chain.attacks.omniscient` — ALIE, IPM, min-max, min-sum,
  crafted from the round's honest updates;
* :mod:`~flare_chain.attacks.data` — label poisoning, backdoors and the
  backdoor's attack success rate;
* :mod:`~flare_chain.attacks.behaviour` — the registry (:data:`BEHAVIOURS`)
  that names each one for configs and tables.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from flare_chain.attacks.behaviour import BEHAVIOURS, AttackSettings, Behaviour, RoundView, behaviour
from flare_chain.attacks.data import (
    attack_success_rate,
    backdoor_pairs,
    backdoor_texts,
    poison_texts,
    wrong_responses,
)
from flare_chain.attacks.deltas import (
    Delta,
    adapter_negation,
    colluding_update,
    gaussian_noise,
    non_finite,
    rescale_to,
    scale,
    sign_flip,
    with_relative_noise,
    wrong_shape,
)
from flare_chain.attacks.omniscient import alie, alie_z, ipm, min_max, min_sum

__all__ = [
    "BEHAVIOURS",
    "DELTA_ATTACKS",
    "AttackSettings",
    "Behaviour",
    "RoundView",
    "adapter_negation",
    "alie",
    "alie_z",
    "attack_success_rate",
    "backdoor_pairs",
    "backdoor_texts",
    "behaviour",
    "colluding_update",
    "gaussian_noise",
    "ipm",
    "min_max",
    "min_sum",
    "non_finite",
    "poison_texts",
    "rescale_to",
    "scale",
    "sign_flip",
    "with_relative_noise",
    "wrong_responses",
    "wrong_shape",
]

DELTA_ATTACKS: dict[str, Callable[[Delta], dict[str, torch.Tensor]]] = {
    "sign_flip": sign_flip,
    "scale10": lambda d: scale(d, 10.0),
    "scale100": lambda d: scale(d, 100.0),
    "noise": gaussian_noise,
    "nan": non_finite,
    "inf": lambda d: non_finite(d, value=float("inf")),
    "wrong_shape": wrong_shape,
}
"""Update-level attacks that need only the node's own delta, by name (kept for existing callers)."""
