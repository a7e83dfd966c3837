"""Audit fixtures: one real history per session, snapshotted after round 1 so each test writes round 2.

Building the chain, registering nodes and running round 1 is done once; each
test reverts the chain to the snapshot taken after round 1, runs round 2 its
own (honest or dishonest) way, and audits. Tests that tamper with the store
work on a copy of it, so the shared store stays intact.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flare_chain.audit import AuditReport, ContentSource, run_audit
from flare_chain.audit.fetch import ChainReader
from flare_chain.audit.history import History, build_history
from flare_chain.audit.simulate import SimulatedFederation, simulate
from flare_chain.chain.artifacts import load_artifact
from flare_chain.ipfs import ContentStore


@dataclass
class AuditBench:
    fed: SimulatedFederation
    snapshot: object

    def reset(self) -> None:
        """Back to the state right after round 1 (round 2 not yet opened)."""
        self.fed.coordinator.w3.provider.ethereum_tester.revert_to_snapshot(self.snapshot)  # type: ignore[attr-defined]

    def audit(self, store: ContentStore | None = None, **kwargs: object) -> AuditReport:
        source = ContentSource(store or self.fed.store)
        return run_audit(self.fed.coordinator.w3, self.fed.target, source, model_dir=self.fed.model_dir,
                         model_search=[], show_progress=False, **kwargs)  # type: ignore[arg-type]

    def history(self) -> History:
        """The chain's history up to its head, as the auditor rebuilds it (for tests that doctor records)."""
        w3, target = self.fed.coordinator.w3, self.fed.target
        reader = ChainReader(w3, target.address, load_artifact("FlareCoordinator").abi, show_progress=False)
        head = int(w3.eth.block_number)
        return build_history(reader, reader.events(target.block, head), chain_id=target.chain_id,
                             from_block=target.block, to_block=head)

    def store_copy(self, dest: Path) -> ContentStore:
        shutil.copytree(self.fed.store.root, dest)
        return ContentStore(dest)


@pytest.fixture(scope="session")
def bench(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tiny_train_params) -> AuditBench:
    # Tests count every node on the committee. The seed comes from block hashes (wall-clock timestamps), so at
    # simulate's default of 5 seats per node one node misses its seat in about 3 % of sessions (e^-5 each, seen
    # in CI); at 10 per node, e^-10 each.
    fed = simulate(tmp_path_factory.mktemp("audit-store"), tiny_model_dir, tiny_train_params, nodes=4,
                   expected_committee_size=40)
    fed.run_round()
    snapshot = fed.coordinator.w3.provider.ethereum_tester.take_snapshot()  # type: ignore[attr-defined]
    return AuditBench(fed=fed, snapshot=snapshot)


@pytest.fixture
def fresh(bench: AuditBench) -> Iterator[AuditBench]:
    bench.reset()
    yield bench


def failing(report: AuditReport) -> set[tuple[str, int | None, str | None]]:
    return {(f.check, f.round, f.node) for f in report.failures}


FindingKeys = Callable[[AuditReport], set[tuple[str, int | None, str | None]]]


@pytest.fixture
def failing_keys() -> FindingKeys:
    return failing
