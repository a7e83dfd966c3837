"""The participant daemon: one long-running process per node, driven by the chain.

Each ``tick`` reads where the current round stands (block height, deadlines,
status) and does the next step that is due for this node, recording it in the
node's SQLite state (``flare_chain.node.state``) before and after every side
effect:

    train → pin → submit → claim (if the VRF selects it) → propose (leader, or
    next-ranked member when its turn comes) → vote (members) → pull (committed adapter)

Because every decision is re-derived from the chain plus the state file, a
process killed at any point resumes where it stopped: a pinned update is not
re-trained, a stored transaction is re-broadcast with the same bytes rather
than re-signed, and each transaction step first asks the chain whether its
effect is already there (``submissionHash``, ``seatOutput``, ``proposal``,
``voteOf``). ``run`` loops ``tick`` with a poll interval; RPC and IPFS outages
are retried with exponential backoff; SIGTERM (``request_stop``) ends the loop
between steps.

Fault injection (for the crash tests, and nothing else): ``FLARE_FAULT`` holds
comma-separated points ``<step>:<when>`` (``<node>@<step>:<when>`` for one node
only); the process SIGKILLs itself the first time it reaches one. Points: ``train:before``, ``train:during`` (a timer fires
0.3 s into training), ``train:after``, ``pin:before``, and for the transaction
steps (``submit``, ``claim``, ``propose``, ``vote``) ``:before`` (intent
recorded), ``:signed`` (stored, not broadcast), ``:sent`` (broadcast, not
recorded) and ``:done``. Tests in one process pass ``Faults(..., action=raise_crash)``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eth_account.signers.local import LocalAccount

from flare_chain.chain import CoordinatorClient, RoundStatus
from flare_chain.chain.contract_errors import coordinator_errors
from flare_chain.chain.coordinator import VOTE_GAS_FLOOR
from flare_chain.chain.deployment import chain_history
from flare_chain.chain.revert import ErrorDecoder
from flare_chain.committee import sortition, vrf
from flare_chain.compression import PowerSGDConfig
from flare_chain.errors import ChainError, ConfigError, FlareError
from flare_chain.ipfs import cid_from_bytes, cid_to_bytes
from flare_chain.node.bundles import (
    CID_VERSION,
    COMPRESSED_DELTA_FILE,
    DELTA_FILE,
    MANIFEST_FILE,
    GlobalAdapter,
    encode_update_bundle,
    fetch_global_bundle,
    manifest_hash,
)
from flare_chain.node.config import DEFAULT_VOTE_TOLERANCE
from flare_chain.node.outbox import DurableSender
from flare_chain.node.residual import CompressorStore
from flare_chain.node.state import NodeState, StepStatus
from flare_chain.progress import Progress, progress
from flare_chain.protocol import Phase, RoundSchedule, accepted_root

if TYPE_CHECKING:
    import torch

    from flare_chain.committee.aggregate import AggregateResult, Rejection
    from flare_chain.ipfs.content import PinningStore
    from flare_chain.lora.files import Manifest
    from flare_chain.lora.params import LoraTrainParams
    from flare_chain.protocol.spec import FederationSpec

__all__ = [
    "FAULT_ENV",
    "STEPS",
    "Daemon",
    "DaemonSettings",
    "Faults",
    "InjectedCrash",
    "attempt_step",
    "raise_crash",
]

log = logging.getLogger("flare_chain.node")

FAULT_ENV = "FLARE_FAULT"
STEPS = ("train", "pin", "submit", "claim", "propose", "vote", "pull")


def attempt_step(step: str, attempt: int) -> str:
    """The state-file name of ``step`` ("propose" or "vote") for proposal ``attempt`` of a round.

    The first proposal's steps keep their plain names; after a rejection the
    round's next proposal has "propose.2" and "vote.2", and so on, so a vote
    recorded on a rejected proposal never counts as this node's vote on the next.
    """
    return step if attempt == 0 else f"{step}.{attempt + 1}"
"""Steps of one round, in order; the state file has at most one row per round and step."""

_ZERO32 = bytes(32)
_SKIP_ERRORS = coordinator_errors(
    "CoordinatorLateSubmission", "CoordinatorOutsideClaimWindow", "CoordinatorProposalClosed",
    "CoordinatorVoteClosed", "CoordinatorRoundNotOpen", "CoordinatorNotCommitteeMember",
    "CoordinatorCommitteeTooSmall", "CoordinatorNotRegistered", "CoordinatorRankHasNoTurn",
    "CoordinatorVoteOnOtherProposal",
)
"""Reverts that mean the step's window is gone for good: skip it, do not retry."""
_WAIT_ERRORS = coordinator_errors("CoordinatorNotLeader", "CoordinatorClaimsStillOpen", "CoordinatorNoProposal")
_CLAIM_WINDOW_CLOSED = coordinator_errors("CoordinatorOutsideClaimWindow")
"""Reverts that mean "not yet": try again on a later tick."""


