"""The federation spec: one canonical document per set of parameters, and no silent defaults when read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flare_chain.aggregation import CoordinateMedian, FedAvg, MultiKrum, TrimmedMean
from flare_chain.errors import ConfigError, IntegrityError, SpecMismatch
from flare_chain.ipfs import ContentStore
from flare_chain.protocol.spec import (
    RULES_VERSION,
    SPEC_FORMAT,
    AggregatorSpec,
    FederationSpec,
    fetch_spec,
    pin_spec,
    spec_cid,
    spec_differences,
)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_toml_with_only_changes_fills_the_rest_and_pins_every_field(tmp_path: Path) -> None:
    spec = FederationSpec.from_toml(_write(tmp_path, 'name = "median fed"\n[aggregator]\nname = "median"\n'
                                                     '[gates]\nnorm_threshold = 4.0\n[lora]\nrank = 4\n'))
    assert spec.aggregator.name == "median" and spec.gates.norm_threshold == 4.0 and spec.lora.rank == 4
    document = json.loads(spec.canonical_bytes())
    assert document["format"] == SPEC_FORMAT
    assert document["gates"]["direction_threshold"] == FederationSpec().gates.direction_threshold
    assert set(document["lora"]) == set(FederationSpec().lora.model_dump())
    assert FederationSpec.from_canonical(spec.canonical_bytes(), source="t") == spec


def test_the_complete_toml_reads_back_equal(tmp_path: Path) -> None:
    spec = FederationSpec.from_toml(_write(tmp_path, '[aggregator]\nname = "multi_krum"\nkrum_byzantine = 2\n'))
    assert FederationSpec.from_toml(_write(tmp_path, spec.to_toml())) == spec


@settings(max_examples=40, deadline=None)
@given(rank=st.integers(1, 64), threshold=st.floats(0.5, 10, allow_nan=False), name=st.text(min_size=1, max_size=30),
       tolerance=st.floats(0, 1, allow_nan=False), aggregator=st.sampled_from(["fedavg", "median", "trimmed_mean"]))
def test_canonical_bytes_round_trip_and_name_the_spec(rank: int, threshold: float, name: str, tolerance: float,
                                                      aggregator: str) -> None:
    spec = FederationSpec.model_validate({"name": name, "lora": {"rank": rank}, "gates": {"mi_threshold": threshold},
                                          "committee": {"vote_tolerance": tolerance},
                                          "aggregator": {"name": aggregator}})
    raw = spec.canonical_bytes()
    back = FederationSpec.from_canonical(raw, source="t")
    assert back == spec and back.canonical_bytes() == raw and spec_cid(back) == spec_cid(spec)
    other = spec.model_copy(update={"committee": spec.committee.model_copy(update={"vote_tolerance": tolerance + 1})})
    assert spec_cid(other) != spec_cid(spec)


def test_a_pinned_spec_missing_a_field_is_refused_not_defaulted() -> None:
    document = json.loads(FederationSpec().canonical_bytes())
    del document["gates"]["norm_threshold"]
    raw = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(ConfigError, match=r"leaves out gates\.norm_threshold") as refused:
        FederationSpec.from_canonical(raw, source="spec X")
    # the operator is told the likely cause (an older release pinned it) and what to do
    assert "with the release that pinned it" in str(refused.value)


def test_a_pinned_spec_lacking_the_rules_version_is_refused_as_an_older_releases() -> None:
    # Prepare: a spec as releases before the rules version pinned it
    document = json.loads(FederationSpec().canonical_bytes())
    del document["rules_version"]
    raw = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    # Act / Assert
    with pytest.raises(ConfigError, match=r"leaves out rules_version.*release that pinned it"):
        FederationSpec.from_canonical(raw, source="spec X")


@pytest.mark.parametrize("other", [RULES_VERSION - 1, RULES_VERSION + 1])
def test_a_spec_for_other_verdict_rules_is_refused_naming_both_versions_and_the_fix(other: int) -> None:
    # Prepare: a well-formed, canonical spec whose only difference is the rules it was written for
    document = json.loads(FederationSpec().canonical_bytes())
    document["rules_version"] = other
    raw = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    # Act
    with pytest.raises(ConfigError) as refused:
        FederationSpec.from_canonical(raw, source="spec X")
    # Assert: the operator learns which rules each side has and what to run instead
    message = str(refused.value)
    assert f"verdict rules version {other}; this build implements version {RULES_VERSION}" in message
    assert f"a release that implements version {other}" in message and "flare-chain deploy --spec" in message


def test_an_author_naming_other_rules_in_toml_is_refused_and_one_naming_none_gets_this_builds(
        tmp_path: Path) -> None:
    (tmp_path / "other.toml").write_text(f"rules_version = {RULES_VERSION + 1}\n", encoding="utf-8")
    (tmp_path / "none.toml").write_text('name = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"other\.toml: .*rules version {RULES_VERSION + 1}"):
        FederationSpec.from_toml(tmp_path / "other.toml")
    assert FederationSpec.from_toml(tmp_path / "none.toml").rules_version == RULES_VERSION
    assert json.loads(FederationSpec.from_toml(tmp_path / "none.toml").canonical_bytes())["rules_version"] == RULES_VERSION


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.update(format="flare-chain/federation-spec@9"), r"format is 'flare-chain/federation-spec@9'"),
    (lambda d: d["aggregator"].update(name="mean_of_best"), r"aggregator\.name"),
    (lambda d: d["gates"].update(norm_threshold=-1), r"gates\.norm_threshold"),
    (lambda d: d.update(surprise=1), r"surprise"),
    (lambda d: d["compression"].update(codec_version=1), r"compression\.codec_version.*codec version 1, this build "
                                                         r"reads version \d+.*run a release with that codec"),
    (lambda d: d["compression"].update(powersgd_rank=4), r"compression\.powersgd_rank: no longer a spec key .*own "
                                                         r"rank in its config.s \[compression\]\): remove it"),
    (lambda d: d.update(rules_version="2"), r"rules_version must be an integer"),
    (lambda d: d.update(rules_version=True), r"rules_version must be an integer"),
    (lambda d: d["privacy"].update(enabled=True, noise_multiplier=0.0), r"noise_multiplier > 0"),
])
def test_bad_documents_name_the_field(mutate, message: str) -> None:
    document = json.loads(FederationSpec().canonical_bytes())
    mutate(document)
    raw = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(ConfigError, match=message):
        FederationSpec.from_canonical(raw, source="spec X")


def test_non_canonical_bytes_are_refused() -> None:
    raw = json.dumps(json.loads(FederationSpec().canonical_bytes()), indent=1).encode()
    with pytest.raises(ConfigError, match="canonical form"):
        FederationSpec.from_canonical(raw, source="spec X")


def test_bad_toml_names_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not exist.*spec init"):
        FederationSpec.from_toml(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        FederationSpec.from_toml(_write(tmp_path, "name = \n"))
    with pytest.raises(ConfigError, match=r"spec.toml: not a valid federation spec: .*rank=0"):
        FederationSpec.from_toml(_write(tmp_path, "[lora]\nrank = 0\n"))


def test_pin_and_fetch_by_cid(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "repo")
    spec = FederationSpec(name="pinned", aggregator=AggregatorSpec(name="trimmed_mean", trim_fraction=0.2))
    cid = pin_spec(store, spec)
    assert cid == spec_cid(spec) and cid in store.pins()
    assert fetch_spec(store, cid) == spec


def test_a_store_that_answers_another_cid_is_refused(tmp_path: Path) -> None:
    class Liar:
        def cat(self, cid_or_path: str) -> bytes:  # pragma: no cover - not reached
            raise AssertionError

        def add_bytes(self, data: bytes, *, cid_version: int = 0, pin: bool = True) -> str:
            return spec_cid(FederationSpec(name="other"))

    with pytest.raises(IntegrityError, match="hashes to"):
        pin_spec(Liar(), FederationSpec())


def test_differences_and_require_same_name_each_field() -> None:
    a = FederationSpec()
    b = FederationSpec.model_validate({"gates": {"mi_threshold": 9.0}, "aggregator": {"name": "median"}})
    assert [d[0] for d in spec_differences(a, b)] == ["aggregator.name", "gates.mi_threshold"]
    with pytest.raises(SpecMismatch, match=r"aggregator\.name: 'fedavg' here, 'median' in the federation's"):
        a.require_same(b, mine="this node's spec", theirs="the federation's")
    a.require_same(FederationSpec(), mine="x", theirs="y")


def test_each_aggregator_name_builds_its_strategy() -> None:
    assert isinstance(AggregatorSpec(name="fedavg").build(), FedAvg)
    assert isinstance(AggregatorSpec(name="median").build(), CoordinateMedian)
    trimmed = AggregatorSpec(name="trimmed_mean", trim_fraction=0.25).build()
    assert isinstance(trimmed, TrimmedMean) and trimmed.beta == 0.25
    krum = AggregatorSpec(name="multi_krum", krum_byzantine=2, krum_selected=3).build()
    assert isinstance(krum, MultiKrum) and (krum.num_byzantine, krum.num_selected) == (2, 3)


BASE = "QmSAhs94AVqqmp6ZXz45Q4kprE9tTuc87ehGxBgUkKP9qc"
PROBE = "bafkreihinj4uz6tmmns46q2yinkaz2qkrlgm2uuzgvx5knbwriaemc5qj4"


def test_naming_published_fills_what_the_author_left_out() -> None:
    named = FederationSpec(name="x").naming_published(base_model_cid=BASE, probe_corpus_cid=PROBE, source="s")
    assert (named.base_model.cid, named.probe_corpus_cid) == (BASE, PROBE)
    assert spec_cid(named) != spec_cid(FederationSpec(name="x"))  # the pinned spec records them
    same = named.naming_published(base_model_cid=BASE, probe_corpus_cid=PROBE, source="s")
    assert same == named  # a spec that already names them is kept as written


@pytest.mark.parametrize(("field", "update"), [
    ("base_model.cid", {"base_model": {"cid": PROBE}}),
    ("probe_corpus_cid", {"probe_corpus_cid": BASE}),
])
def test_naming_published_refuses_a_spec_naming_other_content(field: str, update: dict[str, object]) -> None:
    spec = FederationSpec.build({"name": "x", **update}, source="s")
    with pytest.raises(ConfigError, match=rf"spec\.toml: {field} = .*, but this deployment publishes .*; set "):
        spec.naming_published(base_model_cid=BASE, probe_corpus_cid=PROBE, source="spec.toml")


@pytest.mark.parametrize(("section", "described"), [
    ({"name": "median", "trim_fraction": 0.3}, "median"),
    ({"name": "trimmed_mean", "trim_fraction": 0.25}, "trimmed_mean (trim_fraction 0.25)"),
    ({"name": "multi_krum", "krum_byzantine": 0, "krum_selected": 2},
     "multi_krum (krum_byzantine 0, krum_selected 2)"),
    ({"name": "exact_lora", "exact_residual_rank": 4, "exact_tolerance": 1e-4},
     "exact_lora (exact_residual_rank 4, exact_tolerance 0.0001)"),
])
def test_the_aggregator_is_described_with_its_own_parameters_only(section: dict[str, object],
                                                                  described: str) -> None:
    assert FederationSpec.model_validate({"aggregator": section}).aggregator.describe() == described
