"""The ablation section of the learning benchmark: every gate removed in turn, against every attack.

For each attack (a name from :data:`flare_chain.attacks.BEHAVIOURS`) and each
attacker share, the federation runs ``rounds`` rounds under each
configuration:

* ``honest_only`` — FedAvg over the honest nodes alone (the attackers stay
  away): the best any defence can do, the reference for "gain kept";
* ``fedavg`` — FedAvg over everyone, no gates;
* ``all_gates`` — the committee's default gates (:class:`GateSettings`) + FedAvg;
* ``no_<gate>`` — the same with one gate switched off.

Each row gives the final held-out loss, the loss vs the clean FedAvg run
and vs the honest-only run, the share of the honest-only gain kept ((base − final) / (base − honest-only
final)), attacker recall and honest false-positive rate over node-rounds,
which gate caught how many, and for the backdoor its attack success rate
(greedy decoding of the attacker's response after the trigger, on held-out
prompts). Attackers are the first ⌊share · n⌉ nodes.

The lab it runs on (:class:`AblationLab`) is the benchmark's: any task that
can train a node on its own, label-poisoned or backdoored data, evaluate a
held-out loss and decode greedily plugs in.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from flare_chain.aggregation import ClientUpdate, FedAvg, apply_delta
from flare_chain.aggregation.pipeline import GateSettings
from flare_chain.attacks import BEHAVIOURS, RoundView, behaviour
from flare_chain.errors import FlareError

log = logging.getLogger("bench_ablation")

Delta = dict[str, torch.Tensor]

GATE_SWITCHES = ("duplicates", "norm", "direction", "probe_twin", "probe_loss", "mutual_information")
"""The gates the ablation turns off one at a time (the tensor policy gate always runs): each a :class:`GateSettings`
switch of that name, but for :data:`SWITCH_SETTINGS`'s. ``probe_loss`` turns off every probe gate."""

SWITCH_SETTINGS: dict[str, dict[str, object]] = {"probe_twin": {"probe_loss_twin_tolerance": None}}
"""The settings that turn off a gate without a boolean switch of its own."""

DEFAULT_ATTACKS = ("alie", "alie_nm", "ipm_0.1", "ipm_0.5", "minmax_std", "minmax_sign", "minsum_std",
                   "minsum_sign", "near_duplicate", "sign_flip_nm", "label_poison", "label_poison_nm", "probe_gaming",
                   "backdoor", "adapter_negation_nm", "dilution")
QUICK_ATTACKS = ("alie_nm", "minmax_std", "near_duplicate", "sign_flip_nm", "label_poison_nm", "probe_gaming",
                 "backdoor")

COLLUDER_NOISE: float = RoundView.relative_noise
"""Each colluder's own noise, relative to the crafted vector's norm, unless the run sets another
(:class:`flare_chain.attacks.RoundView`'s default: enough to defeat a bit-exact duplicate check)."""

NOISE = "noise"
"""The attack column of the re-seeded honest-only rows (no attacker; the noise floor)."""

GatedAggregate = Callable[[Delta, list[ClientUpdate]], tuple[Delta, list[tuple[str, str]]]]
"""(global, updates) → (new global, [(gate, node) rejected])."""


class AblationLab(Protocol):
    """What the ablation needs from the benchmark's lab (model, data, training, evaluation)."""

    start: Delta

    @property
    def node_names(self) -> list[str]: ...

    def train_as(self, node: str, global_adapter: Delta, round_id: int, data: str, salt: int = 0) -> Delta:
        """One node's local training; ``data`` is "own", "label_poison" or "backdoor". A non-zero ``salt``
        draws other batches (and dropout) with the same data: the noise floor's re-seeded runs."""

    def loss(self, adapter: Delta) -> float: ...

    def backdoor_success(self, adapter: Delta) -> float:
        """Attack success rate of the backdoor under ``adapter`` (share of triggered held-out prompts)."""

    def sample_count(self) -> int: ...


@dataclass
class Run:
    config: str
    losses: list[float] = field(default_factory=list)
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    failed_rounds: int = 0
    caught: dict[str, int] = field(default_factory=dict)
    asr: float = math.nan


