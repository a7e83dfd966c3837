"""The offline reference model: a small Llama pretrained by the project on stdlib source.

No weights are downloaded, ever. Instead :func:`ensure_reference_model` builds
a ~0.8M-parameter Llama-architecture causal LM (byte vocabulary) and pretrains
it briefly on the standard library's ``.py`` files outside every node domain,
so the model knows Python's shape but not the domains the nodes fine-tune on.

The result is cached under a key derived from the architecture, the
pretraining parameters and the Python version (which fixes the pretraining
text), and published atomically: it is built in a temporary directory and
renamed into place, under a file lock, so a crash or two concurrent builders
never leave a half-written model. The directory is an ordinary Hugging Face
model (``config.json`` + ``model.safetensors`` + the byte tokenizer's
``tokenizer.json`` / ``tokenizer_config.json``) plus ``flare_reference.json``
describing how it was made. A cached folder from before the tokenizer files
existed gets them added in place (the weights, and so the fingerprint, stay).

Note: weights depend on the CPU's float arithmetic, and ``flare_reference.json``
records the build, so two machines building the "same" reference get
different folders. A federation therefore publishes one build by CID
(:mod:`flare_chain.basemodel`) and every node loads that.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flare_chain.errors import ConfigError, TrainingError
from flare_chain.lora._runtime import seeded
from flare_chain.lora.base import REFERENCE_INFO_FILE
from flare_chain.lora.data import token_tensor
from flare_chain.lora.domains import pretraining_texts
from flare_chain.lora.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    VOCAB_SIZE,
    byte_tokenizer,
    has_tokenizer_files,
    save_byte_tokenizer,
)
from flare_chain.progress import progress

__all__ = ["ReferenceSpec", "default_cache_dir", "ensure_reference_model", "reference_key"]

_log = logging.getLogger(__name__)
_FORMAT = 1  # bump when the build recipe changes in a way the spec does not capture
_GRAD_CLIP = 1.0


class ReferenceSpec(BaseModel):
    """Architecture and pretraining recipe of a reference model (every field enters the cache key).

    Defaults: hidden 128, 4 layers × 4 heads, MLP 344, tied embeddings; 300
    AdamW steps of 32 × 128 tokens with warmup and cosine decay — about 1.5
    minutes on 2 CPU cores, ending near 1.3 nats/token (uniform over bytes: 5.5).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden_size: int = Field(default=128, ge=8)
    num_layers: int = Field(default=4, ge=1)
    num_heads: int = Field(default=4, ge=1)
    intermediate_size: int = Field(default=344, ge=1)
    max_positions: int = Field(default=512, ge=8)
    pretrain_steps: int = Field(default=300, ge=0)
    batch_size: int = Field(default=32, ge=1)
    seq_len: int = Field(default=128, ge=8)
    learning_rate: float = Field(default=3e-3, gt=0, le=1)
    warmup_steps: int = Field(default=30, ge=0)
    weight_decay: float = Field(default=0.1, ge=0)
    seed: int = Field(default=0, ge=0)
    num_threads: int = Field(default=2, ge=1)

    def llama_config(self) -> Any:
        """The transformers ``LlamaConfig`` of this spec."""
        from transformers import LlamaConfig

        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"reference model hidden_size={self.hidden_size} must be divisible by num_heads={self.num_heads}"
            )
        if self.seq_len > self.max_positions:
            raise ConfigError(
                f"reference pretraining seq_len={self.seq_len} exceeds max_positions={self.max_positions}"
            )
        return LlamaConfig(
            vocab_size=VOCAB_SIZE,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_heads,
            max_position_embeddings=self.max_positions,
            tie_word_embeddings=True,
            bos_token_id=BOS_ID,
            eos_token_id=EOS_ID,
            pad_token_id=PAD_ID,
        )


