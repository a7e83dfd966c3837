#!/usr/bin/env python3
"""Compile contracts/*.sol and write contracts/artifacts/<Name>.json.

    python scripts/compile_contracts.py          # (re)write the artifacts
    python scripts/compile_contracts.py --check  # exit 1 if any artifact is stale or missing

Uses the pinned npm ``solc`` through py-solc-x (see flare_chain/chain/solc.py);
commit the artifacts it writes, since running the project needs no compiler.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from flare_chain.chain.artifacts import ARTIFACTS_DIR, CONTRACTS_DIR
from flare_chain.chain.solc import compile_contracts


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
    if args.check:
        stale = stale_artifacts(artifacts, ARTIFACTS_DIR)
        if stale:
            print(
                f"stale contract artifacts: {', '.join(stale)}; run scripts/compile_contracts.py",
                file=sys.stderr,
            )
            return 1
        print(f"contract artifacts up to date: {', '.join(sorted(artifacts))}")
        return 0

    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    for name, artifact in artifacts.items():
        path = ARTIFACTS_DIR / f"{name}.json"
        path.write_text(render(artifact), encoding="utf-8")
        print(f"wrote {path.relative_to(CONTRACTS_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
