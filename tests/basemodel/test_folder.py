"""What a model folder must hold before it is published: safetensors, config, tokenizer; never pickle."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flare_chain.basemodel import check_model_folder, model_cid
from flare_chain.errors import ConfigError
from flare_chain.ipfs import cid_of_directory


def test_a_complete_folder_passes_and_counts_its_bytes(model_folder: Path) -> None:
    checked = check_model_folder(model_folder)
    assert checked.weight_files == ("model.safetensors",)
    assert checked.total_bytes == sum(p.stat().st_size for p in model_folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"])
def test_a_folder_missing_a_required_file_is_refused_naming_it(model_folder: Path, missing: str) -> None:
    (model_folder / missing).unlink()
    with pytest.raises(ConfigError) as err:
        check_model_folder(model_folder)
    message = str(err.value)
    assert str(model_folder) in message and "\n" not in message
    assert (missing if missing != "model.safetensors" else "*.safetensors") in message


@pytest.mark.parametrize("name", ["pytorch_model.bin", "extra/optimizer.pt", "model.ckpt"])
def test_pickle_weights_are_refused_even_next_to_safetensors(model_folder: Path, name: str) -> None:
    (model_folder / name).write_bytes(b"\x80\x04K\x01.")  # a pickle stream
    with pytest.raises(ConfigError, match="pickle") as err:
        check_model_folder(model_folder)
    assert name in str(err.value) and "safe_serialization=True" in str(err.value)


def test_a_symlinked_file_is_refused(model_folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.json"
    outside.write_text("{}", encoding="utf-8")
    os.symlink(outside, model_folder / "generation_config.json")
    with pytest.raises(ConfigError, match="symlink"):
        check_model_folder(model_folder)


def test_not_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        check_model_folder(tmp_path / "nope")


def test_the_model_cid_is_ipfs_add_r_and_changes_with_any_file(model_folder: Path) -> None:
    # Prepare
    before = model_cid(model_folder)
    # Assert: the same rule as `ipfs add -r --only-hash` (dotfiles skipped), and v1 differs from v0
    assert before == cid_of_directory(model_folder) and before.startswith("Qm")
    assert model_cid(model_folder, 1).startswith("bafy")
    (model_folder / ".cache").write_text("ignored", encoding="utf-8")
    assert model_cid(model_folder) == before
    # Execute: a tokenizer change, not a weight change, is another model
    (model_folder / "tokenizer_config.json").write_text("{}", encoding="utf-8")
    assert model_cid(model_folder) != before
