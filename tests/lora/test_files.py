import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flare_chain.errors import UpdateError
from flare_chain.lora.files import Manifest, decode_delta, encode_delta, tensor_shapes

KEY_A = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
KEY_B = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {KEY_B: torch.randn(8, 2, generator=g), KEY_A: torch.randn(2, 8, generator=g)}


def _manifest(tensors: dict[str, torch.Tensor], **overrides: object) -> Manifest:
    fields: dict[str, object] = dict(
        kind="delta",
        base_model_id="flare-reference-x",
        base_model_sha256="ab" * 32,
        rank=2,
        alpha=4.0,
        target_modules=["v_proj", "q_proj"],
        sample_count=48,
        shapes=tensor_shapes(tensors),
        metrics={"val_loss_after": 1.5},
        round=3,
        node="node-1",
    )
    fields.update(overrides)
    return Manifest(**fields)  # type: ignore[arg-type]


def _expected() -> dict[str, tuple[int, ...]]:
    return {KEY_A: (2, 8), KEY_B: (8, 2)}


def test_round_trip_keeps_tensors_and_manifest() -> None:
    tensors = _tensors()
    data, mbytes = encode_delta(tensors, _manifest(tensors))
    got, manifest = decode_delta(data, mbytes, expected_shapes=_expected())
    assert list(got) == sorted(tensors)
    assert all(torch.equal(got[k], tensors[k]) for k in tensors)
    assert manifest == _manifest(tensors)
    assert manifest is not None and manifest.target_modules == ["q_proj", "v_proj"]


def test_encoding_is_byte_deterministic_and_manifest_is_canonical() -> None:
    tensors = _tensors()
    reordered = {k: tensors[k].clone() for k in reversed(list(tensors))}
    first = encode_delta(tensors, _manifest(tensors))
    assert first == encode_delta(reordered, _manifest(reordered))
    mbytes = first[1]
    assert mbytes == json.dumps(json.loads(mbytes), sort_keys=True, separators=(",", ":")).encode()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, width=32), min_size=16, max_size=16))
def test_round_trip_is_exact_for_any_finite_float32(values: list[float]) -> None:
    tensors = {KEY_A: torch.tensor(values, dtype=torch.float32).reshape(2, 8), KEY_B: torch.zeros(8, 2)}
    got, _ = decode_delta(*encode_delta(tensors, _manifest(tensors)))
    assert torch.equal(got[KEY_A], tensors[KEY_A])


def test_garbage_bytes_are_refused() -> None:
    with pytest.raises(UpdateError, match="not a valid safetensors file"):
        decode_delta(b"\x00garbage that is not safetensors at all")


def test_truncated_file_is_refused() -> None:
    data, _ = encode_delta(_tensors(), _manifest(_tensors()))
    with pytest.raises(UpdateError, match="truncated"):
        decode_delta(data[:-10])


@pytest.mark.parametrize(
    ("bad", "word"), [(float("nan"), "NaN"), (float("inf"), "Inf"), (float("-inf"), "Inf")]
)
def test_non_finite_values_are_refused_naming_the_tensor(bad: float, word: str) -> None:
    from safetensors.torch import save

    tensors = _tensors()
    tensors[KEY_B][3, 1] = bad
    with pytest.raises(UpdateError, match=rf"tensor '{KEY_B}' contains {word}"):
        decode_delta(save(tensors))
    with pytest.raises(UpdateError, match="NaN or Inf"):
        encode_delta(tensors, _manifest(tensors))


def test_wrong_shape_names_key_got_and_expected() -> None:
    data, _ = encode_delta(_tensors(), _manifest(_tensors()))
    expected = {KEY_A: (2, 16), KEY_B: (8, 2)}
    with pytest.raises(UpdateError, match=rf"tensor '{KEY_A}' has shape \(2, 8\), expected \(2, 16\)"):
        decode_delta(data, expected_shapes=expected)


def test_missing_and_extra_keys_are_refused() -> None:
    tensors = _tensors()
    only_a = {KEY_A: tensors[KEY_A]}
    data, _ = encode_delta(only_a, _manifest(only_a))
    with pytest.raises(UpdateError, match=f"missing tensor '{KEY_B}'"):
        decode_delta(data, expected_shapes=_expected())
    with pytest.raises(UpdateError, match=f"unexpected tensor '{KEY_B}'"):
        decode_delta(encode_delta(tensors, _manifest(tensors))[0], expected_shapes={KEY_A: (2, 8)})


def test_integer_dtype_is_refused() -> None:
    from safetensors.torch import save

    with pytest.raises(UpdateError, match=rf"tensor '{KEY_A}' has dtype int64"):
        decode_delta(save({KEY_A: torch.zeros(2, 8, dtype=torch.long)}))


def test_malformed_manifest_is_refused_naming_the_field() -> None:
    tensors = _tensors()
    data, mbytes = encode_delta(tensors, _manifest(tensors))
    with pytest.raises(UpdateError, match="not valid UTF-8 JSON"):
        decode_delta(data, b"{not json")
    broken = json.loads(mbytes)
    broken["sample_count"] = -1
    with pytest.raises(UpdateError, match="field 'sample_count' is invalid"):
        decode_delta(data, json.dumps(broken).encode())


def test_manifest_disagreeing_with_tensors_is_refused() -> None:
    tensors = _tensors()
    data, _ = encode_delta(tensors, _manifest(tensors))
    wrong = _manifest(tensors, shapes={KEY_A: [2, 8], KEY_B: [4, 2]})
    with pytest.raises(
        UpdateError, match=rf"tensor '{KEY_B}' has shape \(8, 2\) but the manifest says \(4, 2\)"
    ):
        decode_delta(data, wrong.to_bytes())
    half = _manifest(tensors, dtype="float16")
    with pytest.raises(UpdateError, match="dtype float32 but the manifest says float16"):
        decode_delta(data, half.to_bytes())


def test_manifest_rank_must_fit_lora_shapes() -> None:
    with pytest.raises(Exception, match="lora_A weight must be"):
        _manifest(_tensors(), rank=3)


def test_a_manifest_without_a_probe_corpus_keeps_its_old_bytes() -> None:
    manifest = _manifest(_tensors())
    assert "probe_cid" not in json.loads(manifest.to_bytes())


def test_a_probe_corpus_cid_round_trips_and_a_malformed_one_is_refused_by_name() -> None:
    cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    manifest = _manifest(_tensors()).model_copy(update={"kind": "adapter", "probe_cid": cid})
    assert Manifest.from_bytes(manifest.to_bytes()).probe_cid == cid
    raw = json.loads(manifest.to_bytes())
    raw["probe_cid"] = "not-a-cid"
    with pytest.raises(UpdateError, match="probe_cid"):
        Manifest.from_bytes(json.dumps(raw).encode())
