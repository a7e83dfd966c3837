"""``flare-chain ipfs ...``: the embedded content store from the command line.

Argparse glue only; every sub-command is a thin call into
:class:`flare_chain.ipfs.ContentStore` and returns an exit code. Errors are
FlareError subclasses that the top-level CLI prints as one line.
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from flare_chain.cli.serving import serve_until_stopped
from flare_chain.errors import ConfigError, IntegrityError
from flare_chain.ipfs import ContentStore, cid_of_directory, cid_of_file, parse_cid

__all__ = ["default_repo", "register"]

log = logging.getLogger("flare_chain.cli.ipfs")


def default_repo() -> Path:
    """``$FLARE_IPFS_REPO`` if set, else ``~/.flare/ipfs``."""
    return Path(os.environ.get("FLARE_IPFS_REPO") or "~/.flare/ipfs").expanduser()


def _store(args: argparse.Namespace, *, create: bool = True) -> ContentStore:
    return ContentStore(args.repo or default_repo(), create=create)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


EXIT_READER_GONE = 128 + signal.SIGPIPE
"""Exit status when whoever reads stdout stopped reading (``cat CID | head``): what a shell shows
for a Unix tool killed by SIGPIPE, so ``set -o pipefail`` scripts see the same as with coreutils."""


def _reader_gone() -> int:
    """Stop quietly once stdout's reader has gone: no traceback, none at exit either.

    Python ignores SIGPIPE, so a write to a closed pipe raises BrokenPipeError;
    Python also flushes stdout again at exit and would report that failure, so
    stdout is pointed at /dev/null first (the recipe in the ``signal`` module docs).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    return EXIT_READER_GONE


