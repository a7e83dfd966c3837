"""The devnet runs a federation spec: ``hardhat-free-devnet/start --spec`` with real daemons, then the audit.

One devnet start under a spec made of the two shipped examples together: the aggregator of
``specs/devnet-exact-lora.toml`` and the ``[privacy]`` of ``specs/devnet-dp.toml`` (one run instead of two
keeps the slow suite short; each file's own settings are what run). What a user would notice is checked: the
coordinator names the spec the devnet pinned (so ``--spec`` was not ignored), the daemons commit every round
under it, each committed bundle carries the exact-LoRA residual, every update left its node clipped, noised
and uncompressed, and ``flare-chain audit`` over the devnet passes, reporting each node's ε as it grows.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from flare_chain.aggregation.privacy import PrivacyAccountant
from flare_chain.chain.deployment import connect_rpc, open_deployment
from flare_chain.cli.rounds import default_probe_texts
from flare_chain.ipfs import KuboClient, cid_from_bytes
from flare_chain.node.bundles import EXACT_RESIDUAL_FILE, probe_corpus_cid
from flare_chain.protocol.spec import FederationSpec, spec_cid

REPO = Path(__file__).resolve().parents[2]
ROUNDS = 2
NODES = ("node-1", "node-2", "node-3", "node-4")
# Shorter phases than the defaults: a node trains in ~6 s, and a round commits as soon as the votes suffice.
WINDOWS = ("--submission-blocks", "20", "--claim-blocks", "5", "--proposal-blocks", "20", "--voting-blocks", "20")
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _exact_lora_with_dp() -> FederationSpec:
    exact = tomllib.loads((REPO / "specs" / "devnet-exact-lora.toml").read_text(encoding="utf-8"))
    dp = tomllib.loads((REPO / "specs" / "devnet-dp.toml").read_text(encoding="utf-8"))
    assert exact["lora"] == dp["lora"] and exact["committee"] == dp["committee"]  # both fit the same nodes
    merged = {**exact, "name": "devnet: exact LoRA under local DP", "privacy": dp["privacy"]}
    return FederationSpec.build(merged, source="the merged example specs")


def _devnet(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "hardhat-free-devnet" / "devnet.py"), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False)


def test_the_devnet_commits_rounds_under_an_exact_lora_dp_spec_and_the_audit_passes(tmp_path: Path) -> None:
    spec = _exact_lora_with_dp()
    assert spec.aggregator.name == "exact_lora" and spec.privacy.enabled
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(spec.to_toml(), encoding="utf-8")
    run = tmp_path / "run"
    try:
        started = _devnet("start", "--run-dir", str(run), "--chain-port", "0", "--ipfs-port", "0",
                          "--rounds", str(ROUNDS), *WINDOWS, "--spec", str(spec_file), timeout=1200)
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        assert f"{ROUNDS} of {ROUNDS} rounds committed" in started.stdout, started.stdout[-3000:]
        state = json.loads((run / "devnet.json").read_text())
        w3 = connect_rpc(state["rpc_url"])
        deployment, coordinator = open_deployment(w3, run / "deployment.json")

        # --spec reached the chain: the coordinator names the spec as pinned, with the devnet's model and corpus.
        published = spec.naming_published(
            base_model_cid=str(deployment.base_model_cid),
            probe_corpus_cid=probe_corpus_cid(default_probe_texts(REPO / "nodes" / "node-1.toml")),
            source="test")
        assert coordinator.federation_spec_cid(), "the coordinator names no federation spec: --spec was ignored"
        onchain = cid_from_bytes(coordinator.federation_spec_cid())
        assert onchain == state["spec_cid"] == deployment.federation_spec_cid == spec_cid(published)

        with KuboClient(state["ipfs_url"], retries=0) as ipfs:
            names = {entry.name for entry in ipfs.ls(cid_from_bytes(coordinator.global_adapter_cid()))}
        assert EXACT_RESIDUAL_FILE in names, names
        for name in NODES:
            for r in range(1, ROUNDS + 1):  # every adapter a daemon pulled came with its residual
                assert (run / name / "adapters" / f"round-{r}" / EXACT_RESIDUAL_FILE).is_file(), (name, r)
            update = run / name / "rounds" / "round-1" / "update"
            metrics = json.loads((update / "manifest.json").read_text())["metrics"]
            assert metrics["dp_clip_norm"] == spec.privacy.clip_norm
            assert metrics["dp_noise_multiplier"] == spec.privacy.noise_multiplier
            assert not list(update.glob("*.powersgd.*"))  # noise is full-rank: the update went dense

        report_file = tmp_path / "audit.json"
        audited = subprocess.run(
            [sys.executable, "-m", "flare_chain.cli.main", "audit", "--deployment", str(run / "deployment.json"),
             "--ipfs", state["ipfs_url"], "--cache", str(tmp_path / "audit-cache"), "--json", str(report_file)],
            capture_output=True, text=True, timeout=900, cwd=REPO, check=False)
        assert audited.returncode == 0, audited.stdout[-3000:] + audited.stderr[-3000:]
        assert "every check passed" in audited.stdout
    finally:
        _devnet("stop", "--run-dir", str(run), timeout=120)
    report = json.loads(report_file.read_text())
    assert report["ok"] and report["federation_spec"]["cid"] == onchain
    rounds = report["rounds"]
    assert [r["round_id"] for r in rounds] == list(range(1, ROUNDS + 1))
    accountant = PrivacyAccountant(spec.privacy.noise_multiplier, target_delta=spec.privacy.delta)
    addresses = {info["address"].lower() for info in state["nodes"].values()}
    for i, r in enumerate(rounds, start=1):
        assert r["global_cid"] and {a.lower() for a in r["epsilon"]} == addresses, r
        # every node submitted every round: ε after i Gaussian releases, growing round by round
        assert all(eps == pytest.approx(accountant.epsilon_after(i)) for eps in r["epsilon"].values()), r
    assert accountant.epsilon_after(2) > accountant.epsilon_after(1)
