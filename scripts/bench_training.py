"""LoRA training throughput, peak memory and a committee member's review time per candidate.

For each model, in a fresh child process (so peak memory is that model's own):

* **train**: ``train_lora`` on ``--steps`` batches of ``--batch`` windows of
  ``--seq-len`` tokens (one epoch); tokens/s counts the optimisation loop
  alone (``TrainResult.train_seconds``), not tokenization or loading.
* **review**: what a committee member runs per candidate update in the
  model-based gates: the probe-loss gate's two passes (global ± Δ) and the MI
  filter's predictions, each over ``--probe-windows`` windows, with
  :class:`CandidateModel`; the median over ``--candidates`` random updates.
* **peak memory**: the child's maximum resident set (CPU) or
  ``torch.cuda.max_memory_allocated`` (GPU).

Models: ``reference`` (the project's offline reference model, ~0.8M
parameters, byte tokenizer) and ``llama-100m`` (a random-weight Llama shape,
hidden 768, 12 layers, 12 heads, MLP 2048, 32k vocabulary tied, about 110M
parameters, with a byte-level BPE tokenizer trained here on the bench text).
Ratios are against the reference model in the same run.

    python scripts/bench_training.py                       # both models on the CPU
    python scripts/bench_training.py --device cuda         # on a GPU (bf16 autocast)
    python scripts/bench_training.py --models reference --steps 4
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["main"]

MODELS = ("reference", "llama-100m")


def _bench_text(chars: int) -> list[str]:
    """Python source from the standard library, enough characters for the run (no download)."""
    from flare_chain.lora.domains import pretraining_files

    texts, total = [], 0
    for path in pretraining_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        texts.append(text)
        total += len(text)
        if total >= chars:
            break
    return texts


def _llama_100m(folder: Path, texts: list[str]) -> Path:
    """A random-weight ~110M-parameter Llama and a byte-level BPE tokenizer trained on ``texts``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=32_000, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                        model_max_length=1024)
    config = LlamaConfig(vocab_size=32_000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                         num_attention_heads=12, num_key_value_heads=12, max_position_embeddings=1024,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return folder


def _model_dir(name: str, workdir: Path, texts: list[str], reference_dir: Path | None) -> Path:
    if name == "reference":
        if reference_dir is not None:
            return reference_dir
        from flare_chain.lora.reference import ensure_reference_model

        return ensure_reference_model(show_progress=False)
    if name == "llama-100m":
        return _llama_100m(workdir / name, texts)
    raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


def _peak_memory_bytes(device: str) -> int:
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated())
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # kilobytes on Linux


def measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """One model: train, then review candidates; runs in the child process."""
    import torch

    from flare_chain.aggregation.candidate_model import CandidateModel
    from flare_chain.lora.adapter import initial_adapter
    from flare_chain.lora.data import texts_to_windows
    from flare_chain.lora.device import resolve_device
    from flare_chain.lora.params import LoraTrainParams
    from flare_chain.lora.tokenizer import load_tokenizer
    from flare_chain.lora.train import train_lora

    device = str(resolve_device(args.device))
    windows_needed = args.steps * args.batch
    chars = windows_needed * args.seq_len * 8 + 200_000  # generous: BPE packs several bytes per token
    texts = _bench_text(chars)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = _model_dir(name, Path(tmp), texts, args.reference_dir)
        tokenizer = load_tokenizer(model_dir)
        windows = texts_to_windows(texts, args.seq_len, tokenizer)
        if windows.shape[0] < windows_needed + args.probe_windows:
            raise SystemExit(f"{name}: only {windows.shape[0]} windows of bench text; lower --steps")
        params = LoraTrainParams(rank=args.rank, alpha=2 * args.rank, seq_len=args.seq_len, batch_size=args.batch,
                                 epochs=1, val_fraction=0.05, learning_rate=1e-3, num_threads=args.threads)
        # Just enough text for `steps` training batches once the held-out share is set aside.
        train_texts = _texts_for_windows(texts, tokenizer, args.seq_len, math.ceil(windows_needed / 0.95) + 1)
        result = train_lora(model_dir, train_texts, params, show_progress=False, device=args.device)
        steps = int(result.metrics["steps"])
        tokens = result.sample_count * args.seq_len
        train_peak = _peak_memory_bytes(device)

        candidate = CandidateModel(model_dir, params, device=args.device)
        start = initial_adapter(model_dir, params, seed=0)
        probe = windows[: args.probe_windows]
        generator = torch.Generator().manual_seed(1)
        per_candidate = []
        for _ in range(args.candidates + 1):  # the first is a warm-up, not counted
            delta = {k: torch.randn(v.shape, generator=generator) * 1e-3 for k, v in start.items()}
            began = time.perf_counter()
            candidate.window_losses({k: start[k] + delta[k] for k in start}, probe)
            candidate.window_losses({k: start[k] - delta[k] for k in start}, probe)
            candidate.predictions({k: start[k] + delta[k] for k in start}, probe)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            per_candidate.append(time.perf_counter() - began)
        # Every weight of the wrapped model less the LoRA tensors: the base model's size.
        lora = sum(t.numel() for t in start.values())
        parameters = sum(int(p.numel()) for p in candidate.model.parameters()) - lora
        return {
            "model": name, "device": device, "device_name": _device_name(device), "parameters": int(parameters),
            "lora_parameters": int(sum(t.numel() for t in start.values())), "steps": steps, "tokens": tokens,
            "train_seconds": result.train_seconds, "tokens_per_s": tokens / result.train_seconds,
            "review_s_per_candidate": statistics.median(per_candidate[1:]),
            "probe_windows": args.probe_windows, "peak_bytes": max(train_peak, _peak_memory_bytes(device)),
            "train_peak_bytes": train_peak, "threads": args.threads,
        }


