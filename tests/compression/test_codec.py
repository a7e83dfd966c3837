"""The compressed-update wire format (v2, one packed tensor).

Exact round trips, byte determinism, size, and refusal of bad bytes.
"""

from __future__ import annotations

import json
import math
import struct

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from flare_chain.compression.codec import METADATA_KEY, decode, encode
from flare_chain.compression.powersgd import (
    WIRE_DTYPES,
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


def test_header_carries_exactly_one_metadata_entry_with_the_compact_table() -> None:
    # safetensors writes its metadata map in hash order; a second entry would make bytes vary per process
    sent, _ = compress(_delta(), PowerSGDConfig(rank=3, dtype="bfloat16"))
    header = _header(encode(sent))
    assert sorted(header) == ["__metadata__", "packed"]
    meta_map = header["__metadata__"]
    assert isinstance(meta_map, dict)
    assert list(meta_map) == [METADATA_KEY]
    text = meta_map[METADATA_KEY]
    meta = json.loads(text)
    assert text == json.dumps(meta, sort_keys=True, separators=(",", ":"))
    assert meta == {
        "version": 2,
        "dtype": "bfloat16",
        "prefix": "base_model.model.",
        "suffix": "",
        "tensors": [
            ["lm_head.bias", [5], 0],
            ["model.layers.0.self_attn.q_proj.lora_A.weight", [8, 96], 3],
            ["model.layers.0.self_attn.q_proj.lora_B.weight", [96, 8], 3],
        ],
    }


def test_packed_tensor_is_p_then_q_then_dense_values_in_sorted_key_order() -> None:
    # Prepare
    sent, _ = compress(_delta(), PowerSGDConfig(rank=2))
    # Execute
    packed = st_load(encode(sent))["packed"]
    # Assert
    bias = sent.dense["base_model.model.lm_head.bias"]
    a, b = sent.low_rank[KEY_A], sent.low_rank[KEY_B]
    expected = torch.cat([bias.reshape(-1), a.p.reshape(-1), a.q.reshape(-1), b.p.reshape(-1), b.q.reshape(-1)])
    assert packed.dtype == torch.float16
    assert torch.equal(packed, expected)


def test_compressed_bytes_are_smaller_than_float32() -> None:
    gen = torch.Generator().manual_seed(0)
    delta = {KEY_A: torch.randn(16, 1024, generator=gen), KEY_B: torch.randn(1024, 16, generator=gen)}
    sent, _ = compress(delta, PowerSGDConfig(rank=1))
    assert len(encode(sent)) * 10 < 4 * sum(t.numel() for t in delta.values())


def _lora_delta() -> dict[str, torch.Tensor]:
    """A realistic LoRA delta: q/k/v/o lora_A (8, 128) and lora_B (128, 8) over 8 layers, 64 tensors."""
    gen = torch.Generator().manual_seed(0)
    delta = {}
    for layer in range(8):
        for proj in "qkvo":
            name = f"base_model.model.model.layers.{layer}.self_attn.{proj}_proj"
            delta[f"{name}.lora_A.weight"] = torch.randn(8, 128, generator=gen) * 0.01
            delta[f"{name}.lora_B.weight"] = torch.randn(128, 8, generator=gen) * 0.01
    return delta


def test_rank_1_lora_delta_is_ten_times_smaller_than_float32_safetensors() -> None:
    # Prepare
    delta = _lora_delta()
    sent, _ = compress(delta, PowerSGDConfig(rank=1, dtype="float16", min_compression_rate=1.0))
    # Execute
    data = encode(sent)
    # Assert: all 64 compressed, the file >= 10x smaller, and the header does not dominate the factors
    assert len(sent.low_rank) == 64
    (header_len,) = struct.unpack("<Q", data[:8])
    assert len(data) * 10 <= len(st_save(delta))
    assert (8 + header_len) * 4 < len(data)
    assert len(data) == 8 + header_len + sent.payload_bytes()


def test_an_empty_update_round_trips_as_a_zero_length_packed_tensor() -> None:
    empty = CompressedUpdate(dtype="float16")
    data = encode(empty)
    assert tuple(st_load(data)["packed"].shape) == (0,)
    back = decode(data, expected_shapes={})
    assert back.names() == []
    assert encode(back) == data


@pytest.mark.parametrize(
    "keys",
    [
        ["only.one.key"],
        ["a", "aa"],  # the prefix is a whole key
        ["aba", "aa"],  # prefix "a" and suffix "a" would overlap on "aa" if taken independently
        ["x", "y", ""],  # no common prefix or suffix, and an empty key
        ["z", "az"],  # the stems sort differently from the full keys
    ],
)
def test_keys_round_trip_exactly_whatever_they_share(keys: list[str]) -> None:
    dense = {k: torch.full((i + 1,), float(i), dtype=torch.float16) for i, k in enumerate(keys)}
    data = encode(CompressedUpdate(dtype="float16", dense=dense))
    back = decode(data)
    assert back.names() == sorted(keys)
    for k, t in dense.items():
        assert torch.equal(back.dense[k], t)
    assert encode(back) == data


def test_decoded_tensors_are_independent_copies() -> None:
    data = encode(compress(_delta(), PowerSGDConfig(rank=2))[0])
    back = decode(data)
    a = back.low_rank[KEY_A]
    before = a.q.clone()
    a.p.fill_(7.0)
    back.dense["base_model.model.lm_head.bias"].fill_(7.0)
    assert torch.equal(a.q, before)
    assert a.p.is_contiguous() and a.q.is_contiguous()
    assert torch.equal(decode(data).low_rank[KEY_A].q, before)


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


_SEGMENTS = st.lists(st.text(alphabet="ab.0", max_size=3), min_size=1, max_size=4)


@st.composite
def _updates(draw: st.DrawFn) -> CompressedUpdate:
    """Any update: 0-5 tensors, keys with or without shared affixes, dense or low-rank, any wire dtype."""
    dtype = draw(st.sampled_from(["float16", "bfloat16", "float32"]))
    wire = WIRE_DTYPES[dtype]
    keys = draw(st.lists(st.text(alphabet="ab.0_", max_size=12), max_size=5, unique=True))
    prefix = draw(st.sampled_from(["", "base_model.model.layers."]))
    suffix = draw(st.sampled_from(["", ".weight"]))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    low_rank: dict[str, LowRankFactors] = {}
    dense: dict[str, torch.Tensor] = {}
    for stem in keys:
        key = prefix + stem + suffix
        shape = tuple(draw(st.lists(st.integers(0, 6), max_size=3)))
        rank = draw(st.integers(0, 3)) if len(shape) >= 2 else 0
        if rank == 0:
            dense[key] = torch.randn(shape, generator=gen).to(wire)
        else:
            rows, cols = shape[0], math.prod(shape[1:])
            p = torch.randn(rows, rank, generator=gen).to(wire)
            low_rank[key] = LowRankFactors(p=p, q=torch.randn(cols, rank, generator=gen).to(wire), shape=shape)
    return CompressedUpdate(dtype=dtype, low_rank=low_rank, dense=dense)


@settings(max_examples=100, deadline=None)
@given(update=_updates())
def test_any_update_round_trips_bit_for_bit(update: CompressedUpdate) -> None:
    # Execute
    data = encode(update)
    back = decode(data, expected_shapes=update.shapes())
    # Assert
    assert encode(back) == data
    assert back.dtype == update.dtype
    assert sorted(back.low_rank) == sorted(update.low_rank)
    assert sorted(back.dense) == sorted(update.dense)
    for key, f in update.low_rank.items():
        assert back.low_rank[key].shape == f.shape
        assert back.low_rank[key].p.view(torch.uint8).equal(f.p.contiguous().view(torch.uint8))
        assert back.low_rank[key].q.view(torch.uint8).equal(f.q.contiguous().view(torch.uint8))
    for key, t in update.dense.items():
        assert back.dense[key].shape == t.shape
        assert back.dense[key].reshape(-1).view(torch.uint8).equal(t.reshape(-1).view(torch.uint8))


def test_truncated_bytes_are_refused() -> None:
    sent, _ = compress(_delta(), PowerSGDConfig(rank=2))
    data = encode(sent)
    for cut in (0, 5, 40, len(data) - 1):
        with pytest.raises(UpdateError, match="truncated"):
            decode(data[:cut])


def test_plain_safetensors_without_metadata_is_refused() -> None:
    with pytest.raises(UpdateError, match="no 'flare_powersgd' metadata"):
        decode(st_save({"w": torch.ones(2)}, metadata={"format": "pt"}))


def test_version_1_bytes_are_refused_naming_both_versions() -> None:
    meta = {"version": 1, "dtype": "float16", "tensors": {"b": {"kind": "dense", "shape": [2]}}}
    data = st_save({"dense/b": torch.ones(2, dtype=torch.float16)}, metadata={METADATA_KEY: json.dumps(meta)})
    with pytest.raises(UpdateError, match="codec version 1; this build reads 2"):
        decode(data)


def test_a_second_metadata_entry_is_refused() -> None:
    data = st_save(
        {"packed": torch.ones(2, dtype=torch.float16)},
        metadata={METADATA_KEY: _canonical(_one("b", [2], 0)), "format": "pt"},
    )
    with pytest.raises(UpdateError, match="metadata 'format' besides 'flare_powersgd'"):
        decode(data)


def _meta(table: list[object], **fields: object) -> dict[str, object]:
    return {"version": 2, "dtype": "float16", "prefix": "", "suffix": "", "tensors": table, **fields}


def _one(key: str, shape: list[int], rank: int) -> dict[str, object]:
    """Metadata for a single tensor: its whole key is the common prefix, so its stem is empty."""
    return _meta([["", shape, rank]], prefix=key)


def _canonical(meta: object) -> str:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"))


def _packed_file(meta: object, packed: torch.Tensor | None = None, **extra: torch.Tensor) -> bytes:
    tensors = dict(extra)
    if packed is not None:
        tensors["packed"] = packed
    return st_save(tensors, metadata={METADATA_KEY: _canonical(meta)})


def _f16(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float16)


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        (_meta([], version=3), "codec version 3; this build reads 2"),
        (_meta([], dtype="int8"), "dtype 'int8'"),
        ({"version": 2, "dtype": "float16", "prefix": "", "suffix": ""}, "'tensors' table"),
        (_meta([], tensors={}), "'tensors' table"),
        (_meta([], prefix=None), "lacks the 'prefix' string"),
        ({"version": 2, "dtype": "float16", "prefix": "", "tensors": []}, "lacks the 'suffix' string"),
        (_meta([], extra=1), "unknown field 'extra'"),
        ([1, 2], "must be a JSON object"),
        (_meta([["w", [2]]]), r"entry #0 .* expected \[name, shape, rank\]"),
        (_meta([[3, [2], 0]]), r"entry #0 .* expected \[name, shape, rank\]"),
        (_meta([["w", 4, 0]], prefix="p.", suffix=".s"), "tensor 'p.w.s' has shape 4; expected a list of non-neg"),
        (_meta([["w", [2, -1], 0]]), r"tensor 'w' has shape \[2, -1\]"),
        (_meta([["w", [2, 1.0], 0]]), r"tensor 'w' has shape \[2, 1.0\]"),
        (_meta([["w", [True], 0]]), r"tensor 'w' has shape \[True\]"),
        (_meta([["w", [2, 2], -1]]), "tensor 'w' has rank -1; expected an integer >= 0"),
        (_meta([["w", [2, 2], 1.5]]), "tensor 'w' has rank 1.5"),
        (_meta([["w", [2, 2], None]]), "tensor 'w' has rank None"),
        (_meta([["w", [4], 1]]), r"tensor 'w' is marked low-rank \(rank 1\) but its shape \(4,\) is not at least 2-D"),
        (_meta([["w", [], 2]]), r"tensor 'w' is marked low-rank \(rank 2\) but its shape \(\) is not"),
        (_meta([["a", [1], 0], ["a", [1], 0]]), "lists tensor 'a' twice"),
        (_meta([["b", [1], 0], ["a", [1], 0]]), "lists tensor 'a' after 'b'; this codec writes keys sorted"),
        (_meta([[".a", [1], 0], [".b", [1], 0]], prefix="x"), r"prefix/suffix \('x', ''\) are not the longest"),
        (_meta([["w", [1], 0]], prefix="a", suffix="b"), "prefix/suffix .* not the longest common"),
    ],
)
def test_malformed_metadata_is_refused(meta: object, match: str) -> None:
    with pytest.raises(UpdateError, match=match):
        decode(_packed_file(meta, _f16(1.0, 2.0)))


