"""Texts → fixed-length token windows, split deterministically into train and held-out.

Pure functions over lists and tensors: no files, no model. Each text becomes
``BOS + bytes + EOS``; the texts are concatenated in the order given and cut
into non-overlapping windows of ``seq_len`` tokens (the tail shorter than a
window is dropped). Which windows are held out is decided by a keyed hash of
the window index, so the split depends only on the data, the seed and the
fraction — not on torch's RNG or version.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from flare_chain.errors import TrainingError
from flare_chain.lora.tokenizer import BOS_ID, EOS_ID, encode

__all__ = [
    "WindowSplit",
    "split_windows",
    "texts_to_windows",
    "token_stream",
    "token_tensor",
    "windows_for_training",
]


def token_stream(texts: Sequence[str]) -> list[int]:
    """All texts as one token list, each wrapped in BOS/EOS, in the order given."""
    ids: list[int] = []
    for text in texts:
        ids.extend(encode(text, add_bos=True, add_eos=True))
    return ids


def token_tensor(texts: Sequence[str]) -> torch.Tensor:
    """:func:`token_stream` as a 1-D int64 tensor, built without a Python int per byte (fast for MBs)."""
    parts: list[torch.Tensor] = []
    bos, eos = torch.tensor([BOS_ID], dtype=torch.int16), torch.tensor([EOS_ID], dtype=torch.int16)
    for text in texts:
        raw = bytearray(text.encode("utf-8", errors="surrogatepass"))
        body = torch.frombuffer(raw, dtype=torch.uint8).to(torch.int16) if raw else bos[:0]
        parts.extend((bos, body, eos))
    if not parts:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat(parts).to(torch.long)


def texts_to_windows(texts: Sequence[str], seq_len: int) -> torch.Tensor:
    """Non-overlapping ``seq_len`` windows of :func:`token_stream`; shape ``(n, seq_len)``, int64."""
    if seq_len < 1:
        raise TrainingError(f"seq_len={seq_len} is invalid; it must be >= 1")
    ids = token_tensor(texts)
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
    windows = texts_to_windows(texts, seq_len)
    n = int(windows.shape[0])
    n_val = max(1, math.ceil(val_fraction * n)) if n else 1
    if n < 2 or n - n_val < 1:
        have = int(token_tensor(texts).shape[0])
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
