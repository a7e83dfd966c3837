"""A whole federation in one process: the engine behind ``flare-chain demo``.

Everything is real: an in-process EVM running the compiled coordinator, the
embedded content store on disk, PEFT training of every node on its own data:
by default its share of the generated skills task (:mod:`flare_chain.lora.skills`),
or a stdlib domain, or the operator's files. Only the network is absent: nodes
share one process, one chain and one store. Each node is a
:class:`~flare_chain.node.daemon.Daemon`, the engine ``flare-chain node run``
runs, with its state file under ``work_dir/nodes``; the in-process driver
:func:`flare_chain.node.localnet.drive` ticks them in turn and mines the blocks.

After the rounds, the same nodes train *alone* for as many rounds on their own
data (no averaging) and are scored on the same held-out set, so the report
shows what federating bought over local-only training.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flare_chain.attacks.behaviour import daemon_behaviour
from flare_chain.basemodel import publish_and_load
from flare_chain.chain import (
    CoordinatorClient,
    FailureReason,
    RoundStatus,
    deploy_coordinator,
    fund_accounts,
    in_process_chain,
)
from flare_chain.chain.coordinator import DEFAULT_MIN_STAKE_WEI
from flare_chain.committee import sortition
from flare_chain.errors import ConfigError
from flare_chain.ipfs import ContentStore, cid_from_bytes, cid_to_bytes
from flare_chain.lora.adapter import initial_adapter
from flare_chain.lora.datasets import NodeData, load_node_data, node_entries
from flare_chain.lora.device import resolve_device
from flare_chain.lora.domains import available_domains, domain_texts
from flare_chain.lora.evaluate import evaluate_loss
from flare_chain.lora.examples import TokenExamples
from flare_chain.lora.params import LoraTrainParams
from flare_chain.lora.probe_corpus import reference_probe_texts
from flare_chain.lora.reference import ensure_reference_model
from flare_chain.lora.skills import SKILLS_TASK, node_skills, skills_node_data, skills_probe_corpus
from flare_chain.lora.train import train_lora
from flare_chain.node.bundles import pin_global_bundle, pin_probe_corpus
from flare_chain.node.config import CompressionSettings
from flare_chain.node.daemon import Daemon, DaemonSettings, attempt_step
from flare_chain.node.localnet import Net, drive, make_daemon, register_all
from flare_chain.node.participant import Participant, initial_global_manifest
from flare_chain.node.state import StepStatus
from flare_chain.protocol.spec import BaseModelSpec, CommitteeSpec, FederationSpec, pin_spec

__all__ = [
    "Federation",
    "FederationConfig",
    "FederationReport",
    "NodeRoundReport",
    "RoundReport",
    "local_only_losses",
    "run_federation",
    "run_round",
    "setup_federation",
]

log = logging.getLogger("flare_chain.federation")


class FederationConfig(BaseModel):
    """Settings of an in-process federation; every field has a working default.

    The committee defaults (6 nodes of equal stake, expected committee weight 8,
    at least weight 2) draw each node's seat weight from Poisson(8/6): a node
    sits out with probability e^(-4/3) ≈ 26%, and a round fails for want of
    weight 2 with probability P(Poisson(8) < 2) = 9e^(-8) ≈ 0.3% (at k = 4 it
    would be 9.2%). Every transaction mines one block on the
    in-process chain, so the claim and voting windows must hold one block per
    node; ``setup_federation`` checks that.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    nodes: int = Field(6, ge=2, le=16, description="participants, each on its own share of the task")
    rounds: int = Field(3, ge=1, le=100)
    work_dir: Path = Field(Path(".flare/demo"), description="where the embedded IPFS repo lives")
    model_dir: Path | None = Field(None, description="HF causal-LM directory; None builds the reference model")
    data_dir: Path | None = Field(
        None, description="the nodes' own data: node-1.jsonl, node-2.jsonl, ... or node-1/, ... (format detected "
        "per entry, see flare_chain.lora.datasets); None gives each node its share of `task`")
    task: Literal["skills", "stdlib"] = Field(
        SKILLS_TASK, description="the nodes' data without data_dir: skills (the generated instruction task, "
        "non-IID skill mixes, flare_chain.lora.skills) or stdlib (node i gets the i-th stdlib domain)")
    task_seed: int = Field(0, ge=0, lt=2**63, description="seed the skills task's records are drawn from")
    task_records_per_node: int = Field(240, ge=2, le=4096, description="skills task records per node "
                                       "(a tenth held out)")
    local_only: bool = Field(True, description="after the rounds, train each node alone for as many rounds "
                             "and score it on the same held-out set (the baseline federating must beat)")
    reference_pretrain_steps: int = Field(300, ge=1)
    train: LoraTrainParams = Field(default_factory=LoraTrainParams)
    stake_wei: int = Field(10**18, ge=DEFAULT_MIN_STAKE_WEI, lt=2**90, description="each node's registration stake")
    stakes_wei: tuple[int, ...] | None = Field(
        None, description="per-node stakes overriding stake_wei (one per node), e.g. to model stake skew")
    expected_committee_size: int = Field(8, ge=1, le=0xFFFF, description="k: seat weight sortition hands out on average")
    min_committee_size: int = Field(2, ge=1, le=0xFFFF, description="fewer seats than this and the round fails")
    leader_blocks: int = Field(5, ge=1, description="blocks each proposer in rank order has before the next may")
    submission_blocks: int = Field(40, ge=1)
    claim_blocks: int = Field(20, ge=1, le=sortition.MAX_CLAIM_BLOCKS,
                              description="claim window after the submission deadline (blockhash reaches 256 back)")
    proposal_blocks: int = Field(20, ge=1, description="proposal window after the claim deadline")
    voting_blocks: int = Field(20, ge=1)
    approval_threshold_bps: int = Field(6666, gt=0, le=10_000, description="6666: two thirds (2 of 3, 4 of 6)")
    vote_tolerance: float = Field(0.02, ge=0, description="relative held-out loss rise a member tolerates")
    adapter_seed: int = Field(0, ge=0, description="seed of the shared round-0 adapter")
    compression: CompressionSettings = Field(
        default_factory=CompressionSettings,
        description="PowerSGD on each update (default rank 2, fp16); rank 0 sends updates uncompressed")
    probe_corpus: bool = Field(True, description="pin the reference task's public probe corpus and name it in "
                               "the round-0 manifest, which turns the committee's probe-loss gate on")
    spec: FederationSpec | None = Field(None, description=(
        "the federation spec (aggregator, gates, ...); its lora and vote tolerance replace train and "
        "vote_tolerance. None: a spec made from these settings. Either way it is pinned and fixed on-chain"))
    device: Literal["auto", "cpu", "cuda"] = Field(
        "cpu", description="where every node trains and runs the committee's models; auto: CUDA when present")
    attack: str | None = Field(None, description=(
        "a behaviour from flare_chain.attacks that the last `attackers` nodes run instead of submitting what "
        "they trained (one a lone node can craft, e.g. sign_flip); None: every node honest"))
    attackers: int = Field(1, ge=0, description="how many nodes (the last ones) run `attack`")
    show_progress: bool = True

    def federation_spec(self, *, probe_corpus_cid: str | None, base_model_cid: str | None) -> FederationSpec:
        """The spec this federation runs under: ``spec`` or one made from these settings, naming the
        published base model and probe corpus."""
        base = self.spec if self.spec is not None else FederationSpec(
            name="flare-chain demo", lora=self.train,
            committee=CommitteeSpec(vote_tolerance=self.vote_tolerance))
        return base.model_copy(update={"probe_corpus_cid": probe_corpus_cid,
                                       "base_model": BaseModelSpec(cid=base_model_cid)})

    @model_validator(mode="after")
    def _consistent(self) -> FederationConfig:
        if self.stakes_wei is not None:
            if len(self.stakes_wei) != self.nodes:
                raise ValueError(f"stakes_wei lists {len(self.stakes_wei)} stakes for {self.nodes} nodes; "
                                 "give one per node")
            if any(not DEFAULT_MIN_STAKE_WEI <= w < 2**90 for w in self.stakes_wei):
                raise ValueError(f"every stake must be in [{DEFAULT_MIN_STAKE_WEI}, 2^90) wei")
        if self.min_committee_size > min(self.expected_committee_size, self.nodes):
            raise ValueError(f"min_committee_size={self.min_committee_size} exceeds expected_committee_size="
                             f"{self.expected_committee_size} or nodes={self.nodes}; no round could open")
        for name in ("submission_blocks", "claim_blocks", "voting_blocks"):
            if getattr(self, name) < self.nodes:
                raise ValueError(f"{name}={getattr(self, name)} is fewer than nodes={self.nodes}: every "
                                 "transaction mines a block here, so the window must hold one per node")
        if self.attack is not None:
            try:
                daemon_behaviour(self.attack)  # an unknown kind, or one a lone node cannot craft
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
            if self.attackers >= self.nodes:
                raise ValueError(f"attackers={self.attackers} leaves no honest node among nodes={self.nodes}")
        if self.proposal_blocks < self.leader_blocks:
            raise ValueError(f"proposal_blocks={self.proposal_blocks} is shorter than leader_blocks="
                             f"{self.leader_blocks}; give the window room for a second proposer")
        return self

    def attack_of(self, index: int) -> str | None:
        """The behaviour node ``index`` runs (``attack`` for the last ``attackers`` nodes), None if honest."""
        return self.attack if self.attack is not None and index >= self.nodes - self.attackers else None

    def stake_of(self, index: int) -> int:
        """Stake (wei) node ``index`` registers with."""
        return self.stakes_wei[index] if self.stakes_wei is not None else self.stake_wei

    @classmethod
    def build(cls, **values: object) -> FederationConfig:
        """Validate keyword settings; ConfigError naming each bad key."""
        try:
            return cls(**values)  # type: ignore[arg-type]
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"invalid federation setting(s): {problems}") from None


