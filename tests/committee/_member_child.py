"""A committee member's review in a process of its own (run by test_cross_cpu.py under an ATEN_CPU_CAPABILITY).

Reads a job (JSON: store, model, params, gate settings, submissions, the
leader's accepted sets to judge) from argv[1], writes what this machine
concludes to argv[2]: its own strict accepted set, for each accepted set the
tolerance-band verdict and the CID of the leader's set aggregated here, and
every gate statistic it computed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(job_path: str, out_path: str) -> None:
    import torch

    from flare_chain.aggregation import GateSettings
    from flare_chain.chain import Submission
    from flare_chain.committee.aggregate import build_aggregate, check_submissions, review_accepted_set
    from flare_chain.ipfs import ContentStore
    from flare_chain.lora.params import LoraTrainParams
    from flare_chain.node.bundles import fetch_global_bundle

    job = json.loads(Path(job_path).read_text())
    store = ContentStore(Path(job["store"]), create=False)
    model_dir = Path(job["model_dir"])
    params = LoraTrainParams.model_validate_json(job["params"])
    settings = GateSettings.model_validate_json(job["gates"])
    previous = fetch_global_bundle(store, job["previous_cid"])
    subs = [Submission(round_id=s["round_id"], node=s["node"], cid=bytes.fromhex(s["cid"]),
                       sample_count=s["sample_count"], manifest_hash=bytes.fromhex(s["manifest_hash"]),
                       block_number=1, tx_hash="0x") for s in job["submissions"]]
    seed = bytes.fromhex(job["seed"])
    common = dict(gates=settings, model_dir=model_dir, params=params, probe_seed=seed)

    statistics: list[dict[str, object]] = []

    def record(assessed):  # strict settle that also keeps every comparison
        for d in assessed:
            statistics.extend([{"gate": d.gate, "node": d.node, "statistic": c.statistic, "value": c.value,
                            "threshold": c.threshold} for c in d.comparisons])
        return {d.node: d.reason for d in assessed if d.rejected}

    own, _ = check_submissions(store, 1, subs, previous, settle=record, **common)
    verdicts = {}
    for name, accepted in job["scenarios"].items():
        verdict, chosen = review_accepted_set(store, 1, subs, previous, accepted, **common)
        cid = build_aggregate(store, 1, previous, chosen, model_dir, params, pin=False, max_sample_count=10**6).cid \
            if verdict.defensible else None
        verdicts[name] = {"defensible": verdict.defensible, "disputes": verdict.disputes,
                          "tolerated": verdict.tolerated, "cid": cid}
    Path(out_path).write_text(json.dumps({
        "capability": torch.backends.cpu.get_cpu_capability(),
        "strict_accepted": [u.submission.node for u in own],
        "verdicts": verdicts,
        "statistics": statistics,
    }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
