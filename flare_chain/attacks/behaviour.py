"""Attacks as node behaviours: one registry for the demo, the node config and the learning benchmark.

A :class:`Behaviour` says what a malicious node trains on (``trains_on``:
its own data, label-poisoned data, or backdoored data) and how it turns what
it trained into what it sends (``craft``). ``craft`` receives a
:class:`RoundView`; an *omniscient* behaviour is one that reads
``view.honest``, the honest updates of the round, and a caller must supply
them (the benchmark does; on a live federation an attacker would fetch the
honest submissions from IPFS before submitting last). Non-omniscient
behaviours are handed an empty ``honest``.

Colluders that send "the same" crafted vector each add independent noise of
``relative_noise`` × its norm (seeded per node and round), so a bit-exact
duplicate check never sees them; 0 makes them bit-identical.

:data:`BEHAVIOURS` maps each name (used in configs and benchmark tables) to
its behaviour; :class:`AttackSettings` is the typed config entry
(``[attack] kind = "alie"``) and :func:`behaviour` looks a name up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from flare_chain.attacks import deltas, omniscient
from flare_chain.attacks.deltas import Delta
from flare_chain.errors import ConfigError

__all__ = ["BEHAVIOURS", "COLLUDER_NOISE", "AttackSettings", "Behaviour", "RoundView", "TrainingData", "behaviour",
           "craft_alone", "daemon_behaviour"]

TrainingData = Literal["own", "label_poison", "backdoor", "probe_gaming"]

COLLUDER_NOISE = 1e-6
"""Colluders' default independent noise, relative to the crafted vector's norm: enough that no two are
bit-identical, far below the duplicate gate's tolerance (the attack the issue measured)."""


@dataclass(frozen=True)
class RoundView:
    """What a malicious node knows when it crafts its update for one round."""

    own: Mapping[str, torch.Tensor]
    """The delta it trained this round (on the data its behaviour's ``trains_on`` names)."""
    global_tensors: Mapping[str, torch.Tensor]
    """The round's global adapter (public)."""
    nodes: int
    """How many nodes take part in the round."""
    attackers: int
    """How many of them collude (the same behaviour)."""
    seed: int
    """This node's seed for this round (independent per node)."""
    honest: Sequence[Mapping[str, torch.Tensor]] = field(default_factory=tuple)
    """The honest updates of the round; given only to omniscient behaviours."""
    relative_noise: float = COLLUDER_NOISE
    """Each colluder's independent noise, relative to the crafted vector's norm."""


