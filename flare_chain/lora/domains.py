"""Node datasets and pretraining text, drawn from the Python standard library.

Every Python install carries a few megabytes of real, varied source code, so
the project can pretrain and fine-tune without downloading anything. Each
*domain* is one standard-library package (``email``, ``json``, ``asyncio``…);
packages differ in vocabulary and style, which makes node datasets non-IID by
nature. Node ``i`` of the demo gets ``available_domains()[i]``.

The reference model is pretrained on everything else, so a node's domain is
genuinely new to it. Test directories are left out everywhere (they are
mostly fixtures, and some hold deliberately broken files), as are
``site-packages`` and a few packages that are generated data tables rather
than source.
"""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

from flare_chain.errors import ConfigError

__all__ = [
    "DOMAINS",
    "available_domains",
    "domain_files",
    "domain_texts",
    "pretraining_files",
    "pretraining_texts",
    "stdlib_root",
]

DOMAINS: tuple[str, ...] = (
    "email",
    "json",
    "asyncio",
    "unittest",
    "xml",
    "http",
    "concurrent",
    "importlib",
    "logging",
    "multiprocessing",
    "sqlite3",
    "urllib",
    "tkinter",
    "ctypes",
    "xmlrpc",
    "wsgiref",
    "html",
    "dbm",
    "tomllib",
    "zoneinfo",
)
"""Candidate node domains, in node order; only those on disk are used."""

_TEST_DIRS = frozenset({"test", "tests", "idle_test"})
_NOT_SOURCE = frozenset({"site-packages", "dist-packages", "__pycache__", "encodings", "pydoc_data"})


def stdlib_root() -> Path:
    """Directory holding this interpreter's pure-Python standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def _all_files(root: Path) -> list[Path]:
    """Usable ``.py`` files under ``root``, sorted; excluded directories are not even walked."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _TEST_DIRS and d not in _NOT_SOURCE]
        found.extend(Path(dirpath) / f for f in filenames if f.endswith(".py"))
    return sorted(found)


def available_domains(root: Path | None = None) -> list[str]:
    """The entries of :data:`DOMAINS` that exist here with at least one source file."""
    base = root or stdlib_root()
    return [d for d in DOMAINS if (base / d).is_dir() and _all_files(base / d)]


def domain_files(name: str, root: Path | None = None) -> list[Path]:
    """Source files of domain ``name`` in sorted path order (deterministic)."""
    base = root or stdlib_root()
    if name not in DOMAINS:
        raise ConfigError(f"domain {name!r} is not a known domain; choose one of {', '.join(DOMAINS)}")
    files = _all_files(base / name) if (base / name).is_dir() else []
    if not files:
        raise ConfigError(
            f"domain {name!r} has no source files under {base / name}; "
            f"choose one of the domains present here: {', '.join(available_domains(base))}"
        )
    return files


def _read(paths: list[Path]) -> list[str]:
    # Standard-library sources are UTF-8 (PEP 3120); `replace` guards odd installs.
    return [p.read_text(encoding="utf-8", errors="replace") for p in paths]


def domain_texts(name: str, root: Path | None = None) -> list[str]:
    """Contents of domain ``name``'s files, one string per file, in sorted order."""
    return _read(domain_files(name, root))


def pretraining_files(root: Path | None = None) -> list[Path]:
    """Every usable stdlib source file outside all :data:`DOMAINS`, sorted."""
    base = root or stdlib_root()
    domains = set(DOMAINS)
    return [p for p in _all_files(base) if p.relative_to(base).parts[0] not in domains]


def pretraining_texts(root: Path | None = None) -> list[str]:
    """Contents of :func:`pretraining_files`, one string per file."""
    return _read(pretraining_files(root))