def test_non_canonical_metadata_json_is_refused() -> None:
    data = st_save({"packed": _f16(1.0)}, metadata={METADATA_KEY: json.dumps(_one("w", [1], 0))})
    with pytest.raises(UpdateError, match="not in canonical JSON form"):
        decode(data)


def test_rank_0_means_dense_whatever_the_shape() -> None:
    back = decode(_packed_file(_meta([["m", [2, 2], 0], ["v", [1], 0]]), _f16(1, 2, 3, 4, 5)))
    assert back.low_rank == {}
    assert torch.equal(back.dense["m"], torch.tensor([[1, 2], [3, 4]], dtype=torch.float16))
    assert torch.equal(back.dense["v"], _f16(5))


def test_missing_packed_tensor_is_refused() -> None:
    with pytest.raises(UpdateError, match="lacks its 'packed' tensor"):
        decode(_packed_file(_one("w", [1], 0), None, other=_f16(1.0)))


def test_tensor_beside_packed_is_refused() -> None:
    with pytest.raises(UpdateError, match="holds tensor 'dense/x' beside 'packed'"):
        decode(_packed_file(_one("w", [1], 0), _f16(1.0), **{"dense/x": _f16(1.0)}))


def test_packed_of_the_wrong_dtype_is_refused() -> None:
    with pytest.raises(UpdateError, match=r"'packed' tensor has dtype torch.float32, the metadata says torch.float16"):
        decode(_packed_file(_one("w", [2], 0), torch.ones(2)))