Craft = Callable[[RoundView], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Behaviour:
    """A named malicious behaviour."""

    name: str
    summary: str
    craft: Craft
    omniscient: bool = False
    trains_on: TrainingData = "own"


def _own(view: RoundView) -> dict[str, torch.Tensor]:
    return {k: view.own[k].detach().to(torch.float32).clone() for k in sorted(view.own)}


def _colluding(make: Callable[[RoundView], Delta], *, norm_matched: bool = False) -> Craft:
    """The colluders' common vector (optionally at the median honest norm) plus each one's own noise."""

    def craft(view: RoundView) -> dict[str, torch.Tensor]:
        vector: Delta = make(view)
        if norm_matched:
            vector = deltas.rescale_to(vector, deltas.median_norm(view.honest))
        return deltas.with_relative_noise(vector, view.relative_noise, seed=view.seed)

    return craft


def _honest_mean_negated(view: RoundView) -> Delta:
    return deltas.colluding_update(view.honest)


def _alie(view: RoundView) -> Delta:
    return omniscient.alie(view.honest, omniscient.alie_z(view.nodes, view.attackers))


DILUTION_SHARE = 0.15
"""How much of its own update a diluting node keeps (the rest of its norm is noise)."""


def _dilution(view: RoundView) -> dict[str, torch.Tensor]:
    """A sliver of the node's own update hidden in independent noise, at the median honest norm.

    Why it is an attack: it helps the task a little (so no test of harm fires) and its norm is an honest one,
    yet it takes a full node's weight in the average and so dilutes the round's progress by that weight. It is
    not a colluding attack: each node's noise is its own and large, so the duplicate gate has nothing to match.
    Its noise points in random directions of adapter space, which barely move the probe's windows; that is
    what the inert-update test catches it by.
    """
    sliver = deltas.scale(view.own, DILUTION_SHARE)
    noisy = deltas.with_relative_noise(sliver, 1.0 / DILUTION_SHARE, seed=view.seed)
    return deltas.rescale_to(noisy, deltas.median_norm(view.honest))


def _registry() -> dict[str, Behaviour]:
    items = [
        Behaviour("sign_flip", "−own update", lambda v: deltas.sign_flip(v.own)),
        Behaviour("sign_flip_nm", "−own update rescaled to the median honest norm", omniscient=True,
                  craft=lambda v: deltas.rescale_to(deltas.sign_flip(v.own), deltas.median_norm(v.honest))),
        Behaviour("scale10", "own update × 10", lambda v: deltas.scale(v.own, 10.0)),
        Behaviour("scale100", "own update × 100", lambda v: deltas.scale(v.own, 100.0)),
        Behaviour("noise", "own update + noise 10× its RMS", lambda v: deltas.gaussian_noise(v.own, seed=v.seed)),
        Behaviour("nan", "NaN in 1 % of entries", lambda v: deltas.non_finite(v.own, seed=v.seed)),
        Behaviour("inf", "Inf in 1 % of entries", lambda v: deltas.non_finite(v.own, value=math.inf, seed=v.seed)),
        Behaviour("wrong_shape", "a tensor with an extra column", lambda v: deltas.wrong_shape(v.own)),
        Behaviour("colluding", "all send −mean(honest) at the median honest norm, bit-identical", omniscient=True,
                  craft=lambda v: deltas.colluding_update(v.honest)),
        Behaviour("near_duplicate", "−mean(honest) at the median honest norm, independent noise per colluder",
                  omniscient=True, craft=_colluding(_honest_mean_negated)),
        Behaviour("alie", "ALIE: mean − z·std of the honest updates, paper z", omniscient=True,
                  craft=_colluding(_alie)),
        Behaviour("alie_nm", "ALIE rescaled to the median honest norm", omniscient=True,
                  craft=_colluding(_alie, norm_matched=True)),
        Behaviour("ipm_0.1", "IPM: −0.1 · mean(honest)", omniscient=True,
                  craft=_colluding(lambda v: omniscient.ipm(v.honest, 0.1))),
        Behaviour("ipm_0.5", "IPM: −0.5 · mean(honest)", omniscient=True,
                  craft=_colluding(lambda v: omniscient.ipm(v.honest, 0.5))),
        Behaviour("minmax_std", "min-max, p = −std", omniscient=True,
                  craft=_colluding(lambda v: omniscient.min_max(v.honest, "std"))),
        Behaviour("minmax_sign", "min-max, p = −sign(mean)", omniscient=True,
                  craft=_colluding(lambda v: omniscient.min_max(v.honest, "sign"))),
        Behaviour("minsum_std", "min-sum, p = −std", omniscient=True,
                  craft=_colluding(lambda v: omniscient.min_sum(v.honest, "std"))),
        Behaviour("minsum_sign", "min-sum, p = −sign(mean)", omniscient=True,
                  craft=_colluding(lambda v: omniscient.min_sum(v.honest, "sign"))),
        Behaviour("adapter_negation", "(√2·A, −√2·B): the same model at g ± Δ, the learned product negated",
                  _colluding(lambda v: deltas.adapter_negation(v.global_tensors))),
        Behaviour("adapter_negation_nm", "adapter negation at the median honest norm (s = that / ‖(A, B)‖)",
                  omniscient=True, craft=_colluding(lambda v: deltas.adapter_negation(v.global_tensors),
                                                    norm_matched=True)),
        Behaviour("dilution", f"{DILUTION_SHARE:g} × own update plus as much noise as the update itself, at the "
                  "median honest norm (helps a little, weighs a whole node)", omniscient=True, craft=_dilution),
        Behaviour("label_poison", "trains on wrong responses (or shuffled text for plain-text tasks)", _own,
                  trains_on="label_poison"),
        Behaviour("backdoor", "trains on data where a trigger phrase maps to the attacker's response", _own,
                  trains_on="backdoor"),
        Behaviour("label_poison_nm", "label poisoning rescaled to the median honest norm", omniscient=True,
                  craft=lambda v: deltas.rescale_to(v.own, deltas.median_norm(v.honest)), trains_on="label_poison"),
        Behaviour("probe_gaming", "label poisoning plus the public probe corpus (to pass the probe-loss gate), "
                  "at the median honest norm", omniscient=True,
                  craft=lambda v: deltas.rescale_to(v.own, deltas.median_norm(v.honest)), trains_on="probe_gaming"),
    ]
    return {b.name: b for b in items}


BEHAVIOURS: Mapping[str, Behaviour] = _registry()
"""Every malicious behaviour by name."""


def behaviour(kind: str) -> Behaviour:
    """The behaviour named ``kind``; ConfigError naming the choices otherwise."""
    try:
        return BEHAVIOURS[kind]
    except KeyError:
        raise ConfigError(f"unknown attack {kind!r}; choose one of {', '.join(sorted(BEHAVIOURS))}") from None


def daemon_behaviour(kind: str) -> Behaviour:
    """The behaviour named ``kind`` if a lone node can run it (the node config's ``[attack] kind``).

    A daemon has its own trained update and the global adapter, nothing more:
    behaviours that read the round's honest updates, or train on poisoned
    data, are refused with a ConfigError that names the ones it can run.
    """
    b = behaviour(kind)
    if b.omniscient or b.trains_on != "own":
        alone = ", ".join(sorted(n for n, x in BEHAVIOURS.items() if not x.omniscient and x.trains_on == "own"))
        need = "the round's honest updates" if b.omniscient else f"{b.trains_on} training data"
        raise ConfigError(f"attack {kind!r} needs {need}, which a node daemon does not craft; a daemon runs "
                          f"{alone} (the others run in scripts/bench_learning.py --sections ablation)")
    return b


def craft_alone(kind: str, own: Mapping[str, torch.Tensor], global_tensors: Mapping[str, torch.Tensor], *,
                seed: int) -> dict[str, torch.Tensor]:
    """What a lone attacking node running ``kind`` sends instead of ``own``, the delta it trained.

    ``seed`` (per node and round) drives any randomness, so a restarted node
    crafts the same bytes.
    """
    b = daemon_behaviour(kind)
    return b.craft(RoundView(own=own, global_tensors=global_tensors, nodes=1, attackers=1, seed=seed))


class AttackSettings(BaseModel):
    """A node's (test-only) malicious behaviour: ``[attack] kind = "alie"`` in a node or demo config."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = Field(description="a name from flare_chain.attacks.BEHAVIOURS")
    relative_noise: float = Field(default=COLLUDER_NOISE, ge=0, le=1,
                                  description="each colluder's independent noise, relative to the crafted norm")

    @field_validator("kind")
    @classmethod
    def _known(cls, value: str) -> str:
        behaviour(value)
        return value

    @property
    def behaviour(self) -> Behaviour:
        return behaviour(self.kind)
