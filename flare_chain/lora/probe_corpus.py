"""The federation's public probe corpus: a small set of texts from the task, agreed on by CID.

The committee needs a yardstick that no single node controls to tell an update
that works *against* the task (a sign flip, poisoned data) from one that
merely specialises (non-IID data). Weights cannot tell them apart once honest
updates are nearly orthogonal, but their effect on the loss of public text
from the task can (see :mod:`flare_chain.aggregation.probe_loss`). This is
the root-dataset idea of FLTrust (Cao et al., NDSS 2021), with the data made
public and content-addressed instead of held by a trusted server.

The corpus is one canonical JSON file, ``{"format": "flare-probe-corpus",
"version": 1, "texts": [...]}``, pinned on IPFS; its CID travels in the
round-0 global adapter's manifest (``probe_cid``) and from there into every
later global manifest, so every committee member and auditor fetches the same
bytes, verified against the CID. Each round draws its windows from the corpus
with the round's on-chain seed (:func:`probe_windows`), so a node cannot know
in advance which windows will judge it.

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

from flare_chain.errors import ConfigError, UpdateError
from flare_chain.lora.data import texts_to_windows
from flare_chain.lora.domains import available_domains, domain_files

__all__ = [
    "PROBE_CORPUS_FORMAT",
    "decode_probe_corpus",
    "encode_probe_corpus",
    "probe_windows",
    "read_probe_texts",
    "reference_probe_texts",
]

PROBE_CORPUS_FORMAT = "flare-probe-corpus"
_VERSION = 1
_MAX_CORPUS_BYTES = 64 * 2**20


def encode_probe_corpus(texts: Sequence[str]) -> bytes:
    """Canonical JSON bytes of a corpus (same texts, same bytes, same CID); ConfigError if empty."""
    clean = [t for t in texts if isinstance(t, str) and t]
    if not clean:
        raise ConfigError("a probe corpus needs at least one non-empty text")
    doc = {"format": PROBE_CORPUS_FORMAT, "texts": clean, "version": _VERSION}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def decode_probe_corpus(data: bytes, *, cid: str = "<probe corpus>") -> list[str]:
    """The texts of a corpus file; UpdateError naming what is wrong with the bytes."""
    if len(data) > _MAX_CORPUS_BYTES:
        raise UpdateError(f"probe corpus {cid} is {len(data)} bytes, over the {_MAX_CORPUS_BYTES}-byte bound")
    try:
        doc = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UpdateError(f"probe corpus {cid} is not UTF-8 JSON ({exc}); re-pin it with "
                          f"`flare-chain rounds drive --probe-corpus`") from None
    if not isinstance(doc, dict) or doc.get("format") != PROBE_CORPUS_FORMAT:
        raise UpdateError(f"object {cid} is not a flare-chain probe corpus (no format {PROBE_CORPUS_FORMAT!r})")
    if doc.get("version") != _VERSION:
        raise UpdateError(f"probe corpus {cid} has version {doc.get('version')!r}; this build reads {_VERSION}")
    texts = doc.get("texts")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
        raise UpdateError(f"probe corpus {cid} must hold a non-empty list of non-empty strings under 'texts'")
    return texts


def probe_windows(
    texts: Sequence[str], seed: bytes | int, *, count: int, seq_len: int, tokenizer: Any
) -> torch.Tensor:
    """``[min(count, available), seq_len]`` windows of the corpus chosen by ``seed`` alone.

    ``tokenizer`` is the base model's (every member loads the same one from the base's folder).
    The corpus is cut into non-overlapping windows; each window's rank is
    SHA-256 of ``seed ‖ index`` and the ``count`` lowest ranks are taken, in
    index order. Same corpus and seed, same windows, on every machine.
    """
    if count < 1 or seq_len < 2:
        raise ConfigError(f"probe windows need count >= 1 and seq_len >= 2, got count={count}, seq_len={seq_len}")
    windows = texts_to_windows(list(texts), seq_len, tokenizer)
    if windows.shape[0] == 0:
        raise UpdateError(f"the probe corpus is shorter than one {seq_len}-token window; pin a larger corpus")
    raw = seed if isinstance(seed, bytes) else int(seed).to_bytes(32, "big", signed=False)
    ranked = sorted(range(windows.shape[0]),
                    key=lambda i: hashlib.sha256(b"flare-chain probe window" + raw + i.to_bytes(8, "big")).digest())
    chosen = sorted(ranked[:count])
    return windows[chosen].clone()


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