@dataclass(frozen=True)
class NodeRoundReport:
    """One node in one round: its training, its sortition draw, its part on the committee."""

    name: str
    address: str
    domain: str
    sample_count: int
    loss_before: float
    loss_local: float
    loss_after: float
    vote: bool | None
    gas_used: int
    vrf_output: bytes
    seated: bool
    rank: int | None
    """Proposer rank on the committee (0: the leader); None without a seat."""
    compression: dict[str, float] = field(default_factory=dict)
    """The update's ``powersgd_*`` manifest metrics (rank, relative error, bytes); empty when uncompressed."""


@dataclass(frozen=True)
class RoundReport:
    round_id: int
    status: RoundStatus
    submissions: int
    accepted: int
    rejected: int
    committed_cid: str | None
    approvals: int
    committee_size: int
    committee_weight: int
    gas_used: int
    global_loss: float
    seconds: float
    nodes: list[NodeRoundReport] = field(default_factory=list)
    leader: str | None = None
    """Name of the member with the lowest leader score (None: nobody seated)."""
    proposer: str | None = None
    """Name of the member whose proposal went on-chain (None: no proposal)."""
    proposer_rank: int | None = None
    failure_reason: FailureReason | None = None

    @property
    def committee(self) -> list[NodeRoundReport]:
        """Seated members in proposing order, the leader first."""
        return sorted((n for n in self.nodes if n.seated), key=lambda n: n.rank or 0)


