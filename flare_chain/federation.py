"""A whole federation in one process: the engine behind ``flare-chain demo``.

Everything is real: an in-process EVM running the compiled coordinator, the
embedded content store on disk, PEFT training of every node on its own data:
by default its share of the generated skills task (:mod:`flare_chain.lora.skills`),
or a stdlib domain, or the operator's files. Only the network is absent: nodes
share one process, one chain and one store, and take their turns in order.

After the rounds, the same nodes train *alone* for as many rounds on their own
data (no averaging) and are scored on the same held-out set, so the report
shows what federating bought over local-only training.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from web3 import Web3

from flare_chain.attacks.behaviour import daemon_behaviour
from flare_chain.basemodel import publish_and_load
from flare_chain.chain import (
    CoordinatorClient,
    FailureReason,
    RoundStatus,
    advance_blocks,
    deploy_coordinator,
    fund_accounts,
    in_process_chain,
)
from flare_chain.chain.coordinator import DEFAULT_MIN_STAKE_WEI
from flare_chain.committee import sortition
from flare_chain.committee.aggregate import Rejection
from flare_chain.compression import PowerSGDCompressor
from flare_chain.errors import ChainError, ConfigError
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
from flare_chain.lora.skills import SKILLS_TASK, node_skills, skills_node_data, skills_probe_texts
from flare_chain.lora.train import train_lora
from flare_chain.node.bundles import fetch_global_bundle, pin_global_bundle, pin_probe_corpus
from flare_chain.node.config import CompressionSettings
from flare_chain.node.participant import Participant, initial_global_manifest
from flare_chain.protocol import RoundSchedule
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
    """The live parts of an in-process federation, set up and ready for round 1."""

    config: FederationConfig
    coordinator: CoordinatorClient
    owner: LocalAccount
    participants: list[Participant]
    domain_of: dict[str, str]
    store: ContentStore
    model_dir: Path
    union_val: TokenExamples
    base_loss: float
    spec: FederationSpec
    node_data: list[NodeData | list[str]]
    start_adapter: dict[str, torch.Tensor]
    """The shared round-0 adapter every node starts from (local-only training starts there too)."""


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
    """Build model, chain, contract, store and nodes; register every node with its stake and VRF key;
    pin and register the round-0 adapter."""
    resolve_device(config.device)  # device = "cuda" without a GPU: one error before anything is built
    node_data, domains = _node_data(config)  # read and validated before anything is built, trained or pinned
    owner_model = Path(config.model_dir) if config.model_dir else ensure_reference_model(
        pretrain_steps=config.reference_pretrain_steps, show_progress=config.show_progress)
    store = ContentStore(Path(config.work_dir) / "ipfs")
    # The owner publishes the base model once; the nodes load it by CID, which the round-0 manifest names.
    base = publish_and_load(owner_model, store, Path(config.work_dir) / "models", show_progress=config.show_progress)
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
        probe = skills_probe_texts(seed=config.task_seed) if config.task == SKILLS_TASK else \
            reference_probe_texts(domains=used)
        probe_cid = pin_probe_corpus(store, probe)
    spec = config.federation_spec(probe_corpus_cid=probe_cid, base_model_cid=base.cid)
    train = spec.lora
    coordinator.set_federation_spec(owner, cid_to_bytes(pin_spec(store, spec)))

    participants: list[Participant] = []
    for i, account in enumerate(accounts):
        params = train.model_copy(update={"seed": train.seed + i})
        powersgd = config.compression.powersgd_config()
        node = Participant(
            f"node-{i + 1}", account, node_data[i], model_dir=model_dir, params=params,
            coordinator=coordinator, store=store, show_progress=config.show_progress,
            compressor=PowerSGDCompressor(powersgd) if powersgd is not None else None, spec=spec,
            base_model_cid=base.cid, device=config.device, attack=config.attack_of(i),
        )
        node.register(config.stake_of(i))
        participants.append(node)
    domain_of = {p.address: d for p, d in zip(participants, domains, strict=False)}

    start = initial_adapter(model_dir, train, seed=config.adapter_seed)
    start_cid = pin_global_bundle(store, start, initial_global_manifest(model_dir, train, start,
                                                                        probe_cid=probe_cid, base_model_cid=base.cid),
                                  model_dir, train)
    coordinator.initialize_global_adapter(owner, cid_to_bytes(start_cid))
    union = TokenExamples.cat([p.val_windows for p in participants])
    base_loss = evaluate_loss(model_dir, None, union, train, device=config.device)
    log.info("round 0 global adapter %s; base model held-out loss %.4f", start_cid, base_loss)
    return Federation(config=config, coordinator=coordinator, owner=owner, participants=participants,
                      domain_of=domain_of, store=store, model_dir=model_dir, union_val=union, base_loss=base_loss,
                      spec=spec, node_data=node_data, start_adapter=start)


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
    return FederationReport(chain_id=fed.coordinator.w3.eth.chain_id, contract=fed.coordinator.address,
                            model_dir=fed.model_dir, base_loss=fed.base_loss, rounds=reports, local_only=alone)


def _mine_until_next_block_is(w3: Web3, block: int) -> None:
    """Mine empty blocks until a transaction sent now would land in ``block`` or later."""
    advance_blocks(w3, max(0, block - 1 - int(w3.eth.block_number)))


def run_round(fed: Federation) -> RoundReport:
    """One round: open, train and submit, draw and claim seats, propose in rank order, vote, close.

    Every node draws its VRF seat after the submission deadline and the
    selected ones claim with their proofs (verified on-chain). After the claim
    deadline the members take their proposing turns lowest leader score first: the
    leader, then, if it stays silent for ``leader_blocks``, the next-ranked, and
    so on. Seated members review and vote; a rejected proposal passes the round
    to the next ranks (at most ``PROPOSER_RANKS`` proposals). A round that
    cannot commit (too few seats, no proposal, every proposal rejected, timeout)
    fails and the previous global adapter stays.
    """
    config, coordinator, owner, participants = fed.config, fed.coordinator, fed.owner, fed.participants
    w3 = coordinator.w3
    began = time.perf_counter()
    round_id, opened = coordinator.open_round(owner, config.submission_blocks, config.claim_blocks,
                                              config.proposal_blocks, config.voting_blocks,
                                              expected_committee_size=config.expected_committee_size)
    gas = opened.gas_used
    info = coordinator.round_info(round_id)
    schedule = RoundSchedule.for_round(info, coordinator)
    log.info("round %d opened: submissions until block %d, seat claims until %d (k=%d)", round_id,
             info.submission_deadline, info.claim_deadline, config.expected_committee_size)

    records = {}
    for p in participants:
        previous = p.pull_global()
        records[p.address] = p.train_and_submit(round_id, previous)
        gas += records[p.address].tx.gas_used
    previous = participants[0].pull_global()

    _mine_until_next_block_is(w3, info.submission_deadline + 1)
    draws = {}
    for p in participants:
        draws[p.address] = p.draw_seat(round_id)
        claimed = p.claim_seat(round_id, draws[p.address])
        gas += claimed.gas_used if claimed else 0
    _mine_until_next_block_is(w3, schedule.proposer_turn(0))
    order = coordinator.proposer_order(round_id)
    log.info("round %d committee: %d seats of %d nodes, leader %s", round_id, len(order), len(participants),
             order[0] if order else "(none)")

    by_address = {p.address: p for p in participants}
    aggregate = None
    rejected: list[Rejection] = []
    votes: dict[str, bool] = {}
    # One pass per proposal attempt: a rejected proposal reopens the round for the next ranks
    # (the contract's fallback), with the attempt's own turns and deadlines in round_info.
    while True:
        info = coordinator.round_info(round_id)
        if info.status != RoundStatus.OPEN or info.committee_weight < schedule.min_committee_size:
            break
        schedule = RoundSchedule.for_round(info, coordinator)
        proposed_now = False
        for rank in range(schedule.first_rank, schedule.first_rank + schedule.turns_in_window()):
            if rank >= len(order):
                break
            address = order[rank]
            turn = schedule.proposer_turn(rank)
            _mine_until_next_block_is(w3, turn)
            try:
                proposed = by_address[address].propose_if_turn(round_id, previous)
            except ChainError as exc:  # e.g. nothing passed the gates: the next member may see it the same way
                log.warning("round %d %s could not propose: %s", round_id, by_address[address].name, exc)
                continue
            if proposed is not None:
                aggregate, rejected, tx = proposed
                gas += tx.gas_used
                proposed_now = True
                break
            log.info("round %d %s (rank %d) did not propose in its turn", round_id, by_address[address].name, rank)
        if not proposed_now:
            break
        votes = {}
        for address in order:
            if coordinator.round_info(round_id).status != RoundStatus.PROPOSED:
                break
            review = by_address[address].vote_if_member(round_id, previous,
                                                         tolerance=fed.spec.committee.vote_tolerance)
            if review is not None:
                votes[address] = review.approve
                gas += review.tx.gas_used if review.tx else 0
        if coordinator.round_info(round_id).status == RoundStatus.OPEN:
            log.info("round %d: the committee rejected the proposal; the next rank may propose", round_id)

    final = coordinator.round_info(round_id)
    if not final.status.is_final:
        closes = schedule.finalizable_from(final.status, final.committee_weight)
        assert closes is not None  # not final, so OPEN or PROPOSED
        _mine_until_next_block_is(w3, closes)
        gas += coordinator.finalize_round(owner, round_id).gas_used
        final = coordinator.round_info(round_id)
    outcome = coordinator.round_outcome(round_id)
    proposal = coordinator.proposal(round_id)
    committed = cid_from_bytes(coordinator.global_adapter_cid())
    current = fetch_global_bundle(fed.store, committed)
    ranks = {address: rank for rank, address in enumerate(order)}
    nodes = [
        NodeRoundReport(
            name=p.name, address=p.address, domain=fed.domain_of[p.address],
            sample_count=records[p.address].sample_count, loss_before=records[p.address].loss_before,
            loss_local=records[p.address].loss_local, loss_after=p.evaluate(current.tensors),
            vote=votes.get(p.address), gas_used=records[p.address].tx.gas_used,
            vrf_output=draws[p.address].output, seated=p.address in ranks, rank=ranks.get(p.address),
            compression=records[p.address].compression,
        )
        for p in participants
    ]
    # The union's mean token loss is the mean of the nodes' own weighted by the tokens each one scores
    # (windows all count seq_len - 1; instruction examples only their answers): one pass instead of two.
    scored = [p.val_windows.label_count for p in participants]
    global_loss = sum(n.loss_after * w for n, w in zip(nodes, scored, strict=True)) / sum(scored)
    return RoundReport(
        round_id=round_id, status=final.status, submissions=final.submission_count,
        accepted=len(aggregate.accepted) if aggregate else 0, rejected=len(rejected),
        committed_cid=committed if final.status == RoundStatus.COMMITTED else None,
        approvals=final.approvals, committee_size=final.committee_size, committee_weight=final.committee_weight,
        gas_used=gas,
        global_loss=global_loss, seconds=time.perf_counter() - began, nodes=nodes,
        leader=by_address[order[0]].name if order else None,
        proposer=by_address[proposal.proposer].name if proposal else None,
        proposer_rank=proposal.rank if proposal else None,
        failure_reason=outcome.failure_reason if outcome else None,
    )
