"""The public probe corpus: canonical bytes, strict decoding, seed-chosen windows, the reference sample.

Two kinds: texts (every token scored) and instruction/chat records (only the responses scored, as the
nodes learn them).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from flare_chain.errors import ConfigError, UpdateError
from flare_chain.lora.data import texts_to_windows
from flare_chain.lora.datasets import ChatTurn, NodeData, Record
from flare_chain.lora.domains import available_domains
from flare_chain.lora.examples import IGNORE_INDEX, render_record
from flare_chain.lora.probe_corpus import (
    decode_probe_corpus,
    encode_probe_corpus,
    probe_example_len,
    probe_windows,
    read_probe_corpus,
    read_probe_texts,
    reference_probe_texts,
)
from flare_chain.lora.tokenizer import byte_tokenizer

BYTES = byte_tokenizer()
TEXTS = [f"def f{i}(x):\n    return x * {i}\n" * 20 for i in range(8)]


@given(st.lists(st.text(min_size=1), min_size=1, max_size=8))
def test_any_texts_round_trip_through_canonical_bytes(texts: list[str]) -> None:
    data = encode_probe_corpus(texts)
    corpus = decode_probe_corpus(data)
    assert (corpus.format, list(corpus.texts)) == ("text", texts)
    assert encode_probe_corpus(decode_probe_corpus(data)) == data


def test_a_text_corpus_keeps_the_bytes_and_cid_earlier_builds_pinned() -> None:
    assert encode_probe_corpus(["a", "b"]) == b'{"format":"flare-probe-corpus","texts":["a","b"],"version":1}'


_FIELD = st.text(min_size=1).filter(str.strip)


@given(st.lists(st.builds(lambda i, x, o: Record(instruction=i, input=x, output=o), _FIELD,
                          st.one_of(st.just(""), _FIELD), _FIELD), min_size=1, max_size=6))
def test_any_instruction_records_round_trip_through_canonical_bytes(records: list[Record]) -> None:
    data = encode_probe_corpus(NodeData(format="instruction", records=tuple(records)))
    corpus = decode_probe_corpus(data)
    assert (corpus.format, list(corpus.records)) == ("instruction", records)
    assert encode_probe_corpus(corpus) == data


def test_chat_records_round_trip() -> None:
    record = Record(messages=(ChatTurn("user", "hi"), ChatTurn("assistant", "hello")))
    corpus = decode_probe_corpus(encode_probe_corpus(NodeData(format="chat", records=(record,))))
    assert (corpus.format, corpus.records) == ("chat", (record,))


def test_an_empty_corpus_cannot_be_made() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        encode_probe_corpus(["", ""])


@pytest.mark.parametrize(("data", "fragment"), [
    (b"\xff\xfe", "not UTF-8 JSON"),
    (b"[1, 2]", "not a flare-chain probe corpus"),
    (json.dumps({"format": "flare-probe-corpus", "version": 9, "texts": ["x"]}).encode(), "version 9"),
    (json.dumps({"format": "flare-probe-corpus", "version": 1, "texts": []}).encode(), "non-empty list"),
    (json.dumps({"format": "flare-probe-corpus", "version": 1, "texts": ["ok", 3]}).encode(), "non-empty list"),
    (json.dumps({"format": "flare-probe-corpus", "version": 2, "data_format": "text",
                 "records": [{"instruction": "a", "output": "b"}]}).encode(), "data_format 'text'"),
    (json.dumps({"format": "flare-probe-corpus", "version": 2, "data_format": "instruction",
                 "records": []}).encode(), "non-empty list under 'records'"),
    (json.dumps({"format": "flare-probe-corpus", "version": 2, "data_format": "instruction",
                 "records": [{"instruction": "a", "output": "b"}, {"instruction": "a"}]}).encode(),
     'record 1: field "output" is missing'),
    (json.dumps({"format": "flare-probe-corpus", "version": 2, "data_format": "chat",
                 "records": [{"messages": [{"role": "user", "content": "q"}]}]}).encode(),
     "record 0: field \"messages\" has no non-empty assistant"),
])
def test_bytes_that_are_not_a_corpus_are_refused_by_name(data: bytes, fragment: str) -> None:
    with pytest.raises(UpdateError, match=fragment) as info:
        decode_probe_corpus(data, cid="bafyexample")
    assert "bafyexample" in str(info.value)


def test_windows_are_corpus_windows_chosen_by_the_seed_alone() -> None:
    every = texts_to_windows(TEXTS, 32, BYTES)
    got = probe_windows(TEXTS, b"seed-1", count=5, seq_len=32, tokenizer=BYTES)
    a = got.input_ids
    assert a.shape == (5, 32)
    assert torch.equal(got.labels, a)  # a text window scores every token
    assert torch.equal(a, probe_windows(TEXTS, b"seed-1", count=5, seq_len=32, tokenizer=BYTES).input_ids)
    assert all(any(torch.equal(row, w) for w in every) for row in a)
    assert not torch.equal(a, probe_windows(TEXTS, b"seed-2", count=5, seq_len=32, tokenizer=BYTES).input_ids)
    assert torch.equal(probe_windows(TEXTS, 7, count=5, seq_len=32, tokenizer=BYTES).input_ids,
                       probe_windows(TEXTS, 7, count=5, seq_len=32, tokenizer=BYTES).input_ids)


RECORDS = NodeData(format="instruction", records=tuple(
    Record(instruction=f"Say {i} twice", output=f"{i} {i}") for i in range(20)))


def test_a_records_corpus_scores_only_the_responses() -> None:
    got = probe_windows(RECORDS, b"seed-1", count=6, seq_len=64, tokenizer=BYTES)
    assert got.input_ids.shape == (6, 64)
    assert got.attention_mask is not None
    for ids, labels in zip(got.input_ids, got.labels, strict=True):
        scored = bytes(int(t) for t, lab in zip(ids, labels, strict=True) if lab != IGNORE_INDEX and t < 256)
        text = bytes(int(t) for t in ids if t < 256).decode()
        number = text.split("Say ")[1].split(" twice")[0]
        assert scored.decode() == f"{number} {number}"  # the response (and EOS), never the prompt
    other = probe_windows(RECORDS, b"seed-2", count=6, seq_len=64, tokenizer=BYTES)
    assert not torch.equal(got.input_ids, other.input_ids)
    assert torch.equal(got.input_ids, probe_windows(RECORDS, b"seed-1", count=6, seq_len=64, tokenizer=BYTES).input_ids)


def test_records_whose_response_does_not_fit_say_which_setting_to_raise() -> None:
    prompt_len = len(render_record(RECORDS.records[0], BYTES, data_format="instruction")[0]) - 3
    with pytest.raises(UpdateError, match="probe_loss_seq_len"):
        probe_windows(RECORDS, b"s", count=4, seq_len=prompt_len - 5, tokenizer=BYTES)


def test_records_are_judged_at_the_training_width_text_at_the_window_width() -> None:
    assert probe_example_len(RECORDS, window_len=64, train_seq_len=96) == 96
    assert probe_example_len(NodeData(format="text", texts=("x",)), window_len=64, train_seq_len=96) == 64


def test_asking_for_more_windows_than_the_corpus_holds_gives_all_of_them_once() -> None:
    every = texts_to_windows(TEXTS, 32, BYTES)
    got = probe_windows(TEXTS, b"s", count=10_000, seq_len=32, tokenizer=BYTES)
    assert torch.equal(got.input_ids, every)


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


def test_an_operator_corpus_of_instruction_jsonl_is_read_as_records(tmp_path: Path) -> None:
    lines = [json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) for i in range(3)]
    (tmp_path / "probe.jsonl").write_text("\n".join(lines) + "\n")
    corpus = read_probe_corpus([tmp_path / "probe.jsonl"])
    assert corpus.format == "instruction"
    assert [r.output for r in corpus.records] == ["a0", "a1", "a2"]
    (tmp_path / "bad.jsonl").write_text(lines[0] + "\n" + json.dumps({"instruction": "q"}) + "\n")
    with pytest.raises(ConfigError, match=r"bad.jsonl line 2: field \"output\" is missing"):
        read_probe_corpus([tmp_path / "bad.jsonl"])
    (tmp_path / "t.txt").write_text("plain")
    with pytest.raises(ConfigError, match="not both"):
        read_probe_corpus([tmp_path / "probe.jsonl", tmp_path / "t.txt"])
    assert read_probe_corpus([tmp_path / "t.txt"]).texts == ("plain",)