@dataclass(frozen=True)
class FederationReport:
    chain_id: int
    contract: str
    model_dir: Path
    base_loss: float
    rounds: list[RoundReport]
    local_only: dict[str, float] = field(default_factory=dict)
    """Node name → held-out loss (the same union set as ``global_loss``) after training alone for as many
    rounds on its own data; empty when not measured."""

    @property
    def final_loss(self) -> float:
        return self.rounds[-1].global_loss if self.rounds else self.base_loss

    @property
    def gain(self) -> float:
        """Relative fall of the held-out loss from the base to the last round (0.25: a quarter lower)."""
        return 1.0 - self.final_loss / self.base_loss

    @property
    def local_only_loss(self) -> float | None:
        """Mean over nodes of the local-only held-out loss (None: not measured)."""
        return sum(self.local_only.values()) / len(self.local_only) if self.local_only else None


def _node_account(index: int) -> LocalAccount:
    """Deterministic demo keys: reproducible runs, never to be used for real funds."""
    return Account.from_key(keccak(text=f"flare-chain demo node {index}"))


@dataclass
class Federation:
    """The live parts of an in-process federation, set up and ready for round 1.

    Its nodes are :class:`~flare_chain.node.daemon.Daemon` s, the class
    ``flare-chain node run`` builds, stepped by the shared in-process driver
    (:func:`flare_chain.node.localnet.drive`); each keeps its crash-safe state
    file under ``work_dir/nodes/node-<i>``.
    """

    config: FederationConfig
    net: Net
    domain_of: dict[str, str]
    model_dir: Path
    union_val: TokenExamples
    base_loss: float
    spec: FederationSpec
    node_data: list[NodeData | list[str]]
    start_adapter: dict[str, torch.Tensor]
    """The shared round-0 adapter every node starts from (local-only training starts there too)."""

    @property
    def coordinator(self) -> CoordinatorClient:
        return self.net.coordinator

    @property
    def owner(self) -> LocalAccount:
        return self.net.owner

    @property
    def store(self) -> ContentStore:
        return self.net.store

    @property
    def daemons(self) -> list[Daemon]:
        """The nodes, in node order: the engine that runs every round."""
        return self.net.daemons

    @property
    def participants(self) -> list[Participant]:
        """Each daemon's train/review helper (read-only view: the daemons do the stepping)."""
        return [d.participant for d in self.net.daemons]


