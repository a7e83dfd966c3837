"""``flare-chain spec``: write, pin and show a federation spec (see :mod:`flare_chain.protocol.spec`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from flare_chain.errors import ConfigError

if TYPE_CHECKING:
    from flare_chain.protocol.spec import SpecStore

__all__ = ["add_spec_store_arguments", "open_spec_store", "register"]


def add_spec_store_arguments(p: argparse.ArgumentParser) -> None:
    """Where a spec is pinned or read: an embedded store folder or a Kubo RPC endpoint."""
    where = p.add_mutually_exclusive_group()
    where.add_argument("--spec-repo", type=Path, default=None, metavar="DIR",
                       help="embedded IPFS store to pin/read the spec in (default: none)")
    where.add_argument("--spec-ipfs", default=None, metavar="URL",
                       help="Kubo RPC endpoint to pin/read the spec at, e.g. http://127.0.0.1:5001 (default: none)")


def open_spec_store(args: argparse.Namespace) -> SpecStore:
    """The store named by ``--spec-repo`` / ``--spec-ipfs``; ConfigError when neither is given."""
    from flare_chain.ipfs import ContentStore, KuboClient
    from flare_chain.node.endpoint import EndpointStore

    if args.spec_repo is not None:
        return ContentStore(args.spec_repo)
    if args.spec_ipfs is not None:
        return EndpointStore(KuboClient(args.spec_ipfs))
    raise ConfigError("say where the federation spec is pinned: --spec-repo DIR (embedded store) or "
                      "--spec-ipfs URL (Kubo RPC endpoint)")


def _init(args: argparse.Namespace) -> int:
    from flare_chain.protocol.spec import FederationSpec

    if args.out.exists() and not args.overwrite:
        raise ConfigError(f"{args.out} already exists; pass --overwrite or choose another --out")
    args.out.write_text(FederationSpec().to_toml(), encoding="utf-8")
    print(f"wrote {args.out}: every protocol parameter at its default; edit it, then "
          "`flare-chain deploy --spec` pins it and fixes its CID on-chain")
    return 0


def _pin(args: argparse.Namespace) -> int:
    from flare_chain.protocol.spec import FederationSpec, pin_spec

    spec = FederationSpec.from_toml(args.file)
    print(pin_spec(open_spec_store(args), spec))
    return 0


def _show(args: argparse.Namespace) -> int:
    from flare_chain.protocol.spec import FederationSpec, fetch_spec, spec_cid

    source = Path(args.spec)
    if source.suffix == ".toml" or source.exists():
        spec = FederationSpec.from_toml(source)
    else:
        spec = fetch_spec(open_spec_store(args), args.spec)
    if args.json:
        json.dump({"cid": spec_cid(spec), "spec": spec.document()}, sys.stdout, indent=2, sort_keys=True)
        print()
    else:
        print(f"# federation spec {spec_cid(spec)}")
        print(spec.to_toml(), end="")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``spec init``, ``spec pin`` and ``spec show``."""
    spec = subparsers.add_parser("spec", help="the federation spec: every parameter members must agree on")
    sub = spec.add_subparsers(dest="spec_command", required=True, metavar="COMMAND")

    init = sub.add_parser("init", help="write a complete spec TOML with every parameter at its default")
    init.add_argument("--out", type=Path, default=Path("spec.toml"), help="file to write (default: spec.toml)")
    init.add_argument("--overwrite", action="store_true", help="replace an existing file")
    init.set_defaults(func=_init)

    pin = sub.add_parser("pin", help="validate a spec TOML, pin its canonical form and print its CID")
    pin.add_argument("file", type=Path, metavar="SPEC.toml", help="the spec to validate and pin")
    add_spec_store_arguments(pin)
    pin.set_defaults(func=_pin)

    show = sub.add_parser("show", help="print a spec (by CID from the store, or a TOML file) and its CID")
    show.add_argument("spec", metavar="CID_OR_FILE", help="a pinned spec's CID, or a spec TOML file")
    show.add_argument("--json", action="store_true", help="print JSON ({cid, spec}) instead of TOML")
    add_spec_store_arguments(show)
    show.set_defaults(func=_show)
