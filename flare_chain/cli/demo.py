"""``flare-chain demo``: a whole local federation with a table per round."""

from __future__ import annotations

import argparse
from pathlib import Path

from flare_chain.cli.tables import render_round, render_summary

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("demo", help="run a whole local federation (chain, IPFS, nodes, VRF committee, rounds)")
    p.add_argument("--nodes", type=int, default=None,
                   help="participants (default 6, or one per entry of --data)")
    p.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    p.add_argument("--committee", type=int, default=8, metavar="K",
                   help="expected committee weight k of the VRF sortition (with 6 nodes a round lacks weight 2 "
                        "with probability 0.3%%)")
    p.add_argument("--min-committee", type=int, default=2, metavar="M",
                   help="least committee weight a round goes on with; lighter and it fails (default 2)")
    p.add_argument("--model-dir", type=Path, default=None,
                   help="a local Hugging Face causal-LM directory (default: the offline reference model)")
    p.add_argument("--data", type=Path, default=None, metavar="DIR",
                   help="the nodes' own data, one entry per node in node order: node-1.jsonl, node-2.jsonl, ... "
                        "or node-1/, node-2/, ... (text, JSONL text, instruction or chat records, detected per "
                        "entry; default: each node's share of --task)")
    p.add_argument("--task", choices=("skills", "stdlib"), default="skills",
                   help="the nodes' data without --data: skills, the generated instruction task with a different "
                        "mix of skills per node (default), or stdlib, a standard-library package per node")
    p.add_argument("--no-local-only", action="store_true",
                   help="skip the local-only baseline (each node trained alone, scored on the same held-out set)")
    p.add_argument("--work-dir", type=Path, default=Path(".flare/demo"), help="where the IPFS repo lives")
    p.add_argument("--max-train-windows", type=int, default=None, help="cap on each node's training windows")
    p.add_argument("--compression-rank", type=int, default=2, metavar="Q",
                   help="PowerSGD rank of each update (default 2; 0 sends updates uncompressed)")
    p.add_argument("--spec", type=Path, default=None, metavar="SPEC.toml",
                   help="federation spec (aggregator, gates, LoRA, vote tolerance; see `flare-chain spec init`); "
                        "default: one made from the options above")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu",
                   help="where nodes train and run the committee's models (default cpu; auto: CUDA when present)")
    p.add_argument("--attack", default=None, metavar="KIND",
                   help="the last --attackers nodes submit this behaviour's crafted update instead of what they "
                        "trained (e.g. sign_flip; see flare_chain.attacks), to watch the committee's gates leave "
                        "them out (default: every node honest)")
    p.add_argument("--attackers", type=int, default=1, metavar="N",
                   help="how many nodes (the last ones) run --attack (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars, log lines only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flare_chain.federation import FederationConfig, RoundReport, run_federation
    from flare_chain.lora.params import LoraTrainParams
    from flare_chain.lora.skills import SKILLS_SEQ_LEN, SKILLS_TASK
    from flare_chain.protocol.spec import FederationSpec

    spec = FederationSpec.from_toml(args.spec) if args.spec is not None else None
    window = {"seq_len": SKILLS_SEQ_LEN} if args.task == SKILLS_TASK and args.data is None else {}
    cap = {} if args.max_train_windows is None else {"max_train_windows": args.max_train_windows}
    # the skills task's examples fit SKILLS_SEQ_LEN whole: no padding to 128 (a spec's lora decides for itself)
    train = spec.lora.model_copy(update=cap) if spec is not None else LoraTrainParams(**window, **cap)
    if spec is not None:
        spec = spec.model_copy(update={"lora": train})
    nodes = args.nodes
    if nodes is None:
        from flare_chain.lora.datasets import node_entries

        nodes = len(node_entries(args.data)) if args.data is not None else 6
    config = FederationConfig.build(nodes=nodes, rounds=args.rounds, model_dir=args.model_dir, data_dir=args.data,
                                    expected_committee_size=args.committee, min_committee_size=args.min_committee,
                                    work_dir=args.work_dir, train=train, show_progress=not args.no_progress,
                                    compression={"rank": args.compression_rank}, spec=spec, device=args.device,
                                    task=args.task, local_only=not args.no_local_only, attack=args.attack,
                                    attackers=args.attackers)

    def show(report: RoundReport) -> None:
        print(render_round(report), flush=True)

    result = run_federation(config, on_round=show)
    print()
    print(render_summary(result))
    improved = result.final_loss < result.base_loss
    print(f"\nglobal held-out loss {result.base_loss:.4f} (base) -> {result.final_loss:.4f} after "
          f"{len(result.rounds)} rounds ({100 * result.gain:.1f}% lower): "
          f"{'lower' if improved else 'NOT lower'} than the base model")
    alone = result.local_only_loss
    if alone is not None:
        print(f"local-only (each node alone for {len(result.rounds)} rounds, same held-out set): mean "
              f"{alone:.4f} ({100 * (1 - alone / result.base_loss):.1f}% lower than base); federated "
              f"{result.final_loss:.4f} is {'lower' if result.final_loss < alone else 'NOT lower'}")
    return 0 if improved else 1
