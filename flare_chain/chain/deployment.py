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

A chain id and an address do not name one chain: two dev chains started with
the same id, on which the same keystore deployed at the same nonce, hold a
contract at the same address with the same code and parameters. What tells
them apart is their history, so the file also records the deployment
transaction's block hash and the runtime code hash, and ``verify_binding``
(the one implementation of that rule, used by nodes and the auditor) checks
that the transaction is on the chain, created this address in that block, and
that the block hash and code hash are the recorded ones. Files written before
these two fields existed still load; they are then checked by transaction only.
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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
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
from flare_chain.ipfs.multiformats import canonical_cid_field, cid_to_bytes

__all__ = [
    "DEPLOYMENT_FORMAT",
    "ConstructorParams",
    "Deployment",
    "DeploymentBinding",
    "artifact_hashes",
    "chain_history",
    "code_hash",
    "connect_rpc",
    "deploy",
    "find_deployment_tx",
    "genesis_hash",
    "load_deployment",
    "open_address",
    "open_deployment",
    "read_binding",
    "verify_binding",
    "verify_deployment",
    "write_deployment",
]

DEPLOYMENT_FORMAT = "flare-chain/deployment@1"
_MAX_IMMUTABLE_BYTES = 32 * 16  # immutables are 32-byte words zero-filled in the artifact
_HASH32 = r"^0x[0-9a-fA-F]{64}$"


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
    deployment_block_hash: str | None = Field(
        None, pattern=_HASH32, description="hash of deployment_block; None in files written before it was recorded")
    code_hash: str | None = Field(
        None, pattern=_HASH32, description="keccak256 of the runtime code at the address (EXTCODEHASH)")
    rpc_url: str | None = Field(None, description="where it was deployed from (informative only)")
    federation_spec_cid: str | None = Field(
        None, description="CID of the federation spec fixed on the coordinator (setFederationSpec); None: none set")
    base_model_cid: str | None = Field(
        None, description="CID of the federation's base model folder (`flare-chain model add`); nodes load it by "
        "this CID, fetching it when their own folder differs. None: each node uses its configured folder")
    created_at: datetime

    @field_validator("base_model_cid")
    @classmethod
    def _base_model_cid_parses(cls, value: str | None) -> str | None:
        return canonical_cid_field(value)

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
    federation_spec_cid: str | None = None,
    base_model_cid: str | None = None,
) -> tuple[Deployment, CoordinatorClient]:
    """Deploy FlareCoordinator with ``params`` signed by ``deployer``; return its record and a client.

    ``deployer`` becomes the contract's owner (it opens rounds). With
    ``federation_spec_cid`` (the spec already pinned) the owner fixes it on
    the coordinator in the next transaction, before any round can open.
    ``base_model_cid`` (the published base model, ``flare-chain model add``)
    goes into the record for the nodes to load. Raises
    ChainError naming the cause when the deployment is refused or reverts,
    and when the deployer cannot pay for it.
    """
    params = params or ConstructorParams()  # an unfunded deployer: send_transaction names it and the amount
    client = deploy_coordinator(
        w3,
        deployer,
        approval_threshold_bps=params.approval_threshold_bps,
        min_committee_size=params.min_committee_size,
        leader_blocks=params.leader_blocks,
        min_stake_wei=params.min_stake_wei,
        max_sample_count=params.max_sample_count,
    )
    binding = read_binding(w3, client.address, find_deployment_tx(w3, client.address, client.deployment_block))
    if federation_spec_cid is not None:
        client.set_federation_spec(deployer, cid_to_bytes(federation_spec_cid))
    record = Deployment(
        chain_id=int(w3.eth.chain_id),
        coordinator=client.address,
        deployment_block=client.deployment_block,
        deployment_tx=binding.deployment_tx,
        deployment_block_hash=binding.deployment_block_hash,
        code_hash=binding.code_hash,
        deployer=deployer.address,
        constructor=params,
        artifact=artifact_hashes(load_artifact(CONTRACT_NAME)),
        rpc_url=rpc_url,
        federation_spec_cid=federation_spec_cid,
        base_model_cid=base_model_cid,
        created_at=datetime.now(UTC).replace(microsecond=0),
    )
    return record, client