def _node_data(config: FederationConfig) -> tuple[list[NodeData | list[str]], list[str]]:
    """Each node's data and the name it shows under "domain": its skills, a stdlib domain, or its entry in
    ``data_dir``."""
    if config.data_dir is not None:
        entries = node_entries(config.data_dir, config.nodes)
        data: list[NodeData | list[str]] = [load_node_data(e) for e in entries]
        return data, [e.name for e in entries]
    if config.task == SKILLS_TASK:
        data = [skills_node_data(i, config.nodes, records_per_node=config.task_records_per_node,
                                 seed=config.task_seed) for i in range(config.nodes)]
        return data, ["+".join(name for name, _ in node_skills(i, config.nodes)) for i in range(config.nodes)]
    domains = available_domains()
    if config.nodes > len(domains):
        raise ConfigError(f"nodes={config.nodes} but only {len(domains)} stdlib domains exist here; use fewer nodes")
    return [domain_texts(d) for d in domains[: config.nodes]], domains[: config.nodes]


def setup_federation(config: FederationConfig) -> Federation:
    """Build model, chain, contract, store and the nodes' daemons; every daemon registers with its stake and
    VRF key; pin and register the round-0 adapter."""
    resolve_device(config.device)  # device = "cuda" without a GPU: one error before anything is built
    node_data, domains = _node_data(config)  # read and validated before anything is built, trained or pinned
    owner_model = Path(config.model_dir) if config.model_dir else ensure_reference_model(
        pretrain_steps=config.reference_pretrain_steps, show_progress=config.show_progress)
    work_dir = Path(config.work_dir)
    store = ContentStore(work_dir / "ipfs")
    # The owner publishes the base model once; the nodes load it by CID, which the round-0 manifest names.
    base = publish_and_load(owner_model, store, work_dir / "models", show_progress=config.show_progress)
    model_dir = base.path
    w3 = in_process_chain()
    owner = Account.from_key(keccak(text="flare-chain demo owner"))
    accounts = [_node_account(i) for i in range(config.nodes)]
    fund_accounts(w3, [owner], 10**20)
    for i, account in enumerate(accounts):
        fund_accounts(w3, [account], 10**20 + config.stake_of(i))
    coordinator = deploy_coordinator(w3, owner, approval_threshold_bps=config.approval_threshold_bps,
                                     min_committee_size=config.min_committee_size,
                                     leader_blocks=config.leader_blocks)
    log.info("coordinator deployed at %s on chain %d", coordinator.address, w3.eth.chain_id)

    # The probe corpus is public and its CID goes into the spec, so it is pinned before the spec is.
    used = domains[: config.nodes]
    # The public probe corpus samples the task the nodes learn; for the nodes' own data there is none here.
    probe_cid = None
    if config.probe_corpus and config.data_dir is None:
        probe = skills_probe_corpus(seed=config.task_seed) if config.task == SKILLS_TASK else \
            reference_probe_texts(domains=used)
        probe_cid = pin_probe_corpus(store, probe)
    spec = config.federation_spec(probe_corpus_cid=probe_cid, base_model_cid=base.cid)
    train = spec.lora
    coordinator.set_federation_spec(owner, cid_to_bytes(pin_spec(store, spec)))

    # Each demo run is a fresh chain; node state bound to an earlier run's chain would (rightly) be refused.
    nodes_dir = work_dir / "nodes"
    if nodes_dir.exists():
        log.info("clearing %s: the node state of an earlier demo chain", nodes_dir)
        shutil.rmtree(nodes_dir)
    net = Net(w3=w3, coordinator=coordinator, owner=owner, accounts=accounts, store=store, model_dir=model_dir,
              params=train, texts=node_data, root=nodes_dir, base_cid=base.cid,
              local_models=dict.fromkeys(range(config.nodes), model_dir), spec=spec,
              names=[f"node-{i + 1}" for i in range(config.nodes)],
              settings={i: _daemon_settings(config, spec, i) for i in range(config.nodes)})
    net.daemons = [make_daemon(net, i) for i in range(config.nodes)]
    register_all(net)
    domain_of = {d.address: name for d, name in zip(net.daemons, domains, strict=False)}

    start = initial_adapter(model_dir, train, seed=config.adapter_seed)
    start_cid = pin_global_bundle(store, start, initial_global_manifest(model_dir, train, start,
                                                                        probe_cid=probe_cid, base_model_cid=base.cid),
                                  model_dir, train)
    coordinator.initialize_global_adapter(owner, cid_to_bytes(start_cid))
    union = TokenExamples.cat([d.participant.val_windows for d in net.daemons])
    base_loss = evaluate_loss(model_dir, None, union, train, device=config.device)
    log.info("round 0 global adapter %s; base model held-out loss %.4f", start_cid, base_loss)
    return Federation(config=config, net=net, domain_of=domain_of, model_dir=model_dir, union_val=union,
                      base_loss=base_loss, spec=spec, node_data=node_data, start_adapter=start)


