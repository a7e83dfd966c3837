"""``flare-chain``: the command line. Expected failures print one line, not a traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from flare_chain.errors import FlareError
from flare_chain.logs import configure_logging

__all__ = ["build_parser", "main"]

log = logging.getLogger("flare_chain.cli")


def build_parser() -> argparse.ArgumentParser:
    """The full parser; each sub-command module registers itself."""
    from flare_chain.cli import audit as audit_cli
    from flare_chain.cli import chain as chain_cli
    from flare_chain.cli import demo as demo_cli
    from flare_chain.cli import deploy as deploy_cli
    from flare_chain.cli import ipfs as ipfs_cli
    from flare_chain.cli import keys as keys_cli
    from flare_chain.cli import model as model_cli
    from flare_chain.cli import node as node_cli
    from flare_chain.cli import rounds as rounds_cli

    parser = argparse.ArgumentParser(
        prog="flare-chain",
        description="Blockchain-coordinated federated learning of LoRA adapters.",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--json-logs", action="store_true", help="emit log lines as JSON objects")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (audit_cli, chain_cli, demo_cli, deploy_cli, ipfs_cli, keys_cli, model_cli, node_cli,
                   rounds_cli):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status (0 ok, FlareError.exit_code otherwise)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, json_lines=args.json_logs)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except FlareError as exc:
        print(f"flare-chain: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("flare-chain: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
