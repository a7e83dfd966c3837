"""The devnet runs a federation spec: ``hardhat-free-devnet/start --spec`` with real daemons, then the audit.

One devnet start under a spec made of the two shipped examples together: the aggregator of
``specs/devnet-exact-lora.toml`` and the ``[privacy]`` of ``specs/devnet-dp.toml`` (one run instead of two
keeps the slow suite short; each file's own settings are what run). What a user would notice is checked: the
coordinator names the spec the devnet pinned (so ``--spec`` was not ignored), the daemons commit every round
under it, each committed bundle carries the exact-LoRA residual, every update left its node clipped, noised
and uncompressed, and ``flare-chain audit`` over the devnet passes, reporting each node's ε as it grows.

Then one start per remaining robust aggregator, each under its shipped example (``specs/devnet-median.toml``,
``devnet-trimmed-mean.toml``, ``devnet-multi-krum.toml``). No bundle or manifest records which aggregator built
a round, so the evidence is the audit's rebuild: it re-aggregates every committed round with the spec's
aggregator and passes only if that yields the committed CID. Each example's parameters make its aggregate differ
from FedAvg's on 4 nodes (checked for all three: nodes forced to FedAvg under the example commit both rounds,
and the audit fails them).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from flare_chain.aggregation.privacy import PrivacyAccountant
from flare_chain.chain.coordinator import CoordinatorClient
from flare_chain.chain.deployment import connect_rpc, open_deployment
from flare_chain.cli.rounds import default_probe_corpus
from flare_chain.ipfs import KuboClient, cid_from_bytes
from flare_chain.node.bundles import EXACT_RESIDUAL_FILE, probe_corpus_cid
from flare_chain.protocol.spec import FederationSpec, spec_cid

REPO = Path(__file__).resolve().parents[2]
ROUNDS = 2
ROBUST_ROUNDS = 2  # per aggregator; see the module docstring for what each run costs
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


@contextmanager
def _devnet_under(spec: FederationSpec, tmp_path: Path, rounds: int) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Start the devnet under ``spec``, drive ``rounds`` rounds, check all committed; stop it on the way out.

    Yields the run folder and ``devnet.json``; ``start``'s output (its learning table) is kept in
    ``start.log`` beside the run, for the README's figures and for a failing run.
    """
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(spec.to_toml(), encoding="utf-8")
    run = tmp_path / "run"
    try:
        started = _devnet("start", "--run-dir", str(run), "--chain-port", "0", "--ipfs-port", "0",
                          "--rounds", str(rounds), *WINDOWS, "--spec", str(spec_file), timeout=1200)
        (tmp_path / "start.log").write_text(started.stdout + started.stderr, encoding="utf-8")
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        assert f"{rounds} of {rounds} rounds committed" in started.stdout, started.stdout[-3000:]
        yield run, json.loads((run / "devnet.json").read_text())
    finally:
        _devnet("stop", "--run-dir", str(run), timeout=120)


def _chain_names_the_pinned_spec(spec: FederationSpec, run: Path, state: dict[str, Any]) -> tuple[CoordinatorClient, str]:
    """--spec reached the chain: the coordinator names the spec as pinned, with the devnet's model and corpus."""
    w3 = connect_rpc(state["rpc_url"])
    deployment, coordinator = open_deployment(w3, run / "deployment.json")
    published = spec.naming_published(
        base_model_cid=str(deployment.base_model_cid),
        probe_corpus_cid=probe_corpus_cid(default_probe_corpus(REPO / "nodes" / "node-1.toml")),
        source="test")
    assert coordinator.federation_spec_cid(), "the coordinator names no federation spec: --spec was ignored"
    onchain = cid_from_bytes(coordinator.federation_spec_cid())
    assert onchain == state["spec_cid"] == deployment.federation_spec_cid == spec_cid(published)
    return coordinator, onchain


def _audit(run: Path, state: dict[str, Any], tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """``flare-chain audit`` over the running devnet must exit 0; its terminal summary and its JSON report."""
    report_file = tmp_path / "audit.json"
    audited = subprocess.run(
        [sys.executable, "-m", "flare_chain.cli.main", "audit", "--deployment", str(run / "deployment.json"),
         "--ipfs", state["ipfs_url"], "--cache", str(tmp_path / "audit-cache"), "--json", str(report_file)],
        capture_output=True, text=True, timeout=900, cwd=REPO, check=False)
    assert audited.returncode == 0, audited.stdout[-3000:] + audited.stderr[-3000:]
    assert "every check passed" in audited.stdout
    return audited.stdout, json.loads(report_file.read_text())


def test_the_devnet_commits_rounds_under_an_exact_lora_dp_spec_and_the_audit_passes(tmp_path: Path) -> None:
    spec = _exact_lora_with_dp()
    assert spec.aggregator.name == "exact_lora" and spec.privacy.enabled
    with _devnet_under(spec, tmp_path, ROUNDS) as (run, state):
        coordinator, onchain = _chain_names_the_pinned_spec(spec, run, state)
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
        summary, report = _audit(run, state, tmp_path)
    assert f"aggregator {spec.aggregator.describe()}" in summary  # residual rank and tolerance included
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


@pytest.mark.parametrize("example", ["devnet-trimmed-mean.toml", "devnet-median.toml", "devnet-multi-krum.toml"])
def test_the_devnet_commits_rounds_under_each_robust_aggregator_and_the_audit_rebuilds_them_with_it(
        example: str, tmp_path: Path) -> None:
    spec = FederationSpec.from_toml(REPO / "specs" / example)
    assert spec.aggregator.name != "fedavg" and not spec.privacy.enabled
    with _devnet_under(spec, tmp_path, ROBUST_ROUNDS) as (run, state):
        _, onchain = _chain_names_the_pinned_spec(spec, run, state)
        summary, report = _audit(run, state, tmp_path)
    # The audit says which aggregator, with which parameters, the rounds were held to ...
    assert f"aggregator {spec.aggregator.describe()}" in summary, summary
    assert report["ok"] and report["federation_spec"]["cid"] == onchain
    assert report["federation_spec"]["spec"]["aggregator"] == spec.aggregator.model_dump(mode="json")
    # ... and rebuilt every committed round with it to the very CID the committee committed: a devnet whose
    # nodes aggregated otherwise commits CIDs this rebuild does not reach.
    committed = {r["round_id"]: r["global_cid"] for r in report["rounds"]}
    assert list(committed) == list(range(1, ROBUST_ROUNDS + 1)) and all(committed.values()), committed
    rebuilt = {f["round"]: f for f in report["findings"] if f["check"] == "aggregate-cid"}
    assert set(rebuilt) == set(committed), rebuilt
    for rid, cid in committed.items():
        assert rebuilt[rid]["status"] == "pass" and rebuilt[rid]["detail"] == f"reproduced {cid}", rebuilt[rid]