def _reader_may_leave(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """For commands whose output is piped into ``head`` and the like: a reader that leaves ends them quietly."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except BrokenPipeError:
            return _reader_gone()

    return run


def cmd_add(args: argparse.Namespace) -> int:
    """Print only the root CID, so scripts can capture it."""
    path = Path(args.path)
    if not path.exists() and not path.is_symlink():
        raise ConfigError(f"no such file or directory: {path}")
    if path.is_dir() and not args.recursive:
        raise ConfigError(f"{path} is a directory; use `ipfs add -r {path}`")
    kw = {"cid_version": args.cid_version, "raw_leaves": args.raw_leaves}
    if args.only_hash:  # stores nothing, does not even create the repository
        cid = (cid_of_directory(path, include_hidden=args.hidden, **kw) if path.is_dir()
               else cid_of_file(path, **kw))
    elif path.is_dir():
        cid = _store(args).add_directory(path, pin=args.pin, include_hidden=args.hidden, **kw)
    else:
        cid = _store(args).add_file(path, pin=args.pin, **kw)
    _out(cid)
    return 0


@_reader_may_leave
def cmd_cat(args: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    for piece in _store(args, create=False).open(args.path):
        out.write(piece)
    out.flush()
    return 0


@_reader_may_leave
def cmd_ls(args: argparse.Namespace) -> int:
    for entry in _store(args, create=False).ls(args.path):
        suffix = "/" if entry.kind == "directory" else ""
        _out(f"{entry.cid} {entry.tsize} {entry.name}{suffix}")
    return 0


def cmd_pin_add(args: argparse.Namespace) -> int:
    _out(f"pinned {_store(args, create=False).pin(args.cid)} recursively")
    return 0


def cmd_pin_rm(args: argparse.Namespace) -> int:
    cid = parse_cid(args.cid).encode()
    _store(args, create=False).unpin(cid)
    _out(f"unpinned {cid}")
    return 0


@_reader_may_leave
def cmd_pin_ls(args: argparse.Namespace) -> int:
    for cid in _store(args).pins():
        _out(f"{cid} recursive")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    result = _store(args).gc()
    _out(f"removed {result.removed_blocks} blocks, freed {result.freed_bytes} bytes")
    return 0


@_reader_may_leave
def cmd_repo_verify(args: argparse.Namespace) -> int:
    """Kubo's ``ipfs repo verify``: one line per corrupt block, then a verdict; exit 4 if any was corrupt."""
    store = _store(args, create=False)
    result = store.verify(repair=args.repair)
    for bad in result.corrupt:
        _out(f"block {bad.cid} was corrupt ({bad.problem}): {bad.path}")
    if not result.corrupt:
        _out(f"verify complete, all {result.checked} blocks validated.")
        return 0
    count = f"{len(result.corrupt)} of {result.checked} blocks were corrupt"
    if result.repaired:
        raise IntegrityError(f"{count}; moved them to {store.root / 'corrupt'}: "
                             f"re-add or re-fetch the content they belong to")
    raise IntegrityError(f"{count}; re-add the files they belong to (add rewrites damaged blocks), or run "
                         f"`flare-chain ipfs repo verify --repair` to move them aside")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the repository over the Kubo RPC subset until SIGINT/SIGTERM; prints the URL first."""
    from flare_chain.ipfs.rpc_server import KuboRpcServer

    store = _store(args)
    server = KuboRpcServer(store, args.host, args.port)
    if not _is_loopback(args.host):
        log.warning("serving %s on %s, which is not loopback: anyone who can reach it can add and pin",
                    store.root, args.host)

    _out(f"RPC API server listening on {server.url} (repository {store.root})")
    serve_until_stopped(server.serve_forever, server.server_close)
    log.info("IPFS RPC server on %s stopped", server.url)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``ipfs`` command and its sub-commands; each sets ``func`` to its handler."""
    ipfs = subparsers.add_parser("ipfs", help="embedded IPFS content store (Kubo-compatible CIDs)")
    ipfs.add_argument("--repo", type=Path, default=None,
                      help="repository folder (default: $FLARE_IPFS_REPO or ~/.flare/ipfs)")
    sub = ipfs.add_subparsers(dest="ipfs_command", required=True, metavar="COMMAND")

    add = sub.add_parser("add", help="add a file (or a folder with -r) and print its CID")
    add.add_argument("path", metavar="FILE_OR_DIR", help="the file, or with -r the directory, to add")
    add.add_argument("--cid-version", type=int, choices=(0, 1), default=0,
                     help="0 (Qm..., default) or 1 (bafy..., implies raw leaves)")
    add.add_argument("--raw-leaves", action=argparse.BooleanOptionalAction, default=None,
                     help="store leaves as raw blocks (default: only with --cid-version 1)")
    add.add_argument("--only-hash", "-n", action="store_true", help="print the CID, store nothing")
    add.add_argument("--recursive", "-r", action="store_true", help="add a folder and everything in it")
    add.add_argument("--hidden", "-H", action="store_true", help="include dotfiles when adding a folder")
    add.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                     help="pin the result so gc keeps it (default: pin)")
    add.set_defaults(func=cmd_add)

    cat = sub.add_parser("cat", help="write a file's bytes to stdout (CID or CID/path)")
    cat.add_argument("path", metavar="CID[/PATH]", help="what to print: a CID, or a path under a directory CID")
    cat.set_defaults(func=cmd_cat)

    ls = sub.add_parser("ls", help="list a directory: CID, size, name")
    ls.add_argument("path", metavar="CID[/PATH]", help="the directory to list: a CID, or a path under one")
    ls.set_defaults(func=cmd_ls)

    pin = sub.add_parser("pin", help="manage recursive pins")
    pin_sub = pin.add_subparsers(dest="pin_command", required=True, metavar="COMMAND")
    pin_add = pin_sub.add_parser("add", help="pin a DAG whose blocks are all present")
    pin_add.add_argument("cid", help="the CID to pin (with everything under it)")
    pin_add.set_defaults(func=cmd_pin_add)
    pin_rm = pin_sub.add_parser("rm", help="remove a pin (blocks go at the next gc)")
    pin_rm.add_argument("cid", help="the CID to unpin (gc may then remove its blocks)")
    pin_rm.set_defaults(func=cmd_pin_rm)
    pin_ls = pin_sub.add_parser("ls", help="list pinned CIDs")
    pin_ls.set_defaults(func=cmd_pin_ls)

    gc = sub.add_parser("gc", help="delete blocks no pin reaches")
    gc.set_defaults(func=cmd_gc)

    repo = sub.add_parser("repo", help="check the repository")
    repo_sub = repo.add_subparsers(dest="repo_command", required=True, metavar="COMMAND")
    verify = repo_sub.add_parser("verify", help="re-hash every stored block and report the corrupt ones")
    verify.add_argument("--repair", action="store_true",
                        help="move corrupt blocks to REPO/corrupt/ so a re-add or fetch stores good copies")
    verify.set_defaults(func=cmd_repo_verify)

    serve = sub.add_parser("serve", help="serve the repository over the Kubo RPC API subset (add, cat, "
                                         "block/get|put, pin/add|rm|ls, id, version)")
    serve.add_argument("--repo", type=Path, default=argparse.SUPPRESS,
                       help="repository folder (same as `ipfs --repo`)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default: 127.0.0.1; anything else exposes add and pin)")
    serve.add_argument("--port", type=int, default=5001, help="TCP port (default: 5001, Kubo's; 0: any free port)")
    serve.set_defaults(func=cmd_serve)
