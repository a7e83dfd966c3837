"""``flare-chain keys``: create and inspect encrypted node keystores."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    keys = subparsers.add_parser("keys", help="create and inspect encrypted node keystores")
    sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    new = sub.add_parser("new", help="create a keystore with a fresh random key; prints its address")
    new.add_argument("path", type=Path, help="where to write the keystore (refuses to overwrite)")
    src = new.add_mutually_exclusive_group(required=True)
    src.add_argument("--password-env", metavar="VAR", help="read the password from this environment variable")
    src.add_argument("--password-file", type=Path, metavar="FILE", help="read the password from this file")
    new.set_defaults(func=_new)
    show = sub.add_parser("address", help="print the address a keystore declares (no password needed)")
    show.add_argument("path", type=Path)
    show.set_defaults(func=_address)


def _new(args: argparse.Namespace) -> int:
    from flare_chain.node.keys import create_keystore, read_password

    password = read_password(env_name=args.password_env, file=args.password_file)
    print(create_keystore(args.path, password))
    return 0


def _address(args: argparse.Namespace) -> int:
    from flare_chain.node.keys import keystore_address

    print(keystore_address(args.path))
    return 0
