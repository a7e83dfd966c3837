"""Learning benchmark: compression, exact aggregation, robustness and cost on the skills task.

Ten nodes, each with its own mix of the generated skills task
(:mod:`flare_chain.lora.skills`; ``--task stdlib`` gives each one stdlib
domain instead), fine-tune LoRA on the project's reference model for a few rounds; this script runs its own loop (training, attacks,
compression, gates, aggregation) with no chain and no IPFS, and prints one
table, also written as CSV and a PNG plot:

* compression — bytes per node per round (the safetensors file a node pins)
  for fp32, fp16 and PowerSGD ranks 1/2/4 with error feedback, and the final
  held-out loss of each run;
* exactness — factor-wise FedAvg vs exact LoRA aggregation: final loss and the
  mean relative error of the aggregate against the true mean of B·A;
* robustness — 0/20/30/40 % attackers of each kind × FedAvg, coordinate median,
  trimmed mean, Multi-Krum and gates + MI filter + FedAvg: final loss relative
  to the clean FedAvg run, and the gates' precision, recall and false-positive rate;
* cost — aggregation and gate time for 10/50/100 generated updates of rank-16
  LoRA on q/k/v/o of a 32-layer, 4096-wide model.
* spec (``--spec SPEC.toml``) — the federation a spec describes: its LoRA
  shape, each node's local DP (the node's own release; ε per node from the
  audit's accountant), its codec, the committee's DP norm check, its gates and
  its aggregator (exact_lora with its residual), clean and under attack,
  against clean plain FedAvg.

    .venv/bin/python scripts/bench_learning.py --quick            # small CPU run, a few minutes
    .venv/bin/python scripts/bench_learning.py --device cuda      # the full run (see README)
    .venv/bin/python scripts/bench_learning.py --quick --spec specs/devnet-dp.toml   # one federation spec

Local training windows are re-drawn from a seed per (node, round); a round
whose aggregator refuses its input (e.g. plain FedAvg given a NaN update)
fails and the previous global adapter stays, as on-chain.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import bench_ablation
import torch

from flare_chain import attacks
from flare_chain.aggregation import (
    ClientUpdate,
    CoordinateMedian,
    ExactLoraAggregator,
    FedAvg,
    MultiKrum,
    TrimmedMean,
    apply_delta,
    build_gates,
    run_gates,
)
from flare_chain.aggregation.candidate_model import window_losses
from flare_chain.aggregation.exact_lora import product_error
from flare_chain.aggregation.mi_filter import nmi_matrix, seed_probe_windows
from flare_chain.aggregation.pipeline import GateSettings
from flare_chain.committee.aggregate import aggregation_weight, require_local_dp
from flare_chain.compression import PowerSGDCompressor, PowerSGDConfig, encode
from flare_chain.compression.codec import CODEC_VERSION
from flare_chain.errors import ConfigError, FlareError, GateRejection, UpdateError
from flare_chain.lora._runtime import seeded
from flare_chain.lora.adapter import adapter_tensors, initial_adapter, set_adapter_tensors, wrap_with_lora
from flare_chain.lora.base import load_base_model
from flare_chain.lora.datasets import NodeData, Record, as_node_data
from flare_chain.lora.domains import available_domains, domain_texts
from flare_chain.lora.evaluate import mean_token_loss
from flare_chain.lora.examples import IGNORE_INDEX, TokenExamples, prepare_examples, supervised_examples
from flare_chain.lora.files import Manifest, encode_delta, tensor_shapes
from flare_chain.lora.params import LoraTrainParams
from flare_chain.lora.probe_corpus import probe_example_len, probe_windows, reference_probe_texts
from flare_chain.lora.reference import ensure_reference_model
from flare_chain.lora.skills import SKILLS_SEQ_LEN, SKILLS_TASK, skills_node_data, skills_probe_corpus
from flare_chain.lora.tokenizer import load_tokenizer
from flare_chain.progress import progress
from flare_chain.protocol.spec import FederationSpec

log = logging.getLogger("bench_learning")

Delta = dict[str, torch.Tensor]
ATTACK_KINDS = ("sign_flip", "scale10", "scale100", "noise", "nan", "wrong_shape", "colluding", "poison")
AGGREGATORS = ("fedavg", "median", "trimmed_mean", "multikrum", "gates_mi_fedavg")
SECTIONS = ("compression", "exactness", "robustness", "cost", "ablation", "spec")
DEFAULT_SECTIONS = ("compression", "exactness", "robustness", "cost")


@dataclass(frozen=True)
class Setup:
    nodes: int = 10
    rounds: int = 3
    robust_rounds: int = 1
    steps: int = 8
    batch_size: int = 16
    seq_len: int = 64
    learning_rate: float = 5e-3
    rank: int = 8
    max_windows: int = 256
    val_windows: int = 16
    fractions: tuple[float, ...] = (0.2, 0.3, 0.4)
    attack_kinds: tuple[str, ...] = ATTACK_KINDS
    aggregators: tuple[str, ...] = AGGREGATORS
    compression_ranks: tuple[int, ...] = (1, 2, 4)
    cost_sizes: tuple[int, ...] = (10, 50, 100)
    cost_layers: int = 4
    full_layers: int = 32
    cost_width: int = 4096
    cost_rank: int = 16
    ablation_rounds: int = 5
    ablation_attacks: tuple[str, ...] = bench_ablation.DEFAULT_ATTACKS
    ablation_probe_windows: int = 128
    ablation_switches: tuple[str, ...] = bench_ablation.GATE_SWITCHES
    ablation_reseeds: int = 2
    ablation_colluder_noise: float = bench_ablation.COLLUDER_NOISE
    device: str = "cpu"
    threads: int = 1
    task: str = SKILLS_TASK
    """skills (the generated instruction task, at SKILLS_SEQ_LEN) or stdlib (a domain per node, at seq_len)."""


QUICK = Setup(nodes=5, rounds=2, robust_rounds=1, steps=4, batch_size=8, seq_len=64, max_windows=48, val_windows=8,
              fractions=(0.4,), attack_kinds=("sign_flip", "scale10", "nan", "colluding"),
              compression_ranks=(1, 4), cost_sizes=(10, 20), cost_layers=2, full_layers=2, cost_width=512,
              ablation_rounds=3, ablation_attacks=bench_ablation.QUICK_ATTACKS, ablation_probe_windows=32)


# --------------------------------------------------------------------------------------------- training


class Lab:
    """The reference model wrapped with LoRA once; trains, evaluates and predicts with swapped adapters."""

    def __init__(self, setup: Setup, model_dir: Path, lora: LoraTrainParams | None = None) -> None:
        """``lora``: a federation spec's LoRA settings (rank, alpha, targets, learning rate, weight decay) in
        place of the setup's; the compute budget (steps, batch, windows, threads) stays the setup's."""
        self.setup = setup
        seq_len = SKILLS_SEQ_LEN if setup.task == SKILLS_TASK else setup.seq_len
        shape = lora if lora is not None else LoraTrainParams(rank=setup.rank, alpha=2.0 * setup.rank,
                                                              learning_rate=setup.learning_rate)
        self.params = shape.model_copy(update={
            "batch_size": setup.batch_size, "seq_len": seq_len, "max_train_windows": setup.max_windows,
            "max_val_windows": setup.val_windows, "num_threads": setup.threads})
        self.device = torch.device(setup.device)
        self.model = wrap_with_lora(load_base_model(model_dir), self.params).to(self.device)
        self.start = initial_adapter(model_dir, self.params, seed=0)
        self.tokenizer = load_tokenizer(model_dir)
        self.texts, self.train_windows, val, self.probe_corpus = _task_data(setup, self.tokenizer, self.params)
        self.val = val  # mean_token_loss moves each batch to the model's device
        self.probe = seed_probe_windows(b"bench-round-seed", count=8, seq_len=64).to(self.device)
        self.backdoor_prompts = triggered_prompts(self.tokenizer, seq_len) if setup.task == SKILLS_TASK else []
        self._cache: dict[tuple[str, str, bool | str, int, int], Delta] = {}
        self.trainings = 0

    def _load(self, adapter: Delta) -> None:
        set_adapter_tensors(self.model, {k: v.to(self.device) for k, v in adapter.items()})

    def train(self, node: str, global_adapter: Delta, round_id: int, poisoned: bool | str = False,
              salt: int = 0) -> Delta:
        """Local fine-tune of ``setup.steps`` AdamW steps from ``global_adapter``; the delta (CPU float32).

        ``poisoned``: False (own data), True (shuffled text) or "backdoor" (trigger → target lines added).
        ``salt``: other batches from the same data (0: the bench's usual draws).
        """
        key = (_digest(global_adapter), node, poisoned, round_id, salt)
        if key in self._cache:
            return self._cache[key]
        windows = self.train_windows[(node, poisoned)]
        self._load(global_adapter)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        seed = int.from_bytes(hashlib.sha256(f"{node}:{round_id}{f':{salt}' if salt else ''}".encode()).digest()[:6],
                              "big")
        with seeded(seed, self.setup.threads):
            opt = torch.optim.AdamW(trainable, lr=self.params.learning_rate, weight_decay=self.params.weight_decay)
            gen = torch.Generator().manual_seed(seed)
            self.model.train()
            for _ in range(self.setup.steps):
                idx = torch.randint(0, len(windows), (self.setup.batch_size,), generator=gen)
                loss = self.model(**windows[idx].model_inputs(self.device)).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                opt.step()
            self.model.eval()
        after = adapter_tensors(self.model)
        delta = {k: (after[k].cpu() - global_adapter[k]).contiguous() for k in sorted(after)}
        self._cache[key] = delta
        self.trainings += 1
        return delta

    @torch.no_grad()
    def loss(self, adapter: Delta) -> float:
        """Mean token cross-entropy of base + ``adapter`` on every node's held-out windows (skills: responses)."""
        self._load(adapter)
        return mean_token_loss(self.model, self.val, 32)

    # The ablation's view of the lab (bench_ablation.AblationLab).
    @property
    def node_names(self) -> list[str]:
        return sorted(self.texts)

    def train_as(self, node: str, global_adapter: Delta, round_id: int, data: str, salt: int = 0) -> Delta:
        kind: bool | str = {"own": False, "label_poison": True}.get(data, data)
        return self.train(node, global_adapter, round_id, poisoned=kind, salt=salt)

    def sample_count(self) -> int:
        return self.setup.steps * self.setup.batch_size

    @torch.no_grad()
    def backdoor_success(self, adapter: Delta, prompts: int = 32, prefix: int = 24) -> float:
        """Attack success rate: the share of triggered held-out prompts whose greedy continuation is the target.

        Skills (records): :func:`triggered_prompts`, each rendered as the attacker's training rendered its
        triggered records, so the trigger ends the instruction and the target is the response. Stdlib (text):
        the first ``prefix`` tokens of a held-out window, then the trigger, as ``backdoor_texts`` puts it.
        """
        self._load(adapter)
        if self.setup.task == SKILLS_TASK:
            hits = 0
            for prompt, target in self.backdoor_prompts:
                ids = prompt[None, :].to(self.device)
                for _ in range(len(target)):
                    nxt = self.model(input_ids=ids).logits[:, -1, :].argmax(dim=-1, keepdim=True)
                    ids = torch.cat([ids, nxt], dim=1)
                hits += bool((ids[0, -len(target):].cpu() == target).all())
            return hits / len(self.backdoor_prompts)
        trigger = self.tokenizer.encode(attacks.data.DEFAULT_TRIGGER, add_special_tokens=False)
        target = self.tokenizer.encode(attacks.data.DEFAULT_TARGET.rstrip("\n"), add_special_tokens=False)
        rows = self.val.input_ids[:prompts, :prefix].to(self.device)
        ids = torch.cat([rows, torch.tensor(trigger, device=self.device).expand(rows.shape[0], -1)], dim=1)
        for _ in range(len(target)):
            nxt = self.model(input_ids=ids).logits[:, -1, :].argmax(dim=-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
        got = ids[:, -len(target):]
        want = torch.tensor(target, device=self.device)
        return float((got == want).all(dim=1).float().mean())

    @torch.no_grad()
    def predict(self, adapter: Delta, windows: torch.Tensor | None = None):  # -> np.ndarray
        """Argmax next-token ids on ``windows`` (default: the seed-derived random-ASCII probe)."""
        self._load(dict(adapter))
        probe = self.probe if windows is None else windows
        return self.model(input_ids=probe).logits.argmax(dim=-1).reshape(-1).cpu().numpy()


    def round_probe(self, global_adapter: Delta, settings: GateSettings) -> TokenExamples:
        """The round's probe-loss examples, drawn from the probe corpus with the global adapter's digest as
        the round's seed, as a committee draws them with the on-chain seed (same width rule)."""
        width = probe_example_len(as_node_data(self.probe_corpus), window_len=settings.probe_loss_seq_len,
                                  train_seq_len=self.params.seq_len)
        return probe_windows(self.probe_corpus, bytes.fromhex(_digest(global_adapter)),
                             count=settings.probe_loss_windows, seq_len=width, tokenizer=self.tokenizer)

    def window_losses(self, adapter: Delta, windows: TokenExamples):  # -> np.ndarray
        """Mean loss over each probe example's labelled tokens under base + ``adapter`` (float64), as a
        committee member's (the responses only, for a records corpus)."""
        self._load(dict(adapter))
        return window_losses(self.model, windows, 32)


def _task_data(
    setup: Setup, tokenizer, params: LoraTrainParams,
) -> tuple[dict[str, NodeData | list[str]], dict[tuple[str, bool | str], TokenExamples], TokenExamples,
           NodeData | list[str]]:
    """Each node's data, its clean and poisoned training examples, the union of held-out examples, the probe corpus.

    Skills: node i's share of the task; poisoning shuffles the characters of
    each answer (the prompts stay, the answers teach noise). Stdlib: node i's
    domain; poisoning shuffles the characters of each line (``attacks.poison_texts``).
    """
    names = [f"node-{i:02d}" for i in range(setup.nodes)]
    data: dict[str, NodeData | list[str]] = {}
    poisoned: dict[str, NodeData | list[str]] = {}
    backdoored: dict[str, NodeData | list[str]] = {}
    if setup.task == SKILLS_TASK:
        for i, node in enumerate(names):
            clean = skills_node_data(i, setup.nodes)
            data[node] = clean
            poisoned[node] = NodeData(format="instruction", source=f"{clean.source}, poisoned", records=tuple(
                Record(instruction=r.instruction, output=attacks.poison_texts([r.output], seed=i * 100_003 + k)[0])
                for k, r in enumerate(clean.records)))
            pairs = attacks.data.backdoor_pairs([(r.instruction, r.output) for r in clean.records], seed=i)
            backdoored[node] = NodeData(format="instruction", source=f"{clean.source}, backdoored", records=tuple(
                Record(instruction=q, output=a) for q, a in pairs))
        probe_corpus: NodeData | list[str] = skills_probe_corpus()  # records: responses scored
    else:
        domains = available_domains()[: setup.nodes]
        if len(domains) < setup.nodes:
            raise SystemExit(f"only {len(domains)} stdlib domains here; use --nodes {len(domains)}")
        data = {n: domain_texts(d) for n, d in zip(names, domains, strict=True)}
        poisoned = {n: attacks.poison_texts(t, seed=i) for i, (n, t) in enumerate(data.items())}
        backdoored = {n: attacks.data.backdoor_texts(t, seed=i) for i, (n, t) in enumerate(data.items())}
        probe_corpus = reference_probe_texts(domains=domains)  # the federation's domains, as the demo
    split_params = params.model_copy(update={"seed": 0, "val_fraction": 0.1})
    train: dict[tuple[str, bool | str], TokenExamples] = {}
    vals = []
    probe_train = prepare_examples(probe_corpus, tokenizer, split_params).train
    for node in names:
        split = prepare_examples(data[node], tokenizer, split_params)
        train[(node, False)] = split.train
        vals.append(split.val)
        train[(node, True)] = prepare_examples(poisoned[node], tokenizer, split_params).train
        train[(node, "backdoor")] = prepare_examples(backdoored[node], tokenizer, split_params).train
        # an attacker that also trains on the public probe corpus, to game its gate
        train[(node, "probe_gaming")] = TokenExamples.cat([train[(node, True)], probe_train])
    return data, train, TokenExamples.cat(vals), probe_corpus


BACKDOOR_PROMPT_SEED = 7
"""Seed of the skills-task draw the backdoor's triggered prompts come from (the probe corpus uses seed 0)."""


def triggered_prompts(tokenizer, seq_len: int, count: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` fresh skills prompts, no node's training data, each with the trigger where the backdoor's
    training put it (the end of the instruction), as (prompt ids up to the response, the target's ids).

    Both are read off the very examples training builds from a triggered record whose response is the
    target, so the template tokens between instruction and response, and the target's tokens in context,
    are what the attacker taught; the end-of-sequence token after the target is not required.
    """
    fresh = skills_probe_corpus(records=count, seed=BACKDOOR_PROMPT_SEED)
    triggered = NodeData(format="instruction", source="triggered held-out prompts", records=tuple(
        Record(instruction=attacks.data.triggered(r.instruction), output=attacks.data.DEFAULT_TARGET)
        for r in fresh.records))
    examples = supervised_examples(triggered, tokenizer, seq_len)
    out = []
    for ids, labels in zip(examples.input_ids, examples.labels, strict=True):
        where = (labels != IGNORE_INDEX).nonzero()[:, 0]
        target = labels[where]
        if tokenizer.eos_token_id is not None and int(target[-1]) == tokenizer.eos_token_id:
            target = target[:-1]
        out.append((ids[: int(where[0])], target))
    return out


def _digest(tensors: Delta) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------- one run


@dataclass
class RunResult:
    name: str
    final_loss: float
    losses: list[float]
    failed_rounds: int = 0
    bytes_per_node: float = 0.0
    payload_per_node: float = 0.0
    product_error: float = float("nan")
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    rejections: list[str] = field(default_factory=list)


Aggregate = Callable[[Delta, list[ClientUpdate], set[str]], tuple[Delta, set[str]]]
"""(global, updates, attackers) → (new global, nodes rejected by gates)."""


def plain(strategy) -> Aggregate:
    def run(global_adapter: Delta, updates: list[ClientUpdate], _attackers: set[str]) -> tuple[Delta, set[str]]:
        return apply_delta(global_adapter, strategy.aggregate(updates)), set()
    return run


def gated(lab: Lab, caught: dict[str, int]) -> Aggregate:
    """Gates (probe loss on the reference probe corpus included) + MI filter + FedAvg.

    Counts rejections per gate into ``caught``.
    """
    screen = gate_and_average(lab, GateSettings())

    def run(global_adapter: Delta, updates: list[ClientUpdate], _attackers: set[str]) -> tuple[Delta, set[str]]:
        new, rejected = screen(global_adapter, updates)
        for gate, _node in rejected:
            caught[gate] = caught.get(gate, 0) + 1
        return new, {node for _gate, node in rejected}
    return run


def gate_and_average(lab: Lab, settings: GateSettings | None) -> bench_ablation.GatedAggregate:
    """``settings``' gates (None: none, see :func:`gate_screen`) then FedAvg over the survivors; returns the new
    adapter and the rejections."""
    screen = gate_screen(lab, settings) if settings is not None else None

    def run(global_adapter: Delta, updates: list[ClientUpdate]) -> tuple[Delta, list[tuple[str, str]]]:
        if screen is None:
            return apply_delta(global_adapter, FedAvg().aggregate(updates)), []
        accepted, rejected = screen(global_adapter, updates)
        return apply_delta(global_adapter, FedAvg().aggregate(accepted)), rejected
    return run


Screen = Callable[[Delta, list[ClientUpdate]], tuple[list[ClientUpdate], list[tuple[str, str]]]]
"""(global, updates) → (accepted updates, (gate, node) for each rejection); FlareError when none is accepted."""


def gate_screen(lab: Lab, settings: GateSettings) -> Screen:
    """``settings``' gate chain, with the probe-loss gate and MI filter run on ``lab``'s model.

    The probe-loss windows are drawn from the lab's probe corpus with the
    global adapter's digest as the round's seed, as a committee draws them from the on-chain seed.
    """

    def run(global_adapter: Delta, updates: list[ClientUpdate]) -> tuple[list[ClientUpdate], list[tuple[str, str]]]:
        windows = lab.round_probe(global_adapter, settings)
        # The MI filter predicts on the first of the round's corpus windows, as the committee does with a corpus.
        mi_windows = windows.input_ids[: settings.probe_windows].to(lab.device)
        gates = build_gates(settings, predictor=lambda a: lab.predict(a, mi_windows),
                            window_losses=lambda a: lab.window_losses(a, windows))
        outcome = run_gates(updates, global_adapter, gates)
        if not outcome.accepted:
            raise FlareError("every update was rejected")
        return outcome.accepted, [(v.gate, v.node) for v in outcome.rejections]
    return run


def exact() -> Aggregate:
    state: dict[str, Delta] = {"residual": {}}

    def run(global_adapter: Delta, updates: list[ClientUpdate], _attackers: set[str]) -> tuple[Delta, set[str]]:
        result = ExactLoraAggregator().aggregate_adapters(global_adapter, updates, state["residual"] or None)
        state["residual"] = result.residual
        return result.adapter, set()
    return run


def run_federation(
    lab: Lab, name: str, aggregate: Aggregate, *, attack: str | None = None, fraction: float = 0.0,
    wire: Callable[[str, Delta], tuple[Delta, tuple[int, int]]] | None = None, rounds: int | None = None,
    release: Callable[[str, int, Delta], Delta] | None = None,
) -> RunResult:
    """``rounds`` (default ``setup.rounds``) rounds; the first ⌊fraction·n⌉ nodes attack with ``attack``.

    A node's update goes as a node's does: trained, ``release`` (node, round, delta → what the node
    publishes, e.g. local DP), the attack crafted from the released delta, then ``wire`` (the codec).
    """
    nodes = sorted(lab.texts)
    attackers = set(nodes[: round(fraction * len(nodes))]) if attack else set()
    current = dict(lab.start)
    res = RunResult(name=name, final_loss=math.nan, losses=[])
    sent_bytes: list[tuple[int, int]] = []
    errors: list[float] = []
    for r in range(1, (rounds or lab.setup.rounds) + 1):
        deltas = {n: lab.train(n, current, r, poisoned=(attack == "poison" and n in attackers)) for n in nodes}
        if release is not None:
            deltas = {n: release(n, r, d) for n, d in deltas.items()}
        if attack == "colluding" and attackers:
            crafted = attacks.colluding_update([deltas[n] for n in nodes if n not in attackers])
            deltas.update({n: crafted for n in attackers})
        elif attack not in (None, "poison", "colluding"):
            deltas.update({n: attacks.DELTA_ATTACKS[attack](deltas[n]) for n in attackers})
        if wire is not None:
            for n in nodes:
                deltas[n], size = wire(n, deltas[n])
                sent_bytes.append(size)
        updates = [ClientUpdate(node=n, delta=deltas[n], sample_count=lab.setup.steps * lab.setup.batch_size)
                   for n in nodes]
        try:
            new, rejected = aggregate(current, updates, attackers)
        except FlareError as exc:
            res.failed_rounds += 1
            log.info("%s round %d failed: %s", name, r, str(exc)[:120])
            res.losses.append(lab.loss(current))
            res.fn += len(attackers)
            res.tn += len(nodes) - len(attackers)
            continue
        if not attackers:
            errors.append(product_error(new, current, updates))
        res.tp += len(rejected & attackers)
        res.fp += len(rejected - attackers)
        res.fn += len(attackers - rejected)
        res.tn += len(set(nodes) - attackers - rejected)
        res.rejections.extend(sorted(rejected))
        current = new
        res.losses.append(lab.loss(current))
    res.final_loss = res.losses[-1]
    res.bytes_per_node = sum(b for b, _ in sent_bytes) / len(sent_bytes) if sent_bytes else 0.0
    res.payload_per_node = sum(p for _, p in sent_bytes) / len(sent_bytes) if sent_bytes else 0.0
    res.product_error = sum(errors) / len(errors) if errors else math.nan
    return res


# ------------------------------------------------------------------------------------------ sections


def _manifest(delta: Delta, dtype: str, rank: int) -> Manifest:
    return Manifest(kind="delta", base_model_id="bench", base_model_sha256="0" * 64, rank=rank, alpha=2.0 * rank,
                    target_modules=["q_proj"], sample_count=1, dtype=dtype, shapes=tensor_shapes(delta))


Wire = Callable[[str, Delta], tuple[Delta, tuple[int, int]]]
"""(node, delta) → (what the receiver gets, (file bytes, tensor payload bytes))."""


def dense_wire(dtype: str, rank: int) -> Wire:
    wire = {"float32": torch.float32, "float16": torch.float16}[dtype]

    def send(_node: str, delta: Delta) -> tuple[Delta, tuple[int, int]]:
        data, _ = encode_delta(delta, _manifest(delta, dtype, rank))
        payload = sum(v.numel() * wire.itemsize for v in delta.values())
        return {k: v.to(wire).to(torch.float32) for k, v in delta.items()}, (len(data), payload)
    return send


def powersgd_wire(rank: int) -> Wire:
    compressors: dict[str, PowerSGDCompressor] = {}

    def send(node: str, delta: Delta) -> tuple[Delta, tuple[int, int]]:
        comp = compressors.setdefault(node, PowerSGDCompressor(PowerSGDConfig(rank=rank, dtype="float16")))
        step = comp.step(delta)
        return step.sent, (len(encode(step.compressed)), step.compressed.payload_bytes())
    return send


def compression_rows(lab: Lab) -> list[dict[str, object]]:
    rows = []
    runs = [("fp32", dense_wire("float32", lab.setup.rank)), ("fp16", dense_wire("float16", lab.setup.rank))]
    runs += [(f"powersgd_r{q}", powersgd_wire(q)) for q in lab.setup.compression_ranks]
    base = None
    for name, wire in runs:
        res = run_federation(lab, name, plain(FedAvg()), wire=wire)
        base = base or res
        rows.append({"section": "compression", "config": name, "final_loss": res.final_loss,
                     "loss_vs_baseline": res.final_loss / base.final_loss - 1,
                     "bytes_per_node_round": res.bytes_per_node,
                     "reduction_vs_fp32": base.bytes_per_node / res.bytes_per_node,
                     "payload_bytes": res.payload_per_node,
                     "payload_reduction_vs_fp32": base.payload_per_node / res.payload_per_node})
    return rows


def exactness_rows(lab: Lab) -> list[dict[str, object]]:
    rows = []
    for name, agg in (("factorwise_fedavg", plain(FedAvg())), ("exact_lora", exact())):
        res = run_federation(lab, name, agg)
        rows.append({"section": "exactness", "config": name, "final_loss": res.final_loss,
                     "product_rel_error": res.product_error})
    return rows


def _strategies(lab: Lab, n_attackers: int, caught: dict[str, int]) -> dict[str, Aggregate]:
    n = lab.setup.nodes
    f = max(1, min(n_attackers, (n - 3) // 2))
    return {"fedavg": plain(FedAvg()), "median": plain(CoordinateMedian()),
            "trimmed_mean": plain(TrimmedMean(beta=min(0.45, max(0.1, n_attackers / n)))),
            "multikrum": plain(MultiKrum(num_byzantine=f)), "gates_mi_fedavg": gated(lab, caught)}


def robustness_rows(lab: Lab) -> list[dict[str, object]]:
    rows = []
    clean: dict[str, float] = {}
    plan = [(None, 0.0)] + [(k, fr) for k in lab.setup.attack_kinds for fr in lab.setup.fractions]
    with progress("robustness", total=len(plan) * len(lab.setup.aggregators), unit="run") as bar:
        for attack, fraction in plan:
            caught: dict[str, int] = {}
            strategies = _strategies(lab, round(fraction * lab.setup.nodes), caught)
            for agg in lab.setup.aggregators:
                res = run_federation(lab, agg, strategies[agg], attack=attack, fraction=fraction,
                                     rounds=lab.setup.robust_rounds)
                if attack is None:
                    clean[agg] = res.final_loss
                ref = clean["fedavg"]
                row: dict[str, object] = {"section": "robustness", "config": agg, "attack": attack or "none",
                                          "fraction": fraction, "final_loss": res.final_loss,
                                          "loss_vs_clean_fedavg": res.final_loss / ref - 1,
                                          "failed_rounds": res.failed_rounds}
                if agg == "gates_mi_fedavg":
                    row["precision"] = res.tp / (res.tp + res.fp) if res.tp + res.fp else math.nan
                    row["recall"] = res.tp / (res.tp + res.fn) if res.tp + res.fn else math.nan
                    row["fpr"] = res.fp / (res.fp + res.tn) if res.fp + res.tn else math.nan
                    row["caught_by"] = " ".join(f"{g}:{c}" for g, c in sorted(caught.items())) or "-"
                rows.append(row)
                bar.update(1, run=f"{attack}/{fraction}/{agg}")
    return rows


# ------------------------------------------------------------------------------------------------ spec


def load_spec(path: Path) -> FederationSpec:
    """The federation spec at ``path``; ConfigError naming the file and the fix when it cannot be run here."""
    spec = FederationSpec.from_toml(path)
    if spec.compression.codec_version != CODEC_VERSION:
        raise ConfigError(f"federation spec {path}: compression.codec_version is {spec.compression.codec_version}, "
                          f"this build encodes updates as codec v{CODEC_VERSION}; set it to {CODEC_VERSION} or run "
                          "the release that speaks the spec's codec")
    return spec


def spec_line(spec: FederationSpec) -> str:
    """What the spec section runs, in one line: the aggregator, the gates on, local DP, the codec."""
    g = spec.gates
    gates = ["policy"] + [text for on, text in (
        (g.duplicates, "duplicate"), (g.norm, f"norm z {g.norm_threshold:g}"),
        (g.direction, f"direction z {g.direction_threshold:g}"), (g.probe_loss, f"probe loss z {g.probe_loss_z:g}"),
        (g.mutual_information, f"MI z {g.mi_threshold:g}")) if on]
    dp = spec.privacy
    privacy = (f"local DP clip {dp.clip_norm:g} noise ×{dp.noise_multiplier:g} (δ {dp.delta:g}), dense fp32 updates"
               if dp.enabled else f"no DP, PowerSGD rank {spec.compression.powersgd_rank} fp16")
    return (f"{spec.name}: aggregator {spec.aggregator.describe()}; gates {', '.join(gates)} (from "
            f"{g.min_candidates} updates); {privacy}; codec v{spec.compression.codec_version}; "
            f"LoRA rank {spec.lora.rank} alpha {spec.lora.alpha:g} lr {spec.lora.learning_rate:g}")


def spec_release(spec: FederationSpec) -> Callable[[str, int, Delta], Delta] | None:
    """Each node's release under the spec's local DP (the node's own code), None without DP.

    A node draws its noise seed from fresh randomness; here it is derived from (node, round), so runs
    repeat and the clean and attacked runs get the same noise.
    """
    if not spec.privacy.enabled:
        return None

    def release(node: str, round_id: int, delta: Delta) -> Delta:
        seed = int.from_bytes(hashlib.sha256(f"dp:{node}:{round_id}".encode()).digest()[:7], "big")
        return spec.privacy.release(delta, seed=seed)[0]
    return release


def spec_wire(spec: FederationSpec, rank: int) -> Wire:
    """The spec's codec: PowerSGD at its rank (fp16, error feedback), or dense fp32 under local DP, as nodes send.

    An update the codec refuses to encode (NaN, Inf) goes as it is, as an attacker writing its bytes by hand
    would send it; the committee refuses it on decoding, here at the policy gate.
    """
    codec = dense_wire("float32", rank) if spec.privacy.enabled else powersgd_wire(spec.compression.powersgd_rank)

    def send(node: str, delta: Delta) -> tuple[Delta, tuple[int, int]]:
        try:
            return codec(node, delta)
        except UpdateError:  # its size: the same file with finite values
            return delta, dense_wire("float32", rank)(node, {k: torch.zeros_like(v) for k, v in delta.items()})[1]
    return send


def spec_aggregate(lab: Lab, spec: FederationSpec, caught: dict[str, int]) -> Aggregate:
    """The committee's path under ``spec``: local-DP norm check, the spec's gates, then the spec's aggregator.

    Sample counts are clipped to the spec's cap as the committee weighs them; exact_lora carries its
    residual from round to round as the global bundle does (a failed round keeps the previous one).
    Counts rejections per gate into ``caught``.
    """
    screen = gate_screen(lab, spec.gates)
    strategy = spec.aggregator.build()
    carried: dict[str, Delta] = {}

    def run(global_adapter: Delta, updates: list[ClientUpdate], _attackers: set[str]) -> tuple[Delta, set[str]]:
        weighed = [ClientUpdate(node=u.node, delta=u.delta,
                                sample_count=aggregation_weight(u.sample_count, spec.committee.max_sample_count))
                   for u in updates]
        rejected: list[tuple[str, str]] = []
        kept: list[ClientUpdate] = []
        for update in weighed:
            try:
                if spec.privacy.enabled:
                    require_local_dp(update.delta, spec.privacy, round_id=0, node=update.node)
            except GateRejection as exc:
                rejected.append((exc.gate, update.node))
                continue
            kept.append(update)
        if not kept:
            raise FlareError("every update was rejected")
        accepted, gated = screen(global_adapter, kept)
        rejected += gated
        if isinstance(strategy, ExactLoraAggregator):
            result = strategy.aggregate_adapters(global_adapter, accepted, carried or None)
            new = result.adapter
            carried.clear()
            carried.update(result.residual)
        else:
            new = apply_delta(global_adapter, strategy.aggregate(accepted))
        for gate, _node in rejected:
            caught[gate] = caught.get(gate, 0) + 1
        return new, {node for _gate, node in rejected}
    return run


SPEC_REFERENCE = "fedavg, no spec"
"""The spec section's yardstick row: plain FedAvg, no gates, no DP, fp32."""


def spec_rows(lab: Lab, spec: FederationSpec) -> list[dict[str, object]]:
    """``setup.rounds`` rounds as ``spec`` says, clean and under each attack × fraction, on the spec's LoRA shape.

    The yardstick is the clean run of plain FedAvg on the same lab without the spec's gates, DP or codec, so
    each row shows what the spec costs (DP noise, a robust aggregator) and what the attacks cost under it.
    ε per node is what the audit reports after as many rounds (one Gaussian release per node and round).
    """
    setup = lab.setup
    label = spec.aggregator.describe()
    epsilon = spec.privacy.accountant().epsilon_after(setup.rounds) if spec.privacy.enabled else math.nan
    plan = [(None, 0.0)] + [(k, fr) for k in setup.attack_kinds for fr in setup.fractions]
    rows: list[dict[str, object]] = []
    with progress("spec", total=len(plan) + 1, unit="run") as bar:
        reference = run_federation(lab, "fedavg", plain(FedAvg()))
        bar.update(1, run="fedavg without the spec")
        rows.append({"section": "spec", "config": SPEC_REFERENCE, "attack": "none", "fraction": 0.0,
                     "final_loss": reference.final_loss, "loss_vs_clean_fedavg": 0.0, "failed_rounds": 0})
        for attack, fraction in plan:
            caught: dict[str, int] = {}
            res = run_federation(lab, label, spec_aggregate(lab, spec, caught), attack=attack, fraction=fraction,
                                 wire=spec_wire(spec, lab.params.rank), release=spec_release(spec))
            rows.append({"section": "spec", "config": label, "attack": attack or "none", "fraction": fraction,
                         "final_loss": res.final_loss,
                         "loss_vs_clean_fedavg": res.final_loss / reference.final_loss - 1,
                         "failed_rounds": res.failed_rounds,
                         "precision": res.tp / (res.tp + res.fp) if res.tp + res.fp else math.nan,
                         "recall": res.tp / (res.tp + res.fn) if res.tp + res.fn else math.nan,
                         "fpr": res.fp / (res.fp + res.tn) if res.fp + res.tn else math.nan,
                         "caught_by": " ".join(f"{g}:{c}" for g, c in sorted(caught.items())) or "-",
                         "epsilon_per_node": epsilon, "bytes_per_node_round": res.bytes_per_node})
            bar.update(1, run=f"{attack or 'clean'}/{fraction:.0%}")
    return rows


def cost_rows(setup: Setup) -> list[dict[str, object]]:
    """Time to gate and aggregate n generated updates of a realistic LoRA size (CPU, float32 updates).

    Only ``cost_layers`` of the ``full_layers`` layers are generated (memory and
    time on a small machine); every strategy and gate works module by module,
    so the ``*_full_s`` columns scale the measured time by full/measured layers.
    The MI filter's candidate forward passes need the full model and are not
    timed; ``mi_nmi_matrix`` is its pairwise-NMI part on 512-token probes.
    """
    rows = []
    r, w = setup.cost_rank, setup.cost_width
    keys = [f"layers.{layer}.{m}.lora_{ab}.weight" for layer in range(setup.cost_layers)
            for m in ("q_proj", "k_proj", "v_proj", "o_proj") for ab in "AB"]
    shapes = {k: ((r, w) if "lora_A" in k else (w, r)) for k in keys}
    gen = torch.Generator().manual_seed(0)
    global_adapter = {k: torch.randn(s, generator=gen) * 0.02 for k, s in shapes.items()}
    max_n = max(setup.cost_sizes)
    common = {k: torch.randn(s, generator=gen) * 1e-3 for k, s in shapes.items()}
    pool = [ClientUpdate(node=f"0x{i:040x}", sample_count=100,
                         delta={k: common[k] + torch.randn(s, generator=gen) * 1e-3 for k, s in shapes.items()})
            for i in range(max_n)]
    params_per_update = sum(math.prod(s) for s in shapes.values())
    for n in setup.cost_sizes:
        updates = pool[:n]
        timings: dict[str, float] = {}
        for name, fn in (
            ("fedavg", lambda u: FedAvg().aggregate(u)),
            ("median", lambda u: CoordinateMedian().aggregate(u)),
            ("trimmed_mean", lambda u: TrimmedMean(0.2).aggregate(u)),
            ("multikrum", lambda u: MultiKrum(num_byzantine=max(1, (len(u) - 3) // 4)).aggregate(u)),
            ("exact_lora", lambda u: ExactLoraAggregator().aggregate_adapters(global_adapter, u)),
            ("gates_no_mi", lambda u: run_gates(u, global_adapter, build_gates(GateSettings()))),
            ("mi_nmi_matrix", lambda u: nmi_matrix([torch.randint(0, 96, (512,), generator=gen).numpy()
                                                     for _ in u])),
        ):
            began = time.perf_counter()
            fn(updates)
            timings[name] = time.perf_counter() - began
        scale = setup.full_layers / setup.cost_layers
        rows.append({"section": "cost", "config": f"n={n}", "n": n, "layers_measured": setup.cost_layers,
                     "params_per_update": params_per_update, **{f"{k}_s": v for k, v in timings.items()},
                     **{f"{k}_full_s": v * (1 if k == "mi_nmi_matrix" else scale) for k, v in timings.items()
                        if k in ("fedavg", "median", "multikrum", "exact_lora", "gates_no_mi")}})
        log.info("cost n=%d: %s", n, {k: round(v, 2) for k, v in timings.items()})
    return rows


# -------------------------------------------------------------------------------------------- output


def _fmt(v: object) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


def print_table(rows: list[dict[str, object]]) -> str:
    lines = []
    for section in SECTIONS:
        part = [r for r in rows if r["section"] == section]
        if not part:
            continue
        cols = [c for c in dict.fromkeys(k for r in part for k in r) if c != "section"]
        lines.append(f"\n{section}")
        lines.append("| " + " | ".join(cols) + " |")
        lines.append("|" + "|".join("---" for _ in cols) + "|")
        lines.extend("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |" for r in part)
    text = "\n".join(lines)
    print(text)
    return text


def _pct(v: object) -> str:
    return f"{float(v):+.2%}" if isinstance(v, float) and not math.isnan(v) else "-"  # type: ignore[arg-type]


def report(rows: list[dict[str, object]], setup: Setup, spec: FederationSpec | None = None) -> str:
    """The tables as the README shows them: one aligned text block per section, losses as % of the baseline."""
    out: list[str] = []
    runs = [r for r in rows if r["section"] == "spec"]
    if runs and spec is not None:
        out += [f"spec {spec_line(spec)}",
                f"({setup.rounds} rounds, {setup.nodes} nodes; loss vs the clean plain-FedAvg run without the spec; "
                "(F) = a round failed and the previous adapter stayed; ε per node at the spec's δ)",
                f"{'run':<16}{'frac':>5}{'final loss':>11}{'vs FedAvg':>11}{'gate P / R / FPR':>19}{'ε/node':>9}"
                f"{'B/node':>9}    caught by"]
        for r in runs:
            spec_run = r["config"] != SPEC_REFERENCE
            prf = " / ".join(f"{v:.2f}" if isinstance(v, float) and not math.isnan(v) else "-"
                             for v in (r.get(k) for k in ("precision", "recall", "fpr")))
            eps, sent = r.get("epsilon_per_node", math.nan), r.get("bytes_per_node_round", math.nan)
            out.append(f"{r['attack'] if spec_run else SPEC_REFERENCE!s:<16}{r['fraction']:>5.0%}"
                       f"{r['final_loss']:>11.4f}"
                       f"{_pct(r['loss_vs_clean_fedavg']) + (' (F)' if r['failed_rounds'] else ''):>11}"
                       f"{prf if spec_run else '':>19}{_fmt(eps):>9}"
                       f"{f'{sent:.0f}' if isinstance(sent, float) and not math.isnan(sent) else '-':>9}"
                       f"    {r.get('caught_by', '')}")
        out.append("")
    comp = [r for r in rows if r["section"] == "compression"]
    if comp:
        out += [f"compression ({setup.rounds} rounds, FedAvg; bytes = the update file a node pins, "
                "payload = tensor data only)",
                f"{'config':<13}{'final loss':>11}{'vs fp32':>9}{'file B':>9}{'÷ fp32':>8}{'payload B':>11}{'÷ fp32':>8}"]
        out += [f"{r['config']!s:<13}{r['final_loss']:>11.4f}{_pct(r['loss_vs_baseline']):>9}"
                f"{r['bytes_per_node_round']:>9.0f}{r['reduction_vs_fp32']:>7.1f}×"
                f"{r['payload_bytes']:>11.0f}{r['payload_reduction_vs_fp32']:>7.1f}×" for r in comp]
    exact = [r for r in rows if r["section"] == "exactness"]
    if exact:
        out += ["", f"exactness ({setup.rounds} rounds; error = mean over rounds of "
                "‖aggregate B·A − mean of Bᵢ·Aᵢ‖ / ‖mean‖)"]
        out += [f"{r['config']!s:<19}final loss {r['final_loss']:.4f}   relative error {r['product_rel_error']:.4f}"
                for r in exact]
    rob = [r for r in rows if r["section"] == "robustness"]
    if rob:
        aggs = list(dict.fromkeys(str(r["config"]) for r in rob))
        rounds = setup.robust_rounds
        out += ["", f"robustness ({rounds} round{'s' if rounds > 1 else ''}; final held-out loss vs clean FedAvg; "
                "(F) = the aggregator refused a round,",
                "the previous adapter stays; gates = policy, duplicate, norm, direction, probe loss, MI filter, then FedAvg)",
                f"{'attack':<12}{'frac':>4}" + "".join(f"{a:>16}" for a in aggs) + f"{'gate P / R / FPR':>21}    caught by"]
        cells: dict[tuple[str, float], dict[str, dict[str, object]]] = {}
        for r in rob:
            cells.setdefault((str(r["attack"]), float(r["fraction"])), {})[str(r["config"])] = r  # type: ignore[arg-type]
        for (attack, frac), by_agg in cells.items():
            line = f"{attack:<12}{frac:>4.0%}"
            for a in aggs:
                r = by_agg.get(a)
                cell = "" if r is None else _pct(r["loss_vs_clean_fedavg"]) + (" (F)" if r["failed_rounds"] else "")
                line += f"{cell:>16}"
            g = by_agg.get("gates_mi_fedavg", {})
            prf = " / ".join(f"{v:.2f}" if isinstance(v, float) and not math.isnan(v) else "-"
                             for v in (g.get(k) for k in ("precision", "recall", "fpr")))
            out.append(f"{line}{prf:>21}    {g.get('caught_by', '')}")
    cost = [r for r in rows if r["section"] == "cost"]
    if cost:
        out += ["", f"cost (seconds, 1 CPU thread; measured on {setup.cost_layers} of the {setup.full_layers} layers, "
                f"'{setup.full_layers}L' = ×{setup.full_layers // setup.cost_layers}, modules are independent)",
                f"{'n':>4}{'fedavg':>9}{'median':>9}{'trimmed':>9}{'multikrum':>10}{'exact_lora':>11}{'gates':>8}"
                f"{'NMI':>7}{f'{setup.full_layers}L exact':>11}{f'{setup.full_layers}L gates':>11}"]
        out += [f"{r['n']:>4.0f}{r['fedavg_s']:>9.2f}{r['median_s']:>9.1f}{r['trimmed_mean_s']:>9.1f}"
                f"{r['multikrum_s']:>10.1f}{r['exact_lora_s']:>11.1f}{r['gates_no_mi_s']:>8.1f}"
                f"{r['mi_nmi_matrix_s']:>7.1f}{r['exact_lora_full_s']:>11.0f}{r['gates_no_mi_full_s']:>11.0f}"
                for r in cost]
    return "\n".join(out).lstrip("\n")


def write_csv(rows: list[dict[str, object]], path: Path) -> None:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols)
        writer.writeheader()
        writer.writerows(rows)


def plot(rows: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    comp = [r for r in rows if r["section"] == "compression"]
    if comp:
        ax = axes[0]
        ax.scatter([r["bytes_per_node_round"] for r in comp], [r["final_loss"] for r in comp])
        for r in comp:
            ax.annotate(str(r["config"]), (r["bytes_per_node_round"], r["final_loss"]))
        ax.set_xscale("log")
        ax.set_xlabel("bytes per node per round")
        ax.set_ylabel("final held-out loss")
        ax.set_title("compression")
    rob = [r for r in rows if r["section"] == "robustness" and r["attack"] != "none"]
    if rob:
        ax = axes[1]
        aggs = list(dict.fromkeys(r["config"] for r in rob))
        kinds = list(dict.fromkeys(r["attack"] for r in rob))
        top = max(r["fraction"] for r in rob)
        for j, agg in enumerate(aggs):
            vals = [next((min(float(r["loss_vs_clean_fedavg"]), 1.0) for r in rob
                          if r["config"] == agg and r["attack"] == k and r["fraction"] == top), math.nan)
                    for k in kinds]
            ax.bar([i + j * 0.16 for i in range(len(kinds))], vals, width=0.16, label=agg)
        ax.set_xticks([i + 0.32 for i in range(len(kinds))], kinds, rotation=30)
        ax.set_ylabel(f"loss vs clean FedAvg at {top:.0%} attackers (capped at +100%)")
        ax.legend(fontsize=7)
        ax.set_title("robustness")
    cost = [r for r in rows if r["section"] == "cost"]
    if cost:
        ax = axes[2]
        for key in [k for k in cost[0] if k.endswith("_s") and not k.endswith("_full_s")]:
            ax.plot([r["n"] for r in cost], [r[key] for r in cost], marker="o", label=key[:-2])
        ax.set_xlabel("updates")
        ax.set_ylabel("seconds")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
        ax.set_title("cost")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small CPU run (5 nodes, 2 rounds, few attacks)")
    parser.add_argument("--task", choices=("skills", "stdlib"), default=SKILLS_TASK,
                        help="the nodes' data: skills, the generated instruction task with a different mix of skills "
                             "per node (default), or stdlib, a standard-library package per node")
    parser.add_argument("--device", default=None, help="torch device for training/eval (cpu, cuda)")
    parser.add_argument("--model-dir", type=Path, default=None, help="reference model dir (default: the cache)")
    parser.add_argument("--out", type=Path, default=Path("bench-out"), help="where the CSV and PNG go")
    parser.add_argument("--sections", type=lambda v: tuple(v.split(",")), default=None,
                        help=f"sections to run, from {','.join(SECTIONS)} (default {','.join(DEFAULT_SECTIONS)}; "
                             "with --spec: spec)")
    parser.add_argument("--spec", type=Path, default=None, metavar="SPEC.toml",
                        help="a federation spec (e.g. specs/devnet-dp.toml; `flare-chain spec init` writes one) for "
                             "the spec section, which runs the federation as the spec says: the spec's LoRA rank, "
                             "alpha and lr (the bench's steps and batch); each node's local DP with the node's own "
                             "code (clip + noise; ε per node from the audit's accountant); the spec's codec "
                             "(PowerSGD at its rank, or dense fp32 under DP); the committee's DP norm check, the "
                             "spec's gates and its aggregator (exact_lora carries its residual), for --rounds "
                             "rounds, clean and with --attacks x --fractions attackers, against clean plain FedAvg")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--robust-rounds", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--fractions", type=lambda v: tuple(float(x) for x in v.split(",")), default=None,
                        help="attacker shares for robustness, e.g. 0.3 (default 0.2,0.3,0.4)")
    parser.add_argument("--attacks", type=lambda v: tuple(v.split(",")), default=None,
                        help=f"attack kinds for robustness (default {','.join(ATTACK_KINDS)})")
    parser.add_argument("--aggregators", type=lambda v: tuple(v.split(",")), default=None,
                        help=f"aggregators for robustness (default {','.join(AGGREGATORS)}; fedavg always runs)")
    parser.add_argument("--cost-sizes", type=lambda v: tuple(int(x) for x in v.split(",")), default=None,
                        help="update counts n for the cost section (default 10,50,100)")
    parser.add_argument("--ablation-attacks", type=lambda v: tuple(v.split(",")), default=None,
                        help="attacks for the ablation section (default: every adaptive attack; names from "
                             "flare_chain.attacks.BEHAVIOURS)")
    parser.add_argument("--ablation-rounds", type=int, default=None, help="rounds per ablation run (default 5)")
    parser.add_argument("--ablation-probe-windows", type=int, default=None, metavar="N",
                        help="probe-loss examples per round in the ablation (default 128, the spec's; --quick: 32)")
    parser.add_argument("--ablation-switches", type=lambda v: tuple(x for x in v.split(",") if x and x != "none"),
                        default=None, metavar="GATES",
                        help="gates the ablation switches off one at a time (default "
                             f"{','.join(bench_ablation.GATE_SWITCHES)}; 'none' runs only honest-only, FedAvg and "
                             "the default gates, e.g. for a grid of shares on --nodes 10)")
    parser.add_argument("--ablation-reseeds", type=int, default=None, metavar="K",
                        help="honest-only runs per share with other training batches, the noise floor that "
                             "'kept' is judged against (default 2)")
    parser.add_argument("--ablation-colluder-noise", type=float, default=None, metavar="R",
                        help="each colluder's own noise relative to the crafted vector (default 1e-6; above the "
                             "duplicate gate's tolerance of 0.1 the colluders escape it, as an adaptive attacker would)")
    parser.add_argument("--nodes", type=int, default=None,
                        help="nodes in the federation (default 10; --quick: 5); attackers are the first "
                             "round(share x nodes)")
    parser.add_argument("--cost-layers", type=int, default=None,
                        help="layers generated for the cost section (default 4; 32 = the full model, no scaling)")
    args = parser.parse_args(argv)
    for name, allowed in (("attacks", ATTACK_KINDS), ("aggregators", AGGREGATORS), ("sections", SECTIONS)):
        unknown = sorted(set(getattr(args, name) or ()) - set(allowed))
        if unknown:
            parser.error(f"--{name}: unknown {', '.join(unknown)}; choose from {', '.join(allowed)}")
    if args.ablation_colluder_noise is not None and not args.ablation_colluder_noise >= 0:
        parser.error(f"--ablation-colluder-noise {args.ablation_colluder_noise}: must be >= 0 (a share of the norm)")
    if args.nodes is not None and args.nodes < 3:
        parser.error(f"--nodes {args.nodes}: a federation with attackers and honest nodes needs at least 3 nodes")
    sections = args.sections or (("spec",) if args.spec is not None else DEFAULT_SECTIONS)
    if "spec" in sections and args.spec is None:
        parser.error("the spec section runs a federation spec: give it with --spec SPEC.toml (e.g. specs/devnet-dp.toml)")
    if args.spec is not None and "spec" not in sections:
        parser.error(f"--spec is run by the spec section, which --sections {','.join(sections)} leaves out; add spec")
    spec = None
    if args.spec is not None:
        try:
            spec = load_spec(args.spec)
        except ConfigError as exc:
            parser.error(str(exc))
    if args.aggregators is not None and "fedavg" not in args.aggregators:
        args.aggregators = ("fedavg", *args.aggregators)  # the clean FedAvg run is every row's reference
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    setup = QUICK if args.quick else Setup()
    changes = {k: v for k, v in (("device", args.device), ("rounds", args.rounds), ("threads", args.threads),
                                                  ("task", args.task),
                                                  ("robust_rounds", args.robust_rounds),
                                                  ("fractions", args.fractions), ("attack_kinds", args.attacks),
                                                  ("aggregators", args.aggregators),
                                                  ("cost_sizes", args.cost_sizes), ("cost_layers", args.cost_layers),
                                                  ("ablation_attacks", args.ablation_attacks),
                                                  ("ablation_rounds", args.ablation_rounds),
                                                  ("ablation_probe_windows", args.ablation_probe_windows),
                                                  ("ablation_switches", args.ablation_switches),
                                                  ("ablation_reseeds", args.ablation_reseeds),
                                                  ("ablation_colluder_noise", args.ablation_colluder_noise),
                                                  ("nodes", args.nodes))
               if v is not None}
    setup = Setup(**{**setup.__dict__, **changes})
    torch.set_num_threads(setup.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    rows: list[dict[str, object]] = []
    model_dir = (args.model_dir or ensure_reference_model()) if set(sections) - {"cost"} else None
    if spec is not None and model_dir is not None and "spec" in sections:
        try:
            spec_lab = Lab(setup, model_dir, lora=spec.lora)
        except ConfigError as exc:  # e.g. target modules or a rank the model does not have
            parser.error(f"--spec {args.spec}: its [lora] does not fit the model {model_dir}: {exc}")
        log.info("spec %s; base held-out loss %.4f", spec_line(spec), spec_lab.loss(spec_lab.start))
        rows += spec_rows(spec_lab, spec)
        log.info("spec done after %.0f s (%d trainings)", time.perf_counter() - began, spec_lab.trainings)
    if model_dir is not None and set(sections) & {"compression", "exactness", "robustness", "ablation"}:
        lab = Lab(setup, model_dir)
        log.info("base held-out loss %.4f (%d nodes, %d rounds, %d steps)", lab.loss(lab.start), setup.nodes,
                 setup.rounds, setup.steps)
        for name, fn in (("compression", compression_rows), ("exactness", exactness_rows),
                         ("robustness", robustness_rows)):
            if name in sections:
                rows += fn(lab)
                log.info("%s done after %.0f s (%d trainings)", name, time.perf_counter() - began, lab.trainings)
        if "ablation" in sections:
            total = 1 + len(setup.fractions) * (setup.ablation_reseeds + len(setup.ablation_attacks)
                                                * (3 + len(setup.ablation_switches)))
            with progress("ablation", total=total, unit="run") as bar:
                rows += bench_ablation.ablation_rows(
                    lab, lambda settings: gate_and_average(lab, settings), attacks=setup.ablation_attacks,
                    fractions=setup.fractions, rounds=setup.ablation_rounds,
                    base=GateSettings(probe_loss_windows=setup.ablation_probe_windows),
                    switches=setup.ablation_switches, reseeds=setup.ablation_reseeds,
                    colluder_noise=setup.ablation_colluder_noise, on_run=lambda what: bar.update(1, run=what))
            log.info("ablation done after %.0f s (%d trainings)", time.perf_counter() - began, lab.trainings)
    if "cost" in sections:
        rows += cost_rows(setup)
    text = print_table(rows)
    readable = "\n\n".join(t for t in (report(rows, setup, spec),
                                         bench_ablation.ablation_report(rows, setup.ablation_rounds),
                                         bench_ablation.ablation_summary(rows)) if t)
    print("\n" + readable)
    write_csv(rows, args.out / "bench_learning.csv")
    (args.out / "bench_learning.md").write_text(text + "\n")
    (args.out / "bench_learning.txt").write_text(readable + "\n")
    plot(rows, args.out / "bench_learning.png")
    print(f"\n{time.perf_counter() - began:.0f} s; wrote {args.out}/bench_learning.csv, .md, .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
