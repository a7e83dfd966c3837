"""The owner's side of a federation: set the round-0 adapter, open rounds, end stuck ones, summarise.

The contract's owner is the only one who may open rounds, so a deployment needs
one process doing that next to the node daemons: ``flare-chain rounds drive``.
It pins the shared starting adapter through the IPFS endpoint (the same PEFT
bundle ``setup_federation`` builds in-process) and records its CID on-chain,
then per round opens it with the configured windows and expected committee
size, waits for ``RoundCommitted`` or ``RoundFailed``, and calls
``finalizeRound`` once a deadline has passed with the round stuck, so a dead
committee never blocks the next round. It never mines blocks itself unless
asked (``mine_every_poll``: for the eth-tester dev chain, which only moves on
transactions; anvil with a block time moves alone).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from pydantic import BaseModel, ConfigDict, Field

from flare_chain.chain.coordinator import CoordinatorClient
from flare_chain.chain.devchain import advance_blocks
from flare_chain.chain.records import RoundStatus
from flare_chain.errors import ChainError, FlareError
from flare_chain.ipfs import KuboClient, cid_from_bytes, cid_to_bytes
from flare_chain.protocol import RoundSchedule

__all__ = [
    "DriverSettings",
    "RoundSummary",
    "drive_rounds",
    "ensure_global_adapter",
    "pin_initial_adapter",
    "summary_rows",
]

log = logging.getLogger(__name__)

_GLOBAL_MANIFEST = "flare_manifest.json"


class DriverSettings(BaseModel):
    """How the owner runs rounds; windows in blocks, waits in seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rounds: int = Field(3, ge=1, le=10_000)
    submission_blocks: int = Field(40, ge=1)
    claim_blocks: int = Field(10, ge=1)
    proposal_blocks: int = Field(20, ge=1)
    voting_blocks: int = Field(20, ge=1)
    expected_committee_size: int = Field(3, ge=1, le=0xFFFF)
    poll_interval_s: float = Field(1.0, gt=0, le=600)
    mine_every_poll: bool = Field(False, description="ask the chain for one block per poll (eth-tester dev chain)")
    round_timeout_s: float = Field(3600.0, gt=0, description="wall-clock cap per round before giving up")


@dataclass(frozen=True)
class RoundSummary:
    """How one round ended, as the summary table shows it."""

    round_id: int
    status: RoundStatus
    committed_cid: str | None
    failure_reason: str | None
    submissions: int
    seats: int
    approvals: int
    rejections: int
    global_loss: float | None
    seconds: float


def pin_initial_adapter(
    ipfs: KuboClient, model_dir: Path, params: Any, *, seed: int = 0, probe_texts: list[str] | None = None
) -> str:
    """Build the round-0 PEFT adapter bundle and add it through ``ipfs``; returns its CID.

    With ``probe_texts`` the federation's public probe corpus is pinned too
    and named in the round-0 manifest, which turns the committee's probe-loss
    gate on for every round. Deterministic (same model, params, seed and
    texts give the same CID), so every node can check the bytes it pulls.
    Imports torch: call it only where training is possible.
    """
    from flare_chain.lora.adapter import initial_adapter
    from flare_chain.lora.peft_files import save_peft_adapter
    from flare_chain.lora.probe_corpus import encode_probe_corpus
    from flare_chain.node.bundles import CID_VERSION
    from flare_chain.node.participant import initial_global_manifest

    probe_cid = None
    if probe_texts is not None:
        probe_cid = ipfs.add(encode_probe_corpus(probe_texts), cid_version=CID_VERSION, pin=True)
        log.info("public probe corpus pinned: %s (%d texts)", probe_cid, len(probe_texts))
    tensors = initial_adapter(model_dir, params, seed=seed)
    manifest = initial_global_manifest(model_dir, params, tensors, probe_cid=probe_cid)
    with tempfile.TemporaryDirectory(prefix="flare-round0-") as tmp:
        folder = Path(tmp) / "adapter"
        save_peft_adapter(folder, tensors, model_dir, params, base_id=manifest.base_model_id)
        (folder / _GLOBAL_MANIFEST).write_bytes(manifest.to_bytes())
        return ipfs.add(folder, recursive=True, cid_version=CID_VERSION, pin=True)


def ensure_global_adapter(
    coordinator: CoordinatorClient, owner: LocalAccount, make_cid: Callable[[], str]
) -> str:
    """The global adapter CID on-chain; if none yet, ``make_cid()`` (e.g. pin the round-0 bundle) and record it."""
    current = coordinator.global_adapter_cid()
    if current:
        cid = cid_from_bytes(current)
        log.info("global adapter already set on-chain: %s", cid)
        return cid
    cid = make_cid()
    coordinator.initialize_global_adapter(owner, cid_to_bytes(cid))
    log.info("round-0 global adapter %s recorded on-chain", cid)
    return cid


def _global_loss(ipfs: KuboClient | None, cid: str) -> float | None:
    """The held-out loss the committed bundle's manifest reports, if it carries one (verified fetch)."""
    if ipfs is None:
        return None
    try:
        metrics = json.loads(ipfs.cat(f"{cid}/{_GLOBAL_MANIFEST}")).get("metrics") or {}
    except (FlareError, ValueError) as exc:
        log.warning("cannot read the manifest of committed adapter %s: %s", cid, exc)
        return None
    for key in ("global_val_loss", "global_loss", "val_loss", "val_loss_after"):
        if key in metrics:
            return float(metrics[key])
    losses = [float(v) for k, v in metrics.items() if "loss" in k]
    return losses[0] if losses else None


