"""Deployment files: where the coordinator lives, written once by the deployer, read by everyone else.

``flare-chain deploy`` (and ``scripts/deploy.py``) writes one JSON file naming
the chain id, the coordinator's address and deployment block, who deployed it
with which constructor parameters, and the sha256 of the artifact it was built
from. Node daemons, the round driver and auditors read it instead of a bare
address, and ``open_deployment`` checks it against the RPC endpoint before
anything is sent: the chain id must match, and the code at the address must be
the artifact's runtime code (immutables aside) with the recorded parameters.
So a node pointed at the wrong chain, a stale file or a recompiled contract
stops with an error saying which, instead of sending transactions into the void.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from web3 import Web3

from flare_chain.chain.artifacts import ContractArtifact, load_artifact
from flare_chain.chain.coordinator import (
    CONTRACT_NAME,
    DEFAULT_LEADER_BLOCKS,
    DEFAULT_MAX_SAMPLE_COUNT,
    DEFAULT_MIN_STAKE_WEI,
    CoordinatorClient,
    deploy_coordinator,
)
from flare_chain.errors import ChainError, ConfigError, IntegrityError

__all__ = [
    "DEPLOYMENT_FORMAT",
    "ConstructorParams",
    "Deployment",
    "artifact_hashes",
    "connect_rpc",
    "deploy",
    "load_deployment",
    "open_deployment",
    "verify_deployment",
    "write_deployment",
]

DEPLOYMENT_FORMAT = "flare-chain/deployment@1"
_MAX_IMMUTABLE_BYTES = 32 * 16  # immutables are 32-byte words zero-filled in the artifact


class ConstructorParams(BaseModel):
    """FlareCoordinator's constructor arguments, in its units."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    approval_threshold_bps: int = Field(6666, gt=0, le=10_000)
    min_committee_size: int = Field(2, ge=1, le=0xFFFF)
    leader_blocks: int = Field(DEFAULT_LEADER_BLOCKS, ge=1, lt=2**64)
    min_stake_wei: int = Field(DEFAULT_MIN_STAKE_WEI, ge=1, lt=2**96)
    max_sample_count: int = Field(DEFAULT_MAX_SAMPLE_COUNT, ge=1, lt=2**64)


class ArtifactHashes(BaseModel):
    """sha256 (hex) of the artifact parts a deployment depends on, to detect a recompiled contract."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    compiler_version: str
    abi_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytecode_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    deployed_bytecode_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Deployment(BaseModel):
    """One deployed coordinator, as a JSON file nodes and auditors read."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: str = DEPLOYMENT_FORMAT
    chain_id: int = Field(ge=1)
    coordinator: str = Field(pattern=r"^0x[0-9a-fA-F]{40}$")
    deployment_block: int = Field(ge=0)
    deployment_tx: str = Field(pattern=r"^0x[0-9a-fA-F]{64}$")
    deployer: str = Field(pattern=r"^0x[0-9a-fA-F]{40}$")
    constructor: ConstructorParams
    artifact: ArtifactHashes
    rpc_url: str | None = Field(None, description="where it was deployed from (informative only)")
    created_at: datetime

    def client(self, w3: Web3, **kwargs: Any) -> CoordinatorClient:
        """A ``CoordinatorClient`` for this deployment (no checks; see ``open_deployment``)."""
        return CoordinatorClient(w3, self.coordinator, deployment_block=self.deployment_block, **kwargs)


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _code_bytes(hex_code: str) -> bytes:
    return bytes.fromhex(hex_code[2:] if hex_code.startswith("0x") else hex_code)


def artifact_hashes(artifact: ContractArtifact) -> ArtifactHashes:
    """The hashes a deployment file records for ``artifact`` (ABI as canonical JSON, code as bytes)."""
    abi_json = json.dumps(artifact.abi, sort_keys=True, separators=(",", ":")).encode()
    return ArtifactHashes(
        name=artifact.name,
        compiler_version=artifact.compiler_version,
        abi_sha256=_sha256_hex(abi_json),
        bytecode_sha256=_sha256_hex(_code_bytes(artifact.bytecode)),
        deployed_bytecode_sha256=_sha256_hex(_code_bytes(artifact.deployed_bytecode)),
    )


