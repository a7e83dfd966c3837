"""The auditor's verdicts: one ``Finding`` per check, per round and node where it applies."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["CHECKS", "FAIL", "PASS", "UNVERIFIABLE", "Finding", "Status"]

Status = Literal["pass", "fail", "unverifiable"]
PASS: Status = "pass"
FAIL: Status = "fail"
UNVERIFIABLE: Status = "unverifiable"

CHECKS: dict[str, str] = {
    "deployment": "the deployment transaction and its block hash are on the audited chain (not a twin)",
    "federation-spec": "the federation spec the coordinator names is fetched intact and complete; rounds are "
                       "re-checked under it (its gates and aggregator)",
    "rounds": "the audited blocks hold at least one round to check (checking nothing is not a pass)",
    "seed-chain": "seed_r = keccak256(abi.encode(seed_{r-1}, prevrandao of the opening block)); seats are drawn "
                  "on keccak256(abi.encode(seed_r, hash of the submission deadline block))",
    "global-chain": "each round opens on the adapter the previous committed round left",
    "vrf-proof": "each seat's proof (claimSeat calldata) verifies on the round's claim seed under the registered key, "
                 "gives the event's output, under the round's threshold",
    "votes": "votes only from seated members, one each per proposal, before that proposal's vote deadline",
    "quorum": "a committed round has the approvals the threshold requires",
    "proposer": "each proposer sat on the committee and proposed in its rank's turn",
    "fallback": "a rejected proposal handed the round to the next rank, with windows as long as the first",
    "cid-bytes": "every submitted / committed object's blocks hash to their CIDs",
    "manifest-hash": "each update's manifest hashes to the value submitted on-chain",
    "accepted-list": "each proposal's accepted list (in its aggregate's manifest) hashes to the root on chain and "
                     "names only nodes that submitted",
    "accepted-set": "the proposal's accepted set is exactly the updates that pass the gates",
    "aggregate-cid": "aggregating the accepted updates reproduces the proposed adapter's CID",
}
"""Every check the auditor runs, with what it asserts (shown in reports)."""


@dataclass(frozen=True)
class Finding:
    """The result of one check: ``round`` and ``node`` say where (None: not round/node specific)."""

    check: str
    status: Status
    round: int | None = None
    node: str | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        where = " ".join(x for x in (f"round {self.round}" if self.round is not None else "",
                                     self.node or "") if x)
        return f"{self.status.upper():<12} {self.check:<14} {where}: {self.detail}"