def _daemon_settings(config: FederationConfig, spec: FederationSpec, index: int) -> DaemonSettings:
    """Node ``index``'s daemon settings: what a node operator's TOML would say for this demo node."""
    return DaemonSettings(poll_interval_s=0.0, backoff_s=0.0, stake_wei=config.stake_of(index),
                          vote_tolerance=spec.committee.vote_tolerance, show_progress=config.show_progress,
                          compression=config.compression.powersgd_config(), device=config.device,
                          attack=config.attack_of(index))


def local_only_losses(fed: Federation, rounds: int) -> dict[str, float]:
    """Each node trained alone: ``rounds`` rounds of its own local training, chained, from the shared start.

    Every round is the node's ordinary local step (same params, same seed,
    a fresh optimiser each round, as in the federation), started from its own
    previous adapter instead of an average. The result is scored on the
    federation's held-out set (the union of every node's held-out examples),
    the set ``global_loss`` is measured on, so the two compare directly.
    """
    out: dict[str, float] = {}
    for participant, data in zip(fed.participants, fed.node_data, strict=True):
        adapter = fed.start_adapter
        for r in range(1, rounds + 1):
            adapter = train_lora(fed.model_dir, data, participant.params, start_adapter=adapter,
                                 progress_desc=f"{participant.name} alone, round {r}",
                                 show_progress=fed.config.show_progress).adapter
        out[participant.name] = evaluate_loss(fed.model_dir, adapter, fed.union_val, participant.params)
        log.info("local-only %s after %d round(s): held-out loss %.4f", participant.name, rounds,
                 out[participant.name])
    return out


def run_federation(
    config: FederationConfig, *, on_round: Callable[[RoundReport], None] | None = None
) -> FederationReport:
    """Run ``config.rounds`` rounds with ``config.nodes`` nodes; returns what happened."""
    fed = setup_federation(config)
    reports: list[RoundReport] = []
    for _ in range(config.rounds):
        report = run_round(fed)
        reports.append(report)
        if on_round is not None:
            on_round(report)
    alone = local_only_losses(fed, config.rounds) if config.local_only else {}
    for daemon in fed.daemons:  # the state files stay on disk for `flare-chain node status`
        daemon.state.close()
    return FederationReport(chain_id=fed.coordinator.w3.eth.chain_id, contract=fed.coordinator.address,
                            model_dir=fed.model_dir, base_loss=fed.base_loss, rounds=reports, local_only=alone)


def run_round(fed: Federation) -> RoundReport:
    """One round: the owner opens it, the nodes' daemons run it, and the report is read back.

    The daemons are stepped by :func:`flare_chain.node.localnet.drive` (the
    same loop the daemon tests and ``bench_round`` use): each trains, pins and
    submits, draws its VRF seat after the submission deadline and claims it if
    selected, proposes when its rank's turn comes (a silent or rejected
    proposal passes to the next rank), reviews and votes, and pulls the
    outcome, recording every step in its state file. A round that can no
    longer commit (too few seats, no proposal, every proposal rejected,
    timeout) is finalized by the owner and fails; the previous global adapter
    stays. The report comes from the chain and the daemons' state files.
    """
    config, coordinator = fed.config, fed.coordinator
    began = time.perf_counter()
    round_id, opened = coordinator.open_round(fed.owner, config.submission_blocks, config.claim_blocks,
                                              config.proposal_blocks, config.voting_blocks,
                                              expected_committee_size=config.expected_committee_size)
    info = coordinator.round_info(round_id)
    log.info("round %d opened: submissions until block %d, seat claims until %d (k=%d)", round_id,
             info.submission_deadline, info.claim_deadline, config.expected_committee_size)
    drive(fed.net, round_id, max_passes=_MAX_PASSES, finalize_stuck=True)
    return _round_report(fed, round_id, first_block=opened.block_number, seconds=time.perf_counter() - began)


