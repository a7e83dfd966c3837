"""The public probe corpus: canonical bytes, strict decoding, seed-chosen windows, the reference sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from flare_chain.errors import ConfigError, UpdateError
from flare_chain.lora.data import texts_to_windows
from flare_chain.lora.domains import available_domains
from flare_chain.lora.probe_corpus import (
    decode_probe_corpus,
    encode_probe_corpus,
    probe_windows,
    read_probe_texts,
    reference_probe_texts,
)
from flare_chain.lora.tokenizer import byte_tokenizer

BYTES = byte_tokenizer()
TEXTS = [f"def f{i}(x):\n    return x * {i}\n" * 20 for i in range(8)]


@given(st.lists(st.text(min_size=1), min_size=1, max_size=8))
def test_any_texts_round_trip_through_canonical_bytes(texts: list[str]) -> None:
    data = encode_probe_corpus(texts)
    assert decode_probe_corpus(data) == texts
    assert encode_probe_corpus(decode_probe_corpus(data)) == data


def test_an_empty_corpus_cannot_be_made() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        encode_probe_corpus(["", ""])


@pytest.mark.parametrize(("data", "fragment"), [
    (b"\xff\xfe", "not UTF-8 JSON"),
    (b"[1, 2]", "not a flare-chain probe corpus"),
    (json.dumps({"format": "flare-probe-corpus", "version": 9, "texts": ["x"]}).encode(), "version 9"),
    (json.dumps({"format": "flare-probe-corpus", "version": 1, "texts": []}).encode(), "non-empty list"),
    (json.dumps({"format": "flare-probe-corpus", "version": 1, "texts": ["ok", 3]}).encode(), "non-empty list"),
])
def test_bytes_that_are_not_a_corpus_are_refused_by_name(data: bytes, fragment: str) -> None:
    with pytest.raises(UpdateError, match=fragment) as info:
        decode_probe_corpus(data, cid="bafyexample")
    assert "bafyexample" in str(info.value)


def test_windows_are_corpus_windows_chosen_by_the_seed_alone() -> None:
    every = texts_to_windows(TEXTS, 32, BYTES)
    a = probe_windows(TEXTS, b"seed-1", count=5, seq_len=32, tokenizer=BYTES)
    assert a.shape == (5, 32)
    assert torch.equal(a, probe_windows(TEXTS, b"seed-1", count=5, seq_len=32, tokenizer=BYTES))
    assert all(any(torch.equal(row, w) for w in every) for row in a)
    assert not torch.equal(a, probe_windows(TEXTS, b"seed-2", count=5, seq_len=32, tokenizer=BYTES))
    assert torch.equal(probe_windows(TEXTS, 7, count=5, seq_len=32, tokenizer=BYTES), probe_windows(TEXTS, 7, count=5, seq_len=32, tokenizer=BYTES))


def test_asking_for_more_windows_than_the_corpus_holds_gives_all_of_them_once() -> None:
    every = texts_to_windows(TEXTS, 32, BYTES)
    got = probe_windows(TEXTS, b"s", count=10_000, seq_len=32, tokenizer=BYTES)
    assert torch.equal(got, every)


def test_a_corpus_shorter_than_one_window_says_so() -> None:
    with pytest.raises(UpdateError, match="shorter than one 64-token window"):
        probe_windows(["tiny"], b"s", count=4, seq_len=64, tokenizer=BYTES)


def test_the_reference_corpus_samples_every_domain_within_its_share() -> None:
    texts = reference_probe_texts(bytes_per_domain=1000)
    assert reference_probe_texts(bytes_per_domain=1000) == texts
    total = sum(len(t) for t in texts)
    domains = available_domains()
    assert len(texts) >= len(domains)
    assert total <= 1000 * len(domains)
    assert total >= 0.9 * 1000 * len(domains)


def test_an_operator_corpus_is_read_from_files_and_folders(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.txt").write_text("second")
    (tmp_path / "d" / "a.txt").write_text("first")
    (tmp_path / "top.txt").write_text("top")
    assert read_probe_texts([tmp_path / "top.txt", tmp_path / "d"]) == ["top", "first", "second"]
    (tmp_path / "bin").write_bytes(b"\xff\x00\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_probe_texts([tmp_path / "bin"])
    with pytest.raises(ConfigError, match="does not exist"):
        read_probe_texts([tmp_path / "missing"])


def test_the_reference_corpus_can_be_limited_to_the_federations_domains() -> None:
    two = available_domains()[:2]
    texts = reference_probe_texts(domains=two, bytes_per_domain=500)
    assert texts == reference_probe_texts(bytes_per_domain=500)[: len(texts)]
    assert sum(len(t) for t in texts) <= 1000
