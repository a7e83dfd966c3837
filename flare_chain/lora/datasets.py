"""A node's own data, in the formats operators have, read and validated before any training.

Four formats, detected per file (or set explicitly):

``text``
    UTF-8 text files (a folder of them, or one file): concatenated and cut into
    fixed windows, every token trained on.
``jsonl``
    JSON Lines, one ``{"text": "..."}`` per line: windowed like text.
``instruction``
    JSON Lines of ``{"instruction": ..., "input": ... (optional), "output": ...}``:
    rendered with :data:`INSTRUCTION_TEMPLATE`; the loss covers only the
    output (and the end-of-sequence token after it).
``chat``
    JSON Lines of ``{"messages": [{"role": ..., "content": ...}, ...]}``:
    rendered with the base model's own chat template; the loss covers only
    the assistant turns. A tokenizer without a chat template is refused
    (see :mod:`flare_chain.lora.examples`).

A JSONL file's format is read off its first record (``messages`` → chat,
``instruction`` → instruction, ``text`` → jsonl); every file of a folder must
agree. Every line is checked before anything is trained or pinned: a bad
line raises one :class:`~flare_chain.errors.TrainingError` naming the file,
the line number and the field, e.g. ``data/node-1.jsonl line 17: field
"output" is missing``. Blank lines are skipped (they still count for line
numbers).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from flare_chain.errors import TrainingError

__all__ = [
    "DATA_FORMATS",
    "INSTRUCTION_TEMPLATE",
    "ChatTurn",
    "DataFormat",
    "NodeData",
    "Record",
    "as_node_data",
    "detect_format",
    "load_node_data",
    "node_entries",
    "record_from_json",
    "record_to_json",
]

DataFormat = Literal["text", "jsonl", "instruction", "chat"]
DATA_FORMATS: tuple[str, ...] = ("auto", "text", "jsonl", "instruction", "chat")
"""Values of the node config's ``data.format``; ``auto`` detects each file's format."""

INSTRUCTION_TEMPLATE = "### Instruction:\n{instruction}\n\n{input_block}### Response:\n"
"""How an instruction record becomes a prompt (Alpaca style); ``input_block`` is
``"### Input:\\n{input}\\n\\n"`` when the record has a non-empty ``input``, else empty.
The response that follows is the record's ``output`` and the tokenizer's EOS."""

_ROLES = frozenset({"system", "user", "assistant"})
_TEXT_SUFFIXES = frozenset({".txt", ".md", ".py", ".rst", ""})


@dataclass(frozen=True)
class ChatTurn:
    """One message of a chat record."""

    role: str
    content: str


@dataclass(frozen=True)
class Record:
    """One validated supervised example: an instruction record, or a chat's messages."""

    instruction: str = ""
    input: str = ""
    output: str = ""
    messages: tuple[ChatTurn, ...] = ()


@dataclass(frozen=True)
class NodeData:
    """A node's validated data: plain ``texts`` (text, jsonl) or supervised ``records`` (instruction, chat).

    ``source`` names where it came from, for messages and logs.
    """

    format: DataFormat
    texts: tuple[str, ...] = ()
    records: tuple[Record, ...] = ()
    source: str = "<memory>"

    @property
    def supervised(self) -> bool:
        """True when the loss covers only responses (instruction, chat)."""
        return self.format in ("instruction", "chat")

    def __len__(self) -> int:
        return len(self.records) if self.supervised else len(self.texts)


def as_node_data(data: NodeData | Sequence[str]) -> NodeData:
    """``data`` as NodeData; a plain list of strings is text data (the stdlib domains, tests)."""
    if isinstance(data, NodeData):
        return data
    if isinstance(data, str):
        raise TrainingError("node data must be a list of texts or NodeData, not a single string")
    return NodeData(format="text", texts=tuple(data))


class _LineError(Exception):
    """A problem with one field of one line; the loader adds the file and line number."""


def _string_field(obj: dict[str, Any], name: str, *, required: bool) -> str:
    if name not in obj:
        if required:
            raise _LineError(f'field "{name}" is missing')
        return ""
    value = obj[name]
    if not isinstance(value, str):
        raise _LineError(f'field "{name}" must be a string, got {type(value).__name__}')
    return value


