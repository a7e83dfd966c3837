"""Error feedback: over rounds nothing is lost; the node's state survives a restart (safetensors)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flare_chain.compression import (
    PowerSGDCompressor,
    PowerSGDConfig,
    decode,
    decompress,
    feedback_step,
)
from flare_chain.errors import ConfigError, UpdateError


def _norm(tensors: dict[str, torch.Tensor]) -> float:
    return sum(float(t.double().norm() ** 2) for t in tensors.values()) ** 0.5


def _random_delta(gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        "m.lora_A.weight": torch.randn(8, 40, generator=gen) * 0.01,
        "m.lora_B.weight": torch.randn(40, 8, generator=gen) * 0.01,
        "bias": torch.randn(6, generator=gen) * 0.01,
    }


def test_sum_of_sent_updates_plus_residual_equals_sum_of_inputs() -> None:
    # Prepare
    gen = torch.Generator().manual_seed(0)
    compressor = PowerSGDCompressor(PowerSGDConfig(rank=1))
    total_in = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in _random_delta(gen).items()}
    total_sent = {k: torch.zeros_like(v) for k, v in total_in.items()}
    # Execute: 25 rounds; what the receiver reconstructs is decompress(decode(bytes))
    for _ in range(25):
        delta = _random_delta(gen)
        data, _ = compressor.encode(delta)
        for key, value in decompress(decode(data)).items():
            total_sent[key] += value.double()
            total_in[key] += delta[key].double()
    # Assert: Σ sent = Σ delta − e_last (telescoping), up to float32 rounding
    residual = compressor.error
    for key in total_in:
        assert torch.allclose(total_sent[key] + residual[key].double(), total_in[key], atol=1e-6)


def test_residual_stays_bounded_over_many_rounds() -> None:
    gen = torch.Generator().manual_seed(1)
    compressor = PowerSGDCompressor(PowerSGDConfig(rank=1))
    ratios = []
    for _ in range(40):
        delta = _random_delta(gen)
        compressor.step(delta)
        ratios.append(_norm(compressor.error) / _norm(delta))
    # rank 1 of a random 40x8 matrix keeps little per round, so the buffer grows at first, then levels off
    assert max(ratios) < 8.0
    assert max(ratios[20:]) < 2.0 * max(ratios[:20])


def test_a_constant_update_is_delivered_on_average() -> None:
    # Prepare: a full-rank 16x16 update sent again and again at rank 2
    gen = torch.Generator().manual_seed(2)
    delta = {"w": torch.randn(16, 16, generator=gen)}
    compressor = PowerSGDCompressor(PowerSGDConfig(rank=2, dtype="float32", min_compression_rate=1.0))
    # Execute
    sent = torch.zeros(16, 16)
    rounds = 100
    for _ in range(rounds):
        sent += compressor.step(delta).sent["w"]
    # Assert: the buffer levels off (a few times ‖delta‖), so the mean sent converges as ‖e_T‖ / T
    assert float(compressor.error["w"].norm() / delta["w"].norm()) < 6.0
    assert float((sent / rounds - delta["w"]).norm() / delta["w"].norm()) < 0.06


def test_without_feedback_a_rank_one_channel_loses_most_of_the_update() -> None:
    # the counterpart of the test above: a compressor reset every round never delivers the rest
    gen = torch.Generator().manual_seed(2)
    delta = {"w": torch.randn(16, 16, generator=gen)}
    step = feedback_step(delta, PowerSGDConfig(rank=2, dtype="float32", min_compression_rate=1.0))
    assert float((step.sent["w"] - delta["w"]).norm() / delta["w"].norm()) > 0.6


def test_feedback_step_is_pure() -> None:
    gen = torch.Generator().manual_seed(3)
    delta = _random_delta(gen)
    error = {k: torch.full_like(v, 0.001) for k, v in delta.items()}
    before = {k: v.clone() for k, v in error.items()}
    a = feedback_step(delta, PowerSGDConfig(rank=2), error=error)
    b = feedback_step(delta, PowerSGDConfig(rank=2), error=error)
    assert all(torch.equal(error[k], before[k]) for k in error)
    assert all(torch.equal(a.error[k], b.error[k]) for k in a.error)


def test_encode_reports_manifest_fields() -> None:
    gen = torch.Generator().manual_seed(4)
    delta = {"w": torch.randn(64, 64, generator=gen), "bias": torch.randn(3, generator=gen)}
    data, info = PowerSGDCompressor(PowerSGDConfig(rank=2, dtype="bfloat16")).encode(delta)
    assert (info.rank, info.dtype, info.encoded_bytes) == (2, "bfloat16", len(data))
    assert info.fp32_bytes == 4 * (64 * 64 + 3)
    assert (info.compressed_tensors, info.dense_tensors) == (1, 1)
    assert 0.0 < info.rel_error < 1.0
    assert info.compression_ratio == info.fp32_bytes / len(data) > 5  # a finite ratio the manifest can report
    assert info.as_metrics()["powersgd_rank"] == 2.0


def test_same_inputs_and_state_give_the_same_bytes() -> None:
    gen = torch.Generator().manual_seed(5)
    rounds = [_random_delta(gen) for _ in range(3)]
    outs = []
    for _ in range(2):
        c = PowerSGDCompressor(PowerSGDConfig(rank=2))
        outs.append([c.encode(d)[0] for d in rounds])
    assert outs[0] == outs[1]


def test_state_round_trips_through_a_file_and_continues_identically(tmp_path: Path) -> None:
    # Prepare: two rounds, save, then a third round from the restored and from the live compressor
    gen = torch.Generator().manual_seed(6)
    rounds = [_random_delta(gen) for _ in range(3)]
    live = PowerSGDCompressor(PowerSGDConfig(rank=2))
    for d in rounds[:2]:
        live.step(d)
    path = tmp_path / "powersgd_state.safetensors"
    # Execute
    live.save_state(path)
    restored = PowerSGDCompressor.load_state(path)
    # Assert
    assert restored.config == live.config
    assert restored.encode(rounds[2])[0] == live.encode(rounds[2])[0]
    assert path.read_bytes()[:8] != b"\x80\x04" and b"pickle" not in path.read_bytes()


def test_state_saved_under_another_config_is_refused_with_the_field() -> None:
    c = PowerSGDCompressor(PowerSGDConfig(rank=2))
    c.step({"w": torch.ones(64, 64)})
    with pytest.raises(ConfigError, match=r"saved with rank=2, but rank=4.*delete the state file"):
        PowerSGDCompressor.from_state_bytes(c.state_bytes(), PowerSGDConfig(rank=4))


@pytest.mark.parametrize("data", [b"", b"\x10\x00\x00\x00\x00\x00\x00\x00{}", b"garbage!" * 3])
def test_corrupt_state_is_refused(data: bytes) -> None:
    with pytest.raises(UpdateError, match="compressor state"):
        PowerSGDCompressor.from_state_bytes(data)


def test_error_buffer_of_another_shape_is_refused_and_state_kept() -> None:
    c = PowerSGDCompressor(PowerSGDConfig(rank=1))
    c.step({"w": torch.ones(64, 64)})
    before = c.error
    with pytest.raises(UpdateError, match=r"buffer for 'w' has shape \(64, 64\).*reset"):
        c.step({"w": torch.ones(32, 64)})
    assert torch.equal(c.error["w"], before["w"])
    c.reset()
    c.step({"w": torch.ones(32, 64)})


def test_update_that_drops_a_tensor_with_carried_error_is_refused() -> None:
    c = PowerSGDCompressor(PowerSGDConfig(rank=1))
    c.step({"w": torch.randn(64, 64), "v": torch.randn(3)})
    with pytest.raises(UpdateError, match="holds 'v' but the update lacks it"):
        c.step({"w": torch.randn(64, 64)})


def test_nan_update_is_refused_with_the_tensor_named() -> None:
    with pytest.raises(UpdateError, match="'w' contains NaN"):
        PowerSGDCompressor().step({"w": torch.tensor([float("nan")])})


def test_state_with_an_invalid_saved_config_is_refused_as_corrupt() -> None:
    import json

    from safetensors.torch import save as st_save

    from flare_chain.compression.error_feedback import STATE_METADATA_KEY

    meta = {"version": 1, "config": {"rank": 0, "min_compression_rate": 2.0, "dtype": "float16", "seed": 0}}
    data = st_save({"q/w": torch.zeros(3, 1)}, metadata={STATE_METADATA_KEY: json.dumps(meta)})
    with pytest.raises(UpdateError, match=r"unreadable config .*delete it"):
        PowerSGDCompressor.from_state_bytes(data)


def _saved_state_with(key: str, tensor: torch.Tensor) -> tuple[bytes, bytes]:
    """A one-step compressor's saved state, and the same file re-saved with ``key`` set to ``tensor``."""
    import json
    import struct

    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    c = PowerSGDCompressor(PowerSGDConfig(rank=1))
    c.step({"w": torch.randn(64, 64, generator=torch.Generator().manual_seed(3))})
    data = c.state_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    metadata = json.loads(data[8 : 8 + header_len])["__metadata__"]
    tensors = st_load(data)
    tensors[key] = tensor
    return data, st_save(tensors, metadata=metadata)


