"""Wire format of a PowerSGD-compressed update: one safetensors file.

Tensors are named by role: ``p/<key>`` and ``q/<key>`` hold the factors of a
compressed tensor, ``dense/<key>`` a tensor sent as is; all in the wire dtype.
The safetensors header carries exactly one metadata entry, ``flare_powersgd``,
whose value is canonical JSON::

    {"version": 1, "dtype": "float16",
     "tensors": {"<key>": {"kind": "low_rank", "shape": [out, in], "rank": 4},
                 "<key>": {"kind": "dense", "shape": [8]}}}

One entry, not several: safetensors writes its metadata map in hash order,
which changes between processes, so more than one entry would make the bytes
(and the update's CID) differ from run to run.

:func:`decode` is the gate for bytes from other nodes: anything malformed —
truncated bytes, missing or inconsistent metadata, a tensor of the wrong
shape or dtype, NaN or Inf — raises UpdateError naming the tensor.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from flare_chain.compression.powersgd import (
    WIRE_DTYPES,
    CompressedUpdate,
    LowRankFactors,
    matrix_shape,
)
from flare_chain.errors import UpdateError

__all__ = ["CODEC_VERSION", "METADATA_KEY", "decode", "encode"]

CODEC_VERSION = 1
METADATA_KEY = "flare_powersgd"


def _canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def encode(update: CompressedUpdate) -> bytes:
    """Safetensors bytes for ``update``; byte-identical for equal inputs (keys sorted, one metadata entry)."""
    if update.dtype not in WIRE_DTYPES:
        raise UpdateError(
            f"compressed update has dtype {update.dtype!r}; expected one of {', '.join(WIRE_DTYPES)}"
        )
    wire = WIRE_DTYPES[update.dtype]
    overlap = sorted(set(update.low_rank) & set(update.dense))
    if overlap:
        raise UpdateError(f"tensor {overlap[0]!r} is both low-rank and dense in the compressed update")
    tensors: dict[str, torch.Tensor] = {}
    described: dict[str, dict[str, Any]] = {}
    for key in update.names():
        if key in update.low_rank:
            f = update.low_rank[key]
            for role, t in (("p", f.p), ("q", f.q)):
                if t.dtype != wire:
                    raise UpdateError(
                        f"factor {role.upper()} of {key!r} is {t.dtype}, the update says {update.dtype}"
                    )
                if not bool(torch.isfinite(t).all()):
                    raise UpdateError(
                        f"factor {role.upper()} of {key!r} contains NaN or Inf; refusing to encode it"
                    )
                tensors[f"{role}/{key}"] = t.detach().cpu().contiguous()
            view = matrix_shape(f.shape)
            if view is None or tuple(f.p.shape) != (view[0], f.rank) or tuple(f.q.shape) != (view[1], f.rank):
                raise UpdateError(
                    f"factors of {key!r} (P {tuple(f.p.shape)}, Q {tuple(f.q.shape)}) do not fit shape {f.shape}"
                )
            described[key] = {"kind": "low_rank", "shape": list(f.shape), "rank": f.rank}
        else:
            t = update.dense[key]
            if t.dtype != wire:
                raise UpdateError(f"dense tensor {key!r} is {t.dtype}, the update says {update.dtype}")
            if not bool(torch.isfinite(t).all()):
                raise UpdateError(f"dense tensor {key!r} contains NaN or Inf; refusing to encode it")
            tensors[f"dense/{key}"] = t.detach().cpu().contiguous()
            described[key] = {"kind": "dense", "shape": list(t.shape)}
    meta = {"version": CODEC_VERSION, "dtype": update.dtype, "tensors": described}
    return st_save(tensors, metadata={METADATA_KEY: _canonical_json(meta)})


def _read_metadata(data: bytes) -> dict[str, Any]:
    if len(data) < 8:
        raise UpdateError(
            f"compressed update is {len(data)} bytes; too short for a safetensors header (truncated?)"
        )
    (header_len,) = struct.unpack("<Q", data[:8])
    if 8 + header_len > len(data):
        raise UpdateError(
            f"compressed update declares a {header_len}-byte header but holds {len(data)} bytes (truncated?)"
        )
    try:
        header = json.loads(data[8 : 8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UpdateError(f"compressed update's safetensors header is not valid JSON: {exc}") from None
    raw = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(raw, dict) or METADATA_KEY not in raw:
        raise UpdateError(
            f"compressed update has no {METADATA_KEY!r} metadata; it was not written by flare_chain.compression"
        )
    try:
        meta = json.loads(raw[METADATA_KEY])
    except (TypeError, ValueError) as exc:
        raise UpdateError(f"compressed update's {METADATA_KEY!r} metadata is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise UpdateError(f"compressed update's {METADATA_KEY!r} metadata must be a JSON object")
    if meta.get("version") != CODEC_VERSION:
        raise UpdateError(
            f"compressed update has codec version {meta.get('version')!r}; this build reads {CODEC_VERSION}"
        )
    if meta.get("dtype") not in WIRE_DTYPES:
        raise UpdateError(
            f"compressed update has dtype {meta.get('dtype')!r}; expected one of {', '.join(WIRE_DTYPES)}"
        )
    if not isinstance(meta.get("tensors"), dict):
        raise UpdateError("compressed update's metadata lacks the 'tensors' table")
    return meta


def _shape_of(key: str, entry: Any) -> tuple[int, ...]:
    shape = entry.get("shape") if isinstance(entry, dict) else None
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise UpdateError(
            f"metadata of tensor {key!r} lacks a valid 'shape' (a list of non-negative integers)"
        )
    return tuple(shape)


def _tensor(
    tensors: Mapping[str, torch.Tensor], name: str, key: str, dtype: torch.dtype, shape: tuple[int, ...]
) -> torch.Tensor:
    t = tensors[name]
    if t.dtype != dtype:
        raise UpdateError(f"{name!r} (tensor {key!r}) has dtype {t.dtype}, the metadata says {dtype}")
    if tuple(t.shape) != shape:
        raise UpdateError(f"{name!r} (tensor {key!r}) has shape {tuple(t.shape)}, expected {shape}")
    if not bool(torch.isfinite(t).all()):
        raise UpdateError(f"{name!r} (tensor {key!r}) contains NaN or Inf; refusing the update")
    return t.contiguous()


def decode(data: bytes, *, expected_shapes: Mapping[str, tuple[int, ...]] | None = None) -> CompressedUpdate:
    """Parse and check compressed-update bytes; UpdateError naming the tensor when anything is off.

    ``expected_shapes`` (e.g. the global adapter's shapes) additionally pins
    the set of tensor names and their original shapes.
    """
    meta = _read_metadata(data)
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise UpdateError(
            f"compressed update is not a valid safetensors file ({len(data)} bytes; truncated?): {exc}"
        ) from None
    dtype = WIRE_DTYPES[meta["dtype"]]
    expected_names: set[str] = set()
    low_rank: dict[str, LowRankFactors] = {}
    dense: dict[str, torch.Tensor] = {}
    table: dict[str, Any] = meta["tensors"]
    for key in sorted(table):
        entry = table[key]
        shape = _shape_of(key, entry)
        kind = entry.get("kind")
        if kind == "dense":
            expected_names.add(f"dense/{key}")
        elif kind == "low_rank":
            expected_names.update((f"p/{key}", f"q/{key}"))
        else:
            raise UpdateError(f"metadata of tensor {key!r} has kind {kind!r}; expected 'low_rank' or 'dense'")
    missing = sorted(expected_names - set(tensors))
    extra = sorted(set(tensors) - expected_names)
    if missing:
        raise UpdateError(f"compressed update lacks {missing[0]!r}, which its metadata announces")
    if extra:
        raise UpdateError(f"compressed update holds {extra[0]!r}, which its metadata does not describe")
    for key in sorted(table):
        entry = table[key]
        shape = _shape_of(key, entry)
        if entry["kind"] == "dense":
            dense[key] = _tensor(tensors, f"dense/{key}", key, dtype, shape)
            continue
        rank = entry.get("rank")
        view = matrix_shape(shape)
        if view is None:
            raise UpdateError(f"tensor {key!r} is marked low-rank but its shape {shape} is not at least 2-D")
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
            raise UpdateError(f"metadata of tensor {key!r} has rank {rank!r}; expected an integer >= 1")
        p = _tensor(tensors, f"p/{key}", key, dtype, (view[0], rank))
        q = _tensor(tensors, f"q/{key}", key, dtype, (view[1], rank))
        low_rank[key] = LowRankFactors(p=p, q=q, shape=shape)
    update = CompressedUpdate(dtype=meta["dtype"], low_rank=low_rank, dense=dense)
    if expected_shapes is not None:
        got = update.shapes()
        missing = sorted(set(expected_shapes) - set(got))
        extra = sorted(set(got) - set(expected_shapes))
        if missing:
            raise UpdateError(
                f"compressed update is missing tensor {missing[0]!r} ({len(missing)} missing in all)"
            )
        if extra:
            raise UpdateError(
                f"compressed update has unexpected tensor {extra[0]!r} ({len(extra)} extra in all)"
            )
        for key, shape in got.items():
            if shape != tuple(expected_shapes[key]):
                raise UpdateError(f"tensor {key!r} has shape {shape}, expected {tuple(expected_shapes[key])}")
    return update