def test_packed_that_is_not_1d_is_refused() -> None:
    with pytest.raises(UpdateError, match=r"'packed' tensor has shape \(1, 2\); expected 1-D"):
        decode(_packed_file(_one("w", [2], 0), torch.ones(1, 2, dtype=torch.float16)))


@pytest.mark.parametrize("length", [4, 6, 0])
def test_packed_of_the_wrong_length_is_refused_naming_both_numbers(length: int) -> None:
    # w is (2, 3) at rank 1: P has 2 values, Q 3, and b 0 -> 5 in all
    meta = _meta([["b", [0], 0], ["w", [2, 3], 1]])
    packed = torch.ones(length, dtype=torch.float16)
    with pytest.raises(UpdateError, match=f"holds {length} values but the metadata's table implies 5"):
        decode(_packed_file(meta, packed))


@pytest.mark.parametrize(
    ("index", "match"),
    [
        (0, r"dense tensor 'pre.a.post' contains NaN or Inf"),
        (2, r"factor P of tensor 'pre.w.post' contains NaN or Inf"),
        (5, r"factor Q of tensor 'pre.w.post' contains NaN or Inf"),
    ],
)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values_are_refused_naming_the_tensor_and_the_part(index: int, match: str, bad: float) -> None:
    # layout: a (2,) dense -> [0, 2); w (2, 2) rank 1 -> P [2, 4), Q [4, 6)
    meta = _meta([["a", [2], 0], ["w", [2, 2], 1]], prefix="pre.", suffix=".post")
    packed = torch.ones(6, dtype=torch.float16)
    packed[index] = bad
    with pytest.raises(UpdateError, match=match):
        decode(_packed_file(meta, packed))


