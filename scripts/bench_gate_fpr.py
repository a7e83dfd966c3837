"""Honest false positives: how often each gate rejects an honest node whose data differ from the others'.

Every node is honest and holds its own share of the skills task (two skills of
eight: label-skewed). Each round every node trains from the global adapter,
then every gate judges the whole round *on its own* (not behind the earlier
gates, so each gate's own false-positive rate shows), and the next global
adapter is FedAvg over all updates (the honest trajectory). The direction gate
and the probe-loss gate are each run twice: with the rule before issue 15
(direction: robust z alone, ``direction_max_cosine = None``; probe loss: harm
against zero alone, ``probe_loss_outlier_z = None``) and with the federation
spec's defaults.

Two settings:

* ``demo`` — the demo's federation: 6 nodes, rank 8, about two epochs over
  each node's 216 training examples per round (27 steps of 16), 3 rounds;
* ``bench`` — the learning benchmark's: 10 nodes, rank 8, 8 steps of 16, 3 rounds.

    .venv/bin/python scripts/bench_gate_fpr.py --settings demo,bench
    .venv/bin/python scripts/bench_gate_fpr.py --settings demo --rounds 2 --attack sign_flip_nm --attackers 2

With ``--attack`` the first ``--attackers`` nodes send that behaviour's
update instead, and the table also counts each gate's catches among them.
The last row of each setting, ``any gate (default chain)``, counts a
node-round once when any gate of the spec's defaults rejects it: the honest
false-positive rate a node running that spec sees (issue 15 bounds it at 5 %).

Updates go uncompressed (the demo sends PowerSGD rank 2; the gates then see
the decoded low-rank update). No chain, no IPFS: the gates are pure.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import bench_learning
import torch

from flare_chain import attacks
from flare_chain.aggregation import ClientUpdate, FedAvg, apply_delta, build_gates
from flare_chain.aggregation.anomaly import DirectionAnomalyGate
from flare_chain.aggregation.gates import Gate, GateContext
from flare_chain.aggregation.pipeline import GateSettings
from flare_chain.aggregation.probe_loss import ProbeLossGate, effect_ratios, spread_excess
from flare_chain.lora.reference import ensure_reference_model

SETTINGS = {
    "demo": bench_learning.Setup(nodes=6, rounds=3, steps=27, batch_size=16, max_windows=256, val_windows=16),
    "bench": bench_learning.Setup(nodes=10, rounds=3),
}


def judges(lab: bench_learning.Lab, global_adapter: dict[str, torch.Tensor], settings: GateSettings) -> list[Gate]:
    """Every statistical gate of ``settings`` (policy excluded), plus the direction gate under the old rule."""
    windows = lab.round_probe(global_adapter, settings)
    mi_windows = windows.input_ids[: settings.probe_windows].to(lab.device)
    gates = build_gates(settings, predictor=lambda a: lab.predict(a, mi_windows),
                        window_losses=lambda a: lab.window_losses(a, windows))
    old = DirectionAnomalyGate(settings.direction_threshold, min_candidates=settings.min_candidates, max_cosine=None)
    old.name = OLD_DIRECTION
    now = [g for g in gates if g.name != "policy"]
    probe = next((g for g in now if isinstance(g, ProbeLossGate)), None)
    if probe is None:
        return [old, *now]
    harm = ProbeLossGate(probe.window_losses, z=settings.probe_loss_z, min_candidates=settings.min_candidates)
    harm.name = OLD_PROBE_LOSS
    harm._effects = probe._effects  # the same model runs: one cache for both rules
    return [old, harm, *now]


Row = tuple[str, str, int, int, int, int]
"""(setting, gate, honest rejected, honest node-rounds, attackers rejected, attacker node-rounds)."""

OLD_DIRECTION = "direction (z alone, before)"
OLD_PROBE_LOSS = "probe_loss (harm alone, before)"
BEFORE = frozenset({OLD_DIRECTION, OLD_PROBE_LOSS})
"""The rules before issue 15, judged beside the defaults; not part of the chain a node runs."""
ANY_GATE = "any gate (default chain)"


def count_round(counts: dict[str, list[int]], rejected: Mapping[str, set[str]], nodes: Sequence[str],
                bad: set[str]) -> None:
    """Add one round to ``counts`` (gate name → [honest rejected, honest, attackers rejected, attackers]).

    ``rejected`` maps each judged gate to the nodes it rejected this round. Every gate gets its own row, and
    :data:`ANY_GATE` counts each node once when any gate of the default chain (not the :data:`BEFORE` rules)
    rejected it, since a node left out by two gates loses one round, not two.
    """
    chain: set[str] = set()
    for gate, out in rejected.items():
        if gate not in BEFORE:
            chain |= out
    for gate, out in [*rejected.items(), (ANY_GATE, chain)]:
        tally = counts.setdefault(gate, [0, 0, 0, 0])
        tally[0] += len(out - bad)
        tally[1] += len(nodes) - len(bad)
        tally[2] += len(out & bad)
        tally[3] += len(bad)


def run(name: str, setup: bench_learning.Setup, model_dir: Path, *, attack: str | None = None,
        attackers: int = 0) -> list[Row]:
    """Each gate's rejections of honest and attacking node-rounds; the direction cosines and probe changes logged.

    With ``attack``, the first ``attackers`` nodes send that behaviour's update (crafted from the round's honest
    updates when it is omniscient); the global adapter follows FedAvg over the honest updates.
    """
    lab = bench_learning.Lab(setup, model_dir)
    settings = GateSettings()
    current = dict(lab.start)
    bad = set(lab.node_names[:attackers]) if attack else set()
    counts: dict[str, list[int]] = {}
    for r in range(1, setup.rounds + 1):
        deltas = {n: lab.train(n, current, r) for n in lab.node_names}
        if attack:
            b = attacks.behaviour(attack)
            honest = [deltas[n] for n in lab.node_names if n not in bad]
            for i, n in enumerate(sorted(bad)):
                deltas[n] = b.craft(attacks.RoundView(
                    own=deltas[n], global_tensors=current, nodes=len(deltas), attackers=len(bad), seed=1000 * r + i,
                    honest=honest if b.omniscient else ()))
        updates = [ClientUpdate(node=n, delta=deltas[n], sample_count=lab.sample_count()) for n in lab.node_names]
        context = GateContext(global_tensors=current)
        judged_gates = judges(lab, current, settings)
        by_gate: dict[str, set[str]] = {}
        for gate in judged_gates:
            decisions = gate.assess(updates, context)
            rejected = [d.node for d in decisions if d.rejected]
            by_gate[gate.name] = set(rejected)
            if rejected:
                print(f"  {name} round {r}: {gate.name} rejects {', '.join(rejected)}", flush=True)
        count_round(counts, by_gate, lab.node_names, bad)
        probe = next((g for g in judged_gates if g.name == ProbeLossGate.name), None)
        if isinstance(probe, ProbeLossGate):
            effects = probe.effects(updates, context)
            excess = spread_excess(effects)
            moved = effect_ratios(effects)
            print(f"  {name} round {r}: probe changes (nats/token, z, spreads above the median, how far its windows "
                  "move against the median update's) "
                  + ", ".join(f"{n} {e.change:+.4f} z {e.z:+.1f} x {excess[n]:+.1f} r {moved[n]:.2f}"
                              for n, e in effects.items()),
                  flush=True)
        cos = DirectionAnomalyGate().cosines(updates)
        print(f"  {name} round {r}: cosines with the median "
              f"{', '.join(f'{n} {c:+.3f}' for n, c in zip(lab.node_names, cos, strict=True))} "
              f"(median {statistics.median(cos):+.3f})", flush=True)
        current = apply_delta(current, FedAvg().aggregate([u for u in updates if u.node not in bad]))
        print(f"  {name} round {r}: held-out loss {lab.loss(current):.4f}", flush=True)
    return [(name, g, *counts[g]) for g in counts]  # type: ignore[misc]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", default="demo,bench", help=f"comma-separated: {', '.join(SETTINGS)}")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--attack", default=None, help="a behaviour of flare_chain.attacks.BEHAVIOURS (default: none)")
    parser.add_argument("--attackers", type=int, default=0, help="how many nodes run --attack (the first ones)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    model_dir = ensure_reference_model()
    rows: list[Row] = []
    for name in args.settings.split(","):
        setup = replace(SETTINGS[name], threads=args.threads, **({"rounds": args.rounds} if args.rounds else {}))
        rows += run(name, setup, model_dir, attack=args.attack, attackers=args.attackers)
    print(f"\n{'setting':8}  {'gate':32}  {'honest rejected':>15}  {'FPR':>6}  {'attackers rejected':>18}")
    for name, gate, fp, honest, tp, bad in rows:
        caught = f"{tp} / {bad}" if bad else "-"
        print(f"{name:8}  {gate:32}  {f'{fp} / {honest}':>15}  {fp / honest:6.1%}  {caught:>18}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
