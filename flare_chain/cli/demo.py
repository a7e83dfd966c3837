"""``flare-chain demo``: a whole local federation with a table per round."""

from __future__ import annotations

import argparse
from pathlib import Path

from flare_chain.cli.tables import render_table

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("demo", help="run a whole local federation (chain, IPFS, nodes, rounds)")
    p.add_argument("--nodes", type=int, default=4, help="participants (default 4)")
    p.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    p.add_argument("--model-dir", type=Path, default=None,
                   help="a local Hugging Face causal-LM directory (default: the offline reference model)")
    p.add_argument("--work-dir", type=Path, default=Path(".flare/demo"), help="where the IPFS repo lives")
    p.add_argument("--max-train-windows", type=int, default=None, help="cap on each node's training windows")
    p.add_argument("--no-progress", action="store_true", help="no progress bars, log lines only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flare_chain.federation import FederationConfig, RoundReport, run_federation
    from flare_chain.lora.params import LoraTrainParams

    train = LoraTrainParams() if args.max_train_windows is None else LoraTrainParams(
        max_train_windows=args.max_train_windows)
    config = FederationConfig.build(nodes=args.nodes, rounds=args.rounds, model_dir=args.model_dir,
                                    work_dir=args.work_dir, train=train, show_progress=not args.no_progress)

    def show(report: RoundReport) -> None:
        print(render_table(
            ["node", "domain", "samples", "loss before", "local after", "global after", "vote", "submit gas"],
            [[n.name, n.domain, n.sample_count, f"{n.loss_before:.4f}", f"{n.loss_local:.4f}",
              f"{n.loss_after:.4f}", {True: "yes", False: "no", None: "-"}[n.vote], n.gas_used]
             for n in report.nodes],
            title=(f"\nround {report.round_id}: {report.status.name.lower()}, {report.submissions} submissions, "
                   f"{report.accepted} accepted, {report.approvals}/{report.committee_size} approvals, "
                   f"gas {report.gas_used:,}, {report.seconds:.0f} s\n"
                   f"committed CID: {report.committed_cid or '(none: previous adapter kept)'}\n"
                   f"global adapter held-out loss (union of nodes' held-out sets): {report.global_loss:.4f}"),
        ), flush=True)

    result = run_federation(config, on_round=show)
    print()
    print(render_table(
        ["round", "status", "submissions", "accepted", "gas used", "global loss", "vs base"],
        [["base", "-", "-", "-", "-", f"{result.base_loss:.4f}", "0.0%"]]
        + [[r.round_id, r.status.name.lower(), r.submissions, r.accepted, f"{r.gas_used:,}", f"{r.global_loss:.4f}",
            f"{100 * (r.global_loss / result.base_loss - 1):+.1f}%"] for r in result.rounds],
        title=f"summary: chain {result.chain_id}, coordinator {result.contract}, model {result.model_dir}",
    ))
    improved = result.final_loss < result.base_loss
    print(f"\nglobal held-out loss {result.base_loss:.4f} (base) -> {result.final_loss:.4f} after "
          f"{len(result.rounds)} rounds: {'lower' if improved else 'NOT lower'} than the base model")
    return 0 if improved else 1