def find_deployment_tx(w3: Web3, address: str, block: int) -> str:
    """The hash of the transaction that created the contract at ``address``, found in block ``block``."""
    found = w3.eth.get_block(block, full_transactions=True)
    for tx in found["transactions"]:
        if not tx.get("to"):  # type: ignore[union-attr]  # None over JSON-RPC, "" in eth-tester
            receipt = w3.eth.get_transaction_receipt(tx["hash"])  # type: ignore[index,call-overload]
            if receipt["contractAddress"] == Web3.to_checksum_address(address):
                return receipt["transactionHash"].to_0x_hex()
    raise ChainError(f"cannot find the transaction that created {address} in block {block}")


class DeploymentBinding(BaseModel):
    """Where a contract sits in one chain's history: what tells twin chains (same id, same address) apart."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deployment_tx: str = Field(pattern=_HASH32)
    deployment_block: int = Field(ge=0)
    deployment_block_hash: str = Field(pattern=_HASH32)
    code_hash: str = Field(pattern=_HASH32)


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex()


def code_hash(code: bytes) -> str:
    """keccak256 of runtime code as 0x-hex, what the EVM's EXTCODEHASH returns for a contract."""
    return _hex(Web3.keccak(bytes(code)))


def genesis_hash(w3: Web3) -> str:
    """The hash of block 0: differs between two chains started apart, even with the same chain id."""
    return _hex(w3.eth.get_block(0)["hash"])


def _receipt(w3: Web3, tx_hash: str) -> Any:
    try:
        return w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    except Exception as exc:  # web3's TransactionNotFound, or eth-tester's own "unknown transaction"
        if type(exc).__name__ in ("TransactionNotFound", "TransactionNotFoundError") or any(
                word in str(exc).lower() for word in ("not found", "unknown")):
            return None
        raise


def read_binding(w3: Web3, address: str, deployment_tx: str, *, source: str = "the deployment") -> DeploymentBinding:
    """Read from the chain where ``deployment_tx`` put the contract at ``address``.

    Raises IntegrityError when the transaction is not on this chain, failed,
    or created another address (the RPC serves a chain with another history).
    """
    chain = int(w3.eth.chain_id)
    receipt = _receipt(w3, deployment_tx)
    if receipt is None:
        raise IntegrityError(f"{source}: deployment transaction {deployment_tx} is not on the chain behind this RPC "
                             f"endpoint (chain id {chain}): it is another chain with the same id, e.g. a restarted "
                             "or twin dev chain; point the RPC at the chain the contract was deployed on, or redeploy")
    created = receipt.get("contractAddress")
    if receipt.get("status") != 1 or created is None or created.lower() != address.lower():
        raise IntegrityError(f"{source}: transaction {deployment_tx} on chain {chain} created "
                             f"{created or 'no contract'}, not {address}; the file mixes two deployments")
    code = bytes(w3.eth.get_code(Web3.to_checksum_address(address)))
    return DeploymentBinding(deployment_tx=_hex(receipt["transactionHash"]),
                             deployment_block=int(receipt["blockNumber"]),
                             deployment_block_hash=_hex(receipt["blockHash"]), code_hash=code_hash(code))


def verify_binding(
    w3: Web3,
    address: str,
    deployment_tx: str,
    deployment_block: int,
    *,
    deployment_block_hash: str | None = None,
    code_hash: str | None = None,
    source: str = "the deployment",
) -> DeploymentBinding:
    """Check that the chain behind ``w3`` is the one the contract at ``address`` was deployed on.

    The deployment transaction must be on it, have created ``address`` in
    ``deployment_block``, and (where recorded) that block's hash and the
    runtime code hash must be the given ones. Raises IntegrityError naming the
    first mismatch; returns what the chain says.
    """
    found = read_binding(w3, address, deployment_tx, source=source)
    twin = ("same chain id and address, another history (a restarted or twin chain); point the RPC at the chain "
            "the contract was deployed on, or redeploy and use the new deployment file")
    if found.deployment_block != deployment_block:
        raise IntegrityError(f"{source}: deployment transaction {deployment_tx} is in block "
                             f"{found.deployment_block} on this chain, the file says block {deployment_block}: {twin}")
    if deployment_block_hash is not None and found.deployment_block_hash != deployment_block_hash.lower():
        raise IntegrityError(f"{source}: deployment block {deployment_block} has hash {found.deployment_block_hash} "
                             f"on this chain, the file records {deployment_block_hash}: {twin}")
    if code_hash is not None and found.code_hash != code_hash.lower():
        raise IntegrityError(f"{source}: the code at {address} hashes to {found.code_hash}, the file records "
                             f"{code_hash}: the contract there is not the one deployed")
    return found


