"""Error names the node code branches on come from the compiled ABI, so a renamed error cannot go unnoticed."""

from __future__ import annotations

import pytest

from flare_chain.chain import revert
from flare_chain.chain.contract_errors import abi_error_names, coordinator_errors


def test_unknown_names_are_refused_at_definition() -> None:
    with pytest.raises(LookupError, match="declares no error CoordinatorLateSubmision"):
        coordinator_errors("CoordinatorLateSubmission", "CoordinatorLateSubmision")
    assert coordinator_errors("CoordinatorNotLeader") == {"CoordinatorNotLeader"}


def test_the_sets_the_daemon_and_owner_branch_on_are_abi_errors() -> None:
    from flare_chain.node import daemon, owner

    names = abi_error_names()
    for group in (daemon._SKIP_ERRORS, daemon._WAIT_ERRORS, owner._ALREADY_FINAL_OR_NOT_YET):
        assert group and group <= names


def test_every_operator_hint_names_an_error_the_coordinator_declares() -> None:
    stale = sorted(set(revert._HINTS) - abi_error_names())
    assert not stale, f"hints for errors the ABI no longer declares: {stale}"
