"""Publishing a base model: pin its folder to IPFS as one UnixFS directory and name it by CID.

The owner of a federation does this once (``flare-chain model add DIR``); the
CID then goes into the deployment file and the round-0 manifest, and every
node loads exactly that folder. The folder is checked first (safetensors,
config, tokenizer; see :mod:`flare_chain.basemodel.folder`), so a pickle
file is refused before a byte is stored. The CID is the one ``ipfs add -r``
gives: the embedded store and the Kubo client both build it with the
project's Kubo-identical importer, and the Kubo client refuses an endpoint
that answers another.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flare_chain.basemodel.folder import check_model_folder
from flare_chain.ipfs import ContentStore, KuboClient
from flare_chain.progress import progress

__all__ = ["publish_model"]

log = logging.getLogger(__name__)


def publish_model(folder: str | os.PathLike[str], target: ContentStore | KuboClient, *, cid_version: int = 0,
                  show_progress: bool = True) -> str:
    """Check ``folder`` as a model, add and pin it recursively on ``target``; return its CID.

    Progress is shown over the folder's bytes (on a Kubo endpoint: once for the
    local hashing pass that fixes the expected CID, once for the upload).
    """
    checked = check_model_folder(folder)
    path = Path(folder)
    total = checked.total_bytes
    if isinstance(target, ContentStore):
        with progress(f"pin model {path.name}", total, unit="B", logger=log, enabled=show_progress) as bar:
            cid = target.add_directory(path, cid_version=cid_version, pin=True, on_read=bar.update)
    else:
        with progress(f"hash model {path.name}", total, unit="B", logger=log, enabled=show_progress) as hashed, \
                progress(f"upload model {path.name}", total, unit="B", logger=log, enabled=show_progress) as sent:
            cid = target.add(path, recursive=True, cid_version=cid_version, pin=True, on_read=hashed.update,
                             on_sent=sent.update)
    log.info("model folder %s (%d bytes, weights %s) pinned as %s", path, total,
             ", ".join(checked.weight_files), cid)
    return cid