def deploy(
    w3: Web3,
    deployer: LocalAccount,
    params: ConstructorParams | None = None,
    *,
    rpc_url: str | None = None,
) -> tuple[Deployment, CoordinatorClient]:
    """Deploy FlareCoordinator with ``params`` signed by ``deployer``; return its record and a client.

    ``deployer`` becomes the contract's owner (it opens rounds). Raises
    ChainError naming the cause when the deployment is refused or reverts,
    and when the deployer cannot pay for it.
    """
    params = params or ConstructorParams()
    balance = int(w3.eth.get_balance(deployer.address))
    if balance == 0:
        raise ChainError(f"deployer {deployer.address} has no ether on chain {w3.eth.chain_id}; fund it first "
                         "(on a devnet: `flare-chain chain serve` prints funded dev accounts)")
    client = deploy_coordinator(
        w3,
        deployer,
        approval_threshold_bps=params.approval_threshold_bps,
        min_committee_size=params.min_committee_size,
        leader_blocks=params.leader_blocks,
        min_stake_wei=params.min_stake_wei,
        max_sample_count=params.max_sample_count,
    )
    tx_hash = _deployment_tx(w3, client)
    record = Deployment(
        chain_id=int(w3.eth.chain_id),
        coordinator=client.address,
        deployment_block=client.deployment_block,
        deployment_tx=tx_hash,
        deployer=deployer.address,
        constructor=params,
        artifact=artifact_hashes(load_artifact(CONTRACT_NAME)),
        rpc_url=rpc_url,
        created_at=datetime.now(UTC).replace(microsecond=0),
    )
    return record, client


def _deployment_tx(w3: Web3, client: CoordinatorClient) -> str:
    """The hash of the transaction that created ``client``'s contract, found in its deployment block."""
    block = w3.eth.get_block(client.deployment_block, full_transactions=True)
    for tx in block["transactions"]:
        if tx.get("to") is None:  # type: ignore[union-attr]
            receipt = w3.eth.get_transaction_receipt(tx["hash"])  # type: ignore[index,call-overload]
            if receipt["contractAddress"] == client.address:
                return receipt["transactionHash"].to_0x_hex()
    raise ChainError(f"cannot find the transaction that created {client.address} in block {client.deployment_block}")


def write_deployment(deployment: Deployment, path: Path, *, overwrite: bool = False) -> Path:
    """Write ``deployment`` as JSON to ``path`` atomically; refuses to replace a file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ConfigError(f"deployment file {path} already exists; choose another --out or remove it first")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(deployment.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".deployment-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return path


def load_deployment(path: Path) -> Deployment:
    """Read and validate a deployment file; ConfigError naming the file and each bad key."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"deployment file {path} does not exist; deploy with `flare-chain deploy --out {path}` "
                          "or point the config at the file the deployer published") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"deployment file {path} cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"deployment file {path} is not valid JSON: {exc}") from None
    if isinstance(raw, dict) and raw.get("format", DEPLOYMENT_FORMAT) != DEPLOYMENT_FORMAT:
        raise ConfigError(f"deployment file {path} has format {raw.get('format')!r}; this version reads "
                          f"{DEPLOYMENT_FORMAT!r}")
    try:
        return Deployment.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: "
            f"{'missing' if e['type'] == 'missing' else e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"deployment file {path}: {problems}") from None


def _matches_with_immutables(onchain: bytes, expected: bytes) -> bool:
    """Whether runtime code equals the artifact's except in zero-filled immutable slots."""
    if len(onchain) != len(expected):
        return False
    differing = [i for i, (a, b) in enumerate(zip(onchain, expected, strict=True)) if a != b]
    return len(differing) <= _MAX_IMMUTABLE_BYTES and all(expected[i] == 0 for i in differing)