_MAX_PASSES = 2_000
"""Driver passes a demo round may take: one per mined block at worst, and the windows are bounded."""


def _round_report(fed: Federation, round_id: int, *, first_block: int, seconds: float) -> RoundReport:
    """What round ``round_id`` did, from the chain and the daemons' state files (nothing recomputed)."""
    coordinator, daemons = fed.coordinator, fed.daemons
    final = coordinator.round_info(round_id)
    outcome = coordinator.round_outcome(round_id)
    proposals = coordinator.proposals(round_id)
    proposal = proposals[-1] if proposals else None
    order = coordinator.proposer_order(round_id)
    ranks = {address: rank for rank, address in enumerate(order)}
    name_of = {d.address: d.name for d in daemons}
    last_vote = attempt_step("vote", len(proposals) - 1) if proposals else None
    nodes = [_node_report(fed, d, round_id, ranks, last_vote) for d in daemons]
    # The union's mean token loss is the mean of the nodes' own weighted by the tokens each one scores
    # (windows all count seq_len - 1; instruction examples only their answers).
    scored = [d.participant.val_windows.label_count for d in daemons]
    global_loss = sum(n.loss_after * w for n, w in zip(nodes, scored, strict=True)) / sum(scored)
    rejected = 0
    if proposal is not None:
        proposer = next(d for d in daemons if d.address == proposal.proposer)
        made = proposer.state.get(round_id, attempt_step("propose", len(proposals) - 1))
        rejected = int(made.detail.get("rejected", 0)) if made is not None else 0
    w3 = coordinator.w3
    gas = sum(int(w3.eth.get_block(b)["gasUsed"]) for b in range(first_block, int(w3.eth.block_number) + 1))
    committed = final.status == RoundStatus.COMMITTED
    return RoundReport(
        round_id=round_id, status=final.status, submissions=final.submission_count,
        accepted=proposal.accepted_count if proposal is not None else 0, rejected=rejected,
        committed_cid=cid_from_bytes(coordinator.global_adapter_cid()) if committed else None,
        approvals=final.approvals, committee_size=final.committee_size, committee_weight=final.committee_weight,
        gas_used=gas, global_loss=global_loss, seconds=seconds, nodes=nodes,
        leader=name_of.get(order[0]) if order else None,
        proposer=name_of.get(proposal.proposer) if proposal is not None else None,
        proposer_rank=proposal.rank if proposal is not None else None,
        failure_reason=outcome.failure_reason if outcome else None,
    )


def _node_report(fed: Federation, daemon: Daemon, round_id: int, ranks: dict[str, int],
                 vote_step: str | None) -> NodeRoundReport:
    """One node's row, from its state file: its training record, submission receipt, draw, vote and pull."""
    state = daemon.state

    def detail(step: str | None) -> dict[str, Any]:
        rec = state.get(round_id, step) if step is not None else None
        return rec.detail if rec is not None else {}

    train, pull = detail("train"), detail("pull")
    vote = state.get(round_id, vote_step) if vote_step is not None else None
    loss_before = float(train.get("val_loss_before", math.nan))
    # A failed round keeps the global adapter this round's training started from: its loss is loss_before.
    loss_after = float(pull.get("held_out_loss", loss_before))
    output = detail("claim").get("output")
    return NodeRoundReport(
        name=daemon.name, address=daemon.address, domain=fed.domain_of[daemon.address],
        sample_count=int(train.get("sample_count", 0)), loss_before=loss_before,
        loss_local=float(train.get("val_loss_after", math.nan)), loss_after=loss_after,
        vote=bool(vote.detail["approve"]) if vote is not None and vote.status == StepStatus.DONE
        and "approve" in vote.detail else None,
        gas_used=int(detail("submit").get("gas_used", 0)),
        vrf_output=bytes.fromhex(output) if output else b"",
        seated=daemon.address in ranks, rank=ranks.get(daemon.address),
        compression={k: float(v) for k, v in train.items() if k.startswith("powersgd_")},
    )
