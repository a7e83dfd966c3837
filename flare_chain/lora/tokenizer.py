"""Tokenizers: the base model's own, loaded from its folder, and the reference model's byte tokenizer.

Every model takes one code path: :func:`load_tokenizer` reads the Hugging
Face tokenizer saved in the model folder (``tokenizer.json`` /
``tokenizer_config.json``), from local files only, and refuses a folder
without one or one whose ids do not fit the model's embedding matrix. The
project's reference model ships a byte tokenizer in that same form
(:func:`save_byte_tokenizer`): ids 0..255 are the UTF-8 bytes of the text,
256/257/258 are pad/bos/eos, and the vocabulary is padded to a multiple of 8
so embedding matrices stay aligned. Its special tokens are never matched in
text (``split_special_tokens``), so a text is always exactly its bytes.

:func:`encode` / :func:`decode` are the same byte mapping as pure functions,
for code and tests that need it without transformers.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flare_chain.basemodel.folder import TOKENIZER_FILES as MODEL_TOKENIZER_FILES
from flare_chain.errors import TrainingError

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "PAD_ID",
    "TOKENIZER_FILES",
    "VOCAB_SIZE",
    "byte_tokenizer",
    "decode",
    "encode",
    "has_tokenizer_files",
    "load_tokenizer",
    "pad_id",
    "save_byte_tokenizer",
]

PAD_ID = 256
BOS_ID = 257
EOS_ID = 258
VOCAB_SIZE = 264  # 259 used ids, rounded up to a multiple of 8

TOKENIZER_FILES = MODEL_TOKENIZER_FILES
"""What a model folder holds for :func:`load_tokenizer` (a fast tokenizer; the reference model writes both)."""

_PAD, _BOS, _EOS = "<pad>", "<s>", "</s>"


def encode(text: str, *, add_bos: bool = False, add_eos: bool = False) -> list[int]:
    """Token ids of ``text`` under the byte tokenizer: its UTF-8 bytes, optionally wrapped in BOS/EOS.

    Lone surrogates are kept (``surrogatepass``) so that every Python ``str``
    has an encoding and ``decode(encode(s)) == s`` holds for all of them.
    """
    ids = list(text.encode("utf-8", errors="surrogatepass"))
    if add_bos:
        ids.insert(0, BOS_ID)
    if add_eos:
        ids.append(EOS_ID)
    return ids


def decode(ids: Iterable[int]) -> str:
    """Text of byte-tokenizer ``ids``, skipping special ids.

    Byte runs that are not valid UTF-8 (a model can emit any byte sequence)
    become U+FFFD rather than raising; a sequence produced by :func:`encode`
    always decodes back exactly.
    """
    data = bytes(i for i in ids if 0 <= i < 256)
    try:
        return data.decode("utf-8", errors="surrogatepass")
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace")


def _byte_to_char() -> dict[int, str]:
    """GPT-2's printable stand-in character for each byte (the ByteLevel pre-tokenizer's alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = dict(zip(printable, printable, strict=True))
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = 256 + extra
            extra += 1
    return {b: chr(c) for b, c in chars.items()}


