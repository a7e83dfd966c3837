"""A whole federation in one process: the engine behind ``flare-chain demo``.

Everything is real: an in-process EVM running the compiled coordinator, the
embedded content store on disk, PEFT training of every node on its own slice
of the standard library. Only the network is absent: nodes share one process,
one chain and one store, and take their turns in order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flare_chain.chain import (
    CoordinatorClient,
    RoundStatus,
    advance_blocks,
    deploy_coordinator,
    fund_accounts,
    in_process_chain,
)
from flare_chain.errors import ConfigError
from flare_chain.ipfs import ContentStore, cid_from_bytes, cid_to_bytes
from flare_chain.lora.adapter import initial_adapter
from flare_chain.lora.domains import available_domains, domain_texts
from flare_chain.lora.evaluate import evaluate_loss
from flare_chain.lora.params import LoraTrainParams
from flare_chain.lora.reference import ensure_reference_model
from flare_chain.node.bundles import fetch_global_bundle, pin_global_bundle
from flare_chain.node.participant import Participant, initial_global_manifest

__all__ = [
    "Federation",
    "FederationConfig",
    "FederationReport",
    "NodeRoundReport",
    "RoundReport",
    "run_federation",
    "run_round",
    "setup_federation",
]

log = logging.getLogger("flare_chain.federation")


class FederationConfig(BaseModel):
    """Settings of an in-process federation; every field has a working default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    nodes: int = Field(4, ge=2, le=16, description="participants, each on its own stdlib domain")
    rounds: int = Field(3, ge=1, le=100)
    work_dir: Path = Field(Path(".flare/demo"), description="where the embedded IPFS repo lives")
    model_dir: Path | None = Field(None, description="HF causal-LM directory; None builds the reference model")
    reference_pretrain_steps: int = Field(300, ge=1)
    train: LoraTrainParams = Field(default_factory=LoraTrainParams)
    submission_blocks: int = Field(40, ge=1)
    proposal_blocks: int = Field(10, ge=1)
    voting_blocks: int = Field(20, ge=1)
    approval_threshold_bps: int = Field(6666, gt=0, le=10_000, description="6666: two thirds (2 of 3, 4 of 6)")
    vote_tolerance: float = Field(0.02, ge=0, description="relative held-out loss rise a member tolerates")
    adapter_seed: int = Field(0, ge=0, description="seed of the shared round-0 adapter")
    show_progress: bool = True

    @classmethod
    def build(cls, **values: object) -> FederationConfig:
        """Validate keyword settings; ConfigError naming each bad key."""
        try:
            return cls(**values)  # type: ignore[arg-type]
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"invalid federation setting(s): {problems}") from None


@dataclass(frozen=True)
class NodeRoundReport:
    name: str
    address: str
    domain: str
    sample_count: int
    loss_before: float
    loss_local: float
    loss_after: float
    vote: bool | None
    gas_used: int


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
    gas_used: int
    global_loss: float
    seconds: float
    nodes: list[NodeRoundReport] = field(default_factory=list)


@dataclass(frozen=True)
class FederationReport:
    chain_id: int
    contract: str
    model_dir: Path
    base_loss: float
    rounds: list[RoundReport]

    @property
    def final_loss(self) -> float:
        return self.rounds[-1].global_loss if self.rounds else self.base_loss


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
    union_val: torch.Tensor
    base_loss: float


