"""Error feedback and warm starts: the node-side state that makes PowerSGD lossless over time.

Each round the node compresses ``target = delta + e_prev`` and keeps the part
that did not make it onto the wire, ``e = target − sent``, for the next round
(error feedback, Karimireddy et al. 2019, as used by PowerSGD). Summed over
rounds, what was sent telescopes to ``Σ delta − e_last``: nothing is lost,
only delayed, and ``e`` stays as small as one round's compression error.
``sent`` is the receiver's exact reconstruction from the 16-bit factors, so
the rounding to the wire dtype is fed back too.

:func:`feedback_step` is the pure step; :class:`PowerSGDCompressor` holds the
state between rounds (per-tensor warm-start Q and error buffer) and saves it
as safetensors, never pickle.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from flare_chain.compression.codec import encode
from flare_chain.compression.powersgd import (
    CompressedUpdate,
    PowerSGDConfig,
    compress,
    decompress,
    relative_error,
)
from flare_chain.errors import ConfigError, UpdateError

__all__ = ["STATE_METADATA_KEY", "CompressionInfo", "FeedbackStep", "PowerSGDCompressor", "feedback_step"]

STATE_METADATA_KEY = "flare_powersgd_state"
_STATE_VERSION = 1


@dataclass(frozen=True)
class CompressionInfo:
    """What the update manifest records about one compressed update.

    ``rel_error`` is ``‖target − sent‖_F / ‖target‖_F`` for this round's target
    (delta plus carried error), over all tensors; ``encoded_bytes`` the size of
    the safetensors file; ``fp32_bytes`` what the same tensors take as float32.
    """

    rank: int
    dtype: str
    encoded_bytes: int
    fp32_bytes: int
    rel_error: float
    compressed_tensors: int
    dense_tensors: int

    @property
    def compression_ratio(self) -> float:
        """``fp32_bytes / encoded_bytes``: how many times smaller than sending float32."""
        return self.fp32_bytes / self.encoded_bytes if self.encoded_bytes else math.inf

    def as_metrics(self) -> dict[str, float]:
        """Flat float metrics, ready for a manifest's ``metrics`` table."""
        return {
            "powersgd_rank": float(self.rank),
            "powersgd_rel_error": self.rel_error,
            "powersgd_encoded_bytes": float(self.encoded_bytes),
            "powersgd_fp32_bytes": float(self.fp32_bytes),
            "powersgd_compressed_tensors": float(self.compressed_tensors),
            "powersgd_dense_tensors": float(self.dense_tensors),
        }


@dataclass(frozen=True)
class FeedbackStep:
    """One round's result: what to send, what the receiver will reconstruct, and the next state."""

    compressed: CompressedUpdate
    sent: dict[str, torch.Tensor]
    error: dict[str, torch.Tensor]
    warm_q: dict[str, torch.Tensor]
    rel_error: float


def feedback_step(
    delta: Mapping[str, torch.Tensor],
    config: PowerSGDConfig,
    *,
    error: Mapping[str, torch.Tensor] | None = None,
    warm_q: Mapping[str, torch.Tensor] | None = None,
) -> FeedbackStep:
    """Compress ``delta + error`` with warm start ``warm_q``; pure (inputs are not modified).

    Raises UpdateError naming the tensor when ``delta`` has NaN/Inf or an
    error buffer's shape does not match, or when ``error`` holds a tensor the
    delta lacks (its carried error would be silently dropped).
    """
    error = error or {}
    extra = sorted(set(error) - set(delta))
    if extra:
        raise UpdateError(
            f"the error-feedback buffer holds {extra[0]!r} but the update lacks it; "
            "the adapter's targets changed, so reset the compressor state"
        )
    target: dict[str, torch.Tensor] = {}
    for key in sorted(delta):
        t = delta[key].detach().cpu().to(torch.float32)
        if not bool(torch.isfinite(t).all()):
            raise UpdateError(f"tensor {key!r} contains NaN or Inf; refusing to compress it")
        if key in error:
            e = error[key]
            if tuple(e.shape) != tuple(t.shape):
                raise UpdateError(
                    f"error-feedback buffer for {key!r} has shape {tuple(e.shape)}, the update has "
                    f"{tuple(t.shape)}; reset the compressor state"
                )
            t = t + e.to(torch.float32)
        target[key] = t.contiguous()
    compressed, next_q = compress(target, config, warm_q)
    sent = decompress(compressed)
    new_error = {k: (target[k] - sent[k]).contiguous() for k in sorted(target)}
    return FeedbackStep(
        compressed=compressed,
        sent=sent,
        error=new_error,
        warm_q=next_q,
        rel_error=relative_error(target, sent),
    )