def _seed(node: str, round_id: int) -> int:
    return int.from_bytes(hashlib.sha256(f"attack:{node}:{round_id}".encode()).digest()[:6], "big")


def attacked_round(lab: AblationLab, current: Delta, round_id: int, attack: str | None,
                   attackers: Sequence[str], colluder_noise: float = COLLUDER_NOISE) -> dict[str, Delta]:
    """Every node's update for one round: honest training, then each attacker's behaviour (colluders add their
    own noise of ``colluder_noise`` × the crafted vector's norm)."""
    nodes = lab.node_names
    if attack is None:
        return {n: lab.train_as(n, current, round_id, "own") for n in nodes}
    b = behaviour(attack)
    honest_nodes = [n for n in nodes if n not in attackers]
    deltas = {n: lab.train_as(n, current, round_id, "own") for n in honest_nodes}
    honest = [deltas[n] for n in honest_nodes] if b.omniscient else []
    for n in attackers:
        own = lab.train_as(n, current, round_id, b.trains_on)
        view = RoundView(own=own, global_tensors=current, nodes=len(nodes), attackers=len(attackers),
                         seed=_seed(n, round_id), honest=honest, relative_noise=colluder_noise)
        deltas[n] = b.craft(view)
    return {n: deltas[n] for n in nodes}


def run(lab: AblationLab, config: str, aggregate: GatedAggregate | None, *, attack: str | None,
        attackers: Sequence[str], rounds: int, salt: int = 0, colluder_noise: float = COLLUDER_NOISE) -> Run:
    """``rounds`` rounds under one configuration; ``aggregate`` None means FedAvg over the honest nodes only
    (trained with ``salt``'s batches)."""
    res = Run(config=config)
    current = dict(lab.start)
    bad = set(attackers)
    nodes = lab.node_names
    for r in range(1, rounds + 1):
        if aggregate is None:
            honest = [ClientUpdate(node=n, delta=lab.train_as(n, current, r, "own", salt),
                                   sample_count=lab.sample_count())
                      for n in nodes if n not in bad]
            current = apply_delta(current, FedAvg().aggregate(honest))
            res.losses.append(lab.loss(current))
            continue
        deltas = attacked_round(lab, current, r, attack, sorted(bad), colluder_noise)
        updates = [ClientUpdate(node=n, delta=deltas[n], sample_count=lab.sample_count()) for n in nodes]
        try:
            new, rejected = aggregate(current, updates)
        except FlareError as exc:
            log.info("%s round %d failed: %s", config, r, str(exc)[:120])
            res.failed_rounds += 1
            res.fn += len(bad)
            res.tn += len(nodes) - len(bad)
            res.losses.append(lab.loss(current))
            continue
        out = {node for _, node in rejected}
        for gate, _ in rejected:
            res.caught[gate] = res.caught.get(gate, 0) + 1
        res.tp += len(out & bad)
        res.fp += len(out - bad)
        res.fn += len(bad - out)
        res.tn += len(set(nodes) - bad - out)
        current = new
        res.losses.append(lab.loss(current))
    if attack is not None and behaviour(attack).trains_on == "backdoor":
        res.asr = lab.backdoor_success(current)
    return res


def configs(make_gated: Callable[[GateSettings | None], GatedAggregate], base: GateSettings | None = None,
            switches: Sequence[str] = GATE_SWITCHES) -> dict[str, GatedAggregate | None]:
    """``honest_only`` (None), ``fedavg`` (no gates), ``all_gates`` (``base``, default the committee's defaults)
    and one ``no_<gate>`` per switch."""
    settings = base or GateSettings()
    out: dict[str, GatedAggregate | None] = {"honest_only": None, "fedavg": make_gated(None),
                                             "all_gates": make_gated(settings)}
    for switch in switches:
        out[f"no_{switch}"] = make_gated(settings.model_copy(update=SWITCH_SETTINGS.get(switch, {switch: False})))
    return out


