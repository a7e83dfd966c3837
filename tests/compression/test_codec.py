"""The compressed-update wire format: exact round trips, byte determinism, refusal of bad bytes."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save as st_save

from flare_chain.compression.codec import METADATA_KEY, decode, encode
from flare_chain.compression.powersgd import (
    CompressedUpdate,
    LowRankFactors,
    PowerSGDConfig,
    compress,
    decompress,
)
from flare_chain.errors import UpdateError

KEY_A = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
KEY_B = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"


def _delta(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        KEY_A: torch.randn(8, 96, generator=gen) * 0.01,
        KEY_B: torch.randn(96, 8, generator=gen) * 0.01,
        "base_model.model.lm_head.bias": torch.randn(5, generator=gen),
    }


def _header(data: bytes) -> dict[str, object]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n])


def _with_metadata(tensors: dict[str, torch.Tensor], meta: object) -> bytes:
    return st_save(tensors, metadata={METADATA_KEY: json.dumps(meta)})


def test_decode_returns_exactly_what_was_encoded() -> None:
    # Prepare
    sent, _ = compress(_delta(), PowerSGDConfig(rank=2))
    # Execute
    back = decode(encode(sent))
    # Assert: factors bit-identical, and the receiver's reconstruction is P_fp16 Qᵀ_fp16 in float64 -> float32
    assert sorted(back.low_rank) == [KEY_A, KEY_B]
    for key, f in sent.low_rank.items():
        assert torch.equal(back.low_rank[key].p, f.p)
        assert torch.equal(back.low_rank[key].q, f.q)
        expected = (f.p.double() @ f.q.double().T).float()
        assert decompress(back)[key].numpy().tobytes() == expected.numpy().tobytes()
    assert torch.equal(
        back.dense["base_model.model.lm_head.bias"], sent.dense["base_model.model.lm_head.bias"]
    )


def test_same_inputs_give_the_same_bytes() -> None:
    a, _ = compress(_delta(1), PowerSGDConfig(rank=2))
    b, _ = compress(_delta(1), PowerSGDConfig(rank=2))
    assert encode(a) == encode(b)


def test_header_carries_exactly_one_metadata_entry_with_shapes_and_ranks() -> None:
    # safetensors writes its metadata map in hash order; a second entry would make bytes vary per process
    sent, _ = compress(_delta(), PowerSGDConfig(rank=3, dtype="bfloat16"))
    meta_map = _header(encode(sent))["__metadata__"]
    assert isinstance(meta_map, dict)
    assert list(meta_map) == [METADATA_KEY]
    meta = json.loads(meta_map[METADATA_KEY])
    assert meta["dtype"] == "bfloat16"
    assert meta["tensors"][KEY_B] == {"kind": "low_rank", "shape": [96, 8], "rank": 3}
    assert meta["tensors"]["base_model.model.lm_head.bias"] == {"kind": "dense", "shape": [5]}


def test_compressed_bytes_are_smaller_than_float32() -> None:
    gen = torch.Generator().manual_seed(0)
    delta = {KEY_A: torch.randn(16, 1024, generator=gen), KEY_B: torch.randn(1024, 16, generator=gen)}
    sent, _ = compress(delta, PowerSGDConfig(rank=1))
    assert len(encode(sent)) * 10 < 4 * sum(t.numel() for t in delta.values())


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 40),
    cols=st.integers(1, 40),
    rank=st.integers(1, 4),
    dtype=st.sampled_from(["float16", "bfloat16", "float32"]),
    seed=st.integers(0, 2**16),
)
def test_round_trip_is_lossless_for_any_shape(rows: int, cols: int, rank: int, dtype: str, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    tensors = {"m": torch.randn(rows, cols, generator=gen), "v": torch.randn(cols, generator=gen)}
    sent, _ = compress(tensors, PowerSGDConfig(rank=rank, dtype=dtype, min_compression_rate=1.0))
    data = encode(sent)
    back = decode(data, expected_shapes={"m": (rows, cols), "v": (cols,)})
    assert encode(back) == data
    assert back.shapes() == sent.shapes()
    for key, got in decompress(back).items():
        assert torch.equal(got, decompress(sent)[key])


def test_truncated_bytes_are_refused() -> None:
    sent, _ = compress(_delta(), PowerSGDConfig(rank=2))
    data = encode(sent)
    for cut in (0, 5, 40, len(data) - 1):
        with pytest.raises(UpdateError, match="truncated"):
            decode(data[:cut])


def test_plain_safetensors_without_metadata_is_refused() -> None:
    with pytest.raises(UpdateError, match="no 'flare_powersgd' metadata"):
        decode(st_save({"w": torch.ones(2)}, metadata={"format": "pt"}))


def test_metadata_naming_a_missing_factor_is_refused_with_the_name() -> None:
    meta = {
        "version": 1,
        "dtype": "float16",
        "tensors": {"w": {"kind": "low_rank", "shape": [4, 4], "rank": 1}},
    }
    data = _with_metadata({"p/w": torch.ones(4, 1, dtype=torch.float16)}, meta)
    with pytest.raises(UpdateError, match="lacks 'q/w'"):
        decode(data)


def test_undescribed_tensor_is_refused() -> None:
    meta = {"version": 1, "dtype": "float16", "tensors": {}}
    with pytest.raises(UpdateError, match="holds 'dense/x'"):
        decode(_with_metadata({"dense/x": torch.ones(2, dtype=torch.float16)}, meta))


def test_factor_of_wrong_shape_is_refused_with_the_tensor_named() -> None:
    meta = {
        "version": 1,
        "dtype": "float16",
        "tensors": {"w": {"kind": "low_rank", "shape": [4, 6], "rank": 1}},
    }
    data = _with_metadata(
        {"p/w": torch.ones(4, 1, dtype=torch.float16), "q/w": torch.ones(5, 1, dtype=torch.float16)}, meta
    )
    with pytest.raises(UpdateError, match=r"'q/w' \(tensor 'w'\) has shape \(5, 1\), expected \(6, 1\)"):
        decode(data)


def test_wrong_dtype_is_refused() -> None:
    meta = {"version": 1, "dtype": "float16", "tensors": {"b": {"kind": "dense", "shape": [2]}}}
    with pytest.raises(UpdateError, match=r"'dense/b' \(tensor 'b'\) has dtype torch.float32"):
        decode(_with_metadata({"dense/b": torch.ones(2)}, meta))


def test_nan_in_a_factor_is_refused() -> None:
    meta = {"version": 1, "dtype": "float16", "tensors": {"b": {"kind": "dense", "shape": [2]}}}
    with pytest.raises(UpdateError, match=r"'dense/b' \(tensor 'b'\) contains NaN"):
        decode(_with_metadata({"dense/b": torch.tensor([1.0, float("nan")], dtype=torch.float16)}, meta))


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        ({"version": 2, "dtype": "float16", "tensors": {}}, "codec version 2"),
        ({"version": 1, "dtype": "int8", "tensors": {}}, "dtype 'int8'"),
        ({"version": 1, "dtype": "float16"}, "'tensors' table"),
        (
            {"version": 1, "dtype": "float16", "tensors": {"w": {"kind": "dense"}}},
            "'w' lacks a valid 'shape'",
        ),
        ({"version": 1, "dtype": "float16", "tensors": {"w": {"kind": "odd", "shape": [1]}}}, "kind 'odd'"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_malformed_metadata_is_refused(meta: object, match: str) -> None:
    with pytest.raises(UpdateError, match=match):
        decode(_with_metadata({}, meta))


def test_expected_shapes_pin_names_and_shapes() -> None:
    data = encode(compress(_delta(), PowerSGDConfig(rank=2))[0])
    shapes = {KEY_A: (8, 96), KEY_B: (96, 8), "base_model.model.lm_head.bias": (5,)}
    decode(data, expected_shapes=shapes)
    with pytest.raises(
        UpdateError, match=r"'base_model.model.lm_head.bias' has shape \(5,\), expected \(6,\)"
    ):
        decode(data, expected_shapes={**shapes, "base_model.model.lm_head.bias": (6,)})
    with pytest.raises(UpdateError, match="missing tensor 'extra'"):
        decode(data, expected_shapes={**shapes, "extra": (1,)})


def test_encode_refuses_factors_that_do_not_fit_the_shape() -> None:
    bad = CompressedUpdate(
        dtype="float16",
        low_rank={
            "w": LowRankFactors(
                p=torch.ones(3, 1, dtype=torch.float16), q=torch.ones(4, 1, dtype=torch.float16), shape=(4, 4)
            )
        },
    )
    with pytest.raises(UpdateError, match="factors of 'w'"):
        encode(bad)
