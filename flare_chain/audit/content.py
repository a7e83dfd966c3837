"""The auditor's view of IPFS: every object checked block by block, each CID checked once.

Checks read from a local ``ContentStore``. Given a Kubo endpoint, objects are
first pulled into that store (a cache: ``KuboClient.pull`` verifies every
block it copies), so a second audit of the same history fetches nothing. The
outcome of each CID (present and intact, missing, or bytes that do not hash to
their name) is remembered, so a CID named by many rounds is read once.
"""

from __future__ import annotations

from dataclasses import dataclass

from flare_chain.errors import ConfigError, IntegrityError, StoreError
from flare_chain.ipfs import ContentStore, KuboClient, cid_from_bytes, parse_cid
from flare_chain.ipfs.dag import iter_dag

__all__ = ["ContentSource", "ObjectState"]


@dataclass(frozen=True)
class ObjectState:
    """What a verified fetch of one CID found: ``ok``, ``missing`` or ``corrupt``, and why."""

    cid: str
    state: str
    detail: str = ""
    blocks: int = 0
    size: int = 0

    @property
    def ok(self) -> bool:
        return self.state == "ok"


class ContentSource:
    """Verified, cached access to the objects a history names."""

    def __init__(self, store: ContentStore, kubo: KuboClient | None = None) -> None:
        self.store = store
        self.kubo = kubo
        self._states: dict[str, ObjectState] = {}

    @property
    def where(self) -> str:
        return self.kubo.base_url if self.kubo is not None else str(self.store.root)

    def check(self, cid: bytes | str) -> ObjectState:
        """Fetch (if remote) and verify every block of ``cid``; remembered per CID."""
        try:
            text = cid_from_bytes(cid) if isinstance(cid, bytes) else parse_cid(cid).encode()
        except (ConfigError, ValueError) as exc:
            return ObjectState(cid=repr(cid), state="corrupt", detail=f"not a CID: {exc}")
        if text not in self._states:
            self._states[text] = self._check(text)
        return self._states[text]

    def _check(self, cid: str) -> ObjectState:
        try:
            if self.kubo is not None:
                self.kubo.pull(cid, self.store, pin=False)
            blocks = size = 0
            for block_cid in iter_dag(self.store.get_block, parse_cid(cid)):
                size += len(self.store.get_block(block_cid))
                blocks += 1
        except IntegrityError as exc:
            return ObjectState(cid=cid, state="corrupt", detail=str(exc))
        except StoreError as exc:
            return ObjectState(cid=cid, state="missing", detail=f"{exc} (looked in {self.where})")
        return ObjectState(cid=cid, state="ok", blocks=blocks, size=size)
