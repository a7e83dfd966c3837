"""Committed compiled contracts: where they live and how to load them.

Running a node never needs a Solidity compiler: ``scripts/compile_contracts.py``
writes ``contracts/artifacts/<Name>.json`` (ABI, bytecode, compiler version,
settings and the sha256 of every source) and this module only reads them. The
path is resolved relative to this file, which is where an editable install (and
a checkout) keeps them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flare_chain.errors import ConfigError

__all__ = [
    "ARTIFACTS_DIR",
    "CONTRACTS_DIR",
    "ContractArtifact",
    "load_artifact",
    "source_hashes",
]

CONTRACTS_DIR = Path(__file__).resolve().parents[2] / "contracts"
ARTIFACTS_DIR = CONTRACTS_DIR / "artifacts"


@dataclass(frozen=True)
class ContractArtifact:
    """One compiled contract as committed: enough to deploy it and to talk to it."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler_version: str
    settings: dict[str, Any]
    source_sha256: dict[str, str]


def source_hashes(contracts_dir: Path = CONTRACTS_DIR) -> dict[str, str]:
    """Map each ``*.sol`` file name under ``contracts_dir`` to the sha256 hex of its bytes.

    Artifacts record these so a stale artifact (source edited, not recompiled) is
    detectable without a compiler.
    """
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(contracts_dir.glob("*.sol"))
    }


def load_artifact(name: str, artifacts_dir: Path = ARTIFACTS_DIR) -> ContractArtifact:
    """Load the committed artifact of contract ``name`` (e.g. ``"FlareCoordinator"``).

    Raises ConfigError naming the missing file and the command that writes it.
    """
    path = artifacts_dir / f"{name}.json"
    if not path.is_file():
        raise ConfigError(
            f"contract artifact {path} is missing; run `python scripts/compile_contracts.py` "
            "from the repository root (needs `npm ci` for the solc compiler)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ContractArtifact(
            name=data["contractName"],
            abi=data["abi"],
            bytecode=data["bytecode"],
            deployed_bytecode=data["deployedBytecode"],
            compiler_version=data["compiler"]["version"],
            settings=data["settings"],
            source_sha256={k: v["sha256"] for k, v in data["sources"].items()},
        )
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"contract artifact {path} is malformed ({exc!r}); regenerate it with "
            "`python scripts/compile_contracts.py`"
        ) from exc
