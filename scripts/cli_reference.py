#!/usr/bin/env python3
"""Rewrite README.md's Command line section from the argparse definitions.

    .venv/bin/python scripts/cli_reference.py          # rewrite the section
    .venv/bin/python scripts/cli_reference.py --check  # exit 1 if the README is stale

After adding or changing a command or flag, run it and commit the README; the
test suite fails while the two disagree.
"""

from __future__ import annotations

import argparse
import sys

from flare_chain.cli.reference import cli_reference, readme_path, replace_section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the README is stale")
    args = parser.parse_args(argv)
    path = readme_path()
    current = path.read_text(encoding="utf-8")
    wanted = replace_section(current, cli_reference())
    if wanted == current:
        print(f"{path}: the Command line section is up to date")
        return 0
    if args.check:
        print(f"{path}: the Command line section is stale; run scripts/cli_reference.py", file=sys.stderr)
        return 1
    path.write_text(wanted, encoding="utf-8")
    print(f"{path}: Command line section rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
