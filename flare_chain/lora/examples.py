"""Node data → fixed-width token examples with loss labels, split deterministically into train and held-out.

Text data (``text``, ``jsonl``) becomes the windows of :mod:`flare_chain.lora.data`
(every token is a label). Supervised data (``instruction``, ``chat``) becomes
one example per record: the rendered prompt and response tokenized together
with the base model's tokenizer, labels ``-100`` on every token that is not
part of a response, so the loss — in training and in held-out evaluation —
covers only what the model should answer. Examples are cut at ``seq_len`` and
right-padded to it with the tokenizer's pad id (its EOS when it has none),
padding masked out of attention and loss. An example whose response starts
beyond ``seq_len`` has nothing to learn from and is left out.

Which examples are held out is the windows' rule: a keyed hash
(``blake2b(f"{seed}:{index}")``) of the example index, so the split depends
only on the data, ``params.seed`` and ``params.val_fraction``. The caps
``max_train_windows`` / ``max_val_windows`` cap examples the same way.

Chat records are rendered with the tokenizer's own chat template; a tokenizer
without one is refused (no fallback template is guessed, because a model
fine-tuned on a made-up format answers in that format).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from flare_chain.errors import TrainingError
from flare_chain.lora.data import split_windows, windows_for_training
from flare_chain.lora.datasets import INSTRUCTION_TEMPLATE, NodeData, Record, as_node_data
from flare_chain.lora.params import LoraTrainParams
from flare_chain.lora.tokenizer import pad_id

__all__ = ["IGNORE_INDEX", "ExampleSplit", "TokenExamples", "prepare_examples", "render_record", "supervised_examples"]

_log = logging.getLogger(__name__)

IGNORE_INDEX = -100
"""Label of a token the loss skips (PyTorch's and transformers' convention)."""


@dataclass(frozen=True)
class TokenExamples:
    """``(n, seq_len)`` int64 ``input_ids`` and ``labels``; ``attention_mask`` None means no padding anywhere."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    attention_mask: torch.Tensor | None = None

    @classmethod
    def from_windows(cls, windows: torch.Tensor) -> TokenExamples:
        """Plain-text windows: every token is a label, nothing is padded."""
        windows = windows.to(torch.long)
        return cls(input_ids=windows, labels=windows)

    @classmethod
    def cat(cls, parts: Sequence[TokenExamples]) -> TokenExamples:
        """The examples of ``parts`` one after another (all of one width)."""
        if not parts:
            raise TrainingError("no examples to join")
        masks = [p.attention_mask for p in parts]
        mask = None
        if any(m is not None for m in masks):
            mask = torch.cat([m if m is not None else torch.ones_like(p.input_ids) for p, m in zip(parts, masks,
                                                                                                    strict=True)])
        return cls(input_ids=torch.cat([p.input_ids for p in parts]), labels=torch.cat([p.labels for p in parts]),
                   attention_mask=mask)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def __getitem__(self, index: Any) -> TokenExamples:
        mask = self.attention_mask[index] if self.attention_mask is not None else None
        return TokenExamples(input_ids=self.input_ids[index], labels=self.labels[index], attention_mask=mask)

    def model_inputs(self, device: torch.device | None = None) -> dict[str, torch.Tensor]:
        """Keyword arguments for a transformers causal LM (``attention_mask`` only when something is padded),
        on ``device`` when given."""
        out = {"input_ids": self.input_ids, "labels": self.labels}
        if self.attention_mask is not None:
            out["attention_mask"] = self.attention_mask
        if device is not None:
            out = {k: v.to(device, non_blocking=True) for k, v in out.items()}
        return out

    @property
    def label_count(self) -> int:
        """Tokens the loss is computed on (a label at position 0 has no prefix and never counts)."""
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())


@dataclass(frozen=True)
class ExampleSplit:
    """Training and held-out examples of one node's data."""

    train: TokenExamples
    val: TokenExamples


def _render_chat(tokenizer: Any, messages: list[dict[str, str]], *, generation_prompt: bool) -> str:
    if not messages:
        return ""
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt))


