"""The coordinator's custom error names, taken from its compiled ABI.

Nodes and the owner's driver branch on a revert's error name ("too late:
skip", "not yet: wait"). A name written as a bare string silently stops
matching when the contract renames or drops the error, and the node then
retries a hopeless step forever. :func:`coordinator_errors` checks every name
against the ABI when the caller's module is imported, so such a change fails
at once, in every test that imports the caller.
"""

from __future__ import annotations

from functools import cache

from flare_chain.chain.artifacts import load_artifact
from flare_chain.chain.coordinator import CONTRACT_NAME

__all__ = ["abi_error_names", "coordinator_errors"]


@cache
def abi_error_names(contract: str = CONTRACT_NAME) -> frozenset[str]:
    """Every custom error a compiled contract's ABI declares (its own and its bases')."""
    return frozenset(str(e["name"]) for e in load_artifact(contract).abi if e.get("type") == "error")


def coordinator_errors(*names: str) -> frozenset[str]:
    """``names`` as a set, after checking each is an error the coordinator can revert with.

    Raises LookupError (a programming error, not an operator's) naming the
    missing errors, so a contract change that drops one is caught on import.
    """
    missing = sorted(set(names) - abi_error_names())
    if missing:
        raise LookupError(f"{CONTRACT_NAME}'s ABI declares no error {', '.join(missing)}; "
                          "update the caller to the contract's current errors")
    return frozenset(names)
