"""A model folder shaped like save_pretrained's output, with bytes whose Kubo CIDs are known."""

from __future__ import annotations

import os
from pathlib import Path

HELLO_CID = "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD"
"""Kubo's ``ipfs add`` CID of the 11 bytes ``hello world``."""
EMPTY_CID = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
"""Kubo's ``ipfs add`` CID of an empty file."""


def write_model_folder(folder: Path, *, weight_bytes: int = 700_000) -> Path:
    """config, a multi-chunk safetensors file, both tokenizer files, a file in a subfolder.

    The weights are a real safetensors file (a header and one uint8 tensor of random bytes), so they span
    three 256 KiB chunks and the DAG has internal nodes, as a real model's does.
    """
    import json
    import struct

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 264}), encoding="utf-8")
    header = json.dumps({"w": {"dtype": "U8", "shape": [weight_bytes], "data_offsets": [0, weight_bytes]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + os.urandom(weight_bytes))
    (folder / "tokenizer.json").write_bytes(b"hello world")
    (folder / "tokenizer_config.json").write_bytes(b"")
    (folder / "extra").mkdir(exist_ok=True)
    (folder / "extra" / "notes.txt").write_text("made by the test\n", encoding="utf-8")
    return folder
