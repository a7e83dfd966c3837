"""The package's public names, and which imports stay light (no torch for auditors)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import flare_chain


def test_root_exports_the_error_hierarchy() -> None:
    assert set(flare_chain.__all__) >= {"FlareError", "ConfigError", "ChainError", "IntegrityError"}
    for name in flare_chain.__all__:
        assert hasattr(flare_chain, name), name
    for name in flare_chain.__all__:
        obj = getattr(flare_chain, name)
        if isinstance(obj, type):
            assert issubclass(obj, flare_chain.FlareError)


@pytest.mark.parametrize("module", ["flare_chain", "flare_chain.ipfs", "flare_chain.chain", "flare_chain.cli.ipfs"])
def test_light_modules_do_not_import_torch(module: str) -> None:
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False", f"importing {module} pulled in torch"
