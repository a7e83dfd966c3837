"""What node code needs from IPFS, as typed seams, and the one implementation of reading UnixFS.

Two stores serve the node code: the embedded :class:`~flare_chain.ipfs.store.ContentStore`
(on disk) and a Kubo RPC endpoint (:class:`~flare_chain.ipfs.kubo_client.KuboClient`,
wrapped by :class:`~flare_chain.node.endpoint.EndpointStore` for adds). Both read
files the same way, by walking verified blocks; :class:`VerifiedDagReader` holds that
walk once, and each store only says where a verified block comes from.

:class:`ContentReader` (resolve, open, cat, ls) is what both stores offer;
:class:`PinningStore` adds what a node writes (a folder as an update bundle, bytes
as a probe corpus or spec). The daemon, the participant and the committee are typed
against these protocols, not against either class.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from flare_chain.ipfs import dag
from flare_chain.ipfs.multiformats import Cid

__all__ = ["ContentReader", "PinningStore", "VerifiedDagReader"]


@runtime_checkable
class ContentReader(Protocol):
    """Reading UnixFS content by CID or ``CID/path``; every block verified against its CID."""

    def resolve(self, cid_or_path: str | Cid) -> Cid: ...

    def open(self, cid_or_path: str | Cid) -> Iterator[bytes | memoryview]: ...

    def cat(self, cid_or_path: str | Cid) -> bytes: ...

    def ls(self, cid_or_path: str | Cid) -> list[dag.DirEntry]: ...


@runtime_checkable
class PinningStore(ContentReader, Protocol):
    """A reader that also adds and pins: what a node needs to publish its updates."""

    def add_bytes(self, data: bytes, *, cid_version: int = ..., pin: bool = ...) -> str: ...

    def add_directory(self, path: str | os.PathLike[str], *, cid_version: int = ..., raw_leaves: bool | None = ...,
                      pin: bool = ..., only_hash: bool = ..., include_hidden: bool = ...) -> str: ...


class VerifiedDagReader(ABC):
    """resolve/open/cat/ls over :meth:`_verified_block`, shared by every store."""

    @abstractmethod
    def _verified_block(self, cid: Cid) -> bytes:
        """The block's bytes, already checked against ``cid`` (IntegrityError otherwise)."""

    def resolve(self, cid_or_path: str | Cid) -> Cid:
        """The CID a ``CID[/name/...]`` path points at, resolved over verified blocks."""
        if isinstance(cid_or_path, Cid):
            return cid_or_path
        return dag.resolve_path(self._verified_block, cid_or_path)

    def open(self, cid_or_path: str | Cid) -> Iterator[bytes | memoryview]:
        """Stream a file's bytes block by block, each block verified before it is yielded."""
        return dag.iter_file(self._verified_block, self.resolve(cid_or_path))

    def cat(self, cid_or_path: str | Cid) -> bytes:
        """A whole file's bytes (verified). Use :meth:`open` for large files."""
        return b"".join(self.open(cid_or_path))

    def ls(self, cid_or_path: str | Cid) -> list[dag.DirEntry]:
        """A directory's entries, read from verified blocks."""
        return dag.list_directory(self._verified_block, self.resolve(cid_or_path))
