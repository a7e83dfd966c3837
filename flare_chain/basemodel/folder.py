"""What a base-model folder must hold before it is pinned, fetched or loaded, and its CID.

A base model travels as one UnixFS directory: ``config.json``, the weights as
``*.safetensors`` and the tokenizer files, exactly as ``save_pretrained``
writes them. Pickle weights (``pytorch_model.bin``, ``*.pt``, ...) are refused
outright: loading one runs code, and DESIGN's rule is safetensors and JSON
only. The folder's identity is the CID ``ipfs add -r`` gives it (Kubo's
defaults, dotfiles skipped), so a folder on disk, the copy pinned on an
endpoint and the copy a node fetched are the same model exactly when their
CIDs are equal; that covers weights, config and tokenizer alike.

Nothing here imports torch: publishing and fetching a model needs no ML stack.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from flare_chain.errors import ConfigError
from flare_chain.ipfs import cid_of_directory, parse_cid

__all__ = [
    "CONFIG_FILE",
    "PICKLE_SUFFIXES",
    "TOKENIZER_FILES",
    "ModelFolder",
    "check_model_folder",
    "cid_version_of",
    "model_cid",
]

CONFIG_FILE = "config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
"""The fast tokenizer a model folder ships (``tokenizer.save_pretrained`` writes both)."""

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
"""Weight formats that unpickle on load; a folder holding any of them is refused."""


@dataclass(frozen=True, slots=True)
class ModelFolder:
    """A checked model folder: where it is, its weight files and how many bytes it holds in all."""

    path: Path
    weight_files: tuple[str, ...]
    total_bytes: int


def _walk(root: Path) -> list[Path]:
    """Every non-hidden entry under ``root`` (what ``ipfs add -r`` would take), folders included."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        base = Path(dirpath)
        out.extend(base / d for d in dirnames)
        out.extend(base / f for f in sorted(filenames) if not f.startswith("."))
    return out


def check_model_folder(path: str | os.PathLike[str]) -> ModelFolder:
    """Refuse a folder that is not a safetensors Hugging Face model with its tokenizer.

    One ConfigError naming the folder and the first problem: missing folder,
    missing ``config.json``, no ``*.safetensors``, a pickle weight file, a
    missing tokenizer file, or a symlink (a published model must carry its
    bytes, not point at files on one machine).
    """
    root = Path(path)
    if not root.is_dir():
        raise ConfigError(f"model folder {root} does not exist or is not a folder; pass the folder "
                          "save_pretrained wrote")
    entries = _walk(root)
    for entry in entries:
        rel = entry.relative_to(root)
        if entry.is_symlink():
            raise ConfigError(f"model folder {root}: {rel} is a symlink; copy the file itself into the folder")
        if entry.is_file() and entry.name.lower().endswith(PICKLE_SUFFIXES):
            raise ConfigError(f"model folder {root}: {rel} is a pickle weight file, which flare-chain refuses "
                              "(loading it can run code); re-save the model with "
                              "save_pretrained(DIR, safe_serialization=True) and remove the file")
    if not (root / CONFIG_FILE).is_file():
        raise ConfigError(f"model folder {root} has no {CONFIG_FILE}; it is not a Hugging Face model folder")
    weights = tuple(sorted(p.name for p in root.glob("*.safetensors") if p.is_file()))
    if not weights:
        raise ConfigError(f"model folder {root} has no *.safetensors weights; save the model with "
                          "save_pretrained(DIR, safe_serialization=True)")
    missing = [name for name in TOKENIZER_FILES if not (root / name).is_file()]
    if missing:
        raise ConfigError(f"model folder {root} has no {missing[0]}; save the tokenizer next to the weights "
                          "with tokenizer.save_pretrained(DIR)")
    total = sum(e.stat().st_size for e in entries if e.is_file())
    return ModelFolder(root, weights, total)


def model_cid(path: str | os.PathLike[str], cid_version: int = 0) -> str:
    """The CID ``ipfs add -r [--cid-version N] FOLDER`` prints for this folder (nothing is stored).

    Reads every file once; the caller keeps the result rather than asking twice.
    """
    return cid_of_directory(path, cid_version)


def cid_version_of(cid: str) -> int:
    """0 for ``Qm…``, 1 for ``bafy…``: the import options a folder is re-hashed with to compare."""
    return parse_cid(cid).version