def _byte_backend() -> Any:  # -> tokenizers.Tokenizer
    """A ``tokenizers.Tokenizer`` whose id of each byte is the byte, then pad, bos, eos (256, 257, 258).

    A BPE without merges over the byte alphabet, and a ByteLevel pre-tokenizer
    without the GPT-2 split regex: every byte of the text becomes its own token.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    vocab = {char: byte for byte, char in _byte_to_char().items()}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (_PAD, _BOS, _EOS)])
    ids = [backend.token_to_id(t) for t in (_PAD, _BOS, _EOS)]
    if ids != [PAD_ID, BOS_ID, EOS_ID]:  # pragma: no cover - guards a tokenizers behaviour change
        raise TrainingError(f"the byte tokenizer gave specials ids {ids}, expected {[PAD_ID, BOS_ID, EOS_ID]}")
    return backend


def _byte_tokenizer_config() -> dict[str, Any]:
    return {
        "bos_token": _BOS,
        "clean_up_tokenization_spaces": False,
        "eos_token": _EOS,
        "model_max_length": 1_000_000_000,
        "pad_token": _PAD,
        "split_special_tokens": True,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }


def byte_tokenizer() -> Any:  # -> transformers.PreTrainedTokenizerFast
    """The reference model's byte tokenizer as a transformers tokenizer, built in memory."""
    from transformers import PreTrainedTokenizerFast

    cfg = _byte_tokenizer_config()
    return PreTrainedTokenizerFast(
        tokenizer_object=_byte_backend(),
        bos_token=cfg["bos_token"],
        eos_token=cfg["eos_token"],
        pad_token=cfg["pad_token"],
        model_max_length=cfg["model_max_length"],
        split_special_tokens=True,
        clean_up_tokenization_spaces=False,
    )


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_byte_tokenizer(model_dir: Path) -> None:
    """Write the byte tokenizer's ``tokenizer.json`` and ``tokenizer_config.json`` into ``model_dir``.

    Byte-deterministic (fixed content, sorted keys) so a model folder's hash
    does not change with who wrote it; each file is replaced atomically, the
    config last, so a folder with both files holds a complete tokenizer.
    """
    folder = Path(model_dir)
    backend = json.loads(_byte_backend().to_str())
    _write_atomic(folder / TOKENIZER_FILES[0], (json.dumps(backend, indent=2, sort_keys=True) + "\n").encode())
    config = json.dumps(_byte_tokenizer_config(), indent=2, sort_keys=True) + "\n"
    _write_atomic(folder / TOKENIZER_FILES[1], config.encode())


def has_tokenizer_files(model_dir: Path) -> bool:
    """Whether ``model_dir`` holds both files of a saved fast tokenizer."""
    return all((Path(model_dir) / name).is_file() for name in TOKENIZER_FILES)


def _embedding_rows(model_dir: Path) -> int | None:
    """Rows of the model's input embedding as its ``config.json`` declares them (None if it does not say)."""
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    rows = config.get("vocab_size")
    if rows is None and isinstance(config.get("text_config"), dict):
        rows = config["text_config"].get("vocab_size")
    return int(rows) if isinstance(rows, int) else None


def load_tokenizer(model_dir: Path, *, embedding_rows: int | None = None) -> Any:  # -> PreTrainedTokenizerBase
    """The tokenizer saved in ``model_dir`` (local files only, never the hub), checked against the model.

    Refused with one TrainingError line naming the folder when it holds no
    tokenizer files, transformers cannot load them, or the tokenizer's largest
    id does not fit the model's embedding rows (``embedding_rows``, else the
    ``vocab_size`` in ``config.json``).
    """
    folder = Path(model_dir)
    if not folder.is_dir():
        raise TrainingError(f"base model directory {folder} does not exist; pass a Hugging Face model directory")
    if not has_tokenizer_files(folder):
        missing = [name for name in TOKENIZER_FILES if not (folder / name).is_file()]
        raise TrainingError(
            f"base model directory {folder} has no tokenizer ({', '.join(missing)} missing); "
            f"save the model's tokenizer there with tokenizer.save_pretrained({str(folder)!r})"
        )
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:300]
        raise TrainingError(
            f"base model directory {folder} has a tokenizer transformers cannot load "
            f"({type(exc).__name__}: {reason}); re-save it with tokenizer.save_pretrained"
        ) from None
    rows = embedding_rows if embedding_rows is not None else _embedding_rows(folder)
    specials = [i for i in (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) if i is not None]
    max_id = max([len(tokenizer) - 1, *specials])
    if rows is not None and max_id >= rows:
        raise TrainingError(
            f"the tokenizer in {folder} does not fit its model: its ids go up to {max_id}, but the model's "
            f"embedding has {rows} rows; use the tokenizer the model was trained with"
        )
    return tokenizer


def pad_id(tokenizer: Any) -> int:
    """The id that pads a batch: the tokenizer's pad token, else its eos (the usual causal-LM choice)."""
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if value is not None:
            return int(value)
    raise TrainingError(
        "the model's tokenizer has neither a pad nor an eos token, so examples of different lengths cannot be "
        "batched; set tokenizer.pad_token and save it again"
    )
