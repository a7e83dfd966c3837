"""Two nodes whose own reference builds differ federate on the published base without a rejection.

Each machine pretrains its own reference model, and its weights depend on the CPU's float arithmetic.
Here one build runs natively and one in a child process under ``ATEN_CPU_CAPABILITY=default`` (no
AVX kernels). The owner publishes its build by CID. Every node loads that CID: a node whose own folder
is another model fetches the published one. So the round commits with every update accepted. Without
the CID the policy gate would have rejected the differing node, which the control below shows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from flare_chain.aggregation.gates import base_model_mismatch
from flare_chain.basemodel import model_cid
from flare_chain.ipfs import cid_from_bytes
from flare_chain.lora.base import model_fingerprint
from flare_chain.lora.files import Manifest
from flare_chain.lora.reference import ReferenceSpec, ensure_reference_model
from flare_chain.node.bundles import MANIFEST_FILE, with_accepted_list
from flare_chain.node.localnet import drive, make_net, open_round, register_all

REPO = Path(__file__).resolve().parents[2]
SPEC = ReferenceSpec(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=128,
                     pretrain_steps=40, batch_size=8, seq_len=64, warmup_steps=4)
_CHILD = ("import json, sys; from pathlib import Path; "
          "from flare_chain.lora.reference import ReferenceSpec, ensure_reference_model; "
          "print(ensure_reference_model(Path(sys.argv[1]), spec=ReferenceSpec(**json.loads(sys.argv[2])), "
          "show_progress=False))")


def _build_in_child(cache: Path, capability: str) -> Path:
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", _CHILD, str(cache), json.dumps(SPEC.model_dump())], env=env,
                          capture_output=True, text=True, timeout=600, check=True)
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, bool]:
    """(the owner's native build, the other machine's build, whether the CPU capability alone made them differ).

    If both builds come out bit-identical on this machine, the second is perturbed deliberately (one weight
    nudged by 1e-3) so that the test still has two differing local models to reconcile.
    """
    root = tmp_path_factory.mktemp("builds")
    native = ensure_reference_model(root / "native", spec=SPEC, show_progress=False)
    other = _build_in_child(root / "default-isa", "default")
    differ_by_cpu = model_fingerprint(native) != model_fingerprint(other)
    if not differ_by_cpu:
        weights = other / "model.safetensors"
        tensors = load_file(str(weights))
        key = sorted(tensors)[0]
        tensors[key] = tensors[key] + 1e-3
        save_file(tensors, str(weights), metadata={"format": "pt"})
    return native, other, differ_by_cpu


@pytest.mark.slow
def test_nodes_with_differing_local_builds_federate_on_the_published_cid(two_builds, tmp_path: Path,
                                                                         tiny_train_params) -> None:
    # Prepare
    native, other, differ_by_cpu = two_builds
    print(f"builds differ under ATEN_CPU_CAPABILITY=default: {differ_by_cpu}")
    assert model_fingerprint(native) != model_fingerprint(other)
    params = tiny_train_params.model_copy(update={"max_train_windows": 16, "max_val_windows": 8})
    # Control: the other build's identity would fail the policy gate against the owner's
    fields = {"kind": "delta", "base_model_id": "ref", "rank": 4, "alpha": 8.0, "target_modules": ["q_proj"],
              "sample_count": 1, "shapes": {}}
    owners = Manifest(**fields, base_model_sha256=model_fingerprint(native))
    theirs = Manifest(**fields, base_model_sha256=model_fingerprint(other))
    assert base_model_mismatch(theirs, owners) is not None
    # Execute: the owner publishes its build; node 0 has that build locally, nodes 1 and 2 have the other one
    net = make_net(tmp_path, native, params, nodes=3, probe_corpus=False, local_models={0: native, 1: other, 2: other})
    try:
        assert net.base_cid == model_cid(native) != model_cid(other)
        assert net.daemons[0].model_dir == native
        for i in (1, 2):
            assert net.daemons[i].model_dir == tmp_path / f"node-{i}" / "models" / net.base_cid
            assert model_fingerprint(net.daemons[i].model_dir) == model_fingerprint(native)
        register_all(net)
        round_id = open_round(net)
        drive(net, round_id)
        # Assert: committed with every node's update accepted, each manifest naming the published CID
        outcome = net.coordinator.round_outcome(round_id)
        assert outcome is not None and outcome.committed
        proposal = with_accepted_list(net.store, net.coordinator.proposal(round_id))  # the list is in the manifest
        assert sorted(a.lower() for a in proposal.accepted) == sorted(a.address.lower() for a in net.accounts)
        for submission in net.coordinator.submissions(round_id):
            manifest = Manifest.from_bytes(net.store.cat(f"{cid_from_bytes(submission.cid)}/{MANIFEST_FILE}"))
            assert manifest.base_model_cid == net.base_cid
        assert not [e for e in net.errors if "base model" in e[1]]
    finally:
        for d in net.daemons:
            d.state.close()

