"""The skills task: a generated, offline, non-IID instruction task on which federated learning shows.

The stdlib domains (:mod:`flare_chain.lora.domains`) are real text, but the
reference model was pretrained on Python source much like them, so a few
rounds of LoRA move their held-out loss by a percent or two: too little to
tell learning from noise, or an attack that stalls it from none. The skills
task is new to the model in form and content, so its loss falls far and fast,
and each node holds only some of it, so nodes gain from federating.

A *skill* is one deterministic string transformation (capitals, reversal,
snake_case to camelCase, dates, …), asked as an instruction record
(``instruction``, ``input``, ``output``) and rendered through the ordinary
instruction-data path (:mod:`flare_chain.lora.examples`), so the loss covers
only the responses. Inputs are pseudo-words built from syllables and numbers,
drawn from a seeded RNG: nothing is downloaded, and the same seed gives the
same records on every machine and Python version.

Non-IID by construction: node ``i`` of ``n`` holds the skills of its group
(:func:`node_skills`), a few consecutive skills of :data:`SKILLS`, with
unequal shares; the groups together cover every skill, so the union of the
nodes' held-out examples covers them all. Every input of every node is drawn
once from one pool (:func:`skills_records`), so no prompt appears twice
anywhere: a node's held-out examples are unseen by every node's training.
The public probe corpus (:func:`skills_probe_corpus`) is drawn with a
different seed and kept apart from that pool too; it is instruction records,
so the committee's probe-loss gate scores the responses only, as the nodes
learn them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from flare_chain.errors import ConfigError
from flare_chain.lora.datasets import NodeData, Record

__all__ = [
    "SKILLS",
    "SKILLS_SEQ_LEN",
    "SKILLS_TASK",
    "Skill",
    "node_skills",
    "skill_names",
    "skills_node_data",
    "skills_probe_corpus",
    "skills_records",
]

SKILLS_TASK: Literal["skills"] = "skills"
"""The task's name where a config or a command line names a task."""

SKILLS_SEQ_LEN = 96
"""Tokens (bytes of the reference model, with BOS and EOS) that hold every rendered example whole."""

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_PROBE_SALT = 0x5EED_F00D
"""Mixed into the seed of the probe corpus so it never draws the nodes' records."""


def _word(rng: random.Random) -> str:
    """A pronounceable pseudo-word of 2–3 consonant-vowel syllables ("kavo", "limuse")."""
    return "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(rng.randint(2, 3)))


def _words(rng: random.Random, low: int, high: int) -> list[str]:
    return [_word(rng) for _ in range(rng.randint(low, high))]


def _capitals(rng: random.Random) -> tuple[str, str]:
    w = " ".join(_words(rng, 1, 2))
    return w, w.upper()


def _reverse(rng: random.Random) -> tuple[str, str]:
    w = _word(rng)
    return w, w[::-1]


def _repeat(rng: random.Random) -> tuple[str, str]:
    w = _word(rng)
    return w, f"{w} {w} {w}"


def _initials(rng: random.Random) -> tuple[str, str]:
    ws = _words(rng, 2, 4)
    return " ".join(ws), "".join(w[0].upper() for w in ws)


def _camel(rng: random.Random) -> tuple[str, str]:
    ws = _words(rng, 2, 3)
    return "_".join(ws), ws[0] + "".join(w.capitalize() for w in ws[1:])


def _date(rng: random.Random) -> tuple[str, str]:
    y, m, d = rng.randint(1950, 2049), rng.randint(1, 12), rng.randint(1, 28)
    return f"{y:04d}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y:04d}"


def _pylist(rng: random.Random) -> tuple[str, str]:
    ws = _words(rng, 2, 2)
    return " ".join(ws), "[" + ", ".join(repr(w) for w in ws) + "]"


