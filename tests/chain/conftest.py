"""Fixtures for chain-client tests: an in-process chain with a deployed coordinator per module."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_utils import keccak

from flare_chain.chain import deploy_coordinator, fund_accounts, in_process_chain


@pytest.fixture(scope="module")
def deployed():
    """``(w3, owner, nodes, coordinator)``: 3 funded validator nodes, not yet registered."""
    w3 = in_process_chain()
    owner = Account.from_key(keccak(text="chain tests owner"))
    nodes = [Account.from_key(keccak(text=f"chain tests node {i}")) for i in range(3)]
    fund_accounts(w3, [owner, *nodes], 10**19)
    return w3, owner, nodes, deploy_coordinator(w3, owner, approval_threshold_bps=5000, min_committee_size=3)