def ablation_rows(lab: AblationLab, make_gated: Callable[[GateSettings | None], GatedAggregate], *,
                  attacks: Sequence[str], fractions: Sequence[float], rounds: int, base: GateSettings | None = None,
                  switches: Sequence[str] = GATE_SWITCHES, reseeds: int = 0, colluder_noise: float = COLLUDER_NOISE,
                  on_run: Callable[[str], None] | None = None) -> list[dict[str, object]]:
    """One row per (attack, fraction, configuration), plus the clean FedAvg reference row.

    ``switches`` are the gates removed one at a time; an empty sequence keeps only honest-only, FedAvg and
    the default gates (the grid over many attacker shares on a larger federation, where the full ablation
    does not fit a small machine). ``reseeds`` honest-only runs per share with other training batches
    (attack ``noise``, config ``honest_only_seed<k>``) measure the noise floor: how far "kept" moves when
    nothing but the honest nodes' SGD draws change, the yardstick for calling an accepted attacker harmless.
    ``colluder_noise``: each colluder's own noise relative to the crafted vector (above the duplicate gate's
    tolerance, the colluders no longer look like one vector sent several times)."""
    unknown = sorted(set(attacks) - set(BEHAVIOURS))
    if unknown:
        raise SystemExit(f"unknown attacks {', '.join(unknown)}; choose from {', '.join(sorted(BEHAVIOURS))}")
    unknown = sorted(set(switches) - set(GATE_SWITCHES))
    if unknown:
        raise SystemExit(f"unknown gate switches {', '.join(unknown)}; choose from {', '.join(GATE_SWITCHES)}")
    base_loss = lab.loss(lab.start)
    clean = run(lab, "clean_fedavg", make_gated(None), attack=None, attackers=[], rounds=rounds)
    clean_loss = clean.losses[-1]
    rows: list[dict[str, object]] = [{"section": "ablation", "attack": "none", "fraction": 0.0,
                                      "config": "clean_fedavg", "final_loss": clean_loss, "base_loss": base_loss,
                                      "clean_gain": 1 - clean_loss / base_loss}]
    nodes = lab.node_names
    for fraction in fractions:
        attackers = nodes[: round(fraction * len(nodes))]
        honest_only = run(lab, "honest_only", None, attack=None, attackers=attackers, rounds=rounds)
        reference = honest_only.losses[-1]
        for salt in range(1, reseeds + 1):
            res = run(lab, "honest_only", None, attack=None, attackers=attackers, rounds=rounds, salt=salt)
            row = _row(NOISE, fraction, f"honest_only_seed{salt}", res, base_loss, reference, clean_loss)
            rows.append(row)
            if on_run is not None:
                on_run(f"{NOISE}/{fraction}/seed{salt}")
            log.info("ablation noise %.0f%% honest_only_seed%d: loss %.4f kept %.2f", 100 * fraction, salt,
                     row["final_loss"], row["gain_kept"])
        for attack in attacks:
            for name, aggregate in configs(make_gated, base, switches).items():
                res = honest_only if aggregate is None else run(lab, name, aggregate, attack=attack,
                                                                attackers=attackers, rounds=rounds,
                                                                colluder_noise=colluder_noise)
                row = _row(attack, fraction, name, res, base_loss, reference, clean_loss)
                rows.append(row)
                if on_run is not None:
                    on_run(f"{attack}/{fraction}/{name}")
                log.info("ablation %s %.0f%% %s: loss %.4f kept %.2f recall %s fpr %s asr %s", attack,
                         100 * fraction, name, row["final_loss"], row["gain_kept"], row["recall"], row["fpr"],
                         row["asr"])
    return rows


def _row(attack: str, fraction: float, config: str, res: Run, base_loss: float, reference: float,
         clean_loss: float) -> dict[str, object]:
    """One table row: ``res``'s final loss against clean and honest-only FedAvg (``reference``), the gain kept,
    recall, FPR, ASR and the gates that caught whom (the honest-only runs have no verdicts: recall/FPR nan)."""
    final = res.losses[-1]
    return {
        "section": "ablation", "attack": attack, "fraction": fraction, "config": config,
        "final_loss": final, "loss_vs_clean": final / clean_loss - 1,
        "loss_vs_honest_only": final / reference - 1,
        # Share of the honest-only gain kept; undefined when honest-only training did not lower the loss.
        "gain_kept": (base_loss - final) / (base_loss - reference) if base_loss > reference else math.nan,
        "recall": res.tp / (res.tp + res.fn) if res.tp + res.fn else math.nan,
        "fpr": res.fp / (res.fp + res.tn) if res.fp + res.tn else math.nan,
        "failed_rounds": res.failed_rounds, "asr": res.asr,
        "caught_by": " ".join(f"{g}:{c}" for g, c in sorted(res.caught.items())) or "-",
    }


