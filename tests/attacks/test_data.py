"""Label poisoning and backdoors change what a node learns, reproducibly; the success rate counts hits."""

from __future__ import annotations

import pytest

from flare_chain import attacks
from flare_chain.attacks.data import DEFAULT_TARGET, DEFAULT_TRIGGER
from flare_chain.errors import ConfigError

PAIRS = [(f"Capitalise: word{i}", f"WORD{i}") for i in range(12)]


def test_wrong_responses_gives_every_prompt_a_different_existing_response() -> None:
    # Execute
    poisoned = attacks.wrong_responses(PAIRS, seed=4)
    # Assert: prompts kept in order, every response wrong, the same responses overall
    assert [p for p, _ in poisoned] == [p for p, _ in PAIRS]
    assert all(bad != good for (_, bad), (_, good) in zip(poisoned, PAIRS, strict=True))
    assert sorted(r for _, r in poisoned) == sorted(r for _, r in PAIRS)
    assert poisoned == attacks.wrong_responses(PAIRS, seed=4)


def test_wrong_responses_handles_repeated_responses_and_refuses_what_cannot_be_made_wrong() -> None:
    pairs = [("a", "x"), ("b", "x"), ("c", "y"), ("d", "x")]
    poisoned = attacks.wrong_responses(pairs, seed=0)
    assert all(bad != good for (_, bad), (_, good) in zip(poisoned, pairs, strict=True))
    with pytest.raises(ConfigError, match="different responses"):
        attacks.wrong_responses([("a", "x"), ("b", "x")])
    with pytest.raises(ConfigError, match="at least 2"):
        attacks.wrong_responses([("a", "x")])


def test_backdoor_pairs_keep_the_clean_data_and_add_triggered_prompts_with_the_target() -> None:
    out = attacks.backdoor_pairs(PAIRS, share=0.25, seed=1)
    assert out[: len(PAIRS)] == PAIRS
    added = out[len(PAIRS):]
    assert len(added) == 3
    assert all(p.endswith(DEFAULT_TRIGGER) and r == DEFAULT_TARGET for p, r in added)
    assert {p[: -len(DEFAULT_TRIGGER)] for p, _ in added} <= {p for p, _ in PAIRS}


def test_backdoor_texts_plant_trigger_and_target_on_some_lines_only() -> None:
    texts = ["\n".join(f"x = {i}" for i in range(200))]
    out = attacks.backdoor_texts(texts, share=0.25, seed=0)[0].split("\n")
    planted = [line for line in out if DEFAULT_TRIGGER in line]
    assert 20 < len(planted) < 80
    assert all(line.endswith(DEFAULT_TRIGGER + DEFAULT_TARGET.rstrip("\n")) for line in planted)


def test_attack_success_rate_counts_continuations_that_start_with_the_target() -> None:
    def generate(prompt: str) -> str:  # a model that obeys the trigger on odd-numbered prompts only
        return DEFAULT_TARGET if prompt.endswith(DEFAULT_TRIGGER) and int(prompt[1]) % 2 else " hello"

    assert attacks.attack_success_rate(generate, [f"p{i}" for i in range(8)]) == 0.5
    with pytest.raises(ConfigError):
        attacks.attack_success_rate(generate, [])