def test_a_hand_built_file_decodes_to_the_values_in_layout_order() -> None:
    meta = _meta([["a", [2], 0], ["w", [2, 2], 1]], prefix="pre.", suffix=".post")
    back = decode(_packed_file(meta, _f16(1, 2, 3, 4, 5, 6)))
    assert torch.equal(back.dense["pre.a.post"], _f16(1, 2))
    w = back.low_rank["pre.w.post"]
    assert torch.equal(w.p, _f16(3, 4).reshape(2, 1))
    assert torch.equal(w.q, _f16(5, 6).reshape(2, 1))
    assert w.shape == (2, 2)


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


def test_encode_refuses_rank_0_factors_because_rank_0_means_dense_on_the_wire() -> None:
    bad = CompressedUpdate(
        dtype="float16",
        low_rank={
            "w": LowRankFactors(
                p=torch.ones(4, 0, dtype=torch.float16), q=torch.ones(4, 0, dtype=torch.float16), shape=(4, 4)
            )
        },
    )
    with pytest.raises(UpdateError, match=r"factors of 'w'.*rank >= 1"):
        encode(bad)


@pytest.mark.parametrize(
    ("update", "match"),
    [
        (CompressedUpdate(dtype="int8"), "dtype 'int8'"),
        (
            CompressedUpdate(dtype="float16", dense={"b": torch.ones(2)}),
            "dense tensor 'b' is torch.float32, the update says float16",
        ),
        (
            CompressedUpdate(dtype="float16", dense={"b": torch.tensor([float("nan")], dtype=torch.float16)}),
            "dense tensor 'b' contains NaN or Inf; refusing to encode it",
        ),
        (
            CompressedUpdate(
                dtype="float16",
                low_rank={
                    "w": LowRankFactors(
                        p=torch.tensor([[float("inf")]], dtype=torch.float16),
                        q=torch.ones(1, 1, dtype=torch.float16),
                        shape=(1, 1),
                    )
                },
            ),
            "factor P of 'w' contains NaN or Inf",
        ),
        (
            CompressedUpdate(
                dtype="float16",
                low_rank={"w": LowRankFactors(p=torch.ones(1, 1, dtype=torch.float16), q=torch.ones(1, 1), shape=(1, 1))},
                dense={"w": torch.ones(1, dtype=torch.float16)},
            ),
            "'w' is both low-rank and dense",
        ),
    ],
)
def test_encode_refuses_what_it_cannot_write(update: CompressedUpdate, match: str) -> None:
    with pytest.raises(UpdateError, match=match):
        encode(update)