def default_cache_dir() -> Path:
    """``$FLARE_CACHE_DIR`` if set, else ``~/.cache/flare-chain``."""
    env = os.environ.get("FLARE_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "flare-chain"


def reference_key(spec: ReferenceSpec) -> str:
    """16 hex digits identifying ``spec`` built by this recipe on this Python version."""
    ident = {
        "format": _FORMAT,
        "spec": spec.model_dump(mode="json"),
        "python": ".".join(map(str, sys.version_info[:3])),
        "vocab_size": VOCAB_SIZE,
    }
    blob = json.dumps(ident, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _is_complete(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / REFERENCE_INFO_FILE).is_file()


@contextlib.contextmanager
def _build_lock(lock_path: Path) -> Iterator[None]:
    """Exclusive lock so concurrent builders of one key wait instead of all building."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX: the atomic rename alone keeps it safe
        yield
        return
    with lock_path.open("a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _lr_at(step: int, spec: ReferenceSpec) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    if spec.warmup_steps and step < spec.warmup_steps:
        return spec.learning_rate * (step + 1) / spec.warmup_steps
    span = max(spec.pretrain_steps - spec.warmup_steps, 1)
    frac = min((step - spec.warmup_steps) / span, 1.0)
    return spec.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def _pretrain(
    spec: ReferenceSpec, stream: torch.Tensor, *, show_progress: bool
) -> tuple[Any, dict[str, float]]:
    """Build the model and pretrain it on random windows of ``stream``; pure compute, no files."""
    from transformers import LlamaForCausalLM

    config = spec.llama_config()
    n_tokens = int(stream.shape[0])
    if n_tokens <= spec.seq_len + 1:
        raise TrainingError(
            f"pretraining text has only {n_tokens} tokens; need more than seq_len={spec.seq_len}"
        )
    with seeded(spec.seed, spec.num_threads):
        model = LlamaForCausalLM(config)
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=spec.learning_rate,
            betas=(0.9, 0.95),
        )
        sampler = torch.Generator().manual_seed(spec.seed)
        offsets_in = torch.arange(spec.seq_len)
        losses: list[float] = []
        model.train()
        with progress(
            "pretrain reference model", total=spec.pretrain_steps, unit="step", enabled=show_progress
        ) as bar:
            for step in range(spec.pretrain_steps):
                for group in optimizer.param_groups:
                    group["lr"] = _lr_at(step, spec)
                starts = torch.randint(0, n_tokens - spec.seq_len, (spec.batch_size,), generator=sampler)
                batch = stream[starts[:, None] + offsets_in[None, :]]
                loss = model(input_ids=batch, labels=batch).loss
                if not torch.isfinite(loss):
                    raise TrainingError(f"reference pretraining diverged at step {step}; lower learning_rate")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), _GRAD_CLIP)
                optimizer.step()
                losses.append(loss.item())
                bar.update(1, loss=f"{losses[-1]:.3f}")
        model.eval()
    tail = losses[-max(1, len(losses) // 10) :] if losses else [math.log(VOCAB_SIZE)]
    return model, {
        "final_loss": sum(tail) / len(tail),
        "tokens_seen": float(len(losses) * spec.batch_size * spec.seq_len),
    }


def _build(final: Path, spec: ReferenceSpec, key: str, *, show_progress: bool) -> None:
    """Build into a temporary sibling of ``final`` and rename it into place."""
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))
    try:
        began = time.perf_counter()
        stream = token_tensor(pretraining_texts(), byte_tokenizer())
        model, stats = _pretrain(spec, stream, show_progress=show_progress)
        from flare_chain.lora.base import _quiet_transformers

        with _quiet_transformers():
            model.save_pretrained(str(tmp))
        save_byte_tokenizer(tmp)
        if not (tmp / "model.safetensors").is_file():
            raise TrainingError(f"saving the reference model to {tmp} did not produce model.safetensors")
        import transformers

        info = {
            "model_id": f"flare-reference-{key}",
            "key": key,
            "spec": spec.model_dump(mode="json"),
            "format": _FORMAT,
            "python": ".".join(map(str, sys.version_info[:3])),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "pretraining_text": "Python standard library .py sources outside flare_chain.lora.domains.DOMAINS "
            "and test directories",
            "pretraining_tokens": int(stream.shape[0]),
            "final_loss": stats["final_loss"],
            "tokens_seen": stats["tokens_seen"],
            "build_seconds": time.perf_counter() - began,
        }
        (tmp / REFERENCE_INFO_FILE).write_text(
            json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        os.rename(tmp, final)
        _log.info(
            "reference model %s built in %.0f s (final loss %.3f)",
            final,
            info["build_seconds"],
            stats["final_loss"],
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def ensure_reference_model(
    cache_dir: Path | None = None,
    *,
    pretrain_steps: int = 300,
    batch_size: int = 32,
    seq_len: int = 128,
    learning_rate: float = 3e-3,
    seed: int = 0,
    spec: ReferenceSpec | None = None,
    show_progress: bool = True,
) -> Path:
    """Path of the cached reference model for these settings, building it first if needed.

    ``spec`` (architecture and recipe) overrides the keyword shortcuts when
    given. Safe to call from several processes at once: one builds, the
    others wait and reuse its result.
    """
    if spec is None:
        try:
            spec = ReferenceSpec(
                pretrain_steps=pretrain_steps,
                batch_size=batch_size,
                seq_len=seq_len,
                learning_rate=learning_rate,
                seed=seed,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(
                f"reference model parameter {first['loc'][0]}={first.get('input')!r}: {first['msg']}"
            ) from None
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    models = root / "models"
    try:
        models.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the model cache {models}: {exc}; set FLARE_CACHE_DIR to a writable directory"
        ) from exc
    key = reference_key(spec)
    final = models / f"reference-{key}"
    if _is_complete(final) and has_tokenizer_files(final):
        return final
    with _build_lock(models / f".reference-{key}.lock"):
        if _is_complete(final):  # another process finished while we waited, or a folder from before tokenizers
            if not has_tokenizer_files(final):
                _log.info("adding the byte tokenizer to the cached reference model %s", final)
                save_byte_tokenizer(final)
            return final
        for stale in models.glob(f".{final.name}.tmp-*"):  # left by a builder that was killed
            shutil.rmtree(stale, ignore_errors=True)
        if final.exists():  # not ours to trust: incomplete or foreign
            shutil.rmtree(final)
        _log.info("building reference model %s (%d pretraining steps)", final, spec.pretrain_steps)
        _build(final, spec, key, show_progress=show_progress)
    return final
