"""Which folder a node loads: its own only when it is the federation's CID, else the CID fetched."""

from __future__ import annotations

from pathlib import Path

import pytest

from flare_chain.basemodel import model_cid, publish_and_load, publish_model, resolve_base_model
from flare_chain.errors import ConfigError
from flare_chain.ipfs import Cid, ContentStore
from tests.basemodel._folders import write_model_folder


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "ipfs", durable=False)


def _never(c: Cid) -> bytes:
    raise AssertionError(f"fetched {c}, but the local folder should have been used")


def test_a_local_folder_that_is_the_cid_is_used_as_it_is(model_folder: Path, store: ContentStore,
                                                         tmp_path: Path) -> None:
    cid = publish_model(model_folder, store, show_progress=False)
    got = resolve_base_model(cid, local_dir=model_folder, fetch=_never, source="x", cache_root=tmp_path / "c")
    assert (got.path, got.cid, got.fetched) == (model_folder, cid, False)


def test_a_local_folder_that_differs_gives_way_to_the_published_model(model_folder: Path, store: ContentStore,
                                                                      tmp_path: Path, caplog) -> None:
    # Prepare: the node's own build differs from the owner's (other random weights)
    cid = publish_model(model_folder, store, show_progress=False)
    mine = write_model_folder(tmp_path / "my-own-build")
    # Execute
    got = resolve_base_model(cid, local_dir=mine, fetch=store.get_block, source="owner", cache_root=tmp_path / "c",
                             show_progress=False)
    # Assert
    assert got.fetched and got.cid == cid and got.path == tmp_path / "c" / cid
    assert model_cid(got.path) == cid != model_cid(mine)
    assert "using the published model instead" in caplog.text


def test_without_a_cid_the_configured_folder_is_used(model_folder: Path, tmp_path: Path) -> None:
    got = resolve_base_model(None, local_dir=model_folder, fetch=_never, source="x", cache_root=tmp_path / "c")
    assert (got.path, got.cid) == (model_folder, None)
    with pytest.raises(ConfigError, match="no base model"):
        resolve_base_model(None, local_dir=None, fetch=None, source="x", cache_root=tmp_path / "c")


def test_a_missing_model_without_an_ipfs_source_names_the_fix(model_folder: Path, store: ContentStore,
                                                              tmp_path: Path) -> None:
    cid = publish_model(model_folder, store, show_progress=False)
    with pytest.raises(ConfigError, match=r"set \[ipfs\] endpoint"):
        resolve_base_model(cid, local_dir=None, fetch=None, source="x", cache_root=tmp_path / "c")


def test_publish_and_load_hands_the_nodes_the_published_copy(model_folder: Path, store: ContentStore,
                                                             tmp_path: Path) -> None:
    got = publish_and_load(model_folder, store, tmp_path / "models", show_progress=False)
    assert got.cid == model_cid(model_folder) and got.path.parent == tmp_path / "models"
    assert model_cid(got.path) == got.cid
