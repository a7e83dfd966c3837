"""Where models run: the device setting, resolved once, with one clear error for a GPU that is not there."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flare_chain.cli.main import main
from flare_chain.errors import ConfigError
from flare_chain.lora.device import resolve_device

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")


def test_cpu_and_auto_resolve_to_the_cpu_without_a_gpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")


def test_an_unknown_device_is_named() -> None:
    with pytest.raises(ConfigError, match="device 'gpu' is not one of auto, cpu, cuda"):
        resolve_device("gpu")


@no_gpu
def test_cuda_without_a_gpu_says_what_to_set() -> None:
    with pytest.raises(ConfigError, match='set device = "auto" or "cpu"'):
        resolve_device("cuda")


@no_gpu
def test_demo_with_cuda_and_no_gpu_stops_with_one_line_before_building_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["demo", "--device", "cuda", "--work-dir", str(tmp_path / "work"), "--no-progress"])
    err = capsys.readouterr().err
    assert code != 0
    assert "torch sees no CUDA GPU" in err and "Traceback" not in err
    assert not (tmp_path / "work").exists()  # no store, no model, nothing built


@no_gpu
def test_audit_with_cuda_and_no_gpu_stops_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deployment = tmp_path / "deployment.json"
    deployment.write_text('{"chain_id": 1, "address": "0x' + "11" * 20 + '", "block": 1}')
    code = main(["audit", "--deployment", str(deployment), "--store", str(tmp_path), "--device", "cuda"])
    err = capsys.readouterr().err
    assert code != 0
    assert "torch sees no CUDA GPU" in err and "Traceback" not in err
