"""A whole federation of daemons in one process, and the one loop that steps them (:func:`drive`).

``flare-chain demo`` (:mod:`flare_chain.federation`), the daemon tests and
``scripts/bench_round.py`` all run their nodes through :func:`drive`: every
node is a :class:`~flare_chain.node.daemon.Daemon`, the class ``flare-chain
node run`` builds, so an in-process federation exercises the operator's code
path. There is no second engine.

Real parts throughout: eth-tester running the compiled coordinator, the embedded
content store, the tiny reference model, and as node data each node's share of
the generated skills task (:mod:`flare_chain.lora.skills`), as on the devnet
(``task="stdlib"`` gives node ``i`` a standard-library domain instead). Daemons are stepped in turn (``tick``)
and the harness mines one block per pass, standing in for the chain's clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3

from flare_chain.basemodel import publish_model, resolve_base_model
from flare_chain.chain import (
    CoordinatorClient,
    advance_blocks,
    deploy_coordinator,
    fund_accounts,
    in_process_chain,
)
from flare_chain.committee import sortition
from flare_chain.ipfs import ContentStore, cid_to_bytes
from flare_chain.lora.adapter import initial_adapter
from flare_chain.lora.domains import available_domains, domain_texts
from flare_chain.lora.probe_corpus import reference_probe_texts
from flare_chain.lora.skills import SKILLS_TASK, skills_node_data, skills_probe_corpus
from flare_chain.node.bundles import pin_global_bundle, pin_probe_corpus
from flare_chain.node.daemon import Daemon, DaemonSettings, Faults, InjectedCrash, raise_crash
from flare_chain.node.participant import initial_global_manifest
from flare_chain.node.state import NodeState
from flare_chain.protocol import RoundSchedule

if TYPE_CHECKING:
    from flare_chain.ipfs.content import PinningStore
    from flare_chain.lora.datasets import NodeData
    from flare_chain.lora.params import LoraTrainParams
    from flare_chain.protocol.spec import FederationSpec

__all__ = [
    "ROUND_BLOCKS",
    "Net",
    "arm",
    "assert_nothing_sent_twice",
    "drive",
    "make_daemon",
    "make_net",
    "open_round",
    "register_all",
    "restart_as",
    "sent_by",
]

ROUND_BLOCKS = {"submission_blocks": 12, "claim_blocks": 6, "proposal_blocks": 12, "voting_blocks": 10}


@dataclass
class Net:
    """An in-process federation: one chain, one owner, and node ``i``'s daemon, data and settings."""

    w3: Web3
    coordinator: CoordinatorClient
    owner: LocalAccount
    accounts: list[LocalAccount]
    store: ContentStore
    model_dir: Path
    params: LoraTrainParams
    """The LoRA params every node trains with; node ``i`` seeds its data split with ``params.seed + i``."""
    texts: list[NodeData | list[str]]
    """Each node's data: its skills-task NodeData, or a stdlib domain's texts, or an operator's records."""
    root: Path
    """Node ``i`` keeps its state file, update bundles and adapters in ``root / name_of(i)``."""
    daemons: list[Daemon] = field(default_factory=list)
    crashes: list[tuple[int, str]] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)
    node_stores: dict[int, PinningStore] = field(default_factory=dict)
    down_until: dict[int, int] = field(default_factory=dict)
    faults: dict[int, Faults] = field(default_factory=dict)
    base_cid: str | None = None
    """The base model's CID, which the owner published and the round-0 manifest names; None: not published."""
    local_models: dict[int, Path] = field(default_factory=dict)
    """A node's own local model folder, used only if it is ``base_cid`` (else the node fetches the CID)."""
    spec: FederationSpec | None = None
    """The federation spec every daemon follows (None: the defaults, as a node whose chain names no spec)."""
    settings: dict[int, DaemonSettings] = field(default_factory=dict)
    """Node ``i``'s daemon settings (stake, compression, device, attack, ...), kept across its restarts."""
    names: list[str] = field(default_factory=list)
    """Node ``i``'s name (default ``node-<i>``)."""
    daemon_classes: dict[int, type[Daemon]] = field(default_factory=dict)
    """Node ``i``'s engine when it is not ``Daemon`` itself: a subclass that misbehaves (tests of adversaries)."""

    def name_of(self, i: int) -> str:
        """Node ``i``'s name, which is also its folder under ``root``."""
        return self.names[i] if i < len(self.names) else f"node-{i}"


