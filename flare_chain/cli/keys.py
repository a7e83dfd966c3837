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
    imp = sub.add_parser("import", help="encrypt an existing private key into a keystore; prints its address",
                         description="The key is read from the variable --key-env names, or else from standard "
                                     "input (a hidden prompt on a terminal), never from the command line. The "
                                     "password comes from --password-env / --password-file, or a prompt.")
    imp.add_argument("path", type=Path, help="where to write the keystore (refuses to overwrite)")
    imp.add_argument("--key-env", metavar="VAR",
                     help="read the hex private key from this environment variable (default: standard input)")
    isrc = imp.add_mutually_exclusive_group()
    isrc.add_argument("--password-env", metavar="VAR", help="read the password from this environment variable")
    isrc.add_argument("--password-file", type=Path, metavar="FILE", help="read the password from this file")
    imp.set_defaults(func=_import)
    show = sub.add_parser("address", help="print the address a keystore declares (no password needed)")
    show.add_argument("path", type=Path, help="the keystore file")
    show.set_defaults(func=_address)


def _new(args: argparse.Namespace) -> int:
    from flare_chain.node.keys import create_keystore, read_password

    password = read_password(env_name=args.password_env, file=args.password_file)
    print(create_keystore(args.path, password))
    return 0


def _import(args: argparse.Namespace) -> int:
    import getpass
    import os
    import sys

    from flare_chain.errors import ConfigError
    from flare_chain.node.keys import import_keystore, read_password

    if args.key_env is not None:
        key = os.environ.get(args.key_env, "")
        if not key:
            raise ConfigError(f"environment variable {args.key_env} (the private key to import) is not set or empty")
    elif sys.stdin.isatty():
        key = getpass.getpass("private key (hex): ")
    else:
        key = sys.stdin.readline()
    if args.password_env is not None or args.password_file is not None:
        password = read_password(env_name=args.password_env, file=args.password_file)
    elif sys.stdin.isatty():
        password = getpass.getpass("keystore password: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the two passwords differ; nothing written")
    else:
        raise ConfigError("no keystore password: pass --password-env VAR or --password-file FILE")
    print(import_keystore(args.path, key, password))
    return 0


def _address(args: argparse.Namespace) -> int:
    from flare_chain.node.keys import keystore_address

    print(keystore_address(args.path))
    return 0
