import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flare_chain.errors import TrainingError
from flare_chain.lora.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    VOCAB_SIZE,
    decode,
    encode,
    load_tokenizer,
    save_byte_tokenizer,
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The byte tokenizer as the reference model ships it, loaded back through transformers."""
    folder = tmp_path_factory.mktemp("bytes")
    save_byte_tokenizer(folder)
    return load_tokenizer(folder, embedding_rows=VOCAB_SIZE)


@given(st.text())
def test_decode_inverts_encode_for_any_text(text: str) -> None:
    assert decode(encode(text, add_bos=True, add_eos=True)) == text


@given(st.text())
def test_ids_are_utf8_bytes_wrapped_in_specials(text: str) -> None:
    ids = encode(text, add_bos=True, add_eos=True)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert bytes(ids[1:-1]) == text.encode("utf-8")


def test_vocab_holds_bytes_and_specials_and_is_a_multiple_of_8() -> None:
    assert {PAD_ID, BOS_ID, EOS_ID} <= set(range(256, VOCAB_SIZE))
    assert VOCAB_SIZE % 8 == 0


def test_decode_of_invalid_utf8_replaces_instead_of_raising() -> None:
    assert decode([0xFF, ord("a"), PAD_ID]) == "\ufffda"


@settings(max_examples=50, deadline=None)
@given(st.text())
def test_the_saved_byte_tokenizer_gives_exactly_the_byte_ids(saved: Any, text: str) -> None:
    ids = saved(text, add_special_tokens=False)["input_ids"]
    assert ids == encode(text.encode("utf-8", errors="replace").decode("utf-8"))


def test_special_token_text_inside_data_stays_bytes(saved: Any) -> None:
    text = "a <s> b </s><pad> c"
    assert saved(text, add_special_tokens=False)["input_ids"] == encode(text)


def test_the_saved_byte_tokenizer_names_its_specials(saved: Any) -> None:
    assert (saved.pad_token_id, saved.bos_token_id, saved.eos_token_id) == (PAD_ID, BOS_ID, EOS_ID)
    assert len(saved) <= VOCAB_SIZE


def test_a_folder_without_tokenizer_files_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"vocab_size": VOCAB_SIZE}))
    with pytest.raises(TrainingError, match=rf"{tmp_path} has no tokenizer \(tokenizer.json, tokenizer_config.json"):
        load_tokenizer(tmp_path)


def test_an_unloadable_tokenizer_is_refused_naming_the_folder(tmp_path: Path) -> None:
    save_byte_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TrainingError, match=rf"{tmp_path} has a tokenizer transformers cannot load"):
        load_tokenizer(tmp_path)


def test_a_tokenizer_larger_than_the_embedding_is_refused(tmp_path: Path) -> None:
    save_byte_tokenizer(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"vocab_size": 200}))
    with pytest.raises(TrainingError, match=r"ids go up to 258, but the model's embedding has 200 rows"):
        load_tokenizer(tmp_path)
    assert load_tokenizer(tmp_path, embedding_rows=259).eos_token_id == EOS_ID