def setup_federation(config: FederationConfig) -> Federation:
    """Build model, chain, contract, store and nodes; pin and register the round-0 adapter."""
    domains = available_domains()
    if config.nodes > len(domains):
        raise ConfigError(f"nodes={config.nodes} but only {len(domains)} stdlib domains exist here; use fewer nodes")
    model_dir = Path(config.model_dir) if config.model_dir else ensure_reference_model(
        pretrain_steps=config.reference_pretrain_steps, show_progress=config.show_progress)
    store = ContentStore(Path(config.work_dir) / "ipfs")
    w3 = in_process_chain()
    owner = Account.from_key(keccak(text="flare-chain demo owner"))
    accounts = [_node_account(i) for i in range(config.nodes)]
    fund_accounts(w3, [owner, *accounts], 10**20)
    coordinator = deploy_coordinator(w3, owner, approval_threshold_bps=config.approval_threshold_bps)
    log.info("coordinator deployed at %s on chain %d", coordinator.address, w3.eth.chain_id)

    participants: list[Participant] = []
    for i, (account, domain) in enumerate(zip(accounts, domains, strict=False)):
        coordinator.register_node(account, validator=True)
        params = config.train.model_copy(update={"seed": config.train.seed + i})
        participants.append(Participant(
            f"node-{i + 1}", account, domain_texts(domain), model_dir=model_dir, params=params,
            coordinator=coordinator, store=store, show_progress=config.show_progress,
        ))
    domain_of = {p.address: d for p, d in zip(participants, domains, strict=False)}

    start = initial_adapter(model_dir, config.train, seed=config.adapter_seed)
    start_cid = pin_global_bundle(store, start, initial_global_manifest(model_dir, config.train, start),
                                  model_dir, config.train)
    coordinator.initialize_global_adapter(owner, cid_to_bytes(start_cid))
    union = torch.cat([p.val_windows for p in participants])
    base_loss = evaluate_loss(model_dir, None, union, config.train)
    log.info("round 0 global adapter %s; base model held-out loss %.4f", start_cid, base_loss)
    return Federation(config=config, coordinator=coordinator, owner=owner, participants=participants,
                      domain_of=domain_of, store=store, model_dir=model_dir, union_val=union, base_loss=base_loss)


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
    return FederationReport(chain_id=fed.coordinator.w3.eth.chain_id, contract=fed.coordinator.address,
                            model_dir=fed.model_dir, base_loss=fed.base_loss, rounds=reports)


def run_round(fed: Federation, *, leader: Participant | None = None) -> RoundReport:
    """One round: open, every node trains and submits, the leader proposes, members vote.

    ``leader`` overrides the default choice (the member with the lowest address);
    the VRF committee of a later release replaces that rule.
    """
    config, coordinator, owner, participants = fed.config, fed.coordinator, fed.owner, fed.participants
    began = time.perf_counter()
    round_id, opened = coordinator.open_round(owner, config.submission_blocks, config.proposal_blocks,
                                              config.voting_blocks)
    gas = opened.gas_used
    info = coordinator.round_info(round_id)
    log.info("round %d opened: submissions until block %d", round_id, info.submission_deadline)

    records = {}
    for p in participants:
        previous = p.pull_global()
        records[p.address] = p.train_and_submit(round_id, previous)
        gas += records[p.address].tx.gas_used
    previous = participants[0].pull_global()

    w3 = coordinator.w3
    advance_blocks(w3, max(0, info.submission_deadline - w3.eth.block_number + 1))
    members = [p for p in participants if coordinator.is_committee_member(round_id, p.address)]
    leader = leader or min(members, key=lambda p: p.address.lower())
    aggregate, rejected, proposed = leader.propose(round_id, previous)
    gas += proposed.gas_used

    votes: dict[str, bool] = {}
    for member in members:
        if coordinator.round_info(round_id).status.is_final:
            break
        review = member.review_and_vote(round_id, previous, tolerance=config.vote_tolerance)
        votes[member.address] = review.approve
        gas += review.tx.gas_used if review.tx else 0

    final = coordinator.round_info(round_id)
    if not final.status.is_final:
        advance_blocks(w3, max(0, final.vote_deadline - w3.eth.block_number + 1))
        gas += coordinator.finalize_round(owner, round_id).gas_used
        final = coordinator.round_info(round_id)
    committed = cid_from_bytes(coordinator.global_adapter_cid())
    current = fetch_global_bundle(fed.store, committed)
    global_loss = evaluate_loss(fed.model_dir, current.tensors, fed.union_val, config.train)
    nodes = [
        NodeRoundReport(
            name=p.name, address=p.address, domain=fed.domain_of[p.address],
            sample_count=records[p.address].sample_count, loss_before=records[p.address].loss_before,
            loss_local=records[p.address].loss_local, loss_after=p.evaluate(current.tensors),
            vote=votes.get(p.address), gas_used=records[p.address].tx.gas_used,
        )
        for p in participants
    ]
    return RoundReport(
        round_id=round_id, status=final.status, submissions=final.submission_count,
        accepted=len(aggregate.accepted), rejected=len(rejected),
        committed_cid=committed if final.status == RoundStatus.COMMITTED else None,
        approvals=final.approvals, committee_size=final.committee_size, gas_used=gas,
        global_loss=global_loss, seconds=time.perf_counter() - began, nodes=nodes,
    )