def _cell(v: object, pct: bool = False) -> str:
    if not isinstance(v, float) or math.isnan(v):
        return "-"
    return f"{v:+.1%}" if pct else f"{v:.2f}"


def ablation_report(rows: Sequence[Mapping[str, object]], rounds: int) -> str:
    """Aligned text: per attack and share, one line per configuration."""
    part = [r for r in rows if r["section"] == "ablation"]
    if not part:
        return ""
    clean = next((r for r in part if r["config"] == "clean_fedavg"), None)
    out = [f"ablation ({rounds} rounds; vs honest = final loss vs FedAvg over the honest nodes alone; kept = share "
           "of the honest-only gain kept (- where honest-only training did not lower the loss); recall/FPR over "
           "node-rounds; ASR = backdoor attack success rate)"]
    if clean is not None:
        out.append(f"base loss {float(clean['base_loss']):.4f}  clean FedAvg {float(clean['final_loss']):.4f} "
                   f"(gain {float(clean['clean_gain']):.1%})")  # type: ignore[arg-type]
    out.append(f"{'attack':<20}{'frac':>5}  {'config':<22}{'loss':>8}{'vs clean':>10}{'vs honest':>10}{'kept':>7}"
               f"{'recall':>8}{'FPR':>6}{'ASR':>6}  caught by")
    for r in part:
        if r["config"] == "clean_fedavg":
            continue
        out.append(f"{r['attack']!s:<20}{float(r['fraction']):>5.0%}  {r['config']!s:<22}"  # type: ignore[arg-type]
                   f"{float(r['final_loss']):>8.4f}{_cell(r['loss_vs_clean'], True):>10}"  # type: ignore[arg-type]
                   f"{_cell(r['loss_vs_honest_only'], True):>10}{_cell(r['gain_kept']):>7}{_cell(r['recall']):>8}{_cell(r['fpr']):>6}{_cell(r['asr']):>6}"
                   f"  {r['caught_by']}")
    return "\n".join(out)


def ablation_summary(rows: Sequence[Mapping[str, object]]) -> str:
    """One line per attack, one column group per share: the default gates' kept (FedAvg's in brackets), recall,
    FPR and ASR; then the noise floor (the re-seeded honest-only runs' kept). The grid the issue's bar is read on."""
    part = [r for r in rows if r["section"] == "ablation"]
    cells = {(r["attack"], r["fraction"], r["config"]): r for r in part}
    fractions = sorted({float(r["fraction"]) for r in part if r["config"] == "all_gates"})  # type: ignore[arg-type]
    attacks = list(dict.fromkeys(r["attack"] for r in part if r["config"] == "all_gates"))
    if not fractions or not attacks:
        return ""
    head = "".join(f" | {f:>4.0%}: kept (FedAvg) recall  FPR  ASR" for f in fractions)
    out = ["summary (default gates; kept = share of the honest-only gain kept, plain FedAvg's in brackets; "
           "recall/FPR over node-rounds)", f"{'attack':<20}{head}"]
    for attack in attacks:
        line = f"{attack!s:<20}"
        for f in fractions:
            gated, plain = cells.get((attack, f, "all_gates")), cells.get((attack, f, "fedavg"))
            if gated is None:
                line += " | " + " " * 37
                continue
            bracket = f"({_cell(plain['gain_kept']) if plain else '-'})"
            line += (f" | {_cell(gated['gain_kept']):>10} {bracket:>6}"
                     f"{_cell(gated['recall']):>7}{_cell(gated['fpr']):>5}{_cell(gated['asr']):>5}")
        out.append(line)
    noise = [r for r in part if r["attack"] == NOISE]
    if noise:
        out.append("noise floor (honest-only with other batches): " + ", ".join(
            f"{float(r['fraction']):.0%} {_cell(r['gain_kept'])}" for r in noise))  # type: ignore[arg-type]
    return "\n".join(out)
