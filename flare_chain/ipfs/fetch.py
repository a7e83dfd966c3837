"""Blocks from places we do not trust: verify each against its CID, optionally keep a local copy.

A remote IPFS endpoint (a Kubo daemon, a peer's ``flare-chain ipfs serve``)
is only a source of bytes. :func:`verify_block` is the one check every
fetched block passes before anything reads it; :class:`VerifiedBlocks` turns
any ``fetch(cid) -> bytes`` into the ``get_block`` that
:mod:`flare_chain.ipfs.dag` walks with, so file bytes, directory listings and
path resolution are all built from verified blocks only. A block that fails
the check is never returned and never stored.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

from flare_chain.errors import IntegrityError
from flare_chain.ipfs.multiformats import SHA2_256, Cid, decode_multihash, parse_cid
from flare_chain.ipfs.store import ContentStore

__all__ = ["MAX_BLOCK_BYTES", "VerifiedBlocks", "verify_block"]

log = logging.getLogger(__name__)

MAX_BLOCK_BYTES = 2 * 1024 * 1024
"""Largest block accepted from an endpoint. Kubo's chunker stops at 1 MiB per chunk and
bitswap does not carry blocks over 2 MiB, so anything larger is not a block a peer could
legitimately have; reading stops there instead of buffering whatever an endpoint sends."""


def verify_block(cid: str | Cid, data: bytes | memoryview, *, source: str) -> Cid:
    """Check that ``data`` hashes to ``cid``; return the parsed CID.

    Raises IntegrityError naming the block, ``source`` (where the bytes came
    from) and what they really hashed to. Only sha2-256 multihashes can be
    checked here; a CID using another hash function is refused rather than
    trusted unchecked.
    """
    c = cid if isinstance(cid, Cid) else parse_cid(cid)
    code, digest = decode_multihash(c.multihash)
    if code != SHA2_256:
        raise IntegrityError(f"block {c} from {source} uses multihash code {code:#x}; only sha2-256 "
                             f"can be verified here, so refusing it")
    actual = hashlib.sha256(data).digest()
    if actual != digest:
        got = c.with_multihash(b"\x12\x20" + actual)
        log.warning("refused block %s from %s: it hashed to %s", c, source, got)
        raise IntegrityError(f"block {c} from {source} hashed to {got}; refusing it")
    return c


class VerifiedBlocks:
    """A ``get_block`` over an untrusted ``fetch``: cache first, else fetch, verify, cache.

    ``cache`` (optional) is a local :class:`ContentStore`; blocks land there
    only after they verified (``put_block`` checks again), unpinned, so a
    later ``gc`` may drop them unless the caller pins the root.
    """

    def __init__(self, fetch: Callable[[Cid], bytes], *, source: str, cache: ContentStore | None = None) -> None:
        self._fetch = fetch
        self.source = source
        self.cache = cache

    def __call__(self, cid: Cid) -> bytes:
        if self.cache is not None and self.cache.has(cid):
            return self.cache.get_block(cid)
        data = self._fetch(cid)
        verify_block(cid, data, source=self.source)
        if self.cache is not None:
            self.cache.put_block(cid, data)
        return data