def _parse_instruction(obj: dict[str, Any]) -> Record:
    instruction = _string_field(obj, "instruction", required=True)
    if not instruction.strip():
        raise _LineError('field "instruction" is empty')
    output = _string_field(obj, "output", required=True)
    if not output.strip():
        raise _LineError('field "output" is empty')
    return Record(instruction=instruction, input=_string_field(obj, "input", required=False), output=output)


def _parse_chat(obj: dict[str, Any]) -> Record:
    if "messages" not in obj:
        raise _LineError('field "messages" is missing')
    messages = obj["messages"]
    if not isinstance(messages, list) or not messages:
        raise _LineError('field "messages" must be a non-empty list of {"role", "content"} objects')
    turns = []
    for i, m in enumerate(messages):
        where = f'field "messages[{i}]'
        if not isinstance(m, dict):
            raise _LineError(f'{where}" must be an object with "role" and "content"')
        role, content = m.get("role"), m.get("content")
        if role is None:
            raise _LineError(f'{where}.role" is missing')
        if role not in _ROLES:
            raise _LineError(f'{where}.role" is {role!r}; it must be one of {", ".join(sorted(_ROLES))}')
        if not isinstance(content, str):
            problem = "is missing" if content is None else f"must be a string, got {type(content).__name__}"
            raise _LineError(f'{where}.content" {problem}')
        turns.append(ChatTurn(role=role, content=content))
    if not any(t.role == "assistant" and t.content.strip() for t in turns):
        raise _LineError('field "messages" has no non-empty assistant message to learn from')
    return Record(messages=tuple(turns))


def record_from_json(obj: Any, data_format: str) -> Record:
    """One instruction or chat record from its JSON object, checked as a node's data line is.

    ValueError naming the field when it is malformed (the caller adds where the object came from).
    """
    if not isinstance(obj, dict):
        raise ValueError(f"a record must be a JSON object, got {type(obj).__name__}")
    try:
        if data_format == "instruction":
            return _parse_instruction(obj)
        if data_format == "chat":
            return _parse_chat(obj)
    except _LineError as exc:
        raise ValueError(str(exc)) from None
    raise ValueError(f"records are instruction or chat, not {data_format!r}")


def record_to_json(record: Record, data_format: str) -> dict[str, Any]:
    """The JSON object :func:`record_from_json` reads back as ``record`` (the JSONL line's fields)."""
    if data_format == "chat":
        return {"messages": [{"role": t.role, "content": t.content} for t in record.messages]}
    out = {"instruction": record.instruction, "output": record.output}
    if record.input:
        out["input"] = record.input
    return out


def _parse_text(obj: dict[str, Any]) -> str:
    text = _string_field(obj, "text", required=True)
    if not text:
        raise _LineError('field "text" is empty')
    return text


def _format_of(obj: dict[str, Any]) -> DataFormat:
    if "messages" in obj:
        return "chat"
    if "instruction" in obj:
        return "instruction"
    if "text" in obj:
        return "jsonl"
    raise _LineError(
        f"cannot tell the format from its fields {sorted(obj)[:6]}: a record needs \"text\", "
        "\"instruction\" + \"output\", or \"messages\""
    )


