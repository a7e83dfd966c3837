"""The auditor reads through flaky RPC endpoints and from a Kubo endpoint, and gets the same verdict."""

from __future__ import annotations

from typing import Any

from web3 import EthereumTesterProvider, Web3

from flare_chain.audit import PASS, ContentSource, run_audit
from flare_chain.audit.fetch import ChainReader
from flare_chain.chain.artifacts import load_artifact
from flare_chain.ipfs import ContentStore, KuboClient, serve_in_thread


def _block(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


class FlakyProvider(EthereumTesterProvider):
    """Shares a chain; fails every other request, and refuses log ranges wider than ``max_span`` blocks."""

    def __init__(self, tester: Any, max_span: int) -> None:
        super().__init__(ethereum_tester=tester)
        self.max_span = max_span
        self.requests = 0
        self.refused_ranges = 0

    def make_request(self, method: Any, params: Any) -> Any:
        self.requests += 1
        if self.requests % 2 == 0:
            raise ConnectionError("connection reset by peer")
        if method == "eth_getLogs":
            spec = {k.lower().replace("_", ""): v for k, v in dict(params[0]).items()}
            span = _block(spec["toblock"]) - _block(spec["fromblock"]) + 1
            if span > self.max_span:
                self.refused_ranges += 1
                raise ValueError(f"query returned more than 10000 results; use a range of at most {self.max_span}")
        return super().make_request(method, params)


def test_flaky_endpoint_refusing_wide_ranges_gives_the_same_events(fresh) -> None:
    fresh.fed.run_round()
    w3, target = fresh.fed.coordinator.w3, fresh.fed.target
    abi = load_artifact("FlareCoordinator").abi
    head = int(w3.eth.block_number)
    expected = ChainReader(w3, target.address, abi, show_progress=False).events(target.block, head)
    flaky = FlakyProvider(w3.provider.ethereum_tester, max_span=7)  # type: ignore[attr-defined]
    waits: list[float] = []
    reader = ChainReader(Web3(flaky), target.address, abi, chunk_blocks=1000, backoff_s=0.01,
                         sleep=waits.append, show_progress=False)

    got = reader.events(target.block, head)

    assert [(e.name, e.block_number, e.log_index) for e in got] == [
        (e.name, e.block_number, e.log_index) for e in expected]
    assert flaky.refused_ranges > 0 and waits  # it narrowed the ranges and backed off on resets


def test_audit_through_a_kubo_endpoint_caches_objects_by_cid(fresh, tmp_path) -> None:
    fresh.fed.run_round()
    handle = serve_in_thread(fresh.fed.store)
    cache = ContentStore(tmp_path / "cache")
    try:
        with KuboClient(handle.url, cache=cache) as kubo:
            source = ContentSource(cache, kubo)
            report = run_audit(fresh.fed.coordinator.w3, fresh.fed.target, source, model_dir=fresh.fed.model_dir,
                               model_search=[], show_progress=False)
    finally:
        handle.close()

    assert report.ok, [f.line() for f in report.findings if f.status != PASS]
    for per_round in fresh.fed.round_cids.values():
        for cid in per_round.values():
            assert cache.cat(f"{cid}/manifest.json")  # pulled once, now served locally