@pytest.mark.parametrize("extra", ["momentum/w", "error/", "q/"])
def test_state_holding_a_tensor_of_no_known_role_or_key_is_refused(extra: str) -> None:
    # A state file edited by hand or written by another tool: a tensor that is neither a warm-start Q
    # nor an error buffer of a named tensor must stop the restore, not be filed as error feedback
    # under a wrong or empty name and added to the next update.
    data, doctored = _saved_state_with(extra, torch.zeros(64, 1))
    with pytest.raises(UpdateError, match=f"unexpected tensor '{extra}'"):
        PowerSGDCompressor.from_state_bytes(doctored)
    assert PowerSGDCompressor.from_state_bytes(data).encode({"w": torch.ones(64, 64)})  # the original still loads


def test_a_state_saved_before_the_first_round_restores() -> None:
    # A node that saves its compressor before any update has a state with no tensors at all: the header
    # fills the file exactly, which must not be taken for truncation.
    fresh = PowerSGDCompressor(PowerSGDConfig(rank=3)).state_bytes()
    assert 8 + int.from_bytes(fresh[:8], "little") == len(fresh)
    restored = PowerSGDCompressor.from_state_bytes(fresh, PowerSGDConfig(rank=3))
    assert restored.config == PowerSGDConfig(rank=3) and restored.error == {}


def test_a_state_whose_tensor_data_is_cut_short_is_refused_naming_the_fix() -> None:
    c = PowerSGDCompressor(PowerSGDConfig(rank=1))
    c.step({"w": torch.randn(64, 64, generator=torch.Generator().manual_seed(5))})
    data = c.state_bytes()
    with pytest.raises(UpdateError, match="not a valid safetensors file"):
        PowerSGDCompressor.from_state_bytes(data[:-16])  # header intact, the last tensor's bytes cut


@pytest.mark.parametrize("bad", [torch.full((64, 64), float("nan")), torch.zeros(64, 64, dtype=torch.float64)],
                         ids=["nan-float32", "finite-float64"])
def test_state_with_a_non_finite_or_non_float32_buffer_is_refused(bad: torch.Tensor) -> None:
    # A NaN carried in the error buffer would poison every later update; a float64 one is not a file
    # this code wrote. Either stops the restore.
    _data, doctored = _saved_state_with("error/w", bad)
    with pytest.raises(UpdateError, match="'error/w' is not finite float32"):
        PowerSGDCompressor.from_state_bytes(doctored)
