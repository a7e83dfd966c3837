"""``flare-chain chain``: serve the eth-tester chain over JSON-RPC, and fund addresses on local dev chains."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

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
    anvil = sub.add_parser("anvil", help="run anvil, the devnet's chain, from the npm package `make setup` installs",
                           description="Replaces this process with anvil (from node_modules/"
                                       "@foundry-rs/anvil-linux-amd64, or $FLARE_ANVIL) on a fixed block time, so "
                                       "round deadlines pass whether or not anyone sends a transaction. Its dev "
                                       "accounts hold public test ether: `chain fund` pays from them.")
    anvil.add_argument("--host", default="127.0.0.1", help="address to bind")
    anvil.add_argument("--port", type=int, default=8545, help="TCP port")
    anvil.add_argument("--block-time", type=float, default=1.0, metavar="S",
                       help="seconds between blocks (0: a block per transaction only, which stalls rounds)")
    anvil.add_argument("--state", type=Path, default=None, metavar="FILE",
                       help="load the chain from this file if it exists and save it there on exit, so a "
                            "restart keeps its history")
    anvil.set_defaults(func=_anvil)
    fund = sub.add_parser("fund", help="give addresses test ether on a local dev chain (anvil, `chain serve`); "
                                       "refuses any other chain",
                          description="Pays each address (or the address a keystore file declares) from the dev "
                                      "chain's first prefunded account. Dev chains only: on a real network send "
                                      "ether from a wallet.")
    fund.add_argument("targets", nargs="+", metavar="ADDRESS_OR_KEYSTORE",
                      help="0x-addresses, or keystore files whose address to fund")
    fund.add_argument("--rpc", default="http://127.0.0.1:8545", metavar="URL", help="the dev chain's JSON-RPC endpoint")
    fund.add_argument("--amount", default="10", metavar="ETH", help="ether to send to each address (decimal)")
    fund.add_argument("--wait", type=float, default=30.0, metavar="S",
                      help="how long to wait for the chain to answer (it may still be starting)")
    fund.set_defaults(func=_fund)


def _fund(args: argparse.Namespace) -> int:
    from decimal import Decimal, InvalidOperation

    from eth_utils import is_address, to_checksum_address

    from flare_chain.chain.deployment import connect_rpc
    from flare_chain.chain.devchain import fund_on_dev_chain
    from flare_chain.chain.transactions import format_wei
    from flare_chain.errors import ChainError, ConfigError
    from flare_chain.node.keys import keystore_address

    try:
        amount_wei = int(Decimal(args.amount) * 10**18)
    except InvalidOperation:
        raise ConfigError(f"--amount {args.amount!r} is not a number of ether (e.g. --amount 10 or 0.5)") from None
    if amount_wei <= 0:
        raise ConfigError(f"--amount must be more than 0 ether, got {args.amount}")
    addresses: list[str] = []
    for target in args.targets:
        if is_address(target):
            addresses.append(to_checksum_address(target))
        elif target.startswith("0x"):
            raise ConfigError(f"{target} is not a valid address (40 hex digits after 0x, checksum if mixed case)")
        else:
            addresses.append(keystore_address(Path(target)))
    deadline = time.monotonic() + args.wait
    while True:
        try:
            w3 = connect_rpc(args.rpc, timeout_s=10.0)
            break
        except ChainError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)
    funder = fund_on_dev_chain(w3, addresses, amount_wei, where=f"the chain at {args.rpc}")
    for address in addresses:
        print(f"{address} funded with {format_wei(amount_wei)} from dev account {funder}; balance now "
              f"{format_wei(int(w3.eth.get_balance(to_checksum_address(address))))}")
    return 0


def _anvil(args: argparse.Namespace) -> int:
    import os

    from flare_chain.chain.anvil import find_anvil
    from flare_chain.errors import ConfigError

    if args.block_time < 0:
        raise ConfigError(f"--block-time must be 0 or more seconds, got {args.block_time}")
    binary = find_anvil()
    argv = [str(binary), "--host", args.host, "--port", str(args.port)]
    if args.block_time > 0:
        argv += ["--block-time", f"{args.block_time:g}"]
    else:
        log.warning("anvil without a block time mines only on transactions: pass `rounds drive --mine`, or rounds "
                    "stall once the nodes have sent what they can")
    if args.state is not None:
        argv += ["--state", str(args.state)]
    sys.stdout.flush()
    os.execv(binary, argv)  # anvil takes over this pid: signals and exit status are its own
    return 0  # pragma: no cover - execv does not return


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
