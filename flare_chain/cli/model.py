"""``flare-chain model add|fetch``: publish a base model folder by CID, and bring one back.

Argparse glue over :mod:`flare_chain.basemodel`. ``add`` prints only the CID
(so a script can capture it for ``flare-chain deploy --base-model-cid``);
``fetch`` prints only the folder it verified and cached.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from flare_chain.cli.ipfs import default_repo

__all__ = ["register"]


def _target(args: argparse.Namespace) -> Any:  # -> ContentStore | KuboClient
    from flare_chain.ipfs import ContentStore, KuboClient

    if args.api:
        return KuboClient(args.api, timeout_s=args.timeout)
    return ContentStore(args.repo or default_repo())


def cmd_add(args: argparse.Namespace) -> int:
    from flare_chain.basemodel import check_model_folder, publish_model

    check_model_folder(args.folder)  # a refused folder touches no repository, not even to create it
    target = _target(args)
    try:
        cid = publish_model(args.folder, target, cid_version=args.cid_version, show_progress=not args.quiet)
    finally:
        if hasattr(target, "close"):
            target.close()
    sys.stdout.write(cid + "\n")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from flare_chain.basemodel import fetch_model
    from flare_chain.lora.reference import default_cache_dir

    target = _target(args)
    try:
        if args.api:
            fetch, source = target.block_get, target.base_url
        else:
            fetch, source = target.get_block, f"the IPFS repository {target.root}"
        dest = args.cache_dir or default_cache_dir() / "base-models"
        path = fetch_model(args.cid, fetch, dest, source=source, show_progress=not args.quiet)
    finally:
        if hasattr(target, "close"):
            target.close()
    sys.stdout.write(f"{path}\n")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``model add`` and ``model fetch``."""
    model = subparsers.add_parser("model", help="publish a base model folder by CID, or fetch one")
    sources = argparse.ArgumentParser(add_help=False)
    where = sources.add_mutually_exclusive_group()
    where.add_argument("--repo", type=Path, default=None,
                       help="embedded IPFS repository (default: $FLARE_IPFS_REPO or ~/.flare/ipfs)")
    where.add_argument("--api", metavar="URL", default=None,
                       help="a Kubo RPC endpoint instead, e.g. http://127.0.0.1:5001")
    sources.add_argument("--timeout", type=float, default=600.0, metavar="S",
                         help="per-request timeout against --api, in seconds (default 600: large uploads)")
    sources.add_argument("--quiet", action="store_true", help="no progress output")
    sub = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")

    add = sub.add_parser("add", parents=[sources],
                         help="check a model folder (config, *.safetensors, tokenizer; pickle refused), pin it, "
                              "print its CID")
    add.add_argument("folder", type=Path, metavar="DIR", help="the model folder: config, safetensors weights, tokenizer")
    add.add_argument("--cid-version", type=int, choices=(0, 1), default=0,
                     help="0 (Qm..., default, as `ipfs add -r`) or 1 (bafy..., raw leaves)")
    add.set_defaults(func=cmd_add)

    fetch = sub.add_parser("fetch", parents=[sources],
                           help="fetch a model by CID, verify every block and the folder, cache it; print its path")
    fetch.add_argument("cid", metavar="CID", help="the model folder's CID, as `flare-chain model add` printed it")
    fetch.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                       help="model cache; the model lands in DIR/<CID> (default: $FLARE_CACHE_DIR/base-models "
                            "or ~/.cache/flare-chain/base-models)")
    fetch.set_defaults(func=cmd_fetch)