class InjectedCrash(BaseException):
    """Raised instead of SIGKILL by in-process tests; BaseException so no handler swallows it."""


def kill_self(point: str) -> None:
    """SIGKILL this process: no handler runs, no buffer is flushed, exactly like a power cut."""
    log.warning("fault injection: SIGKILL at %s", point)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def raise_crash(point: str) -> None:
    raise InjectedCrash(point)


class Faults:
    """Named crash points, each firing once. Empty (the default) costs a set lookup per point."""

    def __init__(self, points: set[str] | None = None, *, action: Callable[[str], None] = kill_self) -> None:
        self.points = set(points or ())
        self.fired: list[str] = []
        self._action = action

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, node: str | None = None) -> Faults:
        """Points from ``FLARE_FAULT``; an entry ``<node>@<step>:<when>`` applies only to that node's daemon."""
        spec = (os.environ if env is None else env).get(FAULT_ENV, "")
        points = set()
        for entry in (e.strip() for e in spec.split(",") if e.strip()):
            target, _, point = entry.rpartition("@")
            if not target or target == node:
                points.add(point)
        for p in points:
            step, _, when = p.partition(":")
            if step not in STEPS or when not in ("before", "during", "after", "signed", "sent", "done"):
                raise ConfigError(f"{FAULT_ENV}={spec!r}: {p!r} is not <step>:<when> with step in {STEPS}")
        return cls(points)

    def __call__(self, point: str) -> None:
        if point in self.points:
            self.points.discard(point)
            self.fired.append(point)
            self._action(point)

    @contextlib.contextmanager
    def during(self, step: str, delay_s: float = 0.3) -> Iterator[None]:
        """Fire ``<step>:during`` from a timer while the body runs (SIGKILL mid-work)."""
        point = f"{step}:during"
        timer = None
        if point in self.points and self._action is kill_self:
            timer = threading.Timer(delay_s, self, args=(point,))
            timer.daemon = True
            timer.start()
        elif point in self.points:
            self(point)
        try:
            yield
        finally:
            if timer is not None:
                timer.cancel()


@dataclass(frozen=True)
class DaemonSettings:
    """How the loop behaves; the CLI fills it from ``NodeConfig``."""

    poll_interval_s: float = 2.0
    confirmations: int = 0
    participate: bool = True
    vote_tolerance: float = DEFAULT_VOTE_TOLERANCE
    stake_wei: int | None = None
    max_step_attempts: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    show_progress: bool = False
    adapters_dir: Path | None = None
    compression: PowerSGDConfig | None = field(default_factory=lambda: PowerSGDConfig(rank=2))
    """PowerSGD settings for the update; None sends it uncompressed. State lives in ``<data_dir>/compressor``."""
    device: str = "cpu"
    """Where training and the committee's model runs go: ``"auto" | "cpu" | "cuda"`` (``[model] device``)."""
    attack: str | None = None
    """``[attack] kind`` (devnet and tests only): submit that behaviour's crafted update instead of the trained one."""


@dataclass
class _RoundCache:
    """What a round needs repeatedly and never changes: the starting global adapter."""

    round_id: int
    previous: GlobalAdapter
    timings: dict[str, float] = field(default_factory=dict)


