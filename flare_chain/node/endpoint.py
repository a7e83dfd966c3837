"""An IPFS RPC endpoint seen through the content-store interface the node code is written against.

``Participant``, the bundles and the committee's aggregate builder call
``store.cat(path)`` and ``store.add_directory(folder, ...)``. On one machine
that is the embedded :class:`ContentStore`; a daemon instead talks to a Kubo
RPC endpoint (a Kubo daemon or ``flare-chain ipfs serve``) through
:class:`KuboClient`, which verifies every block it reads against its CID and
every CID the endpoint answers to an add. This adapter maps one onto the other
and keeps a local cache of verified blocks, so a committed adapter or an
update read once is not fetched again.

Hash-only adds (a committee member recomputing the leader's CID) never touch
the endpoint: the CID is computed locally.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from flare_chain.ipfs import ContentStore, DirEntry, KuboClient, cid_of_directory
from flare_chain.ipfs.multiformats import Cid

__all__ = ["EndpointStore"]


class EndpointStore:
    """A :class:`~flare_chain.ipfs.content.PinningStore` over a Kubo RPC endpoint, verified, with a local
    block cache."""

    def __init__(self, client: KuboClient) -> None:
        self.client = client

    @classmethod
    def connect(cls, endpoint: str, cache_dir: Path, *, timeout_s: float, retries: int, backoff_s: float,
                max_backoff_s: float = 10.0) -> EndpointStore:
        """A store for ``endpoint`` caching verified blocks under ``cache_dir``."""
        cache = ContentStore(cache_dir)
        return cls(KuboClient(endpoint, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s,
                              max_backoff_s=max_backoff_s, cache=cache))

    def __repr__(self) -> str:
        return f"EndpointStore({self.client.base_url})"

    def resolve(self, cid_or_path: str | Cid) -> Cid:
        """The CID a ``CID[/name/...]`` path points at, over verified blocks."""
        return self.client.resolve(cid_or_path)

    def open(self, cid_or_path: str | Cid) -> Iterator[bytes | memoryview]:
        """A file's bytes block by block, each verified before it is yielded."""
        return self.client.open(cid_or_path)

    def cat(self, cid_or_path: str | Cid) -> bytes:
        """A file's bytes, every block verified against its CID (IntegrityError names the endpoint)."""
        return self.client.cat(cid_or_path)

    def ls(self, cid_or_path: str | Cid) -> list[DirEntry]:
        """A directory's entries, read from verified blocks."""
        return self.client.ls(cid_or_path)

    def add_bytes(self, data: bytes, *, cid_version: int = 0, pin: bool = True) -> str:
        """``ipfs add`` of in-memory bytes to the endpoint (its answer checked against the local CID)."""
        return self.client.add(data, cid_version=cid_version, pin=pin)

    def add_directory(self, path: str | os.PathLike[str], *, cid_version: int = 0, raw_leaves: bool | None = None,
                      pin: bool = True, only_hash: bool = False, include_hidden: bool = False) -> str:
        """``ipfs add -r`` to the endpoint (its answer checked against the local CID); hash-only stays local."""
        if only_hash:
            return cid_of_directory(path, cid_version, raw_leaves=raw_leaves, include_hidden=include_hidden)
        return self.client.add(path, recursive=True, cid_version=cid_version, raw_leaves=raw_leaves, pin=pin,
                               include_hidden=include_hidden)

    def close(self) -> None:
        self.client.close()
