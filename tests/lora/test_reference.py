import json
import threading
from pathlib import Path

import pytest

from flare_chain.lora import reference
from flare_chain.lora.base import REFERENCE_INFO_FILE, base_model_id, load_base_model, model_fingerprint
from flare_chain.lora.reference import ReferenceSpec, ensure_reference_model
from flare_chain.lora.tokenizer import BOS_ID, EOS_ID, PAD_ID, TOKENIZER_FILES, load_tokenizer

MICRO = ReferenceSpec(
    hidden_size=16,
    num_layers=1,
    num_heads=2,
    intermediate_size=32,
    max_positions=32,
    pretrain_steps=3,
    batch_size=2,
    seq_len=16,
    warmup_steps=1,
)


def test_reference_is_a_normal_hf_model_dir_with_build_info(tiny_model_dir: Path) -> None:
    assert (tiny_model_dir / "config.json").is_file() and (tiny_model_dir / "model.safetensors").is_file()
    info = json.loads((tiny_model_dir / REFERENCE_INFO_FILE).read_text())
    assert info["final_loss"] < 5.0  # uniform over bytes is ln(256) ≈ 5.5
    assert base_model_id(tiny_model_dir) == info["model_id"]
    assert load_base_model(tiny_model_dir).config.model_type == "llama"  # type: ignore[union-attr]


def test_second_call_reuses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = ensure_reference_model(tmp_path, spec=MICRO, show_progress=False)
    fingerprint = model_fingerprint(first)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("rebuilt a cached model")

    monkeypatch.setattr(reference, "_pretrain", refuse)
    assert ensure_reference_model(tmp_path, spec=MICRO, show_progress=False) == first
    assert model_fingerprint(first) == fingerprint


def test_other_settings_get_another_cache_entry(tmp_path: Path) -> None:
    a = ensure_reference_model(tmp_path, spec=MICRO, show_progress=False)
    b = ensure_reference_model(tmp_path, spec=MICRO.model_copy(update={"seed": 1}), show_progress=False)
    assert a != b and model_fingerprint(a) != model_fingerprint(b)


def test_crashed_build_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(reference, "_pretrain", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        ensure_reference_model(tmp_path, spec=MICRO, show_progress=False)
    assert [p for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")] == []
    monkeypatch.undo()
    assert (ensure_reference_model(tmp_path, spec=MICRO, show_progress=False) / "model.safetensors").is_file()


def test_concurrent_builders_build_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = reference._pretrain

    def counting(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(reference, "_pretrain", counting)
    results: list[Path] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(ensure_reference_model(tmp_path, spec=MICRO, show_progress=False))
        )
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and len(set(results)) == 1
    assert calls == [1]


def test_the_reference_ships_its_byte_tokenizer_in_hugging_face_form(tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_model_dir)
    assert tokenizer("déf x", add_special_tokens=False)["input_ids"] == list("déf x".encode())
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (PAD_ID, BOS_ID, EOS_ID)


def test_a_cached_reference_without_tokenizer_files_gets_them_and_keeps_its_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ensure_reference_model(tmp_path, spec=MICRO, show_progress=False)
    fingerprint = model_fingerprint(first)
    for name in TOKENIZER_FILES:  # a folder built before the tokenizer was shipped
        (first / name).unlink()

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("rebuilt a cached model")

    monkeypatch.setattr(reference, "_pretrain", refuse)
    assert ensure_reference_model(tmp_path, spec=MICRO, show_progress=False) == first
    assert model_fingerprint(first) == fingerprint
    assert load_tokenizer(first).eos_token_id == EOS_ID
