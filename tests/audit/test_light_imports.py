"""Reading logs and rendering reports must not need torch: an auditor's machine may not have it."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["flare_chain.audit", "flare_chain.audit.report", "flare_chain.cli.audit"])
def test_audit_modules_import_without_torch(module: str) -> None:
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