def make_net(root: Path, model_dir: Path, params: LoraTrainParams, *, nodes: int = 4, leader_blocks: int = 3,
             node_stores: dict[int, PinningStore] | None = None, w3: Web3 | None = None, probe_corpus: bool = True,
             publish_base: bool = True, local_models: dict[int, Path] | None = None,
             task: Literal["skills", "stdlib"] = SKILLS_TASK) -> Net:
    """Deploy a coordinator and build ``nodes`` daemons on ``w3`` (default: a fresh in-process eth-tester).

    Any dev chain with an unlocked funded account works as ``w3`` (e.g. anvil over HTTP). ``probe_corpus``
    pins the task's public probe corpus and names it in the round-0 manifest (the probe-loss gate runs).
    ``publish_base``: the owner pins ``model_dir`` and names its CID in the round-0 manifest, and every
    node loads the base by that CID (node ``i`` uses ``local_models[i]`` only if it is that model).
    """
    w3 = w3 if w3 is not None else in_process_chain()
    owner = Account.from_key(keccak(text="daemon tests owner"))
    accounts = [Account.from_key(keccak(text=f"daemon tests node {i}")) for i in range(nodes)]
    fund_accounts(w3, [owner, *accounts], 10**20)
    coordinator = deploy_coordinator(w3, owner, approval_threshold_bps=6666, leader_blocks=leader_blocks)
    store = ContentStore(root / "ipfs", durable=False)
    base_cid = publish_model(model_dir, store, show_progress=False) if publish_base else None
    start = initial_adapter(model_dir, params, seed=0)
    texts: list[NodeData | list[str]]
    if task == SKILLS_TASK:
        texts = [skills_node_data(i, nodes) for i in range(nodes)]
        probe: NodeData | list[str] = skills_probe_corpus()
    else:
        domains = available_domains()
        texts = [domain_texts(domains[i % len(domains)]) for i in range(nodes)]
        probe = reference_probe_texts(domains=list(dict.fromkeys(domains[i % len(domains)] for i in range(nodes))))
    probe_cid = pin_probe_corpus(store, probe) if probe_corpus else None
    cid = pin_global_bundle(store, start, initial_global_manifest(model_dir, params, start, probe_cid=probe_cid,
                                                                  base_model_cid=base_cid),
                            model_dir, params)
    coordinator.initialize_global_adapter(owner, cid_to_bytes(cid))
    net = Net(w3, coordinator, owner, accounts, store, model_dir, params, texts, root,
              node_stores=dict(node_stores or {}), base_cid=base_cid, local_models=dict(local_models or {}))
    net.daemons = [make_daemon(net, i) for i in range(nodes)]
    return net


def arm(net: Net, i: int, points: set[str]) -> Faults:
    """Give node ``i`` crash points that survive its restarts (each fires once), raising InjectedCrash."""
    net.faults[i] = Faults(points, action=raise_crash)
    net.daemons[i].faults = net.faults[i]
    return net.faults[i]


def make_daemon(net: Net, i: int, *, store: PinningStore | None = None,
                settings: DaemonSettings | None = None) -> Daemon:
    """Node ``i``'s daemon on its state file under ``net.root``: a fresh one is what a restart builds."""
    folder = net.root / net.name_of(i)
    state = NodeState(folder / "state.sqlite")
    params = net.params.model_copy(update={"seed": net.params.seed + i})
    base = resolve_base_model(net.base_cid, local_dir=net.local_models.get(i, None if net.base_cid else net.model_dir),
                              fetch=net.store.get_block, source=f"the owner's IPFS repository {net.store.root}",
                              cache_root=folder / "models", show_progress=False)
    chosen = settings or net.settings.get(i) or DaemonSettings(poll_interval_s=0.01, backoff_s=0.01)
    engine = net.daemon_classes.get(i, Daemon)
    return engine(name=net.name_of(i), account=net.accounts[i], coordinator=net.coordinator,
                  store=store or net.node_stores.get(i, net.store), state=state, texts=net.texts[i], model_dir=base.path,
                  params=params, spec=net.spec, settings=chosen, faults=net.faults.get(i), base_model_cid=base.cid)


def restart_as(net: Net, i: int, engine: type[Daemon] | None = None,
               settings: DaemonSettings | None = None) -> Daemon:
    """Stop node ``i``'s daemon and start ``engine`` (default: the same class) on its state file, with
    ``settings`` from now on when given: an operator restarting its node with other code or settings."""
    if engine is not None:
        net.daemon_classes[i] = engine
    if settings is not None:
        net.settings[i] = settings
    net.daemons[i].state.close()
    net.daemons[i] = make_daemon(net, i)
    return net.daemons[i]


def register_all(net: Net) -> None:
    """One tick of each daemon before any round opens: each registers with its stake and VRF key."""
    for d in net.daemons:
        d.tick()


def open_round(net: Net, *, expected_committee_size: int | None = None, **blocks: int) -> int:
    """Open the next round. eth-tester mines a block per transaction, so windows grow with the node count."""
    n = len(net.accounts)
    # Poisson(20) weight each: every node seated but for e^-20 (at Poisson(5), one draw in 150 was 0 and
    # tests that need a given node's seat failed about once a suite run)
    k = expected_committee_size or min(20 * n, 1000)
    scaled = {"submission_blocks": max(ROUND_BLOCKS["submission_blocks"], 2 * n + 4),
              "claim_blocks": min(max(ROUND_BLOCKS["claim_blocks"], min(n, 2 * k) + 4), sortition.MAX_CLAIM_BLOCKS),
              "voting_blocks": max(ROUND_BLOCKS["voting_blocks"], min(n, 2 * k) + 4)}
    round_id, _ = net.coordinator.open_round(net.owner, **{**ROUND_BLOCKS, **scaled, **blocks},
                                             expected_committee_size=k)
    return round_id


