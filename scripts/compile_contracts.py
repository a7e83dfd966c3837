#!/usr/bin/env python3
"""Compile contracts/*.sol and write contracts/artifacts/<Name>.json.

    python scripts/compile_contracts.py          # (re)write the artifacts
    python scripts/compile_contracts.py --check  # exit 1 if any artifact is stale or missing

Uses the pinned npm ``solc`` through py-solc-x (see flare_chain/chain/solc.py);
commit the artifacts it writes, since running the project needs no compiler.
Libraries get no artifact (their functions are internal, so they are compiled
into the contracts that use them and never deployed). Test-only contracts,
contracts/test/*.sol (harnesses exposing libraries), go to
contracts/artifacts/test/<Name>.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from flare_chain.chain import solc
from flare_chain.chain.artifacts import ARTIFACTS_DIR, CONTRACTS_DIR, source_hashes
from flare_chain.errors import ConfigError

TEST_SUBDIR = "test"
TEST_ARTIFACTS_DIR = ARTIFACTS_DIR / TEST_SUBDIR
# A library's runtime code starts with PUSH20 of its (zero at compile time) address, the call
# protection of https://docs.soliditylang.org/en/v0.8.28/contracts.html#call-protection-for-libraries
_LIBRARY_RUNTIME_PREFIX = "0x73" + "00" * 20


def _is_library(artifact: dict[str, Any]) -> bool:
    return str(artifact["deployedBytecode"]).startswith(_LIBRARY_RUNTIME_PREFIX)


def compile_contracts(contracts_dir: Path = CONTRACTS_DIR) -> dict[str, dict[str, Any]]:
    """Artifacts of the deployable contracts in ``contracts_dir/*.sol`` (libraries left out)."""
    return {
        name: artifact
        for name, artifact in solc.compile_contracts(contracts_dir).items()
        if not _is_library(artifact)
    }


def compile_test_contracts(contracts_dir: Path = CONTRACTS_DIR) -> dict[str, dict[str, Any]]:
    """Artifacts of the test-only contracts in ``contracts_dir/test/*.sol``.

    ``solc.compile_contracts`` reads one folder, so the test sources and the sources they
    import are copied into one flat folder; an ``import {X} from "../X.sol"`` in a test source
    resolves to ``X.sol`` there too. Each artifact then names its real source path
    (``test/<file>``) and records the hashes of both folders' sources.
    """
    test_dir = contracts_dir / TEST_SUBDIR
    tests = sorted(test_dir.glob("*.sol"))
    if not tests:
        return {}
    clashes = sorted({p.name for p in tests} & {p.name for p in contracts_dir.glob("*.sol")})
    if clashes:
        raise ConfigError(f"test contracts must not share a file name with contracts/*.sol: {clashes}")
    with tempfile.TemporaryDirectory() as tmp:
        flat = Path(tmp)
        for path in [*contracts_dir.glob("*.sol"), *tests]:
            shutil.copyfile(path, flat / path.name)
        compiled = solc.compile_contracts(flat)
    test_files = {p.name for p in tests}
    hashes = {
        **source_hashes(contracts_dir),
        **{f"{TEST_SUBDIR}/{name}": digest for name, digest in source_hashes(test_dir).items()},
    }
    return {
        name: {
            **artifact,
            "sourceName": f"{TEST_SUBDIR}/{artifact['sourceName']}",
            "sources": {src: {"sha256": digest} for src, digest in hashes.items()},
        }
        for name, artifact in compiled.items()
        if artifact["sourceName"] in test_files
    }


def render(artifact: dict[str, Any]) -> str:
    """The exact text committed for an artifact (stable key order, trailing newline)."""
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def stale_artifacts(artifacts: dict[str, dict[str, Any]], artifacts_dir: Path) -> list[str]:
    """Names of artifacts whose committed text differs from a fresh compile, plus orphans."""
    stale = [
        name
        for name, artifact in artifacts.items()
        if not (artifacts_dir / f"{name}.json").is_file()
        or (artifacts_dir / f"{name}.json").read_text(encoding="utf-8") != render(artifact)
    ]
    stale += [p.stem for p in sorted(artifacts_dir.glob("*.json")) if p.stem not in artifacts]
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check", action="store_true", help="only verify the committed artifacts are current"
    )
    args = parser.parse_args(argv)

    artifacts = compile_contracts(CONTRACTS_DIR)
    test_artifacts = compile_test_contracts(CONTRACTS_DIR)
    if args.check:
        stale = stale_artifacts(artifacts, ARTIFACTS_DIR)
        stale += [f"{TEST_SUBDIR}/{name}" for name in stale_artifacts(test_artifacts, TEST_ARTIFACTS_DIR)]
        if stale:
            print(
                f"stale contract artifacts: {', '.join(stale)}; run scripts/compile_contracts.py",
                file=sys.stderr,
            )
            return 1
        names = [*sorted(artifacts), *(f"{TEST_SUBDIR}/{name}" for name in sorted(test_artifacts))]
        print(f"contract artifacts up to date: {', '.join(names)}")
        return 0

    for directory, compiled in ((ARTIFACTS_DIR, artifacts), (TEST_ARTIFACTS_DIR, test_artifacts)):
        if not compiled:
            continue
        directory.mkdir(parents=True, exist_ok=True)
        for name, artifact in compiled.items():
            path = directory / f"{name}.json"
            path.write_text(render(artifact), encoding="utf-8")
            print(f"wrote {path.relative_to(CONTRACTS_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
