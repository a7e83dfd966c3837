"""The ``flare-chain`` argument parser: every sub-command module registers itself here."""

from __future__ import annotations

import argparse

__all__ = ["HelpFormatter", "build_parser", "iter_parsers"]


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, adding "(default: X)" to every option whose help does not state its default.

    Unlike ``ArgumentDefaultsHelpFormatter`` it leaves out defaults that say
    nothing (None, False of a switch) and helps that already name one, so
    each default is written once, by the code that applies it.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (action.option_strings and default not in (None, False, argparse.SUPPRESS) and "default" not in text
                and not isinstance(default, list)):
            text += " (default: %(default)s)"
        return text


def iter_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and every sub-command parser under it, depth first in definition order."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases map to the same parser once
                found.extend(iter_parsers(child))
    return found


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
    from flare_chain.cli import spec as spec_cli

    parser = argparse.ArgumentParser(
        prog="flare-chain",
        description="Blockchain-coordinated federated learning of LoRA adapters.",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="least severe log lines to show")
    parser.add_argument("--json-logs", action="store_true", help="emit log lines as JSON objects")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (audit_cli, chain_cli, demo_cli, deploy_cli, ipfs_cli, keys_cli, model_cli, node_cli,
                   rounds_cli, spec_cli):
        module.register(sub)
    for each in iter_parsers(parser):  # sub-parsers do not inherit the formatter; every --help shows defaults
        each.formatter_class = HelpFormatter
    return parser
