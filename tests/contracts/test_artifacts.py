"""Committed artifacts are exactly what the pinned compiler makes from the committed sources."""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from flare_chain.chain.artifacts import ARTIFACTS_DIR, CONTRACTS_DIR, load_artifact, source_hashes
from flare_chain.chain.solc import COMPILER_SETTINGS, SOLC_VERSION


def _compile_script():
    spec = importlib.util.spec_from_file_location(
        "compile_contracts", CONTRACTS_DIR.parent / "scripts" / "compile_contracts.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_artifact_records_the_current_source_hashes():
    artifact = load_artifact("FlareCoordinator")
    assert artifact.source_sha256 == source_hashes(), "sources changed: run scripts/compile_contracts.py"


def test_artifact_records_pinned_compiler_and_settings():
    artifact = load_artifact("FlareCoordinator")
    assert artifact.compiler_version.startswith(SOLC_VERSION + "+commit")
    assert artifact.settings == COMPILER_SETTINGS
    assert artifact.settings["evmVersion"] == "cancun"
    # Creation code starts by pushing the free-memory pointer: PUSH1 0x80, or PUSH2 when immutables move it.
    assert artifact.bytecode.startswith(("0x6080", "0x61")) and len(artifact.deployed_bytecode) > 2


@pytest.mark.skipif(shutil.which("node") is None, reason="node is needed to run the npm solc compiler")
def test_recompiling_sources_reproduces_committed_artifacts_byte_for_byte():
    compile_contracts = _compile_script()
    fresh = compile_contracts.compile_contracts(CONTRACTS_DIR)
    assert sorted(fresh) == ["FlareCoordinator"]
    assert compile_contracts.stale_artifacts(fresh, ARTIFACTS_DIR) == [], "run scripts/compile_contracts.py"


def test_stale_artifact_is_reported(tmp_path):
    compile_contracts = _compile_script()
    artifact = {"contractName": "FlareCoordinator", "abi": []}
    (tmp_path / "FlareCoordinator.json").write_text(compile_contracts.render({**artifact, "abi": [1]}))
    (tmp_path / "Orphan.json").write_text("{}")
    assert compile_contracts.stale_artifacts({"FlareCoordinator": artifact}, tmp_path) == [
        "FlareCoordinator",
        "Orphan",
    ]