def _json_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line; TrainingError naming the line if one is not an object."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TrainingError(f"cannot read node data file {path}: {exc}") from exc
    out = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            raise TrainingError(f"{path} line {number}: not UTF-8 text") from None
        except ValueError as exc:
            raise TrainingError(f"{path} line {number}: not valid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise TrainingError(f"{path} line {number}: a record must be a JSON object, got {type(obj).__name__}")
        out.append((number, obj))
    if not out:
        raise TrainingError(f"node data file {path} holds no records")
    return out


def detect_format(path: Path) -> DataFormat:
    """The format of one data file: ``text`` unless it is JSON Lines, then read off its first record."""
    path = Path(path)
    if path.suffix.lower() not in (".jsonl", ".json"):
        return "text"
    number, first = _json_lines(path)[0]
    try:
        return _format_of(first)
    except _LineError as exc:
        raise TrainingError(f"{path} line {number}: {exc}") from None


def _load_jsonl(path: Path, fmt: DataFormat) -> tuple[list[str], list[Record]]:
    texts: list[str] = []
    records: list[Record] = []
    for number, obj in _json_lines(path):
        try:
            if fmt == "jsonl":
                texts.append(_parse_text(obj))
            elif fmt == "instruction":
                records.append(_parse_instruction(obj))
            elif fmt == "chat":
                records.append(_parse_chat(obj))
            else:  # pragma: no cover - text files never reach here
                raise _LineError(f"format {fmt!r} is not a JSON Lines format")
        except _LineError as exc:
            raise TrainingError(f"{path} line {number}: {exc}") from None
    return texts, records


def _files_of(path: Path, glob: str | None) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise TrainingError(f"node data {path} does not exist; point data.path at a file or folder")
    if glob is not None:
        files = sorted(p for p in path.glob(glob) if p.is_file())
    else:
        jsonl = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".jsonl", ".json"))
        files = jsonl or sorted(
            p for p in path.rglob("*")
            if p.is_file() and p.suffix.lower() in _TEXT_SUFFIXES and not p.name.startswith(".")
        )
    if not files:
        raise TrainingError(f"node data folder {path} holds no data files (.txt text or .jsonl records)")
    return files


def load_node_data(path: Path, *, data_format: str = "auto", glob: str | None = None) -> NodeData:
    """Read and validate the node data at ``path`` (a file or a folder), every line, before any training.

    ``data_format`` is ``auto`` (detected per file; a folder's files must agree)
    or one of text, jsonl, instruction, chat. A folder is read in sorted path
    order: its ``.jsonl`` files if it has any, else its text files (``glob``
    picks files explicitly).
    """
    if data_format not in DATA_FORMATS:
        raise TrainingError(f"data format {data_format!r} is unknown; use one of {', '.join(DATA_FORMATS)}")
    root = Path(path)
    files = _files_of(root, glob)
    formats = {f: (detect_format(f) if data_format == "auto" else data_format) for f in files}
    kinds = sorted(set(formats.values()))
    if len(kinds) > 1:
        example = {k: next(str(f) for f, v in formats.items() if v == k) for k in kinds}
        raise TrainingError(
            f"node data {root} mixes formats ({', '.join(f'{k} in {v}' for k, v in example.items())}); "
            "give each node one format"
        )
    fmt: DataFormat = kinds[0]  # type: ignore[assignment]
    texts: list[str] = []
    records: list[Record] = []
    for f in files:
        if fmt == "text":
            try:
                texts.append(f.read_text(encoding="utf-8", errors="replace"))
            except OSError as exc:
                raise TrainingError(f"cannot read node data file {f}: {exc}") from exc
        else:
            more_texts, more_records = _load_jsonl(f, fmt)
            texts += more_texts
            records += more_records
    data = NodeData(format=fmt, texts=tuple(texts), records=tuple(records), source=str(root))
    if len(data) == 0 or (not data.supervised and not any(texts)):
        raise TrainingError(f"node data {root} is empty; add text or records")
    return data


def node_entries(data_dir: Path, nodes: int | None = None) -> list[Path]:
    """Node ``i``'s data in ``data_dir``: ``node-<i>`` as a file (``node-1.jsonl``, ``node-1.txt``) or a folder.

    With ``nodes`` None, every entry from ``node-1`` up to the first gap; else
    exactly ``nodes`` of them (TrainingError naming the first one missing).
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise TrainingError(f"data folder {root} does not exist; it must hold node-1.jsonl, node-2.jsonl, ... "
                            "or node-1/, node-2/, ...")
    out: list[Path] = []
    i = 1
    while nodes is None or i <= nodes:
        found = sorted(p for p in root.iterdir() if p.name == f"node-{i}" or p.stem == f"node-{i}")
        if len(found) > 1:
            raise TrainingError(f"data folder {root} holds {len(found)} entries for node-{i} "
                                f"({', '.join(p.name for p in found)}); keep one")
        if not found:
            if nodes is None and out:
                break
            raise TrainingError(f"data folder {root} has no entry for node-{i} (node-{i}.jsonl, node-{i}.txt "
                                f"or a node-{i}/ folder)")
        out.append(found[0])
        i += 1
    return out
