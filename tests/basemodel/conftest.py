"""Fixtures for the base-model tests: a fresh model folder per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.basemodel._folders import write_model_folder


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    return write_model_folder(tmp_path / "my-model")