def render_record(record: Record, tokenizer: Any, *, data_format: str) -> tuple[str, list[tuple[int, int]]]:
    """The full text of ``record`` and the character spans of its responses (what the loss covers).

    Instruction: :data:`~flare_chain.lora.datasets.INSTRUCTION_TEMPLATE` then the
    output (the tokenizer's BOS and EOS ids are added around the tokens). Chat: the tokenizer's chat template; each
    assistant turn's span runs from the end of the prompt rendered up to it
    (with the generation prompt) to the end of the conversation rendered
    through it, so role headers are context and end-of-turn markers are learnt.
    """
    if data_format == "instruction":
        block = f"### Input:\n{record.input}\n\n" if record.input.strip() else ""
        prompt = INSTRUCTION_TEMPLATE.format(instruction=record.instruction, input_block=block)
        full = prompt + record.output
        return full, [(len(prompt), len(full))]
    if not getattr(tokenizer, "chat_template", None):
        raise TrainingError(
            "the node's data is chat records, but the base model's tokenizer has no chat_template to render them; "
            "use a model whose tokenizer has one, set tokenizer.chat_template and save it, or convert the data "
            'to instruction records ({"instruction", "input", "output"})'
        )
    messages = [{"role": t.role, "content": t.content} for t in record.messages]
    full = _render_chat(tokenizer, messages, generation_prompt=False)
    spans = []
    for k, turn in enumerate(record.messages):
        if turn.role != "assistant":
            continue
        through = _render_chat(tokenizer, messages[: k + 1], generation_prompt=False)
        prompt = _render_chat(tokenizer, messages[:k], generation_prompt=True)
        if not (full.startswith(through) and through.startswith(prompt)):
            raise TrainingError(
                "the base model's chat template does not render a conversation turn by turn (a prefix of the "
                "messages does not render to a prefix of the text), so the assistant tokens cannot be found; "
                "convert the data to instruction records"
            )
        spans.append((len(prompt), len(through)))
    return full, spans


def _encode_record(
    record: Record, tokenizer: Any, *, data_format: str, seq_len: int, pad: int
) -> tuple[list[int], list[int], int] | None:
    """``(ids, labels, real length)`` padded to ``seq_len``; None when no response token fits."""
    text, spans = render_record(record, tokenizer, data_format=data_format)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    ids = list(enc["input_ids"])
    labels = [tok if any(a <= start < b for a, b in spans) else IGNORE_INDEX
              for tok, (start, _end) in zip(ids, enc["offset_mapping"], strict=True)]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if data_format == "instruction":  # ids, not text: a tokenizer may not parse special-token text (bytes)
        if bos is not None and bos != eos:
            ids, labels = [int(bos), *ids], [IGNORE_INDEX, *labels]
        if eos is not None:
            ids, labels = [*ids, int(eos)], [*labels, int(eos)]
    ids, labels = ids[:seq_len], labels[:seq_len]
    if all(label == IGNORE_INDEX for label in labels[1:]):
        return None  # the response lies beyond seq_len
    fill = seq_len - len(ids)
    return ids + [pad] * fill, labels + [IGNORE_INDEX] * fill, len(ids)


def supervised_examples(data: NodeData, tokenizer: Any, seq_len: int) -> TokenExamples:
    """One masked, right-padded example per record of ``data`` whose response starts within ``seq_len`` tokens.

    TrainingError when no record has a response token within ``seq_len``.
    """
    pad = pad_id(tokenizer)
    rows = []
    for record in data.records:
        encoded = _encode_record(record, tokenizer, data_format=data.format, seq_len=seq_len, pad=pad)
        if encoded is not None:
            rows.append(encoded)
    if not rows:
        raise TrainingError(
            f"no record of {data.source} has a response within seq_len={seq_len} tokens; raise seq_len"
        )
    if len(rows) < len(data.records):
        _log.warning("%d of %d records of %s have no response token within seq_len=%d and are left out",
                     len(data.records) - len(rows), len(data.records), data.source, seq_len)
    ids = torch.tensor([r[0] for r in rows], dtype=torch.long)
    labels = torch.tensor([r[1] for r in rows], dtype=torch.long)
    lengths = torch.tensor([r[2] for r in rows], dtype=torch.long)
    mask = (torch.arange(seq_len)[None, :] < lengths[:, None]).to(torch.long)
    return TokenExamples(input_ids=ids, labels=labels, attention_mask=mask)


def prepare_examples(data: NodeData | Sequence[str], tokenizer: Any, params: LoraTrainParams) -> ExampleSplit:
    """Tokenize and split a node's data: text as windows, instruction/chat as masked, padded examples.

    Raises TrainingError when there is too little data for one training and
    one held-out example, naming how much there is.
    """
    node_data = as_node_data(data)
    if not node_data.supervised:
        split = windows_for_training(
            list(node_data.texts), tokenizer=tokenizer, seq_len=params.seq_len, val_fraction=params.val_fraction,
            seed=params.seed, max_train=params.max_train_windows, max_val=params.max_val_windows,
        )
        return ExampleSplit(train=TokenExamples.from_windows(split.train), val=TokenExamples.from_windows(split.val))
    examples = supervised_examples(node_data, tokenizer, params.seq_len)
    n = len(examples)
    if n < 2 or n - max(1, math.ceil(params.val_fraction * n)) < 1:
        raise TrainingError(
            f"node data {node_data.source} has {n} usable {node_data.format} record(s); at least 2 are needed "
            f"for one training and one held-out example with val_fraction={params.val_fraction}"
        )
    order = split_windows(torch.arange(n)[:, None], params.val_fraction, params.seed,
                          max_train=params.max_train_windows, max_val=params.max_val_windows)
    return ExampleSplit(train=examples[order.train[:, 0]], val=examples[order.val[:, 0]])