class Daemon:
    """One node's loop. The caller hands in every I/O object (chain client, store, state)."""

    def __init__(
        self,
        *,
        name: str,
        account: LocalAccount,
        coordinator: CoordinatorClient,
        store: PinningStore,
        state: NodeState,
        texts: Any,  # list[str] or NodeData (validated by flare_chain.lora.datasets before the daemon is built)
        model_dir: Path,
        params: LoraTrainParams,
        spec: FederationSpec | None = None,
        settings: DaemonSettings | None = None,
        faults: Faults | None = None,
        sleep: Callable[[float], None] | None = None,
        stop: threading.Event | None = None,
        base_model_cid: str | None = None,
    ) -> None:
        from flare_chain.node.participant import Participant  # torch: only when a daemon is built

        self.name = name
        self.account = account
        self.address: str = account.address
        self.coordinator = coordinator
        self.w3 = coordinator.w3
        self.store = store
        self.state = state
        self.model_dir = Path(model_dir)
        self.params = params
        self.settings = settings or DaemonSettings()
        self.faults = faults or Faults()
        self._stop = stop if stop is not None else threading.Event()  # the CLI's, set by SIGTERM from the start
        self._sleep = sleep
        self._texts = texts
        self._data_format = str(getattr(texts, "format", "text"))
        self._cache: _RoundCache | None = None
        self._bar: contextlib.ExitStack | None = None
        self._bar_sink: Progress | None = None
        self._bar_round = 0
        self.participant = Participant(name, account, texts, model_dir=model_dir, params=params,
                                       coordinator=coordinator, store=store, show_progress=False, spec=spec,
                                       base_model_cid=base_model_cid, device=self.settings.device,
                                       attack=self.settings.attack)
        self.params = self.participant.params  # target modules resolved against the base
        self.residuals: CompressorStore | None = None
        if self.settings.compression is not None and self.participant.spec.privacy.enabled:
            log.info("%s: the federation uses local DP, so updates go uncompressed (full-rank noise)", name)
        elif self.settings.compression is not None:
            self.residuals = CompressorStore(state.path.parent / "compressor", self.settings.compression)
            self.residuals.load_committed()  # a corrupt or mismatched state file stops the node here, not mid-round
        self.sender = DurableSender(self.w3, account, state, ErrorDecoder(coordinator.contract.abi),
                                    faults=lambda point: self.faults(point))
        state.bind(chain_id=int(self.w3.eth.chain_id), contract=coordinator.address, node=self.address,
                   **chain_history(self.w3, coordinator.address, coordinator.deployment_block))

    # ------------------------------------------------------------ loop

    def request_stop(self) -> None:
        """Ask the loop to end after the current step (what SIGTERM does)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the loop between steps (main thread only)."""
        def handler(signum: int, _frame: object) -> None:
            log.info("%s: %s received; stopping after the current step", self.name, signal.Signals(signum).name)
            self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _wait(self, seconds: float) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        else:
            self._stop.wait(seconds)

    def run(self, *, max_rounds: int | None = None, until: Callable[[], bool] | None = None) -> int:
        """Tick until stopped (or ``max_rounds`` rounds pulled, or ``until()``); returns 0.

        Errors a retry can cure (RPC or IPFS down, a transaction refused) are
        logged and retried with exponential backoff up to ``max_backoff_s``;
        ConfigError (a wrong setting) ends the loop.
        """
        from flare_chain.node.status import resume_point

        failures = 0
        log.info("%s: node %s following %s (poll every %.1fs, %d confirmations)", self.name, self.address,
                 self.coordinator.address, self.settings.poll_interval_s, self.settings.confirmations)
        log.info("%s: resuming from %s: %s", self.name, self.state.path, resume_point(self.state.steps()))
        while not self.stopping:
            try:
                self.tick()
                failures = 0
            except ConfigError:
                raise
            except Exception as exc:  # an outage or a refused call: the state file makes retrying safe
                failures += 1
                delay = min(self.settings.max_backoff_s, self.settings.backoff_s * 2 ** (failures - 1))
                log.warning("%s: %s: %s; retrying in %.1fs (attempt %d)", self.name, type(exc).__name__,
                            _short(exc), delay, failures)
                self._wait(delay)
                continue
            if max_rounds is not None and self.rounds_finished() >= max_rounds:
                break
            if until is not None and until():
                break
            self._wait(self.settings.poll_interval_s)
        self._close_bar()
        log.info("%s: stopped cleanly", self.name)
        return 0

    def rounds_finished(self) -> int:
        """Rounds whose outcome this node has taken in (committed adapter pulled, or failure noted)."""
        return sum(1 for r in self.state.steps() if r.step == "pull" and r.status.is_final)

    # ------------------------------------------------------------ one pass

    def tick(self) -> None:
        """Do whatever is due now for this node; safe to call at any time, any number of times."""
        head = int(self.w3.eth.block_number)
        safe = head - self.settings.confirmations
        self._follow_events(safe)
        self._ensure_registered()
        round_id = self.coordinator.current_round()
        if round_id == 0:
            return
        if round_id > 1 and not self.state.is_final(round_id - 1, "pull"):
            self._pull(round_id - 1)
        self._advance(round_id, head)

    def _follow_events(self, safe_head: int) -> None:
        """Scan new RoundOpened/RoundCommitted/RoundFailed logs in chunks; one log line each."""
        start = max(self.state.scanned_block + 1, self.coordinator.deployment_block)
        if safe_head < start:
            return
        chunk = max(1, self.coordinator.log_chunk_blocks)
        events = self.coordinator.contract.events
        while start <= safe_head:
            end = min(start + chunk - 1, safe_head)
            for name in ("RoundOpened", "RoundCommitted", "RoundFailed"):
                for ev in getattr(events, name)().get_logs(from_block=start, to_block=end):
                    log.info("%s: saw %s for round %d in block %d", self.name, name, ev["args"]["round"],
                             ev["blockNumber"])
            self.state.set_scanned_block(end)
            start = end + 1

    def _ensure_registered(self) -> None:
        if self.state.is_final(0, "register"):
            return
        stake = self.settings.stake_wei or self.coordinator.min_stake()
        words = list(_public_key_words(self.account))
        outcome = self.sender.send(
            0, "register", to=self.coordinator.address,
            data=self.coordinator.contract.encode_abi("registerNode", args=[words]), value_wei=stake,
            already_done=lambda: self.coordinator.is_registered(self.address), detail={"stake_wei": stake})
        log.info("%s: registered %s with stake %d wei (%s)", self.name, self.address, stake,
                 "already on-chain" if outcome.already_on_chain else f"tx {outcome.tx_hash}")

    def _previous(self, round_id: int) -> GlobalAdapter:
        if self._cache is None or self._cache.round_id != round_id:
            opened = self.coordinator.round_opened(round_id)
            if opened is None:
                raise ChainError(f"round {round_id} is current but no RoundOpened event was found; "
                                 "check the RPC endpoint's log history")
            previous = fetch_global_bundle(self.store, cid_from_bytes(opened.global_cid))
            self._cache = _RoundCache(round_id, previous)
        return self._cache.previous

    def _advance(self, round_id: int, head: int) -> None:
        node = self.coordinator.node_info(self.address)
        if node.first_eligible_round > round_id:
            return  # registered after this round opened: the next one is ours
        info = self.coordinator.round_info(round_id)
        self._open_bar(round_id)
        if info.status.is_final:
            self._pull(round_id)
            return
        schedule = RoundSchedule.for_round(info, self.coordinator)
        nxt = head + 1  # our next transaction lands in this block at the earliest
        if not self.state.is_final(round_id, "submit"):
            if not schedule.accepts_submission(nxt) and self._stored_tx(round_id, "submit") is None:
                self._skip(round_id, "submit", f"submission window closed at block {info.submission_deadline}")
            else:
                self._train_pin_submit(round_id)
                return
        if self.stopping:
            return
        if not self.settings.participate:
            return
        if not self.state.is_final(round_id, "claim"):
            if schedule.phase(nxt) == Phase.SUBMISSION:
                return
            if not schedule.accepts_claim(nxt) and self._stored_tx(round_id, "claim") is None:
                self._skip(round_id, "claim", f"claim window closed at block {info.claim_deadline}")
            else:
                self._claim(round_id)
                return
        if self.coordinator.seat_weight(round_id, self.address) == 0:
            return
        # A rejected proposal reopens the round for the next ranks: each proposal attempt has its own
        # propose and vote steps, so what was done for a rejected one never stands in for the next.
        attempt = info.rejected_proposals
        propose_step, vote_step = attempt_step("propose", attempt), attempt_step("vote", attempt)
        for earlier in range(attempt):  # steps of rejected proposals this node never finished
            self._settle_attempt(round_id, earlier)
        if not self.state.is_final(round_id, propose_step):
            if info.status != RoundStatus.OPEN:
                proposal = self.coordinator.proposal(round_id, blocks=(info.turns_start, info.proposal_deadline))
                if proposal is not None and proposal.proposer.lower() == self.address.lower():
                    self.state.record_done(round_id, propose_step, {"found_on_chain": True})
                else:
                    self._skip(round_id, propose_step, "proposed by "
                               f"{proposal.proposer if proposal else 'nobody'}")
            elif nxt >= info.turns_start:
                order = self.coordinator.proposer_order(round_id)
                rank = order.index(self.address) if self.address in order else len(order)
                if not schedule.has_turn(rank) and self._stored_tx(round_id, propose_step) is None:
                    self._skip(round_id, propose_step, f"rank {rank} has no proposer turn in this attempt "
                               f"(ranks {schedule.first_rank}..{sortition.PROPOSER_RANKS - 1} propose)")
                elif nxt > info.proposal_deadline and self._stored_tx(round_id, propose_step) is None:
                    self._skip(round_id, propose_step, f"proposal window closed at block {info.proposal_deadline}")
                elif self._stored_tx(round_id, propose_step) is not None or nxt >= schedule.proposer_turn(rank):
                    self._propose(round_id, rank, propose_step)  # past the deadline only to resume a stored send
                    return
            if not self.state.is_final(round_id, propose_step):
                return
        if self.stopping:
            return
        if info.status == RoundStatus.PROPOSED and not self.state.is_final(round_id, vote_step):
            if not schedule.accepts_vote(nxt) and self._stored_tx(round_id, vote_step) is None:
                self._skip(round_id, vote_step, f"voting closed at block {info.vote_deadline}")
            else:
                self._vote(round_id, attempt, vote_step)

    # ------------------------------------------------------------ steps

    def _stored_tx(self, round_id: int, step: str) -> str | None:
        rec = self.state.get(round_id, step)
        return None if rec is None else rec.tx_hash

    def _skip(self, round_id: int, step: str, reason: str) -> None:
        if self.state.is_final(round_id, step):
            return
        self.state.record_skipped(round_id, step, reason)
        log.info("round %d %s: %s skipped (%s)", round_id, self.name, step, reason)
        self._tick_bar(step)

    def _settle(self, round_id: int, step: str, reason: str) -> None:
        """End a step its round ended without: a row left at intent (or a stored transaction never mined) is
        skipped with ``reason``, one whose transaction was mined is done (or failed); none stays open."""
        if self.state.is_final(round_id, step):
            return
        rec = self.sender.settle(round_id, step, reason)
        log.info("round %d %s: %s %s (%s)", round_id, self.name, step, rec.status.value,
                 rec.detail.get("reason", "its transaction was mined"))
        self._tick_bar(step)

    def _settle_attempt(self, round_id: int, attempt: int) -> None:
        """Close the propose and vote steps of a rejected proposal ``attempt``: a proposal this node made (by a
        send it never saw confirmed, or by hand) is credited to it from the chain; anything else is settled."""
        step = attempt_step("propose", attempt)
        if not self.state.is_final(round_id, step) and self._stored_tx(round_id, step) is None:
            proposals = self.coordinator.proposals(round_id)
            if len(proposals) > attempt and proposals[attempt].proposer.lower() == self.address.lower():
                self.state.record_done(round_id, step, {"found_on_chain": True})
        self._settle(round_id, step, "the round moved past this proposal before this node's step")
        self._settle(round_id, attempt_step("vote", attempt), "the proposal was rejected before this node's vote")

    def _guarded(self, round_id: int, step: str, action: Callable[[], None]) -> None:
        """Run a transaction step; map the contract's "too late" to SKIPPED, "not yet" to a later retry."""
        try:
            action()
        except ChainError as exc:
            if exc.error_name in _CLAIM_WINDOW_CLOSED and self._claim_window_ahead(exc):
                log.debug("round %d %s: claim window not open yet (%s)", round_id, self.name, exc)
                return
            if exc.error_name in _SKIP_ERRORS and self._stored_tx(round_id, step) is None:
                self._skip(round_id, step, f"{exc.error_name}")
                return
            if exc.error_name in _WAIT_ERRORS:
                log.debug("round %d %s: %s not yet possible (%s)", round_id, self.name, step, exc.error_name)
                return
            if exc.error_name == "InsufficientFunds":  # not the call's fault: retried until funded or too late
                raise
            if self.state.is_final(round_id, step):  # its one transaction was mined and reverted
                if exc.error_name in _SKIP_ERRORS | _WAIT_ERRORS:  # e.g. a vote landing after the committing one
                    reason = f"its transaction landed after the round moved on ({exc.error_name})"
                    self.state.record_skipped(round_id, step, reason)  # not this node's failure
                    log.info("round %d %s: %s skipped (%s)", round_id, self.name, step, reason)
                else:
                    log.error("round %d %s: %s failed for good: %s", round_id, self.name, step, exc)
                return
            if exc.error_name is not None:  # a revert this node did not expect: count it, give up after a few
                rec = self.state.record_error(round_id, step, str(exc), give_up_after=self.settings.max_step_attempts)
                if rec.status == StepStatus.FAILED:
                    log.error("round %d %s: %s failed for good: %s", round_id, self.name, step, exc)
                    return
            raise

    def _claim_window_ahead(self, exc: ChainError) -> bool:
        """True when a claim was refused for being early, not late.

        A node's simulation can run against a block at or before the
        submission deadline (the head it saw moved on by one block, or the RPC
        evaluates at the latest block rather than the next one), and the
        contract answers both "too early" and "too late" with
        ``CoordinatorOutsideClaimWindow(round, firstBlock, lastBlock)``. Only
        the second is a reason to give the seat up.
        """
        if len(exc.error_args) < 3:
            return False
        last_block = int(exc.error_args[2])  # type: ignore[call-overload]
        return int(self.w3.eth.block_number) + 1 <= last_block

    def _train_pin_submit(self, round_id: int) -> None:
        folder = self._round_dir(round_id) / "update"
        pin = self.state.get(round_id, "pin")
        if pin is None or pin.status != StepStatus.DONE:
            previous = self._previous(round_id)
            if not (folder / MANIFEST_FILE).exists() or not self.state.is_final(round_id, "train"):
                self._train(round_id, previous, folder)
            if self.stopping:
                return
            self.state.record_intent(round_id, "pin")
            self.faults("pin:before")
            began = time.perf_counter()
            cid = self.store.add_directory(folder, cid_version=CID_VERSION, pin=True)
            manifest_bytes = (folder / MANIFEST_FILE).read_bytes()
            from flare_chain.lora.files import Manifest

            sample_count = Manifest.from_bytes(manifest_bytes).sample_count
            pin = self.state.record_done(round_id, "pin", {
                "cid": cid, "manifest_hash": manifest_hash(manifest_bytes).hex(), "sample_count": sample_count,
                "seconds": time.perf_counter() - began})
            log.info("round %d %s: pinned update %s", round_id, self.name, cid)
            self._tick_bar("pin")
            if self.stopping:
                return
        cid, digest, samples = pin.detail["cid"], bytes.fromhex(pin.detail["manifest_hash"]), pin.detail["sample_count"]

        def submit() -> None:
            self.state.record_intent(round_id, "submit", {"cid": cid})
            self.faults("submit:before")
            began = time.perf_counter()
            out = self.sender.send(
                round_id, "submit", to=self.coordinator.address,
                data=self.coordinator.contract.encode_abi(
                    "submitUpdate", args=[round_id, cid_to_bytes(cid), samples, digest]),
                already_done=lambda: self.coordinator.submission_hash(round_id, self.address) != _ZERO32)
            self.state.record_done(round_id, "submit", {"seconds": time.perf_counter() - began})
            self.faults("submit:done")
            log.info("round %d %s: submitted %s (%s)", round_id, self.name, cid, _how(out))
            self._settle_residuals(round_id)
            self._tick_bar("submit")

        self._guarded(round_id, "submit", submit)

    def _train(self, round_id: int, previous: GlobalAdapter, folder: Path) -> None:
        from flare_chain.lora.files import Manifest, tensor_shapes
        from flare_chain.lora.train import train_lora

        self.participant.check_targets(previous)
        self.participant.check_base_model(previous)
        self.state.record_intent(round_id, "train")
        self.faults("train:before")
        with self.faults.during("train"):
            result = train_lora(self.model_dir, self._texts, self.params, start_adapter=previous.tensors,
                                progress_desc=f"round {round_id} {self.name} train",
                                show_progress=self.settings.show_progress, device=self.settings.device)
        self.faults("train:after")
        delta, dp_metrics = self.participant.release(result.delta)
        delta = self.participant.crafted(round_id, delta, previous.tensors)  # [attack]: a devnet attacker only
        manifest = Manifest(
            kind="delta", base_model_id=previous.manifest.base_model_id,
            **self.participant.base_manifest_fields(), rank=self.params.rank, alpha=self.params.alpha,
            target_modules=list(self.params.targets), sample_count=result.sample_count,
            shapes=tensor_shapes(delta),
            metrics={**{k: float(v) for k, v in result.metrics.items() if k != "seconds"}, **dp_metrics},
            round=round_id, node=self.address,
        )
        files, compression = self.encode_update(round_id, delta, manifest)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in (DELTA_FILE, COMPRESSED_DELTA_FILE):  # a bundle from before a restart with other settings
            if stale not in files:
                (folder / stale).unlink(missing_ok=True)
        for name in sorted(files, key=lambda n: n == MANIFEST_FILE):  # the manifest last: it marks a whole bundle
            tmp = folder / f".{name}.tmp"
            tmp.write_bytes(files[name])
            os.replace(tmp, folder / name)  # atomic: a crash never leaves half a file under the real name
        m = result.metrics
        self.state.record_done(round_id, "train", {
            "seconds": m["seconds"], "sample_count": result.sample_count,
            "val_loss_before": m["val_loss_before"], "val_loss_after": m["val_loss_after"],
            "data_format": self._data_format, "split_seed": self.params.seed, "val_fraction": self.params.val_fraction,
            **compression})
        log.info("round %d %s: trained %d windows in %.1fs, held-out loss %.4f -> %.4f%s", round_id, self.name,
                 result.sample_count, m["seconds"], m["val_loss_before"], m["val_loss_after"],
                 "" if not compression else
                 f"; PowerSGD rank {compression['powersgd_rank']:g}: {compression['powersgd_encoded_bytes']:.0f} "
                 f"bytes (fp32 {compression['powersgd_fp32_bytes']:.0f}), error {compression['powersgd_rel_error']:.3f}")
        self._tick_bar("train")

    def encode_update(self, round_id: int, delta: dict[str, torch.Tensor],
                      manifest: Manifest) -> tuple[dict[str, bytes], dict[str, float]]:
        """The bundle files for this round's delta (name → bytes) and the compression metrics to record;
        compressed from the committed residual when enabled.

        The compressor's next state is saved as pending for this round before
        any bundle file is written, and committed only once the chain holds the
        submission (see :mod:`flare_chain.node.residual`).
        """
        if self.residuals is None:
            files, _manifest = encode_update_bundle(delta, manifest)
            return files, {}
        self._settle_residuals(round_id)
        compressor = self.residuals.load_committed()
        base_round = self.residuals.committed_round
        began = time.perf_counter()
        files, written = encode_update_bundle(delta, manifest, compressor=compressor)
        seconds = time.perf_counter() - began
        self.residuals.save_pending(round_id, compressor, base_round=base_round,
                                    manifest_hash=manifest_hash(files[MANIFEST_FILE]))
        return files, {**{k: v for k, v in written.metrics.items() if k.startswith("powersgd_")},
                       "compress_seconds": seconds}

    def _settle_residuals(self, upto_round: int) -> None:
        """Commit the pending compressor state of each round up to ``upto_round`` whose submission is on-chain.

        A pending state for a round before ``upto_round`` (or whose submission
        step has ended) without its submission on-chain is discarded: that
        update was never sent, so the committed residual it was built on is
        used again. Idempotent; called after each submission and, in case a
        crash came between the two, before compressing round ``upto_round``.
        """
        if self.residuals is None:
            return
        for pending in self.residuals.pending():
            if pending.round_id > upto_round:
                continue
            if self._submission_on_chain(pending.round_id, pending.manifest_hash):
                if self.residuals.promote(pending):
                    log.info("round %d %s: compressor residual committed (submission on-chain)",
                             pending.round_id, self.name)
            elif pending.round_id < upto_round or self.state.is_final(pending.round_id, "submit"):
                log.info("round %d %s: no submission on-chain for the compressed update; its residual base "
                         "(round %d) carries over", pending.round_id, self.name, pending.base_round)
                self.residuals.discard(pending)

    def _submission_on_chain(self, round_id: int, digest: bytes) -> bool:
        pin = self.state.get(round_id, "pin")
        if pin is None or pin.status != StepStatus.DONE or bytes.fromhex(pin.detail["manifest_hash"]) != digest:
            return False
        expected = self.coordinator.submission_record(cid_to_bytes(pin.detail["cid"]), int(pin.detail["sample_count"]),
                                                      digest)
        return self.coordinator.submission_hash(round_id, self.address) == expected

    def _claim(self, round_id: int) -> None:
        def claim() -> None:
            if self._stored_tx(round_id, "claim") is None:
                deadline = self.coordinator.round_info(round_id).submission_deadline
                if int(self.coordinator.w3.eth.block_number) < deadline:
                    # the claim seed mixes in the deadline block's hash: no draw exists before that block
                    log.debug("round %d %s: claim seed not known before block %d", round_id, self.name, deadline)
                    return
                draw = self.coordinator.draw_seat(self.account, round_id)
                if not draw.selected:  # the output stays on record: status and the demo's table show every draw
                    self.state.record_intent(round_id, "claim", {"output": draw.output.hex()})
                    self._skip(round_id, "claim", f"not selected (VRF output {draw.output.hex()[:12]}… "
                               "draws seat weight 0)")
                    return
                alpha = draw.alpha
                params = vrf.compute_fast_verify_params(vrf.public_key(bytes(self.account.key)), draw.proof, alpha)
                args: list[Any] = [round_id, list(params.proof_words()), list(params.u_point),
                                   list(params.v_components())]
                if hasattr(params, "hash_roots"):  # the verifier's hash-to-curve witnesses, where the ABI takes them
                    args.append(list(params.hash_roots))
                data = self.coordinator.contract.encode_abi("claimSeat", args=args)
                self.state.record_intent(round_id, "claim", {"output": draw.output.hex()})
            else:
                data = "0x"  # a stored transaction is re-sent as is; data is unused
            self.faults("claim:before")
            out = self.sender.send(round_id, "claim", to=self.coordinator.address, data=data,
                                   already_done=lambda: self.coordinator.seat_weight(round_id, self.address)
                                   > 0)
            self.faults("claim:done")
            log.info("round %d %s: claimed a committee seat (%s)", round_id, self.name, _how(out))
            self._tick_bar("claim")

        self._guarded(round_id, "claim", claim)

    def _propose(self, round_id: int, rank: int, step: str) -> None:
        def propose() -> None:
            data = "0x"
            if self._stored_tx(round_id, step) is None:
                previous = self._previous(round_id)
                self.state.record_intent(round_id, step, {"rank": rank})
                began = time.perf_counter()
                made = self.build_proposal(round_id, previous)
                if isinstance(made, str):
                    self._skip(round_id, step, made)
                    return
                aggregate, rejected = made
                self.state.record_intent(round_id, step, {
                    "cid": aggregate.cid, "accepted": len(aggregate.accepted), "rejected": len(rejected),
                    "aggregate_seconds": time.perf_counter() - began})
                data = self.coordinator.contract.encode_abi("proposeAggregate", args=[
                    round_id, cid_to_bytes(aggregate.cid), accepted_root(aggregate.accepted),
                    len(aggregate.accepted)])
            self.faults("propose:before")

            def mine_on_chain() -> bool:
                return any(p.proposer.lower() == self.address.lower() for p in self.coordinator.proposals(round_id))

            out = self.sender.send(round_id, step, to=self.coordinator.address, data=data,
                                   already_done=mine_on_chain)
            self.faults("propose:done")
            log.info("round %d %s: proposed as rank %d (%s)", round_id, self.name, rank, _how(out))
            self._tick_bar("propose")

        self._guarded(round_id, step, propose)

    def build_proposal(self, round_id: int, previous: GlobalAdapter) -> tuple[AggregateResult, list[Rejection]] | str:
        """What this member proposes in its turn: the aggregate (pinned) of every update that passed the gates,
        and the rejections; or why it proposes nothing (a string, recorded as the step's skip reason).

        The one place a proposal is made, so an adversarial node in the tests is a subclass overriding this.
        """
        accepted, rejected = self.participant.gate_submissions(
            round_id, self.coordinator.submissions(round_id), previous)
        for r in rejected:
            log.warning("round %d %s: left out %s's update %s: %s", round_id, self.name, r.node, r.cid, r.reason)
        if not accepted:
            return f"no submission passed the gates ({len(rejected)} rejected)"
        return self.participant.aggregate(round_id, previous, accepted), rejected

    def _vote(self, round_id: int, attempt: int, step: str) -> None:
        def voted_on_chain() -> bool:
            info = self.coordinator.round_info(round_id)
            return info.rejected_proposals > attempt or self.coordinator.has_voted(round_id, self.address)

        def vote() -> None:
            approve = True
            if self._stored_tx(round_id, step) is None:
                if self.coordinator.has_voted(round_id, self.address):
                    self.state.record_done(round_id, step, {"found_on_chain": True})
                    return
                began = time.perf_counter()
                approve, reason, _before, _after = self.participant.review(
                    round_id, self._previous(round_id), tolerance=self.settings.vote_tolerance)
                self.state.record_intent(round_id, step, {
                    "approve": approve, "reason": reason, "attempt": attempt,
                    "review_seconds": time.perf_counter() - began})
            self.faults("vote:before")
            with self.faults.during("vote"):
                out = self.sender.send(
                    round_id, step, to=self.coordinator.address,
                    data=self.coordinator.contract.encode_abi("vote", args=[round_id, attempt, approve]),
                    already_done=voted_on_chain, min_gas=VOTE_GAS_FLOOR)
            self.faults("vote:done")
            rec = self.state.get(round_id, step)
            detail = rec.detail if rec else {}
            log.info("round %d %s: voted %s (%s; %s)", round_id, self.name,
                     "yes" if detail.get("approve", approve) else "no", detail.get("reason", "resumed"), _how(out))
            self._tick_bar("vote")

        self._guarded(round_id, step, vote)

    def _pull(self, round_id: int) -> None:
        if self.state.is_final(round_id, "pull"):
            return
        info = self.coordinator.round_info(round_id)
        if not info.status.is_final:
            return
        # also when the next round opened before this tick; every proposal attempt's steps
        steps = ["submit", "claim"] + [attempt_step(step, attempt) for attempt in range(info.rejected_proposals + 1)
                                       for step in ("propose", "vote")]
        for step in steps:
            self._settle(round_id, step, f"round already {info.status.name.lower()} without this node's {step}")
        outcome = self.coordinator.round_outcome(round_id)
        if outcome is None or not outcome.committed or outcome.global_cid is None:
            reason = outcome.failure_reason.name.lower() if outcome and outcome.failure_reason is not None else "?"
            self._skip(round_id, "pull", f"round failed ({reason}); the previous global adapter stays")
            self._close_bar()
            return
        cid = cid_from_bytes(outcome.global_cid)
        self.state.record_intent(round_id, "pull", {"cid": cid})
        began = time.perf_counter()
        out_dir = self._adapters_dir() / f"round-{round_id}"
        pulled = fetch_global_bundle(self.store, cid, out_dir=out_dir)
        # kept with the pull so `node status` can say, without the chain, whether this node's update made it
        # in: the committed manifest's list (the committee checked it against the proposal's root)
        listed = pulled.manifest.accepted
        update_accepted = None if listed is None else self.address.lower() in {a.lower() for a in listed}
        (self._adapters_dir() / "latest").write_text(f"{round_id} {cid}\n", encoding="utf-8")
        # What the federation's adapter does on this node's own held-out data: the figure an operator
        # judges the federation by (and the devnet's learning table reads), also for rounds it did not vote in.
        held_out_loss = self.participant.evaluate(pulled.tensors)
        self.state.record_done(round_id, "pull", {"cid": cid, "dir": str(out_dir), "update_accepted": update_accepted,
                                                  "held_out_loss": held_out_loss,
                                                  "seconds": time.perf_counter() - began})
        log.info("round %d %s: committed adapter %s pulled into %s; held-out loss %.4f", round_id, self.name, cid,
                 out_dir, held_out_loss)
        self._tick_bar("pull")
        self._close_bar()

    # ------------------------------------------------------------ places and progress

    def _round_dir(self, round_id: int) -> Path:
        return self.state.path.parent / "rounds" / f"round-{round_id}"

    def _adapters_dir(self) -> Path:
        path = self.settings.adapters_dir or (self.state.path.parent / "adapters")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _open_bar(self, round_id: int) -> None:
        if self._bar_round == round_id:
            return
        self._close_bar()
        self._bar = contextlib.ExitStack()
        self._bar_sink = self._bar.enter_context(progress(f"{self.name} round {round_id}", total=len(STEPS),
                                                          unit="step", logger=log,
                                                          enabled=self.settings.show_progress))
        self._bar_round = round_id

    def _tick_bar(self, step: str) -> None:
        if self._bar_sink is not None:
            self._bar_sink.update(1, step=step)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar, self._bar_sink = None, None


def _public_key_words(account: LocalAccount) -> tuple[int, int]:
    from flare_chain.chain import public_key_words

    return public_key_words(account)


def _how(out: Any) -> str:
    if out.already_on_chain:
        return "already on-chain"
    return f"tx {out.tx_hash}{', re-sent after restart' if out.resent else ''}"


def _short(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, FlareError) else f"{exc}"
    return text if len(text) < 300 else text[:297] + "..."
