"""The audit's first content check: load the federation spec the coordinator names.

Every round is re-checked under the spec the members were bound to, never
under this build's defaults; so the spec must be fetched intact (bytes
verified against the CID) and parse as a complete canonical document. A
coordinator without a spec predates specs: its rounds are re-checked under
the defaults, and the finding says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from web3 import Web3

from flare_chain.audit.content import ContentSource
from flare_chain.audit.findings import FAIL, PASS, UNVERIFIABLE, Finding
from flare_chain.errors import ConfigError
from flare_chain.ipfs import cid_from_bytes

if TYPE_CHECKING:  # the spec's types pull in torch; an audit that only reads logs must not need it
    from flare_chain.protocol.spec import FederationSpec

__all__ = ["load_spec"]


def load_spec(w3: Web3, address: str, abi: list[dict[str, object]], source: ContentSource,
              block: int) -> tuple[Finding, FederationSpec | None, str | None]:
    """``(finding, spec, cid)``: the spec to re-check rounds under (None when it cannot be loaded)."""
    from flare_chain.protocol.spec import FederationSpec, fetch_spec

    contract = w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi)
    raw = bytes(contract.functions.federationSpecCid().call(block_identifier=block))
    if not raw:
        return (Finding("federation-spec", PASS, detail="the coordinator names no federation spec: rounds are "
                        "re-checked under this build's default gates and FedAvg"), FederationSpec(), None)
    cid = cid_from_bytes(raw)
    state = source.check(cid)
    if not state.ok:
        return Finding("federation-spec", UNVERIFIABLE, detail=f"spec {cid}: {state.detail}"), None, cid
    try:
        spec = fetch_spec(source.store, cid)
    except ConfigError as exc:
        return Finding("federation-spec", FAIL, detail=str(exc)), None, cid
    return (Finding("federation-spec", PASS, detail=(
        f"spec {cid} ({spec.name}): rules v{spec.rules_version}, aggregator {spec.aggregator.describe()}, "
        f"codec v{spec.compression.codec_version}, "
        f"vote tolerance {spec.committee.vote_tolerance}")), spec, cid)
