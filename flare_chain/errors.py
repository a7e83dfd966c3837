"""The exception hierarchy every flare-chain component raises.

    FlareError                  root: anything an operator can act on
    ├── ConfigError             a configuration key or parameter is missing or invalid
    │   └── SpecMismatch        this node's federation spec differs from the federation's
    ├── ChainError              a transaction reverted or the RPC endpoint misbehaved
    ├── IntegrityError          bytes do not match the hash/CID they were fetched under
    ├── StoreError              the content store is missing an object or cannot write
    ├── UpdateError             a LoRA delta or adapter file is malformed
    │   └── GateRejection       an update was refused by an aggregation gate
    └── TrainingError           local training could not run (bad data, bad model dir)

Each error's message names the offending thing and what to do about it, so the
CLI can print one line instead of a traceback. ``exit_code`` lets the CLI map
classes to distinct process exit statuses.
"""

from __future__ import annotations

__all__ = [
    "ChainError",
    "ConfigError",
    "FlareError",
    "GateRejection",
    "IntegrityError",
    "SpecMismatch",
    "StoreError",
    "TrainingError",
    "UpdateError",
]


class FlareError(Exception):
    """Root of every error flare-chain raises on purpose."""

    exit_code: int = 1


class ConfigError(FlareError):
    """A configuration key or call parameter is missing or out of range."""

    exit_code = 2


class SpecMismatch(ConfigError):
    """A node's own federation spec is not the one pinned for the federation; acting on it would split the committee."""

    exit_code = 10


class ChainError(FlareError):
    """A transaction reverted or the chain endpoint gave an unusable answer.

    ``error_name`` carries the contract's custom error (e.g.
    ``CoordinatorLateSubmission``) when the revert data could be decoded, and
    ``args`` its decoded arguments, so callers can branch on it.
    """

    exit_code = 3

    def __init__(self, message: str, *, error_name: str | None = None, error_args: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.error_name = error_name
        self.error_args = error_args


class IntegrityError(FlareError):
    """Bytes did not hash to the identifier they were requested under."""

    exit_code = 4


class StoreError(FlareError):
    """The content store cannot find or write an object."""

    exit_code = 5


class UpdateError(FlareError):
    """A LoRA delta, adapter or manifest is malformed."""

    exit_code = 6


class GateRejection(UpdateError):
    """An update was refused by an aggregation gate; ``reason`` is recorded."""

    def __init__(self, message: str, *, gate: str, reason: str) -> None:
        super().__init__(message)
        self.gate = gate
        self.reason = reason


class TrainingError(FlareError):
    """Local training could not run: bad parameters, data or model directory."""

    exit_code = 7
