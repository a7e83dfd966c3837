"""Where the audited contract lives: chain id, address, deployment block, and what binds it to one chain.

The auditor starts from a deployment file: the record ``flare-chain deploy``
writes (``flare_chain.chain.deployment``, recognised by its ``format`` key and
validated as such), or a minimal JSON object
``{"chain_id": 31337, "address": "0x…", "block": 12}`` for deployments made
by other means (``coordinator`` / ``deployment_block`` are accepted as names).
A minimal file may add ``deployment_tx``, ``block_hash`` (or
``deployment_block_hash``) and ``code_hash``; without the first two the audit
cannot tell the chain from a twin with the same id and address, and says so
(an unverifiable finding, never a pass).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from eth_utils import is_address, to_checksum_address

from flare_chain.errors import ConfigError

__all__ = ["AuditTarget", "load_target"]


@dataclass(frozen=True)
class AuditTarget:
    """The contract to audit: on which chain, at which address, scanned from which block."""

    chain_id: int
    address: str
    block: int
    deployment_tx: str | None = None
    block_hash: str | None = None
    code_hash: str | None = None
    rpc_url: str | None = None
    """Where the deployment file says the contract was deployed from: the audit's RPC unless ``--rpc`` is given."""


def _int(doc: dict[str, object], key: str, path: Path) -> int:
    value = doc.get(key)
    if isinstance(value, str) and value.startswith("0x"):
        value = int(value, 16)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"deployment file {path}: '{key}' must be a non-negative integer, got {value!r}")
    return value


def _hash(doc: dict[str, object], key: str, path: Path) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"0x[0-9a-fA-F]{64}", value):
        raise ConfigError(f"deployment file {path}: '{key}' must be a 0x-prefixed 32-byte hex hash, got {value!r}")
    return value.lower()


def load_target(path: str | Path) -> AuditTarget:
    """Read a deployment file; ConfigError naming the file and the bad key."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"deployment file {path} does not exist; pass the JSON the deploy step wrote") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"deployment file {path} is not readable JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"deployment file {path} must hold a JSON object with chain_id, address and block")
    if "format" in doc:  # the deploy step's full record: validate it as such
        from flare_chain.chain.deployment import load_deployment

        record = load_deployment(path)
        return AuditTarget(chain_id=record.chain_id, address=to_checksum_address(record.coordinator),
                           block=record.deployment_block, deployment_tx=record.deployment_tx,
                           block_hash=record.deployment_block_hash, code_hash=record.code_hash,
                           rpc_url=record.rpc_url)
    # Accept the names a deploy script is likely to use as well as the short ones.
    aliases = (("coordinator", "address"), ("contract_address", "address"), ("deployment_block", "block"),
               ("chainId", "chain_id"), ("deployment_block_hash", "block_hash"))
    for long, short in aliases:
        if short not in doc and long in doc:
            doc[short] = doc[long]
    address = doc.get("address")
    if not isinstance(address, str) or not is_address(address):
        raise ConfigError(f"deployment file {path}: 'address' must be the contract's 0x address, got {address!r}")
    return AuditTarget(chain_id=_int(doc, "chain_id", path), address=to_checksum_address(address),
                       block=_int(doc, "block", path), deployment_tx=_hash(doc, "deployment_tx", path),
                       block_hash=_hash(doc, "block_hash", path), code_hash=_hash(doc, "code_hash", path),
                       rpc_url=_url(doc, "rpc_url", path))


def _url(doc: dict[str, object], key: str, path: Path) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not re.match(r"^(https?|wss?)://", value):
        raise ConfigError(f"deployment file {path}: '{key}' must be an http(s):// or ws(s):// URL, got {value!r}")
    return value