def _texts_for_windows(texts: list[str], tokenizer: object, seq_len: int, windows: int) -> list[str]:
    """The shortest prefix of ``texts`` that still gives ``windows`` windows of ``seq_len`` tokens."""
    from flare_chain.lora.data import texts_to_windows

    lo, hi = 1, len(texts)
    while lo < hi:
        mid = (lo + hi) // 2
        if texts_to_windows(texts[:mid], seq_len, tokenizer).shape[0] >= windows:
            hi = mid
        else:
            lo = mid + 1
    kept = texts[:lo]
    ids = texts_to_windows(kept, seq_len, tokenizer)
    if ids.shape[0] > windows:  # cut the last text so the count is close to exact
        last = kept[-1]
        lo2, hi2 = 0, len(last)
        while lo2 < hi2:
            mid = (lo2 + hi2) // 2
            if texts_to_windows([*kept[:-1], last[:mid]], seq_len, tokenizer).shape[0] >= windows:
                hi2 = mid
            else:
                lo2 = mid + 1
        kept = [*kept[:-1], last[:lo2]]
    return kept


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name()
    return platform.processor() or platform.machine()


def _run_child(name: str, argv: list[str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", name, *argv], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise SystemExit(f"{name} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def render(rows: list[dict[str, Any]]) -> str:
    """The README table: one row per model, ratios against the reference model of the same run."""
    base = next((r for r in rows if r["model"] == "reference"), rows[0])
    lines = ["| model | parameters | device | train tokens/s | × ref | peak memory | review s/candidate | × ref |",
             "| --- | -: | --- | -: | -: | -: | -: | -: |"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {int(r['parameters']) / 1e6:.1f} M | {r['device_name']} | "
            f"{float(r['tokens_per_s']):,.0f} | {float(r['tokens_per_s']) / float(base['tokens_per_s']):.3f} | "
            f"{int(r['peak_bytes']) / 2**20:,.0f} MiB | {float(r['review_s_per_candidate']):.3f} | "
            f"{float(r['review_s_per_candidate']) / float(base['review_s_per_candidate']):.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"], help="where to run (default cpu)")
    p.add_argument("--steps", type=int, default=8, help="training batches per model (default 8)")
    p.add_argument("--batch", type=int, default=8, help="windows per batch (default 8)")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per window (default 128)")
    p.add_argument("--rank", type=int, default=8, help="LoRA rank (default 8)")
    p.add_argument("--candidates", type=int, default=3, help="candidate updates reviewed per model (default 3)")
    p.add_argument("--probe-windows", type=int, default=128, help="probe windows per gate pass (default 128)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for torch (default 2)")
    p.add_argument("--reference-dir", type=Path, help="an existing reference model folder (default: build/cache)")
    p.add_argument("--out", type=Path, default=Path("bench-out/bench_training.json"), help="JSON results file")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args)))
        return 0
    passthrough = [f"--device={args.device}", f"--steps={args.steps}", f"--batch={args.batch}",
                   f"--seq-len={args.seq_len}", f"--rank={args.rank}", f"--candidates={args.candidates}",
                   f"--probe-windows={args.probe_windows}", f"--threads={args.threads}"]
    if args.reference_dir is not None:
        passthrough.append(f"--reference-dir={args.reference_dir}")
    rows: list[dict[str, Any]] = []
    for name in args.models.split(","):
        print(f"{name}: training {args.steps} steps of {args.batch}x{args.seq_len} tokens on {args.device} …",
              flush=True)
        rows.append(_run_child(name.strip(), passthrough))
        r = rows[-1]
        print(f"{name}: {float(r['tokens_per_s']):,.0f} tokens/s, review {float(r['review_s_per_candidate']):.3f} "
              f"s/candidate", flush=True)
    table = render(rows)
    print()
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    args.out.with_suffix(".txt").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
