#!/usr/bin/env python3
"""Deploy FlareCoordinator to any JSON-RPC URL with a keystore; same options as ``flare-chain deploy``.

    python scripts/deploy.py --rpc http://127.0.0.1:8545 --keystore keys/owner.json \\
        --password-env FLARE_OWNER_PASSWORD --out deployment.json
"""

from __future__ import annotations

import argparse
import sys

from flare_chain.cli.deploy import add_deploy_arguments, run
from flare_chain.errors import FlareError
from flare_chain.logs import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy.py", description=__doc__.splitlines()[0])
    add_deploy_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging("INFO")
    try:
        return run(args)
    except FlareError as exc:
        print(f"deploy.py: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
