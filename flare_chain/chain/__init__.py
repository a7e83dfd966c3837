"""The chain side of flare-chain: the FlareCoordinator contract's client, deployment and events.

    w3 = in_process_chain()                       # or Web3(HTTPProvider(url)) for anvil / a real node
    fund_accounts(w3, [owner, node], 10**19)
    coordinator = deploy_coordinator(w3, owner)   # or CoordinatorClient(w3, address, deployment_block=n)
    coordinator.register_node(node, stake_wei=10**18)   # its key, derived from the account, is its VRF key
    round_id, _ = coordinator.open_round(owner, submission_blocks=10, claim_blocks=5, proposal_blocks=5,
                                         voting_blocks=5, expected_committee_size=20)
    ...                                           # after the submission deadline:
    draw = coordinator.draw_seat(node, round_id)
    if draw.selected:
        coordinator.claim_seat(node, round_id, draw.proof)

Transactions are signed locally with eth-account ``LocalAccount``s; reverts raise
``ChainError`` carrying the contract's custom error name and arguments. Compiled
artifacts are committed, so nothing here needs a Solidity compiler (that lives in
``flare_chain.chain.solc``, imported only by the compile script and its tests).
Importing this package does not import torch.
"""

from flare_chain.chain.artifacts import ARTIFACTS_DIR, ContractArtifact, load_artifact
from flare_chain.chain.coordinator import (
    CoordinatorClient,
    SeatDraw,
    deploy_coordinator,
    public_key_words,
    sort_addresses,
)
from flare_chain.chain.devchain import advance_blocks, fund_accounts, in_process_chain
from flare_chain.chain.records import (
    FailureReason,
    NodeInfo,
    NodeRegistration,
    Proposal,
    RoundInfo,
    RoundOpened,
    RoundOutcome,
    RoundStatus,
    SeatClaim,
    SortitionInfo,
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
    "NodeInfo",
    "NodeRegistration",
    "Proposal",
    "RoundInfo",
    "RoundOpened",
    "RoundOutcome",
    "RoundStatus",
    "SeatClaim",
    "SeatDraw",
    "SortitionInfo",
    "Submission",
    "TxResult",
    "Vote",
    "advance_blocks",
    "deploy_coordinator",
    "fund_accounts",
    "in_process_chain",
    "load_artifact",
    "public_key_words",
    "sort_addresses",
]