def _add(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    return f"{a} + {b}", str(a + b)


@dataclass(frozen=True)
class Skill:
    """One sub-task: the instruction a record asks, and a generator of (input, output) pairs from an RNG."""

    name: str
    instruction: str
    """The imperative, short ("Capitals", "Sum"); the record's input follows it after a colon."""
    make: Callable[[random.Random], tuple[str, str]]

    def record(self, rng: random.Random) -> Record:
        """One instruction record of this skill drawn from ``rng``: ``"<instruction>: <input>"`` → output.

        The input rides in the instruction line rather than an ``### Input:``
        block, which keeps every rendered example within 96 tokens of a byte
        tokenizer, so the task trains at the node templates' short ``seq_len``
        without cutting answers.
        """
        given, answer = self.make(rng)
        return Record(instruction=f"{self.instruction}: {given}", output=answer)


SKILLS: tuple[Skill, ...] = (
    Skill("capitals", "Capitals", _capitals),
    Skill("reverse", "Backwards", _reverse),
    Skill("repeat", "Three times", _repeat),
    Skill("initials", "Initials", _initials),
    Skill("camel", "camelCase", _camel),
    Skill("date", "Day/month/year", _date),
    Skill("pylist", "Python list", _pylist),
    Skill("add", "Sum", _add),
)
"""The task's skills, in the order nodes are dealt them."""


def skill_names() -> list[str]:
    """Names of :data:`SKILLS`, in order."""
    return [s.name for s in SKILLS]


def node_skills(index: int, nodes: int) -> list[tuple[str, float]]:
    """Node ``index``'s (0-based, of ``nodes``) skills and their shares of its records (summing to 1).

    Each node gets ``g = max(2, ceil(len(SKILLS) / nodes))`` consecutive skills,
    starting at skill ``index * g`` (wrapping), so every skill is held by some
    node and neighbouring nodes share none unless there are more nodes than
    groups. Shares fall off within a node (its first skill weighs most); a node
    that holds a group again on a later pass over the skills has it rotated and
    its shares flattened, so no two nodes hold the same mix.
    """
    if nodes < 1 or not 0 <= index < nodes:
        raise ConfigError(f"skills task: node index {index} is not in [0, {nodes}); number nodes from 0 to nodes-1")
    k = len(SKILLS)
    group = max(2, -(-k // nodes))
    names = [SKILLS[(index * group + t) % k].name for t in range(group)]
    lap = index * group // k  # how many times the skills were dealt out before this node's group
    turn = lap % group
    names = names[turn:] + names[:turn]
    weights = [float(group - t + lap) for t in range(group)]
    total = sum(weights)
    return [(n, w / total) for n, w in zip(names, weights, strict=True)]


def _draw_unique(skill: Skill, count: int, rng: random.Random, seen: set[str]) -> list[Record]:
    """``count`` records of ``skill`` whose prompts are not in ``seen`` (added to it)."""
    out: list[Record] = []
    tries = 0
    while len(out) < count:
        tries += 1
        if tries > 50 * count + 1000:
            raise ConfigError(f"skills task: cannot draw {count} distinct {skill.name!r} prompts; ask for fewer "
                              "records per node")
        record = skill.record(rng)
        if record.instruction in seen:
            continue
        seen.add(record.instruction)
        out.append(record)
    return out


def skills_records(nodes: int, records_per_node: int, *, seed: int = 0) -> list[list[Record]]:
    """Every node's records, drawn from one seeded pool so no prompt repeats across or within nodes.

    Node ``i`` holds ``records_per_node`` records of :func:`node_skills` ``(i, nodes)``
    in their shares (rounded, the remainder to its first skill), shuffled with
    the seed. Deterministic: the same arguments give the same records.
    """
    if records_per_node < 2:
        raise ConfigError(f"skills task: records_per_node={records_per_node}; at least 2 are needed "
                          "(one to train on, one held out)")
    rng = random.Random(f"flare-chain skills task:{seed}")
    seen: set[str] = set()
    by_name = {s.name: s for s in SKILLS}
    out: list[list[Record]] = []
    for i in range(nodes):
        mix = node_skills(i, nodes)
        counts = [int(share * records_per_node) for _, share in mix]
        counts[0] += records_per_node - sum(counts)
        records = [r for (name, _), c in zip(mix, counts, strict=True) for r in _draw_unique(by_name[name], c, rng, seen)]
        rng.shuffle(records)
        out.append(records)
    return out


def skills_node_data(index: int, nodes: int, *, records_per_node: int = 240, seed: int = 0) -> NodeData:
    """Node ``index``'s (0-based) share of the skills task as instruction data, ready for training.

    Every node of a federation must be given the same ``nodes``, ``records_per_node``
    and ``seed`` (its config's ``[data]`` section), or their records may overlap.
    """
    records = skills_records(nodes, records_per_node, seed=seed)[index]
    skills = "+".join(name for name, _ in node_skills(index, nodes))
    return NodeData(format="instruction", records=tuple(records),
                    source=f"skills task node {index + 1} of {nodes} ({skills}, seed {seed})")


def skills_probe_corpus(*, records: int = 256, seed: int = 0) -> NodeData:
    """A public probe corpus for the skills task: ``records`` instruction records covering every skill evenly.

    Drawn from its own RNG stream (a salted seed), not from the nodes' pool: the
    corpus is public, so a prompt it shares with some node's data by chance tells
    nobody anything they could not generate themselves. Records, not rendered
    text, so the probe scores what a node learns (the responses), not the
    random words of the prompts.
    """
    if records < len(SKILLS):
        raise ConfigError(f"skills probe corpus: records={records}; at least one per skill ({len(SKILLS)}) is needed")
    rng = random.Random(f"flare-chain skills probe:{seed ^ _PROBE_SALT}")
    drawn = tuple(SKILLS[k % len(SKILLS)].record(rng) for k in range(records))
    return NodeData(format="instruction", records=drawn, source=f"skills task probe corpus (seed {seed})")
