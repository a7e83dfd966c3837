"""The auditor finds the round's base model by fingerprint, and fetches it by CID when no local folder has it."""

from __future__ import annotations

from pathlib import Path

from flare_chain.audit.content import ContentSource
from flare_chain.audit.reproduce import ModelLocator
from flare_chain.basemodel import publish_model
from flare_chain.ipfs import ContentStore
from flare_chain.lora.base import model_fingerprint
from tests.basemodel._folders import write_model_folder


def test_a_model_named_by_cid_is_fetched_when_no_local_folder_matches(tmp_path: Path) -> None:
    # Prepare: the owner's model is only in the audited IPFS store; the auditor's search path is empty
    model = write_model_folder(tmp_path / "owner-model")
    store = ContentStore(tmp_path / "ipfs", durable=False)
    cid = publish_model(model, store, show_progress=False)
    sha = model_fingerprint(model)
    locator = ModelLocator(None, [], source=ContentSource(store), cache=tmp_path / "cache")
    # Execute / Assert
    assert locator.find(sha) is None  # no CID named: nothing to fetch
    found = locator.find(sha, cid)
    assert found == tmp_path / "cache" / cid and model_fingerprint(found) == sha
    # A manifest whose fingerprint is not the CID's weights finds nothing, whatever the CID holds
    assert locator.find("00" * 32, cid) is None
