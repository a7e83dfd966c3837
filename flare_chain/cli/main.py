"""``flare-chain``: the command line. Expected failures print one line, not a traceback.

This module is the console entry point, so it imports nothing heavy at the top:
``main`` arms the stop request (SIGTERM/SIGINT recorded, see
``flare_chain.cli.stop_request``) before the parser and the commands' modules
are imported.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from flare_chain.cli.stop_request import StopRequest

__all__ = ["main"]


def __getattr__(name: str) -> object:
    """The parser's names, imported on first use so the entry point stays light."""
    if name in ("HelpFormatter", "build_parser", "iter_parsers"):
        from flare_chain.cli import parser

        return getattr(parser, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status (0 ok, FlareError.exit_code otherwise).

    A command that stops cleanly on request sets ``keeps_stop_request`` in its
    parser defaults and reads ``args.stop_request``; for every other command
    the signal handlers are given back before it runs.
    """
    stop_request = StopRequest()
    stop_request.arm()  # first: a SIGTERM during the imports below is recorded, not fatal
    try:
        return _dispatch(argv, stop_request)
    finally:
        stop_request.disarm(redeliver=False)


def _dispatch(argv: Sequence[str] | None, stop_request: StopRequest) -> int:
    import argparse
    from collections.abc import Callable

    from flare_chain.cli.parser import build_parser
    from flare_chain.errors import FlareError
    from flare_chain.logs import configure_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "keeps_stop_request", False):
        stop_request.disarm(redeliver=True)
    args.stop_request = stop_request
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
