"""The federation spec: every parameter the members of one federation must agree on.

A committee member recomputes the leader's gates and aggregate; the auditor
recomputes them again later. If any of them uses another gate threshold,
aggregator, codec version or LoRA setting, the recomputation differs and an
honest leader is voted down (or a dishonest one waved through). So these
values are not code defaults that a release may change: they live in one
typed, versioned document that is pinned to IPFS, and its CID is fixed on the
coordinator before the first round (``setFederationSpec``, emitting
``FederationSpecSet``). Nodes, leader, members and auditor load the spec by
that CID and refuse to act when their own copy differs.

The pinned form is canonical JSON (sorted keys, no spaces, every field
written out), so the same spec always has the same CID and a reader never
falls back on its own defaults: :meth:`FederationSpec.from_canonical` refuses
a document with a missing field. Authors write TOML with only what differs
from the defaults (:meth:`FederationSpec.from_toml`); ``flare-chain spec
init`` writes a complete one to start from.

The parameters are not the whole protocol: the rules that turn them into
verdicts (which statistic a gate computes, how a threshold is compared) live
in code, and a release may change them. Two members on builds with different
rules read the same spec and reject different updates, and the auditor's
rebuild disagrees with both. So the spec also names the version of the
verdict rules it was written for (``rules_version``, :data:`RULES_VERSION`),
and a build that implements another version refuses the spec instead of
judging by rules the federation did not agree on.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from flare_chain.aggregation.base import Aggregator
from flare_chain.aggregation.exact_lora import ExactLoraAggregator
from flare_chain.aggregation.pipeline import GateSettings
from flare_chain.aggregation.privacy import PrivacyAccountant, privatize_update
from flare_chain.compression.codec import CODEC_VERSION
from flare_chain.errors import ConfigError, IntegrityError, SpecMismatch
from flare_chain.ipfs.unixfs import cid_of_bytes
from flare_chain.lora.params import LoraTrainParams
from flare_chain.node.config import DEFAULT_VOTE_TOLERANCE

__all__ = [
    "RULES_VERSION",
    "SPEC_FORMAT",
    "AggregatorName",
    "AggregatorSpec",
    "BaseModelSpec",
    "CommitteeSpec",
    "CompressionSpec",
    "FederationSpec",
    "PrivacySpec",
    "SpecStore",
    "fetch_spec",
    "pin_spec",
    "spec_cid",
    "spec_differences",
]

SPEC_FORMAT: Final = "flare-chain/federation-spec@1"
"""The document's format tag; a reader refuses any other (a later format is a later reader's job)."""

RULES_VERSION: Final = 3
"""The version of the verdict rules this build implements: the gates' statistics and comparisons, the
aggregators' formulas and the update policy, everything that turns a spec's parameters into an accepted set
and adapter bytes. Raise it in the same change as any rule that can change a verdict or an adapter's bytes
for the same inputs; ``tests/protocol/test_rules_version.py`` holds the verdicts of this version on fixed
rounds and fails when they move. Version 1 is every release before the spec named its rules (the probe
gates' rise share and inert-update rules came in during it, which is why the field exists)."""

AggregatorName = Literal["fedavg", "trimmed_mean", "median", "multi_krum", "exact_lora"]
"""The committee's aggregators. The first four combine the deltas and add the result to the previous
adapter. ``exact_lora`` (:mod:`flare_chain.aggregation.exact_lora`) averages the products B·A exactly and
re-factors them to rank r; what rank r cannot hold is pinned in the global adapter's bundle as
``exact_lora_residual.safetensors`` (so its CID binds it and every member, the next leader and the auditor
carry the same one), at most ``exact_residual_rank`` directions per module."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BaseModelSpec(_Section):
    """Which base model every node fine-tunes: its IPFS CID, or for a folder shared out of band its sha256."""

    cid: str | None = Field(None, description="CID of the model folder (flare-chain model add)")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$",
                               description="the folder's content hash when it is not published by CID")


class CompressionSpec(_Section):
    """The update codec members decode with; a node on another codec version is refused, not misread.

    PowerSGD's rank is not a protocol parameter: it trades a node's upload size against fidelity, every
    bundle's manifest states it, and members decode any rank exactly as sent. So it is each node's own
    setting (``[compression] rank`` in the node config), and a spec does not name one.
    """

    codec_version: int = Field(CODEC_VERSION, ge=1, description="compressed-update format version")

    @field_validator("codec_version")
    @classmethod
    def _this_builds_codec(cls, value: int) -> int:
        if value != CODEC_VERSION:
            raise ValueError(f"the federation runs codec version {value}, this build reads version {CODEC_VERSION}: "
                             "every update it decoded would be refused; run a release with that codec")
        return value


class AggregatorSpec(_Section):
    """How the committee combines the accepted updates; each choice's parameters sit beside it."""

    name: AggregatorName = "fedavg"
    trim_fraction: float = Field(0.1, ge=0, lt=0.5, description="trimmed_mean: share cut at each end")
    krum_byzantine: int = Field(1, ge=0, description="multi_krum: updates assumed Byzantine (f)")
    krum_selected: int | None = Field(None, ge=1, description="multi_krum: updates averaged (m); None: n - f")
    exact_residual_rank: int = Field(16, ge=0, le=1024, description=(
        "exact_lora: most residual directions carried per module (the smallest are dropped; 0: plain truncated "
        "SVD); bounds the bundle at (out + in) * this many floats per module"))
    exact_tolerance: float = Field(1e-6, gt=0, le=1e-2, description=(
        "exact_lora: how much worse (share of its squared norm) a proposal may approximate the exact mean than "
        "a member's own rebuild; covers other CPUs' SVD rounding, about a 1e-3 relative change of B·A"))

    def describe(self) -> str:
        """The aggregator with the parameters it runs with, e.g. ``median`` or ``trimmed_mean (trim_fraction 0.25)``.

        Only the named aggregator's own parameters are listed: the others sit in every spec with their
        defaults and change nothing, so printing them would make an operator compare numbers that do not matter.
        """
        own: dict[str, tuple[str, ...]] = {
            "trimmed_mean": ("trim_fraction",),
            "multi_krum": ("krum_byzantine", "krum_selected"),
            "exact_lora": ("exact_residual_rank", "exact_tolerance"),
        }
        names = own.get(self.name, ())
        if not names:
            return self.name
        values = ", ".join(f"{key} {getattr(self, key)}" for key in names)
        return f"{self.name} ({values})"

    def build(self) -> Aggregator | ExactLoraAggregator:
        """The aggregator this section names, with its parameters."""
        from flare_chain.aggregation import CoordinateMedian, FedAvg, MultiKrum, TrimmedMean

        if self.name == "exact_lora":
            return ExactLoraAggregator(max_residual_rank=self.exact_residual_rank, tolerance=self.exact_tolerance)
        if self.name == "trimmed_mean":
            return TrimmedMean(beta=self.trim_fraction)
        if self.name == "median":
            return CoordinateMedian()
        if self.name == "multi_krum":
            return MultiKrum(self.krum_byzantine, self.krum_selected)
        return FedAvg()


class PrivacySpec(_Section):
    """Node-side differential privacy: each node clips its delta and adds Gaussian noise before pinning."""

    enabled: bool = False
    clip_norm: float = Field(1.0, gt=0, description="L2 bound on a node's delta (the policy gate enforces it)")
    noise_multiplier: float = Field(0.0, ge=0, description="noise std / clip_norm")
    delta: float = Field(1e-5, gt=0, lt=1, description="the δ at which the auditor reports ε")

    def release(self, delta: dict[str, torch.Tensor], *, seed: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """What a node publishes of ``delta`` under this section, and the manifest metrics that say so.

        Disabled: ``delta`` itself and no metrics. Enabled: clipped to ``clip_norm`` with Gaussian noise
        drawn from ``seed`` (:func:`~flare_chain.aggregation.privacy.privatize_update`). One function for
        the node and the learning benchmark, so the benchmark measures the mechanism nodes run; a node
        passes fresh, unrecorded randomness as ``seed`` (a seed others could derive would let them
        subtract the noise).
        """
        if not self.enabled:
            return delta, {}
        noised = privatize_update(delta, self.clip_norm, self.noise_multiplier, seed=seed)
        return noised, {"dp_clip_norm": self.clip_norm, "dp_noise_multiplier": self.noise_multiplier}

    def accountant(self) -> PrivacyAccountant:
        """The accountant that turns a node's count of releases into ε at this section's δ (audit and bench)."""
        return PrivacyAccountant(self.noise_multiplier, target_delta=self.delta)


class CommitteeSpec(_Section):
    """What a member tolerates when it judges a proposal against its own data."""

    vote_tolerance: float = Field(DEFAULT_VOTE_TOLERANCE, ge=0, le=1, description=(
        "relative rise of the member's held-out loss it still approves (see node.config.DEFAULT_VOTE_TOLERANCE)"))
    max_sample_count: int = Field(100_000, ge=1, lt=2**64, description=(
        "the most samples one update may claim (the coordinator's maxSampleCount; FedAvg weights are clipped to it)"))


class FederationSpec(_Section):
    """One federation's protocol parameters, pinned by CID; see the module docstring."""

    format: Literal["flare-chain/federation-spec@1"] = SPEC_FORMAT
    rules_version: int = Field(RULES_VERSION, ge=1, description=(
        "the verdict rules the federation agreed on (gates, aggregators, update policy); a build implementing "
        "another version refuses the spec"))
    name: str = Field("flare-chain federation", min_length=1, max_length=200)
    task: str = Field("", max_length=200, description="the data task nodes train on, in words or a dataset name")
    base_model: BaseModelSpec = BaseModelSpec()
    lora: LoraTrainParams = LoraTrainParams()
    compression: CompressionSpec = CompressionSpec()
    gates: GateSettings = GateSettings()
    aggregator: AggregatorSpec = AggregatorSpec()
    privacy: PrivacySpec = PrivacySpec()
    committee: CommitteeSpec = CommitteeSpec()
    probe_corpus_cid: str | None = Field(None, description="public probe corpus for the probe-loss gate")

    @model_validator(mode="after")
    def _consistent(self) -> FederationSpec:
        if self.privacy.enabled and self.privacy.noise_multiplier <= 0:
            raise ValueError("privacy.enabled needs privacy.noise_multiplier > 0")
        return self

    # ----------------------------------------------------------- reading

    @classmethod
    def build(cls, data: dict[str, Any], *, source: str) -> FederationSpec:
        """Validate a parsed document; ConfigError names ``source`` and each bad key, or the rules version
        this build does not implement."""
        _require_rules(data, source=source)
        try:
            return cls.model_validate(data)
        except (ValidationError, ConfigError) as exc:
            raise ConfigError(f"{source}: not a valid federation spec: {_describe(exc)}") from None

    @classmethod
    def from_toml(cls, path: Path) -> FederationSpec:
        """An author's TOML (only what differs from the defaults is needed)."""
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"federation spec {path} does not exist; write one with `flare-chain spec init`") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"federation spec {path} is not valid TOML: {exc}") from None
        data.setdefault("format", SPEC_FORMAT)
        return cls.build(data, source=str(path))

    @classmethod
    def from_canonical(cls, raw: bytes, *, source: str) -> FederationSpec:
        """A pinned document: canonical JSON with every field present (no reader-side defaults)."""
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{source}: federation spec is not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != SPEC_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ConfigError(f"{source}: federation spec format is {found!r}; this build reads {SPEC_FORMAT!r}")
        spec = cls.build(data, source=source)
        missing = _missing_keys(spec.document(), data)
        if missing:
            raise ConfigError(f"{source}: federation spec leaves out {', '.join(missing)}; a pinned spec writes "
                              "every field so that no reader falls back on its own defaults. A spec pinned by an "
                              "older flare-chain lacks the settings added since, and this build's rules differ: "
                              "read, run and audit it with the release that pinned it")
        if spec.canonical_bytes() != raw:
            raise ConfigError(f"{source}: federation spec is not in canonical form (sorted keys, no spaces); "
                              "pin it with `flare-chain spec pin`")
        return spec

    # ----------------------------------------------------------- writing

    def document(self) -> dict[str, Any]:
        """Every field, JSON-typed (tuples as lists)."""
        return json.loads(self.model_dump_json())  # type: ignore[no-any-return]

    def canonical_bytes(self) -> bytes:
        """The pinned form: sorted keys, no whitespace, UTF-8. Equal specs give equal bytes (and CIDs)."""
        return json.dumps(self.document(), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode()

    def to_toml(self) -> str:
        """A complete TOML rendering (every key), for ``flare-chain spec init``; it reads back equal."""
        text = _toml(self.document())
        data = tomllib.loads(text)
        if FederationSpec.build(data, source="the TOML rendering") != self:
            raise ConfigError("this spec sets a field to none whose default is not none; TOML cannot write it, "
                              "pin the spec from JSON instead")
        return text

    def naming_published(self, *, base_model_cid: str | None, probe_corpus_cid: str | None,
                         source: str) -> FederationSpec:
        """This spec naming the base model and probe corpus the owner publishes; ConfigError if it names others.

        A spec written before the owner pins them leaves both unset and gets them
        filled here, so the pinned spec records what the federation really runs.
        A spec that already names another CID describes another federation: the
        owner is told to fix one or the other instead of deploying a spec that
        contradicts the deployment. None: this deployment publishes no such
        object, and the spec keeps what it says.
        """
        from flare_chain.ipfs.multiformats import parse_cid

        def agree(named: str | None, published: str | None, key: str) -> str | None:
            if named is None or published is None or parse_cid(named) == parse_cid(published):
                return published if named is None else named
            raise ConfigError(f"{source}: {key} = {named!r}, but this deployment publishes {published}; set "
                              f"{key} to it or remove the key (it is filled in at deployment)")

        base = agree(self.base_model.cid, base_model_cid, "base_model.cid")
        probe = agree(self.probe_corpus_cid, probe_corpus_cid, "probe_corpus_cid")
        return self.model_copy(update={"base_model": self.base_model.model_copy(update={"cid": base}),
                                       "probe_corpus_cid": probe})

    # ----------------------------------------------------------- comparing

    def require_same(self, other: FederationSpec, *, mine: str, theirs: str) -> None:
        """Raise SpecMismatch naming every field where ``other`` differs from this spec."""
        diffs = spec_differences(self, other)
        if diffs:
            shown = "; ".join(f"{key}: {a!r} here, {b!r} in {theirs}" for key, a, b in diffs[:5])
            more = f" (+{len(diffs) - 5} more)" if len(diffs) > 5 else ""
            raise SpecMismatch(f"{mine} differs from {theirs}: {shown}{more}; use the federation's spec "
                               "(load it by CID) instead of a local copy")


def spec_differences(a: FederationSpec, b: FederationSpec) -> list[tuple[str, Any, Any]]:
    """``(dotted key, a's value, b's value)`` for every field that differs."""
    out: list[tuple[str, Any, Any]] = []

    def walk(x: Any, y: Any, prefix: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(set(x) | set(y)):
                walk(x.get(key), y.get(key), f"{prefix}.{key}" if prefix else key)
        elif x != y:
            out.append((prefix, x, y))

    walk(a.document(), b.document(), "")
    return out


def _require_rules(data: dict[str, Any], *, source: str) -> None:
    """ConfigError unless ``data`` names this build's :data:`RULES_VERSION` (or names none: then the
    default is this build's, and a pinned spec's missing key is reported as one)."""
    named = data.get("rules_version", RULES_VERSION) if isinstance(data, dict) else RULES_VERSION
    if isinstance(named, bool) or not isinstance(named, int) or named < 1:
        raise ConfigError(f"{source}: not a valid federation spec: rules_version must be an integer >= 1, "
                          f"got {named!r}")
    if named != RULES_VERSION:
        raise ConfigError(
            f"{source}: the federation spec was written for verdict rules version {named}; this build implements "
            f"version {RULES_VERSION}. Members and auditors on different rules reach different verdicts on the "
            f"same updates, so this build does not act on it: run, judge and audit this federation with a "
            f"release that implements version {named}; or, as the owner before the first round, write the spec "
            f"for this build (`flare-chain spec init`, or leave rules_version out of the TOML) and deploy it "
            f"with `flare-chain deploy --spec`")


def _missing_keys(full: dict[str, Any], given: dict[str, Any], prefix: str = "") -> list[str]:
    missing: list[str] = []
    for key, value in full.items():
        name = f"{prefix}{key}"
        if key not in given:
            missing.append(name)
        elif isinstance(value, dict) and isinstance(given[key], dict):
            missing.extend(_missing_keys(value, given[key], f"{name}."))
    return missing


def _describe(exc: ValidationError | ConfigError) -> str:
    if isinstance(exc, ConfigError):
        return str(exc)
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(document)'}: {_message(e)}" for e in exc.errors())


_RETIRED: Final[dict[tuple[str, ...], str]] = {("compression", "powersgd_rank"): "each node sets its own rank in its config's [compression]"}
"""Keys earlier releases wrote that this one no longer reads, with where the setting went."""


def _message(error: Any) -> str:
    """Pydantic's message for one error, without its ``Value error,`` prefix; a retired key says where it went."""
    retired = _RETIRED.get(tuple(str(p) for p in error["loc"]))
    if retired is not None and error["type"] == "extra_forbidden":
        return f"no longer a spec key ({retired}): remove it"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _toml(document: dict[str, Any]) -> str:
    """TOML has no null: a None field is written as a comment, and reads back as its default (None).

    Nested sections become dotted tables (``[gates.bands.norm_z]``), each after its parent's scalars.
    """
    lines: list[str] = []

    def table(data: dict[str, Any], name: str) -> None:
        if name:
            lines.append("")
            lines.append(f"[{name}]")
        nested = []
        for key, value in data.items():
            if isinstance(value, dict):
                nested.append((key, value))
            elif value is None:
                lines.append(f"# {key} = (none)")
            else:
                lines.append(f"{key} = {_toml_value(value)}")
        for key, value in nested:
            table(value, f"{name}.{key}" if name else key)

    table(document, "")
    return "\n".join(lines) + "\n"


class SpecStore(Protocol):
    """What pinning and loading a spec needs from a content store (embedded or a Kubo endpoint)."""

    def cat(self, cid_or_path: str) -> bytes: ...

    def add_bytes(self, data: bytes, *, cid_version: int = ..., pin: bool = ...) -> str: ...


SPEC_CID_VERSION = 1
"""Specs are pinned as CIDv1 (raw leaves), like every other flare-chain document."""


def spec_cid(spec: FederationSpec) -> str:
    """The CID ``pin_spec`` gives ``spec`` (what the coordinator records), computed without a store."""
    return cid_of_bytes(spec.canonical_bytes(), cid_version=SPEC_CID_VERSION)


def pin_spec(store: SpecStore, spec: FederationSpec) -> str:
    """Pin the canonical form and return its CID (checked against the locally computed one)."""
    cid = store.add_bytes(spec.canonical_bytes(), cid_version=SPEC_CID_VERSION, pin=True)
    expected = spec_cid(spec)
    if cid != expected:
        raise IntegrityError(f"the store answered {cid} for the federation spec, which hashes to {expected}")
    return cid


def fetch_spec(store: SpecStore, cid: str) -> FederationSpec:
    """Load a federation spec by CID (the store verifies the bytes against the CID)."""
    return FederationSpec.from_canonical(store.cat(cid), source=f"federation spec {cid}")
