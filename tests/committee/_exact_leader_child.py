"""An exact-LoRA leader on another CPU (run by test_exact_cross_cpu.py under ATEN_CPU_CAPABILITY/MKL settings).

Reads a job (JSON) from argv[1]: the store, model, previous adapter's CID, the updates' deltas (a safetensors
file, keys ``<node>|<tensor>``) and the spec's residual bound; aggregates them with exact LoRA and pins the
bundle, as a leader does. Also aggregates a larger synthetic round (sketched path) and saves adapter and
residual. Writes what it did to argv[2].
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(job_path: str, out_path: str) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from flare_chain.aggregation import ClientUpdate
    from flare_chain.chain import Submission
    from flare_chain.committee.aggregate import CheckedUpdate, build_aggregate
    from flare_chain.ipfs import ContentStore
    from flare_chain.lora.params import LoraTrainParams
    from flare_chain.node.bundles import fetch_global_bundle
    from flare_chain.protocol.spec import AggregatorSpec

    job = json.loads(Path(job_path).read_text())
    spec = AggregatorSpec.model_validate_json(job["aggregator"])
    store = ContentStore(Path(job["store"]))
    previous = fetch_global_bundle(store, job["previous_cid"])
    flat = load_file(job["deltas"])
    updates = []
    for node, count in sorted(job["samples"].items()):
        delta = {k.split("|", 1)[1]: v for k, v in flat.items() if k.startswith(node + "|")}
        manifest = previous.manifest.model_copy(update={"kind": "delta", "round": 1, "node": node,
                                                        "sample_count": count})
        sub = Submission(round_id=1, node=node, cid=b"\x01\x55", sample_count=count, manifest_hash=bytes(32),
                         block_number=1, tx_hash="0x")
        updates.append(CheckedUpdate(submission=sub, delta=delta, manifest=manifest))
    result = build_aggregate(store, 1, previous, updates, Path(job["model_dir"]),
                             LoraTrainParams.model_validate_json(job["params"]), max_sample_count=10**6,
                             aggregator=spec.build(), pin=True)

    synthetic = load_file(job["synthetic"])
    glob = {k[len("global|"):]: v for k, v in synthetic.items() if k.startswith("global|")}
    clients = sorted({k.split("|", 1)[0] for k in synthetic if not k.startswith("global|")})
    sketched = spec.build().aggregate_adapters(glob, [  # type: ignore[union-attr]
        ClientUpdate(node=c, delta={k.split("|", 1)[1]: v for k, v in synthetic.items() if k.startswith(c + "|")},
                     sample_count=1 + i) for i, c in enumerate(clients)])
    save_file({**{f"adapter|{k}": v for k, v in sketched.adapter.items()},
               **{f"residual|{k}": v.contiguous() for k, v in sketched.residual.items()}}, job["synthetic_out"])
    Path(out_path).write_text(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(),
                                          "cid": result.cid}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