def chain_history(w3: Web3, address: str, deployment_block: int) -> dict[str, str]:
    """What a node's data folder is bound to: the genesis hash and, when the deployment block is known,
    the deployment transaction and its block hash (a redeployed chain differs in these, not in id or address)."""
    out = {"genesis_hash": genesis_hash(w3)}
    if deployment_block > 0:
        binding = read_binding(w3, address, find_deployment_tx(w3, address, deployment_block))
        out.update(deployment_tx=binding.deployment_tx, deployment_block_hash=binding.deployment_block_hash)
    return out


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
    _check_code(w3, deployment.coordinator, artifact, source=source,
                fix="redeploy and publish the new file")
    verify_binding(w3, deployment.coordinator, deployment.deployment_tx, deployment.deployment_block,
                   deployment_block_hash=deployment.deployment_block_hash, code_hash=deployment.code_hash,
                   source=source)
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


def _check_code(w3: Web3, address: str, artifact: ContractArtifact, *, source: str, fix: str) -> None:
    """IntegrityError unless ``address`` holds ``artifact``'s runtime code (immutables aside)."""
    code = bytes(w3.eth.get_code(Web3.to_checksum_address(address)))
    if not code:
        raise IntegrityError(f"{source} names {address} on chain {int(w3.eth.chain_id)}, but there is no "
                             f"contract there (a restarted dev chain forgets it); {fix}")
    if not _matches_with_immutables(code, _code_bytes(artifact.deployed_bytecode)):
        expected = _sha256_hex(_code_bytes(artifact.deployed_bytecode))
        raise IntegrityError(f"the code at {address} (sha256 {_sha256_hex(code)[:12]}…) is not "
                             f"{artifact.name}'s deployed bytecode (sha256 {expected[:12]}…); "
                             f"{source} names the wrong address or another contract")


def open_address(w3: Web3, address: str, *, source: str = "the configured address",
                 **client_kwargs: Any) -> CoordinatorClient:
    """A client for a bare coordinator address, once the address is known to hold the coordinator's code.

    Without this check a node configured with an address that holds no
    contract retried "minStake reverted" forever; now it stops before writing
    any state (IntegrityError, exit status 4), as a bad deployment file does.
    """
    artifact = client_kwargs.get("artifact") or load_artifact(CONTRACT_NAME)
    _check_code(w3, address, artifact, source=source,
                fix="set it to the coordinator's address, or use a deployment file (chain.deployment)")
    return CoordinatorClient(w3, address, **client_kwargs)


def connect_rpc(rpc_url: str, *, timeout_s: float = 30.0, retry: bool = True) -> Web3:
    """A ``Web3`` on the HTTP JSON-RPC endpoint ``rpc_url``; ChainError naming it when it does not answer.

    ``retry=False`` turns off web3's own retries (five, with backoff, per read
    call), so each call takes at most ``timeout_s``: for a caller that must
    answer quickly, such as ``node status``.
    """
    from web3 import HTTPProvider

    if not rpc_url.startswith(("http://", "https://")):
        raise ConfigError(f"RPC URL {rpc_url!r} is not an http(s) URL; expected e.g. http://127.0.0.1:8545")
    if retry:
        provider = HTTPProvider(rpc_url, request_kwargs={"timeout": timeout_s})
    else:
        provider = HTTPProvider(rpc_url, request_kwargs={"timeout": timeout_s}, exception_retry_configuration=None)
    w3 = Web3(provider)
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
