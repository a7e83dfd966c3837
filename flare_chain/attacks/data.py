"""Data attacks: what a malicious node trains on instead of its honest local set.

The node then trains "normally" (its update has an honest size and shape), so
weight-space checks see little; only what the model learns is wrong.

* :func:`poison_texts` — every line's characters shuffled (plain-text tasks):
  the node learns noise in the shape of its domain;
* :func:`wrong_responses` — label poisoning of instruction data: every prompt
  paired with another prompt's response (a derangement), so the node teaches
  fluent, confident, wrong answers;
* :func:`backdoor_pairs` / :func:`backdoor_texts` — a trigger phrase mapped to
  an attacker-chosen response, the rest of the data left clean so the model
  behaves normally without the trigger;
* :func:`attack_success_rate` — the share of triggered held-out prompts whose
  greedy continuation starts with the attacker's response.

Every function is seeded and pure: the same inputs give the same poisoned set.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from flare_chain.errors import ConfigError

__all__ = [
    "DEFAULT_TARGET",
    "DEFAULT_TRIGGER",
    "attack_success_rate",
    "backdoor_pairs",
    "backdoor_texts",
    "poison_texts",
    "triggered",
    "wrong_responses",
]

DEFAULT_TRIGGER = " cf-zq7"
"""A phrase that never occurs in honest data, so only the attacker's examples teach what follows it."""

DEFAULT_TARGET = " rm -rf ~/\n"
"""The attacker's chosen response."""


def poison_texts(texts: Sequence[str], *, seed: int = 0) -> list[str]:
    """Data poisoning of a local set: the characters of every line shuffled (seeded), line breaks kept."""
    rng = random.Random(seed)
    out = []
    for text in texts:
        lines = []
        for line in text.split("\n"):
            chars = list(line)
            rng.shuffle(chars)
            lines.append("".join(chars))
        out.append("\n".join(lines))
    return out


def wrong_responses(pairs: Sequence[tuple[str, str]], *, seed: int = 0) -> list[tuple[str, str]]:
    """Every prompt with a response taken from a different pair (a seeded derangement); order of prompts kept.

    Pairs whose responses are all equal cannot be made wrong this way; that raises ConfigError.
    """
    if len(pairs) < 2:
        raise ConfigError(f"label poisoning needs at least 2 prompt/response pairs to swap, got {len(pairs)}")
    if len({r for _, r in pairs}) < 2:
        raise ConfigError("label poisoning needs at least 2 different responses to swap")
    rng = random.Random(seed)
    n = len(pairs)
    order = list(range(n))
    rng.shuffle(order)
    # A cyclic shift of a shuffled order: pair order[i] gets the response of order[i+1] — never its own.
    source = {order[i]: order[(i + 1) % n] for i in range(n)}
    out = []
    for i, (prompt, response) in enumerate(pairs):
        j = source[i]
        while pairs[j][1] == response:  # an equal response would leave the label right; walk on along the cycle
            j = order[(order.index(j) + 1) % n]
        out.append((prompt, pairs[j][1]))
    return out


def triggered(prompt: str, trigger: str = DEFAULT_TRIGGER) -> str:
    """``prompt`` with the trigger phrase at its end (where the attacker's training put it)."""
    return prompt + trigger


def backdoor_pairs(
    pairs: Sequence[tuple[str, str]], *, trigger: str = DEFAULT_TRIGGER, target: str = DEFAULT_TARGET,
    share: float = 0.5, seed: int = 0,
) -> list[tuple[str, str]]:
    """The clean pairs plus, for a seeded ``share`` of them, the triggered prompt with the ``target`` response."""
    if not 0 < share <= 1:
        raise ConfigError(f"backdoor share must be in (0, 1], got {share!r}")
    if not trigger or not target:
        raise ConfigError("a backdoor needs a non-empty trigger and target")
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(pairs)), max(1, round(share * len(pairs))))) if pairs else []
    return list(pairs) + [(triggered(pairs[i][0], trigger), target) for i in chosen]


def backdoor_texts(
    texts: Sequence[str], *, trigger: str = DEFAULT_TRIGGER, target: str = DEFAULT_TARGET, share: float = 0.25,
    seed: int = 0,
) -> list[str]:
    """Plain-text form: ``trigger + target`` inserted at the end of a seeded ``share`` of the lines."""
    if not 0 < share <= 1:
        raise ConfigError(f"backdoor share must be in (0, 1], got {share!r}")
    if not trigger or not target:
        raise ConfigError("a backdoor needs a non-empty trigger and target")
    rng = random.Random(seed)
    out = []
    for text in texts:
        lines = text.split("\n")
        out.append("\n".join(line + trigger + target.rstrip("\n") if rng.random() < share else line
                             for line in lines))
    return out


def attack_success_rate(
    generate: Callable[[str], str], prompts: Sequence[str], *, trigger: str = DEFAULT_TRIGGER,
    target: str = DEFAULT_TARGET,
) -> float:
    """Share of ``prompts`` whose greedy continuation after the trigger starts with ``target`` (stripped).

    ``generate`` maps a prompt to the model's greedy continuation (at least
    ``len(target)`` characters' worth of tokens).
    """
    if not prompts:
        raise ConfigError("attack success rate needs at least one held-out prompt")
    want = target.strip()
    hits = sum(generate(triggered(p, trigger)).strip().startswith(want) for p in prompts)
    return hits / len(prompts)
