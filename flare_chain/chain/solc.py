"""Compile the Solidity sources with the pinned npm ``solc``, through py-solc-x.

The compiler is the npm package ``solc`` (version pinned in ``package.json``),
reached through ``scripts/solcjs-standard-json``, a ``solc``-shaped executable
that py-solc-x can drive (``--version`` and ``--standard-json``). Nothing is
downloaded. Only ``scripts/compile_contracts.py`` and the artifact tests need
this module; running a node loads the committed artifacts instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from flare_chain.chain.artifacts import CONTRACTS_DIR, source_hashes
from flare_chain.errors import ConfigError

__all__ = [
    "COMPILER_SETTINGS",
    "SOLC_BINARY",
    "SOLC_VERSION",
    "compile_contracts",
    "compiler_version",
]

SOLC_VERSION = "0.8.28"
SOLC_BINARY = CONTRACTS_DIR.parent / "scripts" / "solcjs-standard-json"
COMPILER_SETTINGS: dict[str, Any] = {
    # cancun: the newest EVM both py-evm (eth-tester) and anvil run.
    "evmVersion": "cancun",
    "optimizer": {"enabled": True, "runs": 200},
}
_OUTPUTS = ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]


def _binary(solc_binary: Path | None) -> Path:
    binary = solc_binary or SOLC_BINARY
    if shutil.which("node") is None:
        raise ConfigError("`node` is not on PATH; the Solidity compiler is the npm package `solc`")
    if not (CONTRACTS_DIR.parent / "node_modules" / "solc").is_dir() and solc_binary is None:
        raise ConfigError("node_modules/solc is missing; run `npm ci` in the repository root")
    return binary


def compiler_version(solc_binary: Path | None = None) -> str:
    """Full version string of the compiler (``0.8.28+commit.7893614a``), checked against the pin."""
    from solcx.wrapper import get_solc_version

    version = get_solc_version(_binary(solc_binary), with_commit_hash=True)
    if version.base_version != SOLC_VERSION:
        raise ConfigError(
            f"solc {version} found but the contracts are pinned to {SOLC_VERSION}; "
            "run `npm ci` to install the pinned `solc`"
        )
    return str(version)


def compile_contracts(
    contracts_dir: Path = CONTRACTS_DIR, *, solc_binary: Path | None = None
) -> dict[str, dict[str, Any]]:
    """Compile every ``*.sol`` in ``contracts_dir``; return artifact dicts keyed by contract name.

    Only deployable contracts (non-empty bytecode) get an artifact. The result is
    deterministic for the same sources, compiler and settings, which is what lets
    a test compare it byte for byte with the committed artifacts.
    """
    import solcx

    binary = _binary(solc_binary)
    version = compiler_version(binary)
    sources = {
        p.name: {"content": p.read_text(encoding="utf-8")} for p in sorted(contracts_dir.glob("*.sol"))
    }
    if not sources:
        raise ConfigError(f"no *.sol files under {contracts_dir}")
    settings = {**COMPILER_SETTINGS, "outputSelection": {"*": {"*": _OUTPUTS}}}
    try:
        output = solcx.compile_standard(
            {"language": "Solidity", "sources": sources, "settings": settings}, solc_binary=binary
        )
    except solcx.exceptions.SolcError as exc:
        raise ConfigError(f"Solidity compilation failed:\n{exc}") from exc

    hashes = source_hashes(contracts_dir)
    artifacts: dict[str, dict[str, Any]] = {}
    for source_name, contracts in sorted(output.get("contracts", {}).items()):
        for name, compiled in sorted(contracts.items()):
            bytecode = compiled["evm"]["bytecode"]["object"]
            if not bytecode:
                continue  # abstract contract or interface
            artifacts[name] = {
                "contractName": name,
                "sourceName": source_name,
                "abi": compiled["abi"],
                "bytecode": "0x" + bytecode,
                "deployedBytecode": "0x" + compiled["evm"]["deployedBytecode"]["object"],
                "compiler": {"name": "solc", "package": f"npm:solc@{SOLC_VERSION}", "version": version},
                "settings": COMPILER_SETTINGS,
                "sources": {src: {"sha256": digest} for src, digest in hashes.items()},
            }
    return artifacts