def drive(net: Net, round_id: int, *, max_passes: int = 80, down_passes: dict[str, int] | None = None,
          before_pass: Callable[[Net, int], None] | None = None, finalize_stuck: bool = False) -> int:
    """Tick every daemon and mine a block per pass until every node pulled the round's outcome.

    A daemon that hits an injected crash is replaced by a fresh one on the same
    state file (a restart), after ``down_passes[point]`` passes (default 0) of
    being dead; any other exception is what ``Daemon.run`` would retry, so it
    is recorded in ``net.errors`` and the node tries again next pass.
    ``finalize_stuck``: the owner finalizes the round once it can no longer
    commit (``RoundSchedule.is_stuck``), as ``flare-chain rounds`` does, so a
    failed round ends too. Returns the number of passes taken.
    """
    last: tuple[Any, ...] = ()
    net.down_until.clear()  # pass numbers restart with each round
    for n in range(max_passes):
        if before_pass is not None:
            before_pass(net, n)
        for i, d in enumerate(net.daemons):
            if net.down_until.get(i, -1) > n:
                continue
            try:
                d.tick()
            except InjectedCrash as crash:
                net.crashes.append((i, str(crash)))
                d.state.close()
                net.down_until[i] = n + 1 + (down_passes or {}).get(str(crash), 0)
                net.daemons[i] = make_daemon(net, i)
            except Exception as exc:
                net.errors.append((i, f"{type(exc).__name__}: {exc}"))
        if all(d.state.is_final(round_id, "pull") for d in net.daemons):
            return n + 1
        if finalize_stuck:
            _finalize_if_stuck(net, round_id)
        now = _progress_marker(net, round_id)
        advance_blocks(net.w3, _blocks_to_next_boundary(net, round_id) if now == last else 1)
        last = now
    raise AssertionError(f"round {round_id} not finished by every node after {max_passes} passes: "
                         f"{[(d.name, [(s.step, s.status.value) for s in d.state.steps(round_id)]) for d in net.daemons]}"
                         f"; last errors: {net.errors[-4:]}; chain: {net.coordinator.round_info(round_id)}, head "
                         f"{int(net.w3.eth.block_number)}")


def _finalize_if_stuck(net: Net, round_id: int) -> None:
    """The owner's part: end a round that can no longer commit (its transaction lands in the next block)."""
    info = net.coordinator.round_info(round_id)
    schedule = RoundSchedule.for_round(info, net.coordinator)
    if schedule.is_stuck(info.status, info.committee_weight, int(net.w3.eth.block_number) + 1):
        net.coordinator.finalize_round(net.owner, round_id)


def _progress_marker(net: Net, round_id: int) -> tuple[Any, ...]:
    """What changes when any node does anything: its steps' statuses, crashes and errors seen."""
    steps = tuple((d.name, s.step, s.status.value) for d in net.daemons for s in d.state.steps(round_id))
    return steps, len(net.crashes), len(net.errors)


def _blocks_to_next_boundary(net: Net, round_id: int) -> int:
    """A pass in which nobody acted: mine up to the block before the next phase or proposer turn starts."""
    head = int(net.w3.eth.block_number)
    marks = RoundSchedule.read(net.coordinator, round_id).boundaries()
    ahead = [m - 1 - head for m in marks if m - 1 > head]
    return max(1, min(ahead, default=1))


def sent_by(net: Net, address: str) -> list[str]:
    """Function names of every transaction ``address`` sent, in chain order (from the blocks)."""
    names = []
    head = int(net.w3.eth.block_number)
    for b in range(head + 1):
        txs: list[Any] = list(net.w3.eth.get_block(b, full_transactions=True)["transactions"])
        for tx in txs:
            if tx["from"].lower() == address.lower() and tx.get("to") and \
                    tx["to"].lower() == net.coordinator.address.lower():
                fn, _ = net.coordinator.contract.decode_function_input(tx.get("input", tx.get("data")))
                names.append(fn.fn_name)
    return names


def assert_nothing_sent_twice(net: Net, rounds: int) -> None:
    """Per node: one registration, at most one submission, seat claim, proposal and vote per round; no nonce reused.

    The crash and restart tests' invariant: whatever happened, the chain shows
    each node's transactions once, and its nonce equals the number it sent.
    """
    import collections

    for account in net.accounts:
        sent = sent_by(net, account.address)
        counts = collections.Counter(sent)
        assert counts["registerNode"] == 1, f"{account.address} registered {counts['registerNode']} times"
        for fn in ("submitUpdate", "claimSeat", "vote", "proposeAggregate"):
            assert counts[fn] <= rounds, f"{account.address} sent {fn} {counts[fn]} times in {rounds} round(s)"
        # Every transaction this account ever sent was mined once: the nonce is exactly the count.
        assert net.w3.eth.get_transaction_count(account.address) == len(sent)
    for r in range(1, rounds + 1):
        nodes = [s.node for s in net.coordinator.submissions(r)]
        assert len(nodes) == len(set(nodes)), f"round {r} holds a second submission from one node"
