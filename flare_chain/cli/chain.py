"""``flare-chain chain serve``: the in-process eth-tester chain over HTTP JSON-RPC, for devnets without anvil."""

from __future__ import annotations

import argparse
import logging
import sys

from flare_chain.cli.serving import serve_until_stopped

__all__ = ["register"]

log = logging.getLogger("flare_chain.cli.chain")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    chain = subparsers.add_parser("chain", help="local development chains")
    sub = chain.add_subparsers(dest="chain_command", required=True, metavar="ACTION")
    serve = sub.add_parser("serve", help="serve an eth-tester (py-evm) chain over JSON-RPC with funded dev accounts")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8545, help="TCP port (default 8545; 0: any free port)")
    serve.add_argument("--accounts", type=int, default=10, help="pre-funded dev accounts (default 10)")
    serve.add_argument("--block-time", type=float, default=0.0, metavar="S",
                       help="also mine an empty block every S seconds (default 0: only per transaction "
                            "and on evm_mine/anvil_mine)")
    serve.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from flare_chain.chain.devrpc import DevChainServer

    server = DevChainServer(args.host, args.port, accounts=args.accounts, block_time_s=args.block_time)
    print(f"dev chain {server.chain_id} listening on {server.url}")
    print("funded dev accounts (public development mnemonic; never hold real funds):")
    for i, account in enumerate(server.accounts):
        print(f"  ({i}) {account.address}")
    sys.stdout.flush()

    serve_until_stopped(server.serve_forever, server.stop)
    log.info("dev chain on %s stopped", server.url)
    return 0
