"""Session-wide fixtures: real things built once because they are costly."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny) Llama reference model, pretrained for a few steps on stdlib text."""
    from flare_chain.lora.reference import ReferenceSpec, ensure_reference_model

    spec = ReferenceSpec(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=128,
                         pretrain_steps=40, batch_size=8, seq_len=64, warmup_steps=4)
    return ensure_reference_model(tmp_path_factory.mktemp("models"), spec=spec, show_progress=False)


@pytest.fixture(scope="session")
def tiny_train_params():  # -> LoraTrainParams
    from flare_chain.lora.params import LoraTrainParams

    return LoraTrainParams(rank=4, alpha=8, learning_rate=1e-2, batch_size=8, seq_len=64, max_train_windows=48,
                           max_val_windows=16, num_threads=2)


# ---------------------------------------------------------------- tiny checkpoints of other architectures

ARCHITECTURES = ("llama", "gpt2", "gpt_neox", "qwen2", "phi")
"""Causal-LM families the package is tested on, each with a random-weight checkpoint and its own tokenizer."""

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
"""A small chat template (qwen2's tokenizer carries it; the others have none)."""


def _generated_corpus(n: int = 400) -> list[str]:
    """Text for the test tokenizers, made here: sentences over a fixed word list, seeded."""
    import random

    rng = random.Random(11)
    words = ["the", "node", "trains", "a", "small", "adapter", "on", "its", "own", "data", "and", "sends", "the", "delta", "to", "the", "committee", "which", "checks", "every", "update", "before", "the", "global", "model", "moves", "def", "return", "import", "class", "json", "value", "key"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(5, 20))) + f" {rng.randint(0, 999)}."
            for _ in range(n)]


def _train_tokenizer(family: str) -> object:  # -> PreTrainedTokenizerFast
    """A byte-level BPE (any text tokenizes) trained offline with ``tokenizers``, specials per family."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = {
        "llama": {"bos_token": "<s>", "eos_token": "</s>"},  # no pad: batches pad with eos
        "gpt2": {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"},
        "gpt_neox": {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|padding|>"},
        "qwen2": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},  # no bos, like Qwen2
        "phi": {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"},
    }[family]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=sorted(set(specials.values())),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(_generated_corpus(), trainer=trainer)
    extra = {"chat_template": CHAT_TEMPLATE} if family == "qwen2" else {}
    return PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=128, **specials, **extra)


def _model_config(family: str, vocab_size: int, tokenizer: object) -> object:
    import transformers

    common = {"vocab_size": vocab_size, "tie_word_embeddings": False,
              "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,  # type: ignore[attr-defined]
              "pad_token_id": tokenizer.pad_token_id}  # type: ignore[attr-defined]
    if family == "gpt2":
        return transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=128, **common)
    cls = {"llama": transformers.LlamaConfig, "gpt_neox": transformers.GPTNeoXConfig,
           "qwen2": transformers.Qwen2Config, "phi": transformers.PhiConfig}[family]
    extra = {"num_key_value_heads": 2} if family in ("llama", "qwen2") else {}
    return cls(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
               max_position_embeddings=128, **extra, **common)


def make_tiny_checkpoint(folder: Path, family: str, *, vocab_size: int | None = None) -> Path:
    """Save a 2-layer, 32-wide random-weight ``family`` causal LM and its own tokenizer into ``folder``.

    ``vocab_size`` overrides the embedding rows (default: the tokenizer's size rounded up to 8).
    """
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = _train_tokenizer(family)
    rows = vocab_size if vocab_size is not None else -(-len(tokenizer) // 8) * 8  # type: ignore[arg-type]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(_model_config(family, rows, tokenizer))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))  # type: ignore[attr-defined]
    return folder


@pytest.fixture(scope="session")
def arch_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny checkpoint per family in :data:`ARCHITECTURES`, built once per session (about a second each)."""
    root = tmp_path_factory.mktemp("architectures")
    return {family: make_tiny_checkpoint(root / family, family) for family in ARCHITECTURES}


@pytest.fixture(scope="session")
def make_checkpoint():  # -> Callable[..., Path]
    """:func:`make_tiny_checkpoint` for tests that need a checkpoint of their own (e.g. a wrong vocabulary)."""
    return make_tiny_checkpoint
