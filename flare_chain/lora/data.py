"""Texts → fixed-length token windows, split deterministically into train and held-out.

Pure functions over lists and tensors: no files, no model; the tokenizer is
the base model's own (:func:`flare_chain.lora.tokenizer.load_tokenizer`). Each
text becomes ``BOS + tokens + EOS`` (BOS left out when the tokenizer has none
or it equals EOS, as in GPT-2; EOS left out when it has none); the texts are concatenated in the order given and cut
into non-overlapping windows of ``seq_len`` tokens (the tail shorter than a
window is dropped). Which windows are held out is decided by a keyed hash of
the window index, so the split depends only on the data, the seed and the
fraction — not on torch's RNG or version.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from flare_chain.errors import TrainingError

__all__ = [
    "WindowSplit",
    "split_windows",
    "texts_to_windows",
    "token_stream",
    "token_tensor",
    "windows_for_training",
]


_CHUNK_TEXTS = 32  # texts tokenized per call: keeps the Python int lists of MBs of text from piling up


def _text_ids(texts: Sequence[str], tokenizer: Any) -> Iterator[list[int]]:
    """Each text's token ids without specials, in order; lone surrogates (not UTF-8) become "?" first."""
    for start in range(0, len(texts), _CHUNK_TEXTS):
        clean = [t.encode("utf-8", errors="replace").decode("utf-8") for t in texts[start : start + _CHUNK_TEXTS]]
        yield from tokenizer(clean, add_special_tokens=False, verbose=False)["input_ids"]


def _wrappers(tokenizer: Any) -> tuple[list[int], list[int]]:
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    head = [int(bos)] if bos is not None and bos != eos else []
    tail = [int(eos)] if eos is not None else []
    return head, tail


def token_stream(texts: Sequence[str], tokenizer: Any) -> list[int]:
    """All texts as one token list, each wrapped in BOS/EOS, in the order given."""
    return token_tensor(texts, tokenizer).tolist()


def token_tensor(texts: Sequence[str], tokenizer: Any) -> torch.Tensor:
    """All texts as one 1-D int64 tensor of token ids, each text wrapped in BOS/EOS, in the order given."""
    head, tail = _wrappers(tokenizer)
    parts = [torch.tensor(head + ids + tail, dtype=torch.long) for ids in _text_ids(texts, tokenizer)]
    if not parts:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat(parts)


def texts_to_windows(texts: Sequence[str], seq_len: int, tokenizer: Any) -> torch.Tensor:
    """Non-overlapping ``seq_len`` windows of :func:`token_tensor`; shape ``(n, seq_len)``, int64."""
    if seq_len < 1:
        raise TrainingError(f"seq_len={seq_len} is invalid; it must be >= 1")
    ids = token_tensor(texts, tokenizer)
    n = int(ids.shape[0]) // seq_len
    return ids[: n * seq_len].reshape(n, seq_len).clone()


def _rank_key(seed: int, index: int) -> bytes:
    return hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()


@dataclass(frozen=True)
class WindowSplit:
    """Training and held-out windows (``(n, seq_len)`` int64 tensors) of one dataset."""

    train: torch.Tensor
    val: torch.Tensor


def split_windows(
    windows: torch.Tensor,
    val_fraction: float,
    seed: int,
    *,
    max_train: int | None = None,
    max_val: int | None = None,
) -> WindowSplit:
    """Hold out ``ceil(val_fraction * n)`` windows (at least one), chosen by a seeded hash.

    Windows are ordered by ``blake2b(f"{seed}:{index}")``; the first share is
    held out and the rest is training data, so both are a spread-out sample of
    the whole text. Caps take a prefix of that order, so a smaller cap gives a
    subset of a larger one. Within each part, windows keep their text order.
    """
    n = int(windows.shape[0])
    if not 0 < val_fraction < 1:
        raise TrainingError(f"val_fraction={val_fraction} is invalid; it must be in (0, 1)")
    order = sorted(range(n), key=lambda i: _rank_key(seed, i))
    n_val = min(max(1, math.ceil(val_fraction * n)), n)
    val_idx, train_idx = order[:n_val], order[n_val:]
    if max_val is not None:
        val_idx = val_idx[:max_val]
    if max_train is not None:
        train_idx = train_idx[:max_train]
    return WindowSplit(
        train=windows[sorted(train_idx)] if train_idx else windows[:0],
        val=windows[sorted(val_idx)] if val_idx else windows[:0],
    )


def windows_for_training(
    texts: Sequence[str],
    *,
    tokenizer: Any,
    seq_len: int,
    val_fraction: float,
    seed: int,
    max_train: int | None = None,
    max_val: int | None = None,
) -> WindowSplit:
    """Window and split ``texts``, refusing data too short to give both train and held-out windows.

    The error says how many tokens were needed and how many there were.
    """
    if not texts or not any(texts):
        raise TrainingError("the training dataset is empty: pass at least one non-empty text")
    windows = texts_to_windows(texts, seq_len, tokenizer)
    n = int(windows.shape[0])
    n_val = max(1, math.ceil(val_fraction * n)) if n else 1
    if n < 2 or n - n_val < 1:
        have = int(token_tensor(texts, tokenizer).shape[0])
        need_windows = 2
        while need_windows - max(1, math.ceil(val_fraction * need_windows)) < 1:
            need_windows += 1
        need = need_windows * seq_len
        raise TrainingError(
            f"the training dataset is too short: it has {have} tokens ({n} windows of seq_len={seq_len}), "
            f"but at least {need} tokens are needed for one training and one held-out window "
            f"with val_fraction={val_fraction}; add text or lower seq_len"
        )
    return split_windows(windows, val_fraction, seed, max_train=max_train, max_val=max_val)
