"""Node data in the formats operators have: detected per file, every line checked before training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flare_chain.errors import TrainingError
from flare_chain.lora.datasets import ChatTurn, detect_format, load_node_data


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


INSTRUCTION = {"instruction": "Add the numbers.", "input": "2 + 3", "output": "5"}
CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


@pytest.mark.parametrize(("row", "fmt"), [({"text": "a b c"}, "jsonl"), (INSTRUCTION, "instruction"),
                                          (CHAT, "chat")])
def test_a_jsonl_files_format_is_read_off_its_records(tmp_path: Path, row: dict[str, object], fmt: str) -> None:
    path = _jsonl(tmp_path / "node-1.jsonl", [row, row])
    assert detect_format(path) == fmt
    data = load_node_data(path)
    assert data.format == fmt and len(data) == 2 and data.source == str(path)


def test_text_files_stay_text(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("second", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first", encoding="utf-8")
    data = load_node_data(tmp_path)
    assert data.format == "text" and data.texts == ("first", "second") and not data.supervised


def test_records_keep_their_fields(tmp_path: Path) -> None:
    data = load_node_data(_jsonl(tmp_path / "d.jsonl", [CHAT, {"messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"}]}]))
    assert data.records[1].messages == (ChatTurn("system", "be brief"), ChatTurn("user", "q"), ChatTurn("assistant", "a"))
    ins = load_node_data(_jsonl(tmp_path / "i.jsonl", [INSTRUCTION, {"instruction": "Say hi.", "output": "hi"}]))
    assert ins.records[0].input == "2 + 3" and ins.records[1].input == ""


@pytest.mark.parametrize(("bad", "message"), [
    ({"instruction": "x"}, 'line 3: field "output" is missing'),
    ({"instruction": "x", "output": 5}, 'line 3: field "output" must be a string, got int'),
    ({"instruction": " ", "output": "y"}, 'line 3: field "instruction" is empty'),
    ("{not json", "line 3: not valid JSON"),
    ("[1, 2]", "line 3: a record must be a JSON object, got list"),
])
def test_a_bad_instruction_line_is_named_by_file_line_and_field(tmp_path: Path, bad: object, message: str) -> None:
    path = _jsonl(tmp_path / "node-1.jsonl", [INSTRUCTION, "", bad, INSTRUCTION])  # line 2 blank, line 3 bad
    with pytest.raises(TrainingError) as info:
        load_node_data(path)
    assert str(info.value).startswith(f"{path} {message}")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("bad", "message"), [
    ({"messages": []}, 'field "messages" must be a non-empty list'),
    ({"messages": [{"role": "user", "content": "q"}]}, 'field "messages" has no non-empty assistant message'),
    ({"messages": [{"role": "robot", "content": "q"}]}, 'field "messages[0].role" is \'robot\''),
    ({"messages": [{"role": "user"}]}, 'field "messages[0].content" is missing'),
    ({"text": "x"}, 'field "messages" is missing'),
])
def test_a_bad_chat_line_is_named_by_file_line_and_field(tmp_path: Path, bad: object, message: str) -> None:
    path = _jsonl(tmp_path / "node-2.jsonl", [CHAT, bad])
    with pytest.raises(TrainingError, match=rf"^{path} line 2: " + message.replace("[", r"\[").replace("]", r"\]")):
        load_node_data(path)


def test_a_format_set_in_the_config_overrides_detection(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [{"text": "plain"}])
    with pytest.raises(TrainingError, match=r'line 1: field "instruction" is missing'):
        load_node_data(path, data_format="instruction")


def test_a_folder_mixing_formats_is_refused(tmp_path: Path) -> None:
    _jsonl(tmp_path / "a.jsonl", [INSTRUCTION])
    _jsonl(tmp_path / "b.jsonl", [CHAT])
    with pytest.raises(TrainingError, match="mixes formats"):
        load_node_data(tmp_path)


def test_missing_and_empty_data_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="does not exist"):
        load_node_data(tmp_path / "nope")
    with pytest.raises(TrainingError, match="holds no records"):
        load_node_data(_jsonl(tmp_path / "e.jsonl", ["", "  "]))
    with pytest.raises(TrainingError, match="data format 'csv' is unknown"):
        load_node_data(tmp_path, data_format="csv")
