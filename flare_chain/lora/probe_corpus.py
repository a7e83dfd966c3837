"""The federation's public probe corpus: a small set of texts from the task, agreed on by CID.

The committee needs a yardstick that no single node controls to tell an update
that works *against* the task (a sign flip, poisoned data) from one that
merely specialises (non-IID data). Weights cannot tell them apart once honest
updates are nearly orthogonal, but their effect on the loss of public text
from the task can (see :mod:`flare_chain.aggregation.probe_loss`). This is
the root-dataset idea of FLTrust (Cao et al., NDSS 2021), with the data made
public and content-addressed instead of held by a trusted server.

The corpus is one canonical JSON file pinned on IPFS. Its CID travels in the
round-0 global adapter's manifest (``probe_cid``) and from there into every
later global manifest, so every committee member and auditor fetches the same
bytes, verified against the CID. Each round draws its windows from the corpus
with the round's on-chain seed (:func:`probe_windows`), so a node cannot know
in advance which windows will judge it. Two kinds of corpus:

* **text** (``{"format": "flare-probe-corpus", "version": 1, "texts": [...]}``):
  the texts are cut into fixed windows and every token is scored, for
  federations that learn plain text.
* **records** (``"version": 2``, ``"data_format": "instruction"`` or ``"chat"``,
  ``"records": [...]`` as the nodes' JSONL lines): one example per record,
  masked as in training, so only the *response* tokens are scored. For an
  instruction or chat task this is what the nodes learn; scoring the prompts
  too measures something else. On the skills task an honest update lowers the
  response loss but raises the loss over whole rendered records (its prompts
  are random words no update can learn), so a negated update *lowered* that
  loss and passed the gate; on response tokens honest updates lower the loss
  and sign flips raise it by several standard errors (see the README's
  ablation).

For the stdlib reference task, :func:`reference_probe_texts` samples a few
KiB of public source from every domain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from flare_chain.errors import ConfigError, TrainingError, UpdateError
from flare_chain.lora.data import texts_to_windows
from flare_chain.lora.datasets import NodeData, as_node_data, load_node_data, record_from_json, record_to_json
from flare_chain.lora.domains import available_domains, domain_files
from flare_chain.lora.examples import TokenExamples, supervised_examples

__all__ = [
    "PROBE_CORPUS_FORMAT",
    "decode_probe_corpus",
    "encode_probe_corpus",
    "probe_example_len",
    "probe_windows",
    "read_probe_corpus",
    "read_probe_texts",
    "reference_probe_texts",
]

PROBE_CORPUS_FORMAT = "flare-probe-corpus"
_TEXT_VERSION = 1
_RECORDS_VERSION = 2
_MAX_CORPUS_BYTES = 64 * 2**20


def encode_probe_corpus(corpus: NodeData | Sequence[str]) -> bytes:
    """Canonical JSON bytes of a corpus (same corpus, same bytes, same CID); ConfigError if empty.

    Texts (a list of strings, or text/jsonl NodeData) give a version-1 text corpus, byte for byte
    what earlier builds pinned; instruction or chat records give a version-2 records corpus.
    """
    data = as_node_data(corpus)
    doc: dict[str, Any]
    if data.supervised:
        if not data.records:
            raise ConfigError("a probe corpus needs at least one record")
        doc = {"data_format": data.format, "format": PROBE_CORPUS_FORMAT,
               "records": [record_to_json(r, data.format) for r in data.records], "version": _RECORDS_VERSION}
    else:
        clean = [t for t in data.texts if isinstance(t, str) and t]
        if not clean:
            raise ConfigError("a probe corpus needs at least one non-empty text")
        doc = {"format": PROBE_CORPUS_FORMAT, "texts": clean, "version": _TEXT_VERSION}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def decode_probe_corpus(data: bytes, *, cid: str = "<probe corpus>") -> NodeData:
    """The corpus in ``data``: text (format ``text``) or records (``instruction``/``chat``).

    UpdateError naming what is wrong with the bytes.
    """
    if len(data) > _MAX_CORPUS_BYTES:
        raise UpdateError(f"probe corpus {cid} is {len(data)} bytes, over the {_MAX_CORPUS_BYTES}-byte bound")
    try:
        doc = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UpdateError(f"probe corpus {cid} is not UTF-8 JSON ({exc}); re-pin it with "
                          f"`flare-chain rounds drive --probe-corpus`") from None
    if not isinstance(doc, dict) or doc.get("format") != PROBE_CORPUS_FORMAT:
        raise UpdateError(f"object {cid} is not a flare-chain probe corpus (no format {PROBE_CORPUS_FORMAT!r})")
    version = doc.get("version")
    if version == _TEXT_VERSION:
        texts = doc.get("texts")
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            raise UpdateError(f"probe corpus {cid} must hold a non-empty list of non-empty strings under 'texts'")
        return NodeData(format="text", texts=tuple(texts), source=f"probe corpus {cid}")
    if version == _RECORDS_VERSION:
        data_format = doc.get("data_format")
        if data_format not in ("instruction", "chat"):
            raise UpdateError(f"probe corpus {cid} has data_format {data_format!r}; a records corpus holds "
                              "'instruction' or 'chat' records")
        raw = doc.get("records")
        if not isinstance(raw, list) or not raw:
            raise UpdateError(f"probe corpus {cid} must hold a non-empty list under 'records'")
        records = []
        for i, obj in enumerate(raw):
            try:
                records.append(record_from_json(obj, data_format))
            except ValueError as exc:
                raise UpdateError(f"probe corpus {cid} record {i}: {exc}") from None
        return NodeData(format=data_format, records=tuple(records), source=f"probe corpus {cid}")
    raise UpdateError(f"probe corpus {cid} has version {version!r}; this build reads "
                      f"{_TEXT_VERSION} (texts) and {_RECORDS_VERSION} (records)")


def probe_example_len(corpus: NodeData, *, window_len: int, train_seq_len: int) -> int:
    """Tokens per probe example: ``window_len`` (the spec's ``gates.probe_loss_seq_len``) for a text
    corpus; for a records corpus the federation's training ``seq_len``, the width the nodes learn
    those records at, so a response is judged with the context it was trained with."""
    return train_seq_len if corpus.supervised else window_len


def probe_windows(
    corpus: NodeData | Sequence[str], seed: bytes | int, *, count: int, seq_len: int, tokenizer: Any
) -> TokenExamples:
    """``min(count, available)`` examples of ``seq_len`` tokens from the corpus, chosen by ``seed`` alone.

    ``tokenizer`` is the base model's (every member loads the same one from the base's folder).
    A text corpus is cut into non-overlapping windows, every token a label; a
    records corpus gives one example per record whose response starts within
    ``seq_len`` tokens, labels on the response tokens only (as in training).
    Each candidate's rank is SHA-256 of ``seed ‖ index`` and the ``count``
    lowest ranks are taken, in index order. Same corpus and seed, same
    examples, on every machine.
    """
    if count < 1 or seq_len < 2:
        raise ConfigError(f"probe windows need count >= 1 and seq_len >= 2, got count={count}, seq_len={seq_len}")
    data = as_node_data(corpus)
    if data.supervised:
        try:
            examples = supervised_examples(data, tokenizer, seq_len)
        except TrainingError:
            raise UpdateError(f"no record of the probe corpus has a response within {seq_len} tokens; raise the "
                              "spec's gates.probe_loss_seq_len or pin shorter records") from None
    else:
        windows = texts_to_windows(list(data.texts), seq_len, tokenizer)
        if windows.shape[0] == 0:
            raise UpdateError(f"the probe corpus is shorter than one {seq_len}-token window; pin a larger corpus")
        examples = TokenExamples.from_windows(windows)
    raw = seed if isinstance(seed, bytes) else int(seed).to_bytes(32, "big", signed=False)
    ranked = sorted(range(len(examples)),
                    key=lambda i: hashlib.sha256(b"flare-chain probe window" + raw + i.to_bytes(8, "big")).digest())
    chosen = torch.tensor(sorted(ranked[:count]), dtype=torch.long)
    picked = examples[chosen]
    mask = picked.attention_mask.clone() if picked.attention_mask is not None else None
    return TokenExamples(input_ids=picked.input_ids.clone(), labels=picked.labels.clone(), attention_mask=mask)


def reference_probe_texts(
    *, domains: Sequence[str] | None = None, bytes_per_domain: int = 8192, piece_chars: int = 1024,
    root: Path | None = None,
) -> list[str]:
    """A public probe corpus for the stdlib reference task: about ``bytes_per_domain`` of each domain.

    ``domains`` are the federation's (default: every available one); the
    probe should measure what the nodes learn, so a federation that knows its
    domains passes them. Each domain's files are cut into ``piece_chars``
    pieces and pieces are taken in the order of the SHA-256 of (file name,
    piece index) until the domain's share is full, so the sample spreads over
    whole files rather than their headers (docstrings, imports).
    Deterministic for a given Python version.
    """
    if bytes_per_domain < 1 or piece_chars < 1:
        raise ConfigError(f"bytes_per_domain and piece_chars must be >= 1, got {bytes_per_domain}, {piece_chars}")
    texts: list[str] = []
    for domain in (available_domains(root) if domains is None else list(domains)):
        pieces: list[tuple[bytes, str]] = []
        for path in domain_files(domain, root):
            text = path.read_text(encoding="utf-8", errors="replace")
            for start in range(0, len(text), piece_chars):
                key = hashlib.sha256(f"{path.name}:{start}".encode()).digest()
                pieces.append((key, text[start : start + piece_chars]))
        left = bytes_per_domain
        for _key, piece in sorted(pieces):
            if left <= 0:
                break
            texts.append(piece[:left])
            left -= len(piece[:left])
    return texts


def read_probe_texts(paths: Sequence[Path]) -> list[str]:
    """Texts from files and directories (every file below, sorted), for an operator's own corpus."""
    files: list[Path] = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file()))
        elif p.is_file():
            files.append(p)
        else:
            raise ConfigError(f"probe corpus path {p} does not exist; pass text files or directories of them")
    texts = []
    for f in files:
        try:
            texts.append(f.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"probe corpus file {f} is not UTF-8 text; the probe corpus holds text only") from None
    if not any(texts):
        raise ConfigError(f"no text found in {', '.join(str(p) for p in paths)} for the probe corpus")
    return texts