def _try_finalize(coordinator: CoordinatorClient, owner: LocalAccount, round_id: int) -> None:
    try:
        coordinator.finalize_round(owner, round_id)
        log.info("round %d finalized after its deadline passed", round_id)
    except ChainError as exc:
        if exc.error_name not in ("CoordinatorNothingToFinalize", "CoordinatorRoundNotOpen"):
            log.warning("finalizing round %d failed: %s", round_id, exc)


def _wait_for_end(
    coordinator: CoordinatorClient, owner: LocalAccount, round_id: int, settings: DriverSettings,
    sleep: Callable[[float], None],
) -> RoundStatus:
    started = time.monotonic()
    while True:
        try:
            info = coordinator.round_info(round_id)
            head = int(coordinator.w3.eth.block_number)
        except (ChainError, OSError) as exc:  # an RPC endpoint restarting: keep polling until the timeout
            if time.monotonic() - started > settings.round_timeout_s:
                raise ChainError(f"round {round_id}: the RPC endpoint kept failing for "
                                 f"{settings.round_timeout_s:.0f} s ({exc})") from exc
            log.warning("round %d: polling the chain failed (%s); retrying", round_id, exc)
            sleep(max(settings.poll_interval_s, 1.0))
            continue
        if info.status.is_final:
            return info.status
        # Judged at the head, not the next block: the transaction is simulated against the head before it
        # is sent, and a finalize that reverts there would be retried here without a block being mined.
        if RoundSchedule.for_round(info, coordinator).is_stuck(info.status, info.committee_weight, head):
            _try_finalize(coordinator, owner, round_id)
            continue
        if time.monotonic() - started > settings.round_timeout_s:
            raise ChainError(f"round {round_id} neither ended nor passed a deadline within "
                             f"{settings.round_timeout_s:.0f} s (head {head}, status {info.status.name}); is the "
                             "chain producing blocks? (on the eth-tester dev chain pass --mine)")
        if settings.mine_every_poll:
            advance_blocks(coordinator.w3, 1)
        sleep(settings.poll_interval_s)


def drive_rounds(
    coordinator: CoordinatorClient,
    owner: LocalAccount,
    settings: DriverSettings,
    *,
    ipfs: KuboClient | None = None,
    on_round: Callable[[RoundSummary], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[RoundSummary]:
    """Open and see through ``settings.rounds`` rounds, one after another; return their summaries.

    A round left open by an earlier run is waited for (and finalized if stuck)
    first, so a restarted driver does not trip over it. ``ipfs`` lets the
    summary read each committed bundle's manifest for its held-out loss.
    """
    if coordinator.owner() != owner.address:
        raise ChainError(f"{owner.address} is not the coordinator's owner ({coordinator.owner()}); "
                         "use the deployer's keystore to drive rounds")
    if not coordinator.global_adapter_cid():
        raise ChainError("the coordinator has no global adapter yet; initialise it before opening rounds")
    current = coordinator.current_round()
    if current and not coordinator.round_info(current).status.is_final:
        log.info("round %d from an earlier run is still going; waiting for it to end", current)
        _wait_for_end(coordinator, owner, current, settings, sleep)
    summaries: list[RoundSummary] = []
    for _ in range(settings.rounds):
        started = time.monotonic()
        round_id, _tx = coordinator.open_round(
            owner, settings.submission_blocks, settings.claim_blocks, settings.proposal_blocks,
            settings.voting_blocks, expected_committee_size=settings.expected_committee_size,
        )
        log.info("round %d opened (submission %d, claim %d, proposal %d, voting %d blocks; k=%d)", round_id,
                 settings.submission_blocks, settings.claim_blocks, settings.proposal_blocks,
                 settings.voting_blocks, settings.expected_committee_size)
        status = _wait_for_end(coordinator, owner, round_id, settings, sleep)
        summary = _summarise(coordinator, round_id, status, ipfs, time.monotonic() - started)
        log.info("round %d %s: %s", round_id, status.name.lower(),
                 summary.committed_cid or summary.failure_reason)
        summaries.append(summary)
        if on_round is not None:
            on_round(summary)
    return summaries


def _summarise(
    coordinator: CoordinatorClient, round_id: int, status: RoundStatus, ipfs: KuboClient | None, seconds: float
) -> RoundSummary:
    info = coordinator.round_info(round_id)
    outcome = coordinator.round_outcome(round_id)
    cid = cid_from_bytes(outcome.global_cid) if outcome and outcome.global_cid else None
    reason = outcome.failure_reason.name.lower().replace("_", " ") if outcome and outcome.failure_reason is not None \
        else None
    return RoundSummary(
        round_id=round_id, status=status, committed_cid=cid, failure_reason=reason,
        submissions=info.submission_count, seats=info.committee_size, approvals=info.approvals,
        rejections=info.rejections, global_loss=_global_loss(ipfs, cid) if cid else None, seconds=seconds,
    )


def summary_rows(summaries: list[RoundSummary]) -> tuple[list[str], list[list[object]]]:
    """Headers and rows for ``render_table``: one row per round."""
    headers = ["round", "result", "committed CID / failure", "submissions", "seats", "approvals", "rejections",
               "global loss", "seconds"]
    rows: list[list[object]] = [
        [s.round_id, s.status.name.lower(), s.committed_cid or s.failure_reason or "-", s.submissions, s.seats,
         s.approvals, s.rejections, "-" if s.global_loss is None else f"{s.global_loss:.4f}", f"{s.seconds:.1f}"]
        for s in summaries
    ]
    return headers, rows
