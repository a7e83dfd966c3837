"""How far the committee's model-based gate statistics move between devices: what the tolerance bands must absorb.

Trains six LoRA updates on the reference model (two of them negated, as an
attacker would send), then computes every model-based gate statistic (the
probe-loss gate's median change, change and z per update; the MI filter's z
per update) and a member's held-out loss on each of:

* ``cpu`` — float32 on the CPU (the tests' path);
* ``cuda`` — float32 on the GPU, as the committee's gate runs are done there;
* ``cuda-bf16`` — the same under bf16 autocast, which the gates do *not* use.

and prints, per statistic, the largest difference from the CPU figures next
to the band in ``ToleranceBands`` (``flare_chain/aggregation/tolerance.py``).
Norm and direction statistics are float64 sums on the CPU whatever the device,
so they are not measured here (tests/committee/test_cross_cpu.py covers CPU kernels).

    python scripts/bench_gate_drift.py [--modes cpu,cuda,cuda-bf16] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import tempfile
from pathlib import Path
from typing import Any

SEED = b"\x07" * 32


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch

    from flare_chain import attacks
    from flare_chain.aggregation.candidate_model import CandidateModel
    from flare_chain.aggregation.gates import GateContext
    from flare_chain.aggregation.mi_filter import nmi_decisions, seed_probe_windows
    from flare_chain.aggregation.probe_loss import probe_decisions, probe_effect
    from flare_chain.aggregation.tolerance import ToleranceBands
    from flare_chain.lora.adapter import initial_adapter
    from flare_chain.lora.device import autocast_for, resolve_device
    from flare_chain.lora.domains import available_domains, domain_texts
    from flare_chain.lora.evaluate import evaluate_loss, held_out_examples
    from flare_chain.lora.params import LoraTrainParams
    from flare_chain.lora.probe_corpus import probe_windows, reference_probe_texts
    from flare_chain.lora.reference import ensure_reference_model
    from flare_chain.lora.tokenizer import load_tokenizer
    from flare_chain.lora.train import train_lora

    train_device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = ensure_reference_model(Path(tmp), pretrain_steps=args.pretrain_steps, show_progress=False)
        params = LoraTrainParams(rank=8, alpha=16, learning_rate=3e-3, batch_size=16, seq_len=64,
                                 max_train_windows=args.train_windows, max_val_windows=32, num_threads=args.threads)
        tokenizer = load_tokenizer(model_dir)
        domains = available_domains()[:6]
        start = initial_adapter(model_dir, params, seed=0)
        deltas = {}
        for i, domain in enumerate(domains):
            result = train_lora(model_dir, domain_texts(domain), params, start_adapter=start, show_progress=False,
                                device=train_device)
            deltas[f"node-{i + 1}"] = attacks.sign_flip(result.delta) if i in (1, 4) else result.delta
        corpus = probe_windows(reference_probe_texts(domains=domains, bytes_per_domain=2048), SEED, count=128,
                               seq_len=64, tokenizer=tokenizer)
        mi_windows = seed_probe_windows(SEED, count=8, seq_len=64)
        val = held_out_examples(domain_texts(domains[0]), params, tokenizer)
        context = GateContext(global_tensors=start)

        stats: dict[str, dict[str, float]] = {}
        predictions: dict[str, dict[str, np.ndarray]] = {}
        losses: dict[str, float] = {}
        for mode in args.modes:
            device = "cuda" if mode.startswith("cuda") else "cpu"
            resolve_device(device)
            model = CandidateModel(model_dir, params, device=device)
            effects, preds = {}, {}
            with autocast_for(model.device) if mode == "cuda-bf16" else contextlib.nullcontext():
                for node, delta in deltas.items():
                    plus = model.window_losses(context.candidate(delta, 1.0), corpus)
                    minus = model.window_losses(context.candidate(delta, -1.0), corpus)
                    effects[node] = probe_effect(plus, minus)
                    preds[node] = model.predictions(context.candidate(delta), mi_windows)
            found: dict[str, float] = {}
            for d in [*probe_decisions(effects, z=3.0, min_candidates=5),
                      *nmi_decisions(preds, threshold=3.5, min_candidates=4)]:
                for c in d.comparisons:
                    found[f"{c.statistic}/{d.node}"] = c.value
                found[f"rejected/{d.gate}/{d.node}"] = float(d.rejected)
            stats[mode], predictions[mode] = found, preds
            # The member's own judgement: held-out loss, bf16 on a GPU (what training and evaluation use).
            if mode != "cuda":
                losses[mode] = evaluate_loss(model_dir, deltas["node-1"], val, params, device=device)
            del model

        bands = ToleranceBands()
        base = args.modes[0]
        report: dict[str, Any] = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                                  "torch": torch.__version__, "modes": args.modes, "drift": {}, "flips": {},
                                  "rejected": {}, "held_out_loss": losses, "bands": bands.model_dump()}
        for mode in args.modes[1:]:
            drift: dict[str, float] = {}
            for key, value in stats[mode].items():
                if key.startswith("rejected/") or not (math.isfinite(value) and math.isfinite(stats[base][key])):
                    continue
                kind = key.split("/")[0]
                drift[kind] = max(drift.get(kind, 0.0), abs(value - stats[base][key]))
            report["drift"][mode] = drift
            report["flips"][mode] = int(sum(int((predictions[mode][n] != predictions[base][n]).sum())
                                            for n in deltas))
        for mode in args.modes:
            report["rejected"][mode] = sorted(k.split("/")[-1] for k, v in stats[mode].items()
                                              if k.startswith("rejected/") and v)
        report["statistics"] = stats
        return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", default="cpu,cuda,cuda-bf16", type=lambda s: s.split(","),
                   help="comma-separated, first is the reference (default cpu,cuda,cuda-bf16)")
    p.add_argument("--pretrain-steps", type=int, default=300, help="reference model pretraining (default 300)")
    p.add_argument("--train-windows", type=int, default=64, help="training windows per node (default 64)")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--json", type=Path, default=None, help="write the whole report here")
    args = p.parse_args()
    report = measure(args)
    bands = report["bands"]
    print(f"device {report['device']}, torch {report['torch']}; reference mode {args.modes[0]}")
    for mode, drift in report["drift"].items():
        print(f"{mode}: {report['flips'][mode]} argmax flips of "
              f"{6 * 8 * 64} MI predictions; rejected {report['rejected'][mode]} (reference: "
              f"{report['rejected'][args.modes[0]]})")
        for kind, value in sorted(drift.items()):
            print(f"  {kind:20s} max |Δ| {value:.3g}   band {bands[kind]['absolute']:g}")
    print("held-out loss of one candidate:", {k: round(v, 6) for k, v in report["held_out_loss"].items()})
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
