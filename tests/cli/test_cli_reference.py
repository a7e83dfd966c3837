"""The README's Command line section is the argparse definitions' own help, and every flag explains itself."""

from __future__ import annotations

import argparse

from flare_chain.cli.parser import build_parser, iter_parsers
from flare_chain.cli.reference import BEGIN_MARKER, END_MARKER, cli_reference, readme_path, replace_section


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)]


def test_the_readme_command_line_section_is_generated_from_the_parsers() -> None:
    readme = readme_path().read_text(encoding="utf-8")
    assert replace_section(readme, cli_reference()) == readme, \
        "README.md's Command line section is stale: run .venv/bin/python scripts/cli_reference.py and commit it"


def test_the_section_covers_the_operator_commands() -> None:
    readme = readme_path().read_text(encoding="utf-8")
    section = readme[readme.index(BEGIN_MARKER):readme.index(END_MARKER)]
    for command in ("deploy", "node run", "node status", "rounds drive", "audit", "chain serve", "chain fund",
                    "ipfs ls", "ipfs serve", "keys new", "keys import"):
        assert f"`flare-chain {command}`:" in section, command
    assert "--repo" in section


def test_every_argument_has_help_and_every_option_shows_a_meaningful_default() -> None:
    parser = build_parser()
    missing = [f"{p.prog} {a.option_strings or a.dest}" for p in iter_parsers(parser) for a in _options(p)
               if not a.help]
    assert missing == []
    for p in iter_parsers(parser):
        formatter = p._get_formatter()
        for action in _options(p):
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS) \
                    and not isinstance(action.default, list):
                text = formatter._expand_help(action)
                assert "default" in text, f"{p.prog} {action.option_strings[0]}: help does not show the default"