def read_probe_corpus(paths: Sequence[Path]) -> NodeData:
    """An operator's probe corpus: JSONL files of instruction or chat records (scored on responses), JSONL
    ``{"text"}`` lines, or text files and directories of them (every token scored).

    The records are checked line by line as node data is (one error naming the file, line and field).
    """
    jsonl = [Path(p) for p in paths if Path(p).is_file() and Path(p).suffix.lower() in (".jsonl", ".json")]
    if not jsonl:
        return NodeData(format="text", texts=tuple(read_probe_texts(paths)), source="probe corpus files")
    if len(jsonl) != len(paths):
        raise ConfigError("a probe corpus is either JSONL records or text files, not both; pass one kind")
    try:
        parts = [load_node_data(p) for p in jsonl]
    except TrainingError as exc:
        raise ConfigError(f"probe corpus: {exc}") from None
    formats = sorted({p.format for p in parts})
    if len(formats) > 1:
        raise ConfigError(f"probe corpus files mix formats ({', '.join(formats)}); pass files of one format")
    records = tuple(r for p in parts for r in p.records)
    texts = tuple(t for p in parts for t in p.texts)
    fmt = "text" if formats[0] == "jsonl" else formats[0]
    return NodeData(format=fmt, texts=texts, records=records,  # type: ignore[arg-type]
                    source=", ".join(str(p) for p in jsonl))
