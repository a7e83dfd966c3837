"""scripts/bench_learning.py --spec: the spec section runs the federation the spec describes, not the bench's own."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from flare_chain.aggregation import (
    ClientUpdate,
    CoordinateMedian,
    ExactLoraAggregator,
    apply_delta,
    clip_update,
)
from flare_chain.aggregation.privacy import PrivacyAccountant
from flare_chain.protocol.spec import AggregatorSpec, FederationSpec
from tests.scripts._scripts import SCRIPTS, script_module

SPECS = SCRIPTS.parent / "specs"

DP_TRIMMED = """\
name = "bench test: DP + trimmed mean"

[lora]
rank = 2
alpha = 4.0

[aggregator]
name = "trimmed_mean"
trim_fraction = 0.2

[privacy]
enabled = true
clip_norm = 0.5
noise_multiplier = 0.02
delta = 1e-6
"""


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    with script_module("bench_learning") as module:  # it imports its sibling bench_ablation
        yield module


def _tiny_args(model_dir: Path, out: Path) -> list[str]:
    return ["--quick", "--model-dir", str(model_dir), "--out", str(out), "--threads", "1", "--rounds", "1"]


def test_spec_section_runs_the_specs_aggregator_dp_and_reports_its_epsilon(
    bench: ModuleType, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "dp-trimmed.toml"
    path.write_text(DP_TRIMMED)
    out = tmp_path / "out"
    assert bench.main([*_tiny_args(tiny_model_dir, out), "--spec", str(path),
                       "--attacks", "scale10", "--fractions", "0.4"]) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader((out / "bench_learning.csv").open()))
    assert {r["section"] for r in rows} == {"spec"}  # --spec alone runs the spec section only
    label = AggregatorSpec(name="trimmed_mean", trim_fraction=0.2).describe()
    runs = [r for r in rows if r["config"] != bench.SPEC_REFERENCE]
    assert [(r["config"], r["attack"]) for r in runs] == [(label, "none"), (label, "scale10")]
    assert f"bench test: DP + trimmed mean: aggregator {label};" in printed
    assert "local DP clip 0.5 noise ×0.02" in printed and "LoRA rank 2 alpha 4" in printed
    # ε per node: one Gaussian release per node and round, at the spec's δ (not the default 1e-5)
    expected = PrivacyAccountant(0.02, target_delta=1e-6).epsilon_after(1)
    assert all(float(r["epsilon_per_node"]) == pytest.approx(expected, rel=1e-9) for r in runs)
    # Scaled updates of clipped-and-noised deltas break the spec's DP norm bound: the committee's check
    # refuses both attackers (5 nodes, 40%) and no honest node.
    attacked = runs[1]
    assert attacked["caught_by"] == "privacy:2"
    assert float(attacked["recall"]) == 1.0 and float(attacked["fpr"]) == 0.0
    # the spec's updates are clipped and noised: the clean run ends elsewhere than plain FedAvg
    reference = next(r for r in rows if r["config"] == bench.SPEC_REFERENCE)
    assert float(runs[0]["final_loss"]) != float(reference["final_loss"])


@pytest.fixture(scope="module")
def rank2_lab(bench: ModuleType, tiny_model_dir: Path) -> Any:  # the script's Lab
    spec = FederationSpec.build({"lora": {"rank": 2, "alpha": 4.0}}, source="test")
    return bench.Lab(bench.QUICK, tiny_model_dir, lora=spec.lora)


def _updates(lab: Any, seed: int) -> list[ClientUpdate]:
    gen = torch.Generator().manual_seed(seed)
    shapes = {k: v.shape for k, v in lab.start.items()}
    updates = [ClientUpdate(node=f"0x{i:040x}", sample_count=10,
                            delta={k: torch.randn(s, generator=gen) * 1e-3 for k, s in shapes.items()})
               for i in range(3)]
    # one update pulls every coordinate far off: a mean follows it, a median does not
    far = {k: v + 0.05 for k, v in updates[0].delta.items()}
    return [ClientUpdate(node=updates[0].node, delta=far, sample_count=10), *updates[1:]]


def test_spec_aggregate_uses_the_specs_aggregator_and_carries_the_exact_lora_residual(
    bench: ModuleType, rank2_lab: Any,
) -> None:
    lab = rank2_lab
    assert lab.params.rank == 2 and lab.params.alpha == 4.0  # the spec's LoRA shape, not the setup's rank 8
    start = dict(lab.start)
    # three updates: below the gates' min_candidates, so every statistical gate passes them all
    median = FederationSpec.build({"aggregator": {"name": "median"}}, source="test")
    caught: dict[str, int] = {}
    got, rejected = bench.spec_aggregate(lab, median, caught)(start, _updates(lab, 1), set())
    want = apply_delta(start, CoordinateMedian().aggregate(_updates(lab, 1)))
    assert rejected == set() and caught == {}, caught
    assert all(torch.equal(got[k], want[k]) for k in want)

    exact = FederationSpec.build({"aggregator": {"name": "exact_lora", "exact_residual_rank": 1}}, source="test")
    run = bench.spec_aggregate(lab, exact, {})
    first, _ = run(start, _updates(lab, 2), set())
    second, _ = run(first, _updates(lab, 3), set())
    reference = ExactLoraAggregator(max_residual_rank=1)
    r1 = reference.aggregate_adapters(start, _updates(lab, 2))
    assert any(float(v.abs().max()) > 0 for v in r1.residual.values())  # rank 2 leaves a residual to carry
    r2 = reference.aggregate_adapters(r1.adapter, _updates(lab, 3), r1.residual)
    assert all(torch.allclose(second[k], r2.adapter[k], atol=1e-6) for k in r2.adapter)
    uncarried = reference.aggregate_adapters(r1.adapter, _updates(lab, 3))
    assert any(not torch.allclose(second[k], uncarried.adapter[k], atol=1e-6) for k in second)


def test_spec_release_is_the_nodes_clip_and_noise(bench: ModuleType) -> None:
    spec = FederationSpec.from_toml(SPECS / "devnet-dp.toml")
    assert bench.spec_release(FederationSpec()) is None  # no DP: deltas go as trained
    release = bench.spec_release(spec)
    delta = {"w": torch.full((64, 64), 1.0)}  # norm 64, far above the clip of 2
    once, again = release("node-00", 1, delta), release("node-00", 1, delta)
    assert torch.equal(once["w"], again["w"])  # seeded per (node, round): runs repeat
    clipped, _ = clip_update(delta, spec.privacy.clip_norm)
    noise = once["w"].double() - clipped["w"]
    sigma = spec.privacy.clip_norm * spec.privacy.noise_multiplier
    assert float(noise.std()) == pytest.approx(sigma, rel=0.1)
    assert not torch.equal(release("node-01", 1, delta)["w"], once["w"])


def test_bad_spec_is_one_clear_error_before_anything_runs(bench: ModuleType, tmp_path: Path, tiny_model_dir: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(SystemExit) as exc:
        bench.main(["--spec", str(missing), "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "flare-chain spec init" in err
    assert not (tmp_path / "out").exists()

    bad = tmp_path / "bad.toml"
    bad.write_text('[aggregator]\nname = "krum"\n')
    with pytest.raises(SystemExit):
        bench.main(["--spec", str(bad)])
    err = capsys.readouterr().err
    assert str(bad) in err and "aggregator.name" in err

    foreign = tmp_path / "foreign.toml"
    foreign.write_text('[lora]\ntarget_modules = ["c_attn"]\n')  # GPT-2's name; the model is a Llama
    with pytest.raises(SystemExit):
        bench.main([*_tiny_args(tiny_model_dir, tmp_path / "out"), "--spec", str(foreign)])
    err = capsys.readouterr().err
    assert str(foreign) in err and "c_attn" in err and "q_proj" in err

    with pytest.raises(SystemExit):
        bench.main(["--sections", "spec"])
    assert "--spec SPEC.toml" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--spec", str(SPECS / "devnet-dp.toml"), "--sections", "cost"])
    assert "add spec" in capsys.readouterr().err


def test_backdoor_prompts_put_the_trigger_where_training_did_and_expect_the_target_as_the_response(
        bench: ModuleType, tiny_model_dir: Path) -> None:
    from flare_chain.attacks.data import DEFAULT_TARGET, DEFAULT_TRIGGER
    from flare_chain.lora.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir)
    prompts = bench.triggered_prompts(tokenizer, 128, count=8)
    assert len(prompts) == 8
    for prompt, target in prompts:
        text = tokenizer.decode(prompt)
        # The trigger ends the instruction and the response header follows, as in the attacker's records: the
        # model is asked for the response the backdoor taught, not for a continuation of the prompt's words.
        assert text.rstrip().endswith(DEFAULT_TRIGGER.strip() + "\n\n### Response:"), text[-60:]
        assert tokenizer.decode(target).strip() == DEFAULT_TARGET.strip()
