"""The skills task: deterministic, non-IID, correct answers, response-only loss, held-out unseen by training."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from flare_chain.errors import ConfigError
from flare_chain.lora.datasets import Record
from flare_chain.lora.examples import IGNORE_INDEX, TokenExamples, prepare_examples
from flare_chain.lora.params import LoraTrainParams
from flare_chain.lora.skills import (
    SKILLS,
    SKILLS_SEQ_LEN,
    node_skills,
    skill_names,
    skills_node_data,
    skills_probe_corpus,
    skills_records,
)
from flare_chain.lora.tokenizer import EOS_ID, byte_tokenizer

PARAMS = LoraTrainParams(seq_len=128, val_fraction=0.1, max_train_windows=None, max_val_windows=None, num_threads=1)
_BY_PREFIX = {s.instruction: s.name for s in SKILLS}


def _skill_of(record: Record) -> str:
    prefix, _, _ = record.instruction.partition(": ")
    return _BY_PREFIX[prefix]


def _given(record: Record) -> str:
    return record.instruction.partition(": ")[2]


def test_same_seed_same_records_other_seed_other_records() -> None:
    assert skills_records(6, 40, seed=3) == skills_records(6, 40, seed=3)
    assert skills_node_data(2, 6, records_per_node=40, seed=3) == skills_node_data(2, 6, records_per_node=40, seed=3)
    assert skills_records(6, 40, seed=3) != skills_records(6, 40, seed=4)
    assert skills_probe_corpus(seed=3) == skills_probe_corpus(seed=3)
    assert skills_probe_corpus(seed=3).records != skills_probe_corpus(seed=4).records


@pytest.mark.parametrize("nodes", [1, 2, 3, 4, 6, 10, 16])
def test_the_nodes_together_hold_every_skill_and_each_node_a_different_mix(nodes: int) -> None:
    mixes = [node_skills(i, nodes) for i in range(nodes)]
    held = {name for mix in mixes for name, _ in mix}
    assert held == set(skill_names())
    for mix in mixes:
        assert sum(share for _, share in mix) == pytest.approx(1.0)
        assert len(mix) < len(SKILLS) or nodes == 1  # nobody holds the whole task
    if nodes > 1:
        assert len({tuple(mix) for mix in mixes}) == nodes


def test_each_node_holds_only_its_skills_in_its_shares() -> None:
    records = skills_records(4, 120, seed=0)
    seen_skills = []
    for i, node in enumerate(records):
        counts = Counter(_skill_of(r) for r in node)
        shares = dict(node_skills(i, 4))
        assert set(counts) == set(shares)
        for name, share in shares.items():
            assert abs(counts[name] - share * 120) <= 1
        seen_skills.append(set(counts))
    # with 4 nodes and 8 skills the groups are disjoint: label skew at its strongest
    assert all(not (a & b) for k, a in enumerate(seen_skills) for b in seen_skills[k + 1:])


def test_every_answer_is_the_transformation_of_its_input() -> None:
    checks = {
        "capitals": lambda x: x.upper(),
        "reverse": lambda x: x[::-1],
        "repeat": lambda x: " ".join([x] * 3),
        "initials": lambda x: "".join(w[0].upper() for w in x.split()),
        "camel": lambda x: x.split("_")[0] + "".join(w.capitalize() for w in x.split("_")[1:]),
        "date": lambda x: "/".join(reversed(x.split("-"))),
        "pylist": lambda x: str(x.split()),
        "add": lambda x: str(sum(int(t) for t in x.split(" + "))),
    }
    assert set(checks) == set(skill_names())
    for node in skills_records(2, 200, seed=1):
        for record in node:
            assert record.output == checks[_skill_of(record)](_given(record)), record
            assert re.fullmatch(r"[a-z0-9 _+\-]+", _given(record))


def test_no_prompt_appears_twice_so_held_out_examples_are_unseen_by_every_node() -> None:
    nodes = 6
    tokenizer = byte_tokenizer()
    train_prompts: set[str] = set()
    val_prompts: list[str] = []
    for i in range(nodes):
        data = skills_node_data(i, nodes, records_per_node=120)
        split = prepare_examples(data, tokenizer, PARAMS.model_copy(update={"seed": i}))
        for part, into in ((split.train, train_prompts), (split.val, None)):
            for row in range(len(part)):
                ids = part.input_ids[row][part.attention_mask[row] == 1].tolist()
                prompt = tokenizer.decode(ids, skip_special_tokens=True).split("### Response:")[0]
                if into is None:
                    val_prompts.append(prompt)
                else:
                    into.add(prompt)
    assert len(val_prompts) == nodes * 12
    assert not train_prompts & set(val_prompts)
    all_prompts = [r.instruction for node in skills_records(nodes, 120) for r in node]
    assert len(all_prompts) == len(set(all_prompts))


def test_the_loss_covers_only_the_answer_and_its_end_token() -> None:
    tokenizer = byte_tokenizer()
    data = skills_node_data(0, 4, records_per_node=40)
    split = prepare_examples(data, tokenizer, PARAMS)
    examples = TokenExamples.cat([split.train, split.val])
    answers = sorted(r.output for r in data.records)
    labelled = []
    for row in range(len(examples)):
        labels = [t for t in examples.labels[row].tolist() if t != IGNORE_INDEX]
        assert labels[-1] == EOS_ID
        labelled.append(tokenizer.decode(labels[:-1]))
    assert sorted(labelled) == answers


def test_every_example_fits_the_demo_window_whole() -> None:
    tokenizer = byte_tokenizer()
    data = skills_node_data(0, 1, records_per_node=400)
    examples = prepare_examples(data, tokenizer, PARAMS.model_copy(update={"seq_len": 4096}))
    lengths = TokenExamples.cat([examples.train, examples.val]).attention_mask.sum(dim=1)
    assert int(lengths.max()) <= SKILLS_SEQ_LEN


def test_the_probe_corpus_covers_every_skill_evenly() -> None:
    corpus = skills_probe_corpus(records=64)
    assert corpus.format == "instruction"  # records: the probe scores their responses only
    counts = Counter(_BY_PREFIX[r.instruction.split(": ")[0]] for r in corpus.records)
    assert counts == dict.fromkeys(skill_names(), 8)
    assert all(r.output.strip() for r in corpus.records)


def test_bad_arguments_get_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="node index 4"):
        node_skills(4, 4)
    with pytest.raises(ConfigError, match="records_per_node=1"):
        skills_records(2, 1)
    with pytest.raises(ConfigError, match="at least one per skill"):
        skills_probe_corpus(records=3)
