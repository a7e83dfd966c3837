"""Wire format of a PowerSGD-compressed update (version 2, "packed"): one safetensors file.

The file holds exactly one tensor, ``packed``: 1-D, in the wire dtype, the
concatenation in sorted-key order of every tensor's data — for a low-rank
tensor ``P`` (row-major, ``[rows, rank]``) then ``Q`` (row-major,
``[cols, rank]``), for a dense tensor its flattened values. One tensor, not
three per key as in version 1: safetensors spells out every tensor's name,
dtype, shape and offsets in its header, and with long LoRA key names that
header outweighed the rank-1 factors themselves.

The safetensors header carries exactly one metadata entry, ``flare_powersgd``,
whose value is compact canonical JSON::

    {"dtype":"float16","prefix":"base_model.model.model.layers.","suffix":".weight",
     "tensors":[["0.self_attn.q_proj.lora_A",[8,128],1],["0.self_attn.q_proj.lora_B",[128,8],1]],
     "version":2}

Each ``tensors`` entry is ``[key minus prefix and suffix, original shape,
rank]``, in sorted order of the full keys; rank 0 means the tensor is sent
dense. ``prefix`` is the longest common prefix of all keys, ``suffix`` the
longest common suffix of what remains once the prefix is cut off (so the two
never overlap and any set of keys round-trips). The table alone says where
each tensor lies in ``packed``: decoding needs no outside knowledge.

One metadata entry, not several: safetensors writes its metadata map in hash
order, which changes between processes, so more than one entry would make
the bytes (and the update's CID) differ from run to run.

:func:`decode` is the gate for bytes from other nodes: anything malformed —
truncated bytes, missing or inconsistent metadata, a ``packed`` tensor that
does not match its table, NaN or Inf — raises UpdateError naming the tensor.
It also refuses metadata this encoder would not have written (unsorted keys,
a non-maximal prefix, non-canonical JSON), so that ``encode(decode(data))``
gives back ``data`` for every file it accepts from this codec.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
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

CODEC_VERSION = 2
METADATA_KEY = "flare_powersgd"
_PACKED = "packed"
_META_FIELDS = frozenset({"version", "dtype", "prefix", "suffix", "tensors"})


def _canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _common_prefix(strings: list[str]) -> str:
    """Longest common prefix, character by character (the min and max strings bound all others)."""
    if not strings:
        return ""
    first, last = min(strings), max(strings)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


def _affixes(keys: list[str]) -> tuple[str, str]:
    """Longest common prefix of ``keys``, then longest common suffix of the rests; never overlapping.

    Deterministic and maximal, so the decoder can insist on exactly this
    choice. A single key becomes all prefix (its stem is empty).
    """
    prefix = _common_prefix(keys)
    rests = [k[len(prefix) :] for k in keys]
    suffix = _common_prefix([r[::-1] for r in rests])[::-1]
    return prefix, suffix


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
    keys = update.names()
    prefix, suffix = _affixes(keys)
    chunks: list[torch.Tensor] = []
    table: list[list[Any]] = []
    for key in keys:
        stem = key[len(prefix) : len(key) - len(suffix)]
        if key in update.low_rank:
            f = update.low_rank[key]
            for role, t in (("P", f.p), ("Q", f.q)):
                if t.dtype != wire:
                    raise UpdateError(f"factor {role} of {key!r} is {t.dtype}, the update says {update.dtype}")
                if not bool(torch.isfinite(t).all()):
                    raise UpdateError(f"factor {role} of {key!r} contains NaN or Inf; refusing to encode it")
            view = matrix_shape(f.shape)
            rank = int(f.p.shape[1]) if f.p.dim() == 2 else 0
            # Rank 0 on the wire means "dense", so a low-rank entry needs at least one column.
            if (
                view is None
                or rank < 1
                or tuple(f.p.shape) != (view[0], rank)
                or tuple(f.q.shape) != (view[1], rank)
            ):
                raise UpdateError(
                    f"factors of {key!r} (P {tuple(f.p.shape)}, Q {tuple(f.q.shape)}) do not fit shape "
                    f"{f.shape} with a rank >= 1"
                )
            chunks += [f.p.detach().cpu().reshape(-1), f.q.detach().cpu().reshape(-1)]
            table.append([stem, [int(d) for d in f.shape], rank])
        else:
            t = update.dense[key]
            if t.dtype != wire:
                raise UpdateError(f"dense tensor {key!r} is {t.dtype}, the update says {update.dtype}")
            if not bool(torch.isfinite(t).all()):
                raise UpdateError(f"dense tensor {key!r} contains NaN or Inf; refusing to encode it")
            chunks.append(t.detach().cpu().reshape(-1))
            table.append([stem, [int(d) for d in t.shape], 0])
    packed = torch.cat(chunks) if chunks else torch.empty(0, dtype=wire)
    meta = {
        "version": CODEC_VERSION,
        "dtype": update.dtype,
        "prefix": prefix,
        "suffix": suffix,
        "tensors": table,
    }
    return st_save({_PACKED: packed.contiguous()}, metadata={METADATA_KEY: _canonical_json(meta)})


@dataclass(frozen=True)
class _Entry:
    key: str
    shape: tuple[int, ...]
    rank: int  # 0: dense

    def lengths(self) -> list[tuple[str, int]]:
        """(role, number of values) of each piece this tensor occupies in ``packed``, in order."""
        if self.rank == 0:
            return [("dense", math.prod(self.shape))]
        view = matrix_shape(self.shape)
        assert view is not None  # checked when the entry was read
        return [("P", view[0] * self.rank), ("Q", view[1] * self.rank)]


def _read_metadata(data: bytes) -> tuple[dict[str, Any], str]:
    """The parsed ``flare_powersgd`` metadata (version and dtype checked) and its raw JSON text."""
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
    others = sorted(str(k) for k in raw if k != METADATA_KEY)
    if others:
        raise UpdateError(
            f"compressed update carries metadata {others[0]!r} besides {METADATA_KEY!r}; "
            "this codec writes exactly one entry, so the file was not written by it"
        )
    text = raw[METADATA_KEY]
    try:
        meta = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise UpdateError(f"compressed update's {METADATA_KEY!r} metadata is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise UpdateError(f"compressed update's {METADATA_KEY!r} metadata must be a JSON object")
    if meta.get("version") != CODEC_VERSION:
        raise UpdateError(
            f"compressed update has codec version {meta.get('version')!r}; this build reads {CODEC_VERSION} "
            "(the sender and this node run different flare-chain releases: every node of a federation must "
            "run one codec version, so upgrade them together between rounds)"
        )
    if meta.get("dtype") not in WIRE_DTYPES:
        raise UpdateError(
            f"compressed update has dtype {meta.get('dtype')!r}; expected one of {', '.join(WIRE_DTYPES)}"
        )
    unknown = sorted(set(meta) - _META_FIELDS)
    if unknown:
        raise UpdateError(f"compressed update's metadata has unknown field {unknown[0]!r}")
    for name in ("prefix", "suffix"):
        if not isinstance(meta.get(name), str):
            raise UpdateError(f"compressed update's metadata lacks the {name!r} string")
    if not isinstance(meta.get("tensors"), list):
        raise UpdateError("compressed update's metadata lacks the 'tensors' table (a list)")
    return meta, text


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _read_table(meta: dict[str, Any]) -> list[_Entry]:
    """The checked ``tensors`` table with full key names, in the order the values lie in ``packed``."""
    prefix: str = meta["prefix"]
    suffix: str = meta["suffix"]
    entries: list[_Entry] = []
    for i, item in enumerate(meta["tensors"]):
        if not isinstance(item, list) or len(item) != 3 or not isinstance(item[0], str):
            raise UpdateError(
                f"entry #{i} of the compressed update's tensor table is {item!r}; expected [name, shape, rank]"
            )
        stem, shape, rank = item
        key = prefix + stem + suffix
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            raise UpdateError(
                f"metadata of tensor {key!r} has shape {shape!r}; expected a list of non-negative integers"
            )
        if not _is_count(rank):
            raise UpdateError(
                f"metadata of tensor {key!r} has rank {rank!r}; expected an integer >= 0 (0: sent dense)"
            )
        if rank >= 1 and matrix_shape(tuple(shape)) is None:
            raise UpdateError(
                f"tensor {key!r} is marked low-rank (rank {rank}) but its shape {tuple(shape)} is not at least 2-D"
            )
        if entries and key == entries[-1].key:
            raise UpdateError(f"compressed update lists tensor {key!r} twice")
        if entries and key < entries[-1].key:
            raise UpdateError(
                f"compressed update lists tensor {key!r} after {entries[-1].key!r}; this codec writes keys "
                "sorted, so the file was not written by it"
            )
        entries.append(_Entry(key=key, shape=tuple(shape), rank=rank))
    canonical = _affixes([e.key for e in entries])
    if canonical != (prefix, suffix):
        raise UpdateError(
            f"compressed update's key prefix/suffix {(prefix, suffix)!r} are not the longest common ones of "
            f"its keys {canonical!r}; the file was not written by this codec"
        )
    return entries


def _packed(tensors: Mapping[str, torch.Tensor], dtype: torch.dtype, length: int) -> torch.Tensor:
    if _PACKED not in tensors:
        raise UpdateError(f"compressed update lacks its {_PACKED!r} tensor")
    extra = sorted(set(tensors) - {_PACKED})
    if extra:
        raise UpdateError(
            f"compressed update holds tensor {extra[0]!r} beside {_PACKED!r}; this codec writes only {_PACKED!r}"
        )
    packed = tensors[_PACKED]
    if packed.dtype != dtype:
        raise UpdateError(f"{_PACKED!r} tensor has dtype {packed.dtype}, the metadata says {dtype}")
    if packed.dim() != 1:
        raise UpdateError(f"{_PACKED!r} tensor has shape {tuple(packed.shape)}; expected 1-D")
    if packed.numel() != length:
        raise UpdateError(
            f"{_PACKED!r} tensor holds {packed.numel()} values but the metadata's table implies {length}"
        )
    return packed


def decode(data: bytes, *, expected_shapes: Mapping[str, tuple[int, ...]] | None = None) -> CompressedUpdate:
    """Parse and check compressed-update bytes; UpdateError naming the tensor when anything is off.

    ``expected_shapes`` (e.g. the global adapter's shapes) additionally pins
    the set of tensor names and their original shapes. The returned tensors
    are fresh copies, sharing no memory with ``data`` or with each other.
    """
    meta, text = _read_metadata(data)
    entries = _read_table(meta)
    if _canonical_json(meta) != text:
        raise UpdateError(
            f"compressed update's {METADATA_KEY!r} metadata is not in canonical JSON form (compact, sorted "
            "fields); the file was not written by this codec"
        )
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise UpdateError(
            f"compressed update is not a valid safetensors file ({len(data)} bytes; truncated?): {exc}"
        ) from None
    dtype = WIRE_DTYPES[meta["dtype"]]
    pieces = [(e, role, n) for e in entries for role, n in e.lengths()]
    packed = _packed(tensors, dtype, sum(n for _, _, n in pieces))
    finite = torch.isfinite(packed)
    all_finite = bool(finite.all())
    low_rank: dict[str, LowRankFactors] = {}
    dense: dict[str, torch.Tensor] = {}
    offset = 0
    factors: dict[str, torch.Tensor] = {}
    for entry, role, n in pieces:
        if not all_finite and not bool(finite[offset : offset + n].all()):
            what = "dense tensor" if role == "dense" else f"factor {role} of tensor"
            raise UpdateError(f"{what} {entry.key!r} contains NaN or Inf; refusing the update")
        # clone: the decoded tensors must not share the buffer safetensors loaded into
        values = packed[offset : offset + n].clone()
        offset += n
        if role == "dense":
            dense[entry.key] = values.reshape(entry.shape)
            continue
        view = matrix_shape(entry.shape)
        assert view is not None
        factors[role] = values.reshape((view[0] if role == "P" else view[1], entry.rank))
        if role == "Q":
            low_rank[entry.key] = LowRankFactors(p=factors["P"], q=factors["Q"], shape=entry.shape)
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
