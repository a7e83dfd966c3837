"""A byte-level tokenizer that needs no vocabulary file.

The reference model must be buildable offline on any machine, so its tokenizer
cannot come from the Hugging Face hub. Bytes are the simplest lossless choice:
ids 0..255 are the UTF-8 bytes of the text, followed by three specials. The
vocabulary is padded to a multiple of 8 so embedding matrices stay aligned.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["BOS_ID", "EOS_ID", "PAD_ID", "VOCAB_SIZE", "decode", "encode"]

PAD_ID = 256
BOS_ID = 257
EOS_ID = 258
VOCAB_SIZE = 264  # 259 used ids, rounded up to a multiple of 8


def encode(text: str, *, add_bos: bool = False, add_eos: bool = False) -> list[int]:
    """Token ids of ``text``: its UTF-8 bytes, optionally wrapped in BOS/EOS.

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
    """Text of ``ids``, skipping special ids.

    Byte runs that are not valid UTF-8 (a model can emit any byte sequence)
    become U+FFFD rather than raising; a sequence produced by :func:`encode`
    always decodes back exactly.
    """
    data = bytes(i for i in ids if 0 <= i < 256)
    try:
        return data.decode("utf-8", errors="surrogatepass")
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace")
