"""Instruction and chat records become padded examples whose loss covers only the responses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from flare_chain.errors import TrainingError
from flare_chain.lora.base import load_base_model
from flare_chain.lora.datasets import ChatTurn, NodeData, Record
from flare_chain.lora.evaluate import evaluate_loss, held_out_examples, mean_token_loss
from flare_chain.lora.examples import IGNORE_INDEX, TokenExamples, prepare_examples
from flare_chain.lora.params import LoraTrainParams
from flare_chain.lora.tokenizer import EOS_ID, PAD_ID, byte_tokenizer, load_tokenizer
from flare_chain.lora.train import train_lora

PARAMS = LoraTrainParams(rank=4, alpha=8, seq_len=128, batch_size=8, epochs=3, learning_rate=2e-2,
                         max_train_windows=64, max_val_windows=16, num_threads=1)


def _instructions(n: int = 40) -> NodeData:
    records = [Record(instruction="Double the number.", input=str(i), output=str(2 * i)) for i in range(n)]
    return NodeData(format="instruction", records=tuple(records), source="doubling.jsonl")


def _chats(n: int = 40) -> NodeData:
    records = [Record(messages=(ChatTurn("system", "Be brief."), ChatTurn("user", f"double {i}"),
                                ChatTurn("assistant", str(2 * i)), ChatTurn("user", "and again?"),
                                ChatTurn("assistant", str(4 * i)))) for i in range(n)]
    return NodeData(format="chat", records=tuple(records), source="chat.jsonl")


def _labelled(tokenizer: Any, examples: TokenExamples, row: int) -> str:
    return str(tokenizer.decode([t for t in examples.labels[row].tolist() if t != IGNORE_INDEX]))


def test_instruction_labels_cover_only_the_output_and_eos() -> None:
    tokenizer = byte_tokenizer()
    split = prepare_examples(_instructions(), tokenizer, PARAMS)
    examples = TokenExamples.cat([split.train, split.val])
    for row in range(len(examples)):
        labels = [t for t in examples.labels[row].tolist() if t != IGNORE_INDEX]
        assert labels[-1] == EOS_ID
        prompt = tokenizer.decode(examples.input_ids[row][examples.attention_mask[row] == 1].tolist(),
                                  skip_special_tokens=True)
        assert prompt.startswith("### Instruction:\nDouble the number.\n\n### Input:\n")
        number = int(prompt.split("### Input:\n")[1].split("\n")[0])
        assert bytes(labels[:-1]).decode() == str(2 * number)


def test_padding_uses_the_pad_id_and_is_masked_out_of_attention_and_loss() -> None:
    split = prepare_examples(_instructions(), byte_tokenizer(), PARAMS)
    ex = split.train
    padded = ex.attention_mask == 0
    assert padded.any()
    assert bool((ex.input_ids[padded] == PAD_ID).all()) and bool((ex.labels[padded] == IGNORE_INDEX).all())
    assert ex.input_ids.shape[1] == PARAMS.seq_len


def test_chat_labels_cover_every_assistant_turn_and_nothing_else(arch_model_dirs: dict[str, Path]) -> None:
    tokenizer = load_tokenizer(arch_model_dirs["qwen2"])
    split = prepare_examples(_chats(), tokenizer, PARAMS)
    text = tokenizer.decode(split.val.input_ids[0][split.val.attention_mask[0] == 1].tolist())
    i = int(text.split("double ")[1].split("<")[0])
    assert _labelled(tokenizer, split.val, 0) == f"{2 * i}<|im_end|>\n{4 * i}<|im_end|>\n"
    # padding with the tokenizer's pad token (qwen2's <|endoftext|>), a tokenizer without one pads with eos
    assert int(split.val.input_ids[0, -1]) == tokenizer.pad_token_id


def test_a_tokenizer_without_a_chat_template_refuses_chat_data(arch_model_dirs: dict[str, Path]) -> None:
    with pytest.raises(TrainingError, match=r"has no chat_template .* convert the data to instruction records"):
        prepare_examples(_chats(), load_tokenizer(arch_model_dirs["llama"]), PARAMS)


def test_the_held_out_split_is_a_seeded_rule_on_the_record_index() -> None:
    tokenizer = byte_tokenizer()
    a = prepare_examples(_instructions(), tokenizer, PARAMS)
    b = prepare_examples(_instructions(), tokenizer, PARAMS)
    c = prepare_examples(_instructions(), tokenizer, PARAMS.model_copy(update={"seed": 5}))
    assert torch.equal(a.val.input_ids, b.val.input_ids) and torch.equal(a.train.input_ids, b.train.input_ids)
    assert not torch.equal(a.val.input_ids, c.val.input_ids)
    assert (len(a.train), len(a.val)) == (36, 4)  # ceil(0.1 * 40) held out


def test_a_response_beyond_seq_len_leaves_the_record_out_and_none_left_is_an_error() -> None:
    long = Record(instruction="x" * 200, output="y")
    data = NodeData(format="instruction", records=(long, *_instructions(10).records), source="mixed.jsonl")
    assert sum(len(p) for p in (prepare_examples(data, byte_tokenizer(), PARAMS).train,
                                prepare_examples(data, byte_tokenizer(), PARAMS).val)) == 10
    only_long = NodeData(format="instruction", records=(long, long), source="long.jsonl")
    with pytest.raises(TrainingError, match=r"no record of long.jsonl has a response within seq_len=128"):
        prepare_examples(only_long, byte_tokenizer(), PARAMS)


def test_held_out_loss_counts_only_response_tokens(tiny_model_dir: Path) -> None:
    # Prepare: the same examples, once labelled on responses only and once on every real token
    tokenizer = load_tokenizer(tiny_model_dir)
    val = held_out_examples(_instructions(), PARAMS, tokenizer)
    everything = TokenExamples(input_ids=val.input_ids, attention_mask=val.attention_mask,
                               labels=val.input_ids.masked_fill(val.attention_mask == 0, IGNORE_INDEX))
    model = load_base_model(tiny_model_dir)
    # Execute
    ours = mean_token_loss(model, val, batch_size=8)
    # Assert: the loss is the mean over the response tokens, computed by hand
    with torch.no_grad():
        logits = model(input_ids=val.input_ids, attention_mask=val.attention_mask).logits[:, :-1]
    targets = val.labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                            ignore_index=IGNORE_INDEX, reduction="sum")
    assert ours == pytest.approx(float(nll) / int((targets != IGNORE_INDEX).sum()), rel=1e-5)
    assert ours != pytest.approx(mean_token_loss(model, everything, batch_size=8), rel=1e-3)


@pytest.mark.parametrize(("family", "make"), [("qwen2", _chats), ("gpt2", _instructions), ("llama", _instructions)])
def test_supervised_training_lowers_the_held_out_response_loss(
    family: str, make: Any, arch_model_dirs: dict[str, Path]
) -> None:
    model_dir = arch_model_dirs[family]
    data = make()
    result = train_lora(model_dir, data, PARAMS, show_progress=False)
    assert result.metrics["val_loss_after"] < result.metrics["val_loss_before"]
    assert result.sample_count == 36 and result.metrics["val_windows"] == 4
    assert (result.metrics["val_fraction"], result.metrics["split_seed"]) == (0.1, 0.0)
    val = held_out_examples(data, PARAMS, load_tokenizer(model_dir))
    assert evaluate_loss(model_dir, result.adapter, val, PARAMS) == pytest.approx(
        result.metrics["val_loss_after"], abs=1e-6)
