"""Which folder a node loads as the base model, given the CID its federation names.

One rule for the daemon, the demo, the local devnet harness and the round
driver: when the federation names a base-model CID, the node uses a local
folder only if that folder hashes to the CID; otherwise (no folder configured,
or one that differs, such as a reference model this machine built with its
own float arithmetic) it fetches the CID into its model cache. Without a
CID the configured folder is used as it is, and the old identity (the
weights' sha256) is all the gates compare.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flare_chain.basemodel.fetch import fetch_model
from flare_chain.basemodel.folder import cid_version_of, model_cid
from flare_chain.basemodel.publish import publish_model
from flare_chain.errors import ConfigError
from flare_chain.ipfs import Cid, ContentStore, parse_cid

__all__ = ["ResolvedModel", "publish_and_load", "resolve_base_model"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """The folder to load and the CID it is known to have (None: the federation names no CID)."""

    path: Path
    cid: str | None
    fetched: bool = False


def resolve_base_model(
    cid: str | None,
    *,
    local_dir: Path | None,
    fetch: Callable[[Cid], bytes] | None,
    source: str,
    cache_root: Path,
    show_progress: bool = True,
) -> ResolvedModel:
    """The base model to load: ``local_dir`` when it is the federation's ``cid``, else ``cid`` fetched and cached.

    ``cid`` None keeps ``local_dir`` (which must then be set). ``fetch`` reads
    blocks (verified again on arrival) from ``source``; None means the node
    has no IPFS source, and a missing model is a ConfigError naming the fix.
    """
    if cid is None:
        if local_dir is None:
            raise ConfigError("no base model: set [model] model_dir, or deploy with --base-model-cid")
        return ResolvedModel(Path(local_dir), None)
    wanted = parse_cid(cid).encode()
    if local_dir is not None:
        local = Path(local_dir)
        found = model_cid(local, cid_version_of(wanted)) if local.is_dir() else "nothing (no such folder)"
        if found == wanted:
            log.info("base model %s is the local folder %s", wanted, local)
            return ResolvedModel(local, wanted)
        log.warning("local model folder %s hashes to %s, but the federation's base model is %s; "
                    "using the published model instead", local, found, wanted)
    if fetch is None:
        raise ConfigError(f"base model {wanted} is not here and no IPFS endpoint is configured to fetch it; "
                          "set [ipfs] endpoint or point [model] model_dir at a copy of it")
    path = fetch_model(wanted, fetch, cache_root, source=source, show_progress=show_progress)
    return ResolvedModel(path, wanted, fetched=True)


def publish_and_load(folder: Path, store: ContentStore, cache_root: Path, *, show_progress: bool = True) -> ResolvedModel:
    """An in-process federation's start (the demo, the daemon harness): the owner pins ``folder`` to ``store``
    and the nodes load the model back by its CID, exactly as remote nodes would.

    The nodes share the one store, so one fetch into ``cache_root`` serves them all.
    """
    cid = publish_model(folder, store, show_progress=show_progress)
    path = fetch_model(cid, store.get_block, cache_root, source=f"the IPFS repository {store.root}",
                       show_progress=show_progress)
    return ResolvedModel(path, cid, fetched=True)
