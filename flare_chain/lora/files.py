"""Delta and adapter update files: safetensors tensors plus a canonical JSON manifest.

A node pins two blobs per round: the tensors (safetensors, sorted keys, no
metadata beyond ``{"format": "pt"}``) and a manifest saying what they are.
Both are byte-deterministic — the manifest is canonical JSON (sorted keys,
compact separators, ASCII) — so their hashes are reproducible and can go
on-chain. :func:`decode_delta` is the gate for bytes from other nodes: it
refuses anything malformed with an :class:`~flare_chain.errors.UpdateError`
naming the tensor or field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from flare_chain.errors import ConfigError, UpdateError
from flare_chain.ipfs.multiformats import parse_cid

__all__ = [
    "ALLOWED_DTYPES",
    "MANIFEST_FORMAT_VERSION",
    "Manifest",
    "canonical_json",
    "decode_delta",
    "dtype_name",
    "encode_delta",
    "tensor_shapes",
]

MANIFEST_FORMAT_VERSION = 1
ALLOWED_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` → ``"float32"``."""
    return str(dtype).removeprefix("torch.")


def tensor_shapes(tensors: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    """Key → shape (as a list, JSON-ready), in sorted key order."""
    return {k: list(tensors[k].shape) for k in sorted(tensors)}


def canonical_json(obj: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, compact separators, ASCII, no NaN — hash-stable."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


class Manifest(BaseModel):
    """What an update file holds and how it was made; hashed and referenced on-chain."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int = MANIFEST_FORMAT_VERSION
    kind: Literal["delta", "adapter"]
    base_model_id: str = Field(min_length=1)
    base_model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    rank: int = Field(ge=1)
    alpha: float = Field(gt=0)
    target_modules: list[str] = Field(min_length=1)
    sample_count: int = Field(ge=0)
    dtype: str = "float32"
    shapes: dict[str, list[int]]
    metrics: dict[str, float] = Field(default_factory=dict)
    round: int | None = Field(default=None, ge=0)
    node: str | None = None
    probe_cid: str | None = Field(default=None, description="CID of the federation's public probe corpus")
    base_model_cid: str | None = Field(
        default=None, description="CID of the base model folder (``flare-chain model add``); the model's identity "
        "when the federation names one")
    accepted: list[str] | None = Field(
        default=None, description="a committee aggregate's accepted submitters, ascending as uint160; the chain "
        "keeps only their root and count (flare_chain.protocol.accepted)")

    @field_validator("format_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v != MANIFEST_FORMAT_VERSION:
            raise ValueError(f"unsupported format_version {v}; this build reads {MANIFEST_FORMAT_VERSION}")
        return v

    @field_validator("probe_cid", "base_model_cid")
    @classmethod
    def _cid_parses(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                parse_cid(v)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return v

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, v: str) -> str:
        if v not in ALLOWED_DTYPES:
            raise ValueError(f"dtype {v!r} is not one of {', '.join(ALLOWED_DTYPES)}")
        return v

    @field_validator("target_modules")
    @classmethod
    def _sorted_modules(cls, v: list[str]) -> list[str]:
        return sorted(v)

    @field_validator("metrics")
    @classmethod
    def _finite_metrics(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k, x in v.items() if not math.isfinite(x)]
        if bad:
            raise ValueError(f"metric {bad[0]!r} is not finite")
        return v

    @model_validator(mode="after")
    def _shapes_fit_rank(self) -> Manifest:
        for key, shape in self.shapes.items():
            if any(d < 0 for d in shape):
                raise ValueError(f"shape of {key!r} has a negative dimension: {shape}")
            if key.endswith("lora_A.weight") and (len(shape) != 2 or shape[0] != self.rank):
                raise ValueError(f"{key!r} has shape {shape}; a lora_A weight must be [rank={self.rank}, in]")
            if key.endswith("lora_B.weight") and (len(shape) != 2 or shape[1] != self.rank):
                raise ValueError(
                    f"{key!r} has shape {shape}; a lora_B weight must be [out, rank={self.rank}]"
                )
        return self

    def to_bytes(self) -> bytes:
        """Canonical JSON of the manifest (see :func:`canonical_json`).

        ``probe_cid``, ``base_model_cid`` and ``accepted`` are written only when
        set, so manifests without them keep the bytes (and hashes) they had
        before the fields existed.
        """
        doc = self.model_dump(mode="json")
        for optional in ("probe_cid", "base_model_cid", "accepted"):
            if doc.get(optional) is None:
                doc.pop(optional, None)
        return canonical_json(doc)

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Parse manifest bytes; UpdateError naming the bad field if they are malformed."""
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise UpdateError(f"update manifest is not valid UTF-8 JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise UpdateError("update manifest must be a JSON object")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "<manifest>"
            raise UpdateError(f"update manifest field {field!r} is invalid: {first['msg']}") from None


def encode_delta(tensors: dict[str, torch.Tensor], manifest: Manifest) -> tuple[bytes, bytes]:
    """``(safetensors bytes, manifest bytes)`` for an update; deterministic for equal inputs.

    Tensors are cast to ``manifest.dtype``; the manifest's shapes must describe
    them exactly (build it with :func:`tensor_shapes`), else UpdateError.
    """
    dtype = ALLOWED_DTYPES[manifest.dtype]
    shapes = tensor_shapes(tensors)
    if shapes != manifest.shapes:
        diff = sorted(set(shapes) ^ set(manifest.shapes)) or [
            k for k in shapes if shapes[k] != manifest.shapes[k]
        ]
        raise UpdateError(f"manifest shapes do not describe the tensors (first difference: {diff[0]!r})")
    for key in sorted(tensors):
        if not bool(torch.isfinite(tensors[key]).all()):
            raise UpdateError(f"tensor {key!r} contains NaN or Inf; refusing to encode it")
    ordered = {k: tensors[k].detach().to(dtype).contiguous().cpu() for k in sorted(tensors)}
    return st_save(ordered, metadata={"format": "pt"}), manifest.to_bytes()


def _check_tensors(
    tensors: dict[str, torch.Tensor],
    expected_shapes: Mapping[str, tuple[int, ...]] | None,
    dtype: str | None,
) -> None:
    if expected_shapes is not None:
        missing = sorted(set(expected_shapes) - set(tensors))
        extra = sorted(set(tensors) - set(expected_shapes))
        if missing:
            raise UpdateError(f"update is missing tensor {missing[0]!r} ({len(missing)} missing in all)")
        if extra:
            raise UpdateError(f"update has unexpected tensor {extra[0]!r} ({len(extra)} extra in all)")
    for key in sorted(tensors):
        t = tensors[key]
        name = dtype_name(t.dtype)
        if name not in ALLOWED_DTYPES:
            raise UpdateError(f"tensor {key!r} has dtype {name}; updates must be {', '.join(ALLOWED_DTYPES)}")
        if dtype is not None and name != dtype:
            raise UpdateError(f"tensor {key!r} has dtype {name} but the manifest says {dtype}")
        if expected_shapes is not None and tuple(t.shape) != tuple(expected_shapes[key]):
            raise UpdateError(
                f"tensor {key!r} has shape {tuple(t.shape)}, expected {tuple(expected_shapes[key])}"
            )
        if bool(torch.isnan(t).any()):
            raise UpdateError(f"tensor {key!r} contains NaN; refusing the update")
        if bool(torch.isinf(t).any()):
            raise UpdateError(f"tensor {key!r} contains Inf; refusing the update")


def decode_delta(
    data: bytes,
    manifest_bytes: bytes | None = None,
    *,
    expected_shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> tuple[dict[str, torch.Tensor], Manifest | None]:
    """Parse and check update bytes; returns ``(tensors in sorted key order, manifest or None)``.

    Raises UpdateError when the bytes are not safetensors or are truncated, a
    tensor has a non-float dtype, NaN or Inf, keys or shapes differ from
    ``expected_shapes``, or the manifest is malformed or disagrees with the
    tensors (keys, shapes, dtype).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise UpdateError(f"update data must be bytes, got {type(data).__name__}")
    try:
        raw = st_load(bytes(data))
    except (SafetensorError, ValueError, RuntimeError, OverflowError) as exc:
        raise UpdateError(
            f"update is not a valid safetensors file ({len(data)} bytes; truncated?): {exc}"
        ) from exc
    tensors = {k: raw[k] for k in sorted(raw)}
    if not tensors:
        raise UpdateError("update holds no tensors")
    manifest = Manifest.from_bytes(bytes(manifest_bytes)) if manifest_bytes is not None else None
    if manifest is not None:
        got = tensor_shapes(tensors)
        for key in sorted(set(got) | set(manifest.shapes)):
            if key not in got:
                raise UpdateError(f"manifest lists tensor {key!r} but the update does not contain it")
            if key not in manifest.shapes:
                raise UpdateError(f"update contains tensor {key!r} which the manifest does not list")
            if got[key] != manifest.shapes[key]:
                raise UpdateError(
                    f"tensor {key!r} has shape {tuple(got[key])} but the manifest says {tuple(manifest.shapes[key])}"
                )
    _check_tensors(tensors, expected_shapes, manifest.dtype if manifest else None)
    return tensors, manifest