def verify_deployment(
    w3: Web3, deployment: Deployment, *, artifact: ContractArtifact | None = None, source: str = "the deployment"
) -> None:
    """Check ``deployment`` against the endpoint behind ``w3`` and the local artifact.

    Raises ConfigError when the endpoint's chain id differs or the local
    artifact is not the one deployed (ABI or code hashes), and IntegrityError
    when the address holds no code, other code, or a contract built with other
    constructor parameters. ``source`` names the file in messages.
    """
    artifact = artifact or load_artifact(deployment.artifact.name)
    rpc_chain = int(w3.eth.chain_id)
    if rpc_chain != deployment.chain_id:
        raise ConfigError(f"{source} is for chain id {deployment.chain_id}, but the RPC endpoint serves chain "
                          f"{rpc_chain}; point rpc_url at the chain the contract was deployed on, or redeploy")
    local = artifact_hashes(artifact)
    if local.abi_sha256 != deployment.artifact.abi_sha256 or (
        local.deployed_bytecode_sha256 != deployment.artifact.deployed_bytecode_sha256
    ):
        raise ConfigError(f"{source} was deployed from a {deployment.artifact.name} artifact with ABI sha256 "
                          f"{deployment.artifact.abi_sha256[:12]}… / code sha256 "
                          f"{deployment.artifact.deployed_bytecode_sha256[:12]}…, but the local artifact has "
                          f"{local.abi_sha256[:12]}… / {local.deployed_bytecode_sha256[:12]}…; "
                          "use the matching flare-chain version or redeploy")
    code = bytes(w3.eth.get_code(Web3.to_checksum_address(deployment.coordinator)))
    if not code:
        raise IntegrityError(f"{source} names {deployment.coordinator} on chain {rpc_chain}, but there is no "
                             "contract there (a restarted dev chain forgets it); redeploy and publish the new file")
    if not _matches_with_immutables(code, _code_bytes(artifact.deployed_bytecode)):
        raise IntegrityError(f"the code at {deployment.coordinator} (sha256 {_sha256_hex(code)[:12]}…) is not "
                             f"{artifact.name}'s deployed bytecode (sha256 {local.deployed_bytecode_sha256[:12]}…); "
                             f"{source} names the wrong address or another contract")
    client = deployment.client(w3, artifact=artifact)
    onchain = ConstructorParams(
        approval_threshold_bps=client.approval_threshold_bps(),
        min_committee_size=client.min_committee_size(),
        leader_blocks=client.leader_blocks(),
        min_stake_wei=client.min_stake(),
        max_sample_count=client.max_sample_count(),
    )
    if onchain != deployment.constructor:
        raise IntegrityError(f"the contract at {deployment.coordinator} was built with {onchain.model_dump()}, "
                             f"but {source} records {deployment.constructor.model_dump()}")


def connect_rpc(rpc_url: str, *, timeout_s: float = 30.0) -> Web3:
    """A ``Web3`` on the HTTP JSON-RPC endpoint ``rpc_url``; ChainError naming it when it does not answer."""
    from web3 import HTTPProvider

    if not rpc_url.startswith(("http://", "https://")):
        raise ConfigError(f"RPC URL {rpc_url!r} is not an http(s) URL; expected e.g. http://127.0.0.1:8545")
    w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": timeout_s}))
    try:
        w3.eth.chain_id  # noqa: B018 - the cheapest call that proves a chain answers
    except Exception as exc:
        raise ChainError(f"the RPC endpoint {rpc_url} does not answer ({type(exc).__name__}); check that the "
                         "node runs (on a devnet: hardhat-free-devnet/start) and the URL") from None
    return w3


def open_deployment(w3: Web3, path: Path, **client_kwargs: Any) -> tuple[Deployment, CoordinatorClient]:
    """Load the deployment file at ``path``, verify it against ``w3``, return it with a ready client."""
    deployment = load_deployment(path)
    verify_deployment(w3, deployment, source=f"deployment file {path}")
    return deployment, deployment.client(w3, **client_kwargs)
