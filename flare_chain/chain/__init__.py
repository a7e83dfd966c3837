"""The chain side of flare-chain: the FlareCoordinator contract's client, deployment and events.

    w3 = in_process_chain()                       # or Web3(HTTPProvider(url)) for anvil / a real node
    fund_accounts(w3, [owner, node], 10**18)
    coordinator = deploy_coordinator(w3, owner)   # or CoordinatorClient(w3, address, deployment_block=n)
    coordinator.register_node(node)
    round_id, _ = coordinator.open_round(owner, submission_blocks=10, proposal_blocks=5, voting_blocks=5)

Transactions are signed locally with eth-account ``LocalAccount``s; reverts raise
``ChainError`` carrying the contract's custom error name and arguments. Compiled
artifacts are committed, so nothing here needs a Solidity compiler (that lives in
``flare_chain.chain.solc``, imported only by the compile script and its tests).
Importing this package does not import torch.
"""

from flare_chain.chain.artifacts import ARTIFACTS_DIR, ContractArtifact, load_artifact
from flare_chain.chain.coordinator import CoordinatorClient, deploy_coordinator, sort_addresses
from flare_chain.chain.devchain import advance_blocks, fund_accounts, in_process_chain
from flare_chain.chain.records import (
    FailureReason,
    NodeRegistration,
    Proposal,
    RoundInfo,
    RoundOpened,
    RoundOutcome,
    RoundStatus,
    Submission,
    TxResult,
    Vote,
)
from flare_chain.chain.revert import DecodedError, ErrorDecoder

__all__ = [
    "ARTIFACTS_DIR",
    "ContractArtifact",
    "CoordinatorClient",
    "DecodedError",
    "ErrorDecoder",
    "FailureReason",
    "NodeRegistration",
    "Proposal",
    "RoundInfo",
    "RoundOpened",
    "RoundOutcome",
    "RoundStatus",
    "Submission",
    "TxResult",
    "Vote",
    "advance_blocks",
    "deploy_coordinator",
    "fund_accounts",
    "in_process_chain",
    "load_artifact",
    "sort_addresses",
]