class PowerSGDCompressor:
    """A node's PowerSGD compressor: warm-start Qs and error buffers kept between rounds.

    Not thread-safe; one instance per node. The state is updated only when a
    step succeeds, so a rejected update leaves it untouched.
    """

    def __init__(self, config: PowerSGDConfig | None = None) -> None:
        self._config = config or PowerSGDConfig()
        self._warm_q: dict[str, torch.Tensor] = {}
        self._error: dict[str, torch.Tensor] = {}

    @property
    def config(self) -> PowerSGDConfig:
        return self._config

    @property
    def error(self) -> dict[str, torch.Tensor]:
        """A copy of the error buffers (what has not been sent yet)."""
        return {k: v.clone() for k, v in self._error.items()}

    @property
    def warm_q(self) -> dict[str, torch.Tensor]:
        """A copy of the warm-start Qs."""
        return {k: v.clone() for k, v in self._warm_q.items()}

    def reset(self) -> None:
        """Forget warm starts and carried error (e.g. after the adapter's shape changed)."""
        self._warm_q = {}
        self._error = {}

    def step(self, delta: Mapping[str, torch.Tensor]) -> FeedbackStep:
        """Compress this round's delta (plus carried error) and advance the state."""
        result = feedback_step(delta, self._config, error=self._error, warm_q=self._warm_q)
        self._error = result.error
        self._warm_q = {**self._warm_q, **result.warm_q}
        return result

    def encode(self, delta: Mapping[str, torch.Tensor]) -> tuple[bytes, CompressionInfo]:
        """:meth:`step`, then the wire bytes and the manifest fields for them."""
        result = self.step(delta)
        data = encode(result.compressed)
        info = CompressionInfo(
            rank=self._config.rank,
            dtype=self._config.dtype,
            encoded_bytes=len(data),
            fp32_bytes=sum(4 * t.numel() for t in result.sent.values()),
            rel_error=result.rel_error,
            compressed_tensors=len(result.compressed.low_rank),
            dense_tensors=len(result.compressed.dense),
        )
        return data, info

    # -- state persistence (safetensors, never pickle) ------------------------------------------

    def state_bytes(self) -> bytes:
        """The state as safetensors: ``q/<key>`` and ``error/<key>`` float32, config in one metadata entry."""
        tensors = {f"q/{k}": v.contiguous() for k, v in self._warm_q.items()}
        tensors.update({f"error/{k}": v.contiguous() for k, v in self._error.items()})
        meta = {"version": _STATE_VERSION, "config": _config_dict(self._config)}
        return st_save(
            tensors, metadata={STATE_METADATA_KEY: json.dumps(meta, sort_keys=True, separators=(",", ":"))}
        )

    @classmethod
    def from_state_bytes(cls, data: bytes, config: PowerSGDConfig | None = None) -> PowerSGDCompressor:
        """Restore a compressor; ``config``, if given, must equal the saved one (else ConfigError)."""
        meta = _read_state_metadata(data)
        raw_config = meta["config"]
        try:
            if not isinstance(raw_config, dict):
                raise TypeError("config is not a table")
            saved = PowerSGDConfig(**raw_config)
        except (TypeError, KeyError, ConfigError) as exc:
            raise UpdateError(f"compressor state has an unreadable config ({exc}); delete it to start afresh") from None
        if config is not None and config != saved:
            field = next(k for k, v in _config_dict(config).items() if _config_dict(saved)[k] != v)
            raise ConfigError(
                f"compressor state was saved with {field}={getattr(saved, field)!r}, but {field}="
                f"{getattr(config, field)!r} was asked for; delete the state file to start afresh"
            )
        try:
            tensors = st_load(data)
        except (SafetensorError, ValueError, RuntimeError) as exc:
            raise UpdateError(
                f"compressor state is not a valid safetensors file (truncated?): {exc}"
            ) from None
        out = cls(saved)
        for name in sorted(tensors):
            role, _, key = name.partition("/")
            t = tensors[name]
            if role not in ("q", "error") or not key:
                raise UpdateError(f"compressor state holds unexpected tensor {name!r}")
            if t.dtype != torch.float32 or not bool(torch.isfinite(t).all()):
                raise UpdateError(f"compressor state tensor {name!r} is not finite float32")
            if role == "q" and (t.ndim != 2 or t.shape[1] != saved.rank):
                raise UpdateError(
                    f"compressor state tensor {name!r} has shape {tuple(t.shape)}; expected [cols, {saved.rank}]"
                )
            (out._warm_q if role == "q" else out._error)[key] = t.contiguous()
        return out

    def save_state(self, path: str | Path) -> None:
        """Write :meth:`state_bytes` to ``path`` atomically (temp file, then rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(self.state_bytes())
        tmp.replace(path)

    @classmethod
    def load_state(cls, path: str | Path, config: PowerSGDConfig | None = None) -> PowerSGDCompressor:
        """Read a state file written by :meth:`save_state`."""
        return cls.from_state_bytes(Path(path).read_bytes(), config)


def _config_dict(config: PowerSGDConfig) -> dict[str, object]:
    return {
        "rank": config.rank,
        "min_compression_rate": config.min_compression_rate,
        "dtype": config.dtype,
        "seed": config.seed,
    }


def _read_state_metadata(data: bytes) -> dict[str, object]:
    if len(data) < 8 or 8 + int.from_bytes(data[:8], "little") > len(data):
        raise UpdateError(f"compressor state is {len(data)} bytes and truncated; delete it to start afresh")
    header_len = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8 : 8 + header_len].decode("utf-8"))
        meta = json.loads(header["__metadata__"][STATE_METADATA_KEY])
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise UpdateError(
            f"compressor state lacks its {STATE_METADATA_KEY!r} metadata ({exc}); not a state file"
        ) from None
    if (
        not isinstance(meta, dict)
        or meta.get("version") != _STATE_VERSION
        or not isinstance(meta.get("config"), dict)
    ):
        raise UpdateError(f"compressor state has unsupported metadata {meta!r}")
    return meta
