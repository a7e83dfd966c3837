"""How updates and global adapters are laid out on IPFS.

An **update bundle** is a UnixFS folder ``{delta.safetensors, manifest.json}``;
its CID goes on-chain with ``sha256(manifest.json)`` as the manifest hash, so
anyone holding the CID can fetch the manifest and check it against the chain.
A **compressed** update bundle holds ``delta.powersgd.safetensors`` (PowerSGD
factors in fp16/bf16, see :mod:`flare_chain.compression.codec`) instead of
``delta.safetensors``; its manifest says so with the ``powersgd_*`` metrics
(rank, reconstruction error, byte counts) and its ``dtype`` is the wire dtype.
The reader picks the file from the manifest — which is checked against the
chain first — and decompresses exactly what was sent. Uncompressed bundles
read as before.

The **probe corpus** (:mod:`flare_chain.lora.probe_corpus`) is one JSON
file added as CIDv1 with raw leaves, as ``ipfs add --cid-version=1`` adds it;
the round-0 global manifest names it and every later one carries it on.

A **global bundle** is a PEFT adapter folder (``adapter_config.json``,
``adapter_model.safetensors``) plus ``flare_manifest.json``, loadable as is
with ``PeftModel.from_pretrained`` after ``ipfs get``. Its bytes are a pure
function of the adapter tensors, so committee members who recompute the
aggregate get the same CID as the leader. A global adapter built by the
``exact_lora`` aggregator also holds ``exact_lora_residual.safetensors``: per
LoRA module, the factors ``lora_B [out, k]`` and ``lora_A [k, in]`` of the part
of the exact mean that rank r could not hold
(:mod:`flare_chain.aggregation.exact_lora`). It sits next to the PEFT files,
which PEFT ignores, so the adapter stays rank r and loadable, while the
folder's CID binds the residual: the next leader, every member and the
auditor read the same one. A bundle without the file carries an empty
residual (round 0, or an adapter built by another aggregator).

Every read goes through the content store, which verifies each block against
its CID.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load

from flare_chain.aggregation.exact_lora import check_residual
from flare_chain.chain.records import Proposal
from flare_chain.compression import PowerSGDCompressor, decompress
from flare_chain.compression import decode as decode_compressed
from flare_chain.errors import IntegrityError, StoreError, UpdateError
from flare_chain.ipfs.content import ContentReader, PinningStore
from flare_chain.ipfs.unixfs import cid_of_bytes
from flare_chain.lora.datasets import NodeData
from flare_chain.lora.files import Manifest, decode_delta, encode_delta
from flare_chain.lora.params import LoraTrainParams
from flare_chain.lora.peft_files import (
    ADAPTER_CONFIG_FILE,
    ADAPTER_WEIGHTS_FILE,
    adapter_safetensors_bytes,
    load_peft_adapter,
    save_peft_adapter,
)
from flare_chain.lora.probe_corpus import decode_probe_corpus, encode_probe_corpus

__all__ = [
    "CID_VERSION",
    "COMPRESSED_DELTA_FILE",
    "DELTA_FILE",
    "EXACT_RESIDUAL_FILE",
    "GLOBAL_MANIFEST_FILE",
    "MANIFEST_FILE",
    "GlobalAdapter",
    "encode_update_bundle",
    "fetch_global_bundle",
    "fetch_probe_corpus",
    "fetch_update_bundle",
    "is_compressed",
    "manifest_hash",
    "pin_global_bundle",
    "pin_probe_corpus",
    "pin_update_bundle",
    "probe_corpus_cid",
    "with_accepted_list",
]

DELTA_FILE = "delta.safetensors"
COMPRESSED_DELTA_FILE = "delta.powersgd.safetensors"
COMPRESSION_RANK_METRIC = "powersgd_rank"
MANIFEST_FILE = "manifest.json"
GLOBAL_MANIFEST_FILE = "flare_manifest.json"
EXACT_RESIDUAL_FILE = "exact_lora_residual.safetensors"
CID_VERSION = 1  # CIDv1, raw leaves: what `ipfs add --cid-version=1 -r` prints


def manifest_hash(manifest_bytes: bytes) -> bytes:
    """The 32-byte value submitted on-chain for a manifest: its sha256."""
    return hashlib.sha256(manifest_bytes).digest()


def is_compressed(manifest: Manifest) -> bool:
    """True when the bundle this manifest describes carries PowerSGD factors."""
    return COMPRESSION_RANK_METRIC in manifest.metrics


def pin_update_bundle(
    store: PinningStore,
    delta: Mapping[str, torch.Tensor],
    manifest: Manifest,
    *,
    compressor: PowerSGDCompressor | None = None,
) -> tuple[str, bytes]:
    """Encode and pin one update; returns ``(folder CID, manifest hash)``.

    With ``compressor``, the delta (plus the compressor's carried error) is
    PowerSGD-compressed and the compressor's state advances; the pinned
    manifest is ``manifest`` with the wire dtype and the ``powersgd_*``
    metrics added (read them back with :func:`fetch_update_bundle`).
    """
    files, _manifest = encode_update_bundle(delta, manifest, compressor=compressor)
    with tempfile.TemporaryDirectory(prefix="flare-update-") as tmp:
        folder = Path(tmp)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        cid = store.add_directory(folder, cid_version=CID_VERSION, pin=True)
    return cid, manifest_hash(files[MANIFEST_FILE])


def encode_update_bundle(
    delta: Mapping[str, torch.Tensor],
    manifest: Manifest,
    *,
    compressor: PowerSGDCompressor | None = None,
) -> tuple[dict[str, bytes], Manifest]:
    """The files of an update bundle (name → bytes) and the manifest as written, without pinning.

    For callers that write the folder themselves and pin later (the daemon);
    with ``compressor`` its state advances, as in :func:`pin_update_bundle`.
    """
    if compressor is None:
        delta_bytes, manifest_bytes = encode_delta(dict(delta), manifest)
        return {DELTA_FILE: delta_bytes, MANIFEST_FILE: manifest_bytes}, Manifest.from_bytes(manifest_bytes)
    if is_compressed(manifest):
        raise UpdateError("manifest already carries powersgd_* metrics; pass the uncompressed manifest")
    data, info = compressor.encode(delta)
    manifest = manifest.model_copy(update={
        "dtype": info.dtype, "metrics": {**manifest.metrics, **info.as_metrics()}})
    return {COMPRESSED_DELTA_FILE: data, MANIFEST_FILE: manifest.to_bytes()}, manifest


def _decode_compressed(
    data: bytes, manifest: Manifest, expected_shapes: dict[str, tuple[int, ...]]
) -> dict[str, torch.Tensor]:
    update = decode_compressed(data, expected_shapes=expected_shapes)
    if update.dtype != manifest.dtype:
        raise UpdateError(f"compressed update is {update.dtype} on the wire, its manifest says {manifest.dtype}")
    rank = manifest.metrics[COMPRESSION_RANK_METRIC]
    for key, factors in sorted(update.low_rank.items()):
        if factors.rank != rank:
            raise UpdateError(f"tensor {key!r} is sent at rank {factors.rank}, the manifest says rank {rank:g}")
    shapes = {k: list(v) for k, v in update.shapes().items()}
    if shapes != manifest.shapes:
        raise UpdateError("compressed update's tensor names or shapes differ from its manifest's")
    return decompress(update)


def fetch_update_bundle(
    store: ContentReader, cid: str, expected_manifest_hash: bytes, *, expected_shapes: dict[str, tuple[int, ...]]
) -> tuple[dict[str, torch.Tensor], Manifest]:
    """Fetch, verify and decode an update; IntegrityError if the manifest is not the one on-chain.

    A compressed bundle is decompressed (float32, ``P Qᵀ`` exactly as the
    sender's error feedback accounted for it); UpdateError names what is off.
    """
    manifest_bytes = store.cat(f"{cid}/{MANIFEST_FILE}")
    got = manifest_hash(manifest_bytes)
    if got != bytes(expected_manifest_hash):
        raise IntegrityError(
            f"manifest of update {cid} hashes to {got.hex()}, but the chain records "
            f"{bytes(expected_manifest_hash).hex()}; refusing the update"
        )
    manifest = Manifest.from_bytes(manifest_bytes)
    if is_compressed(manifest):
        data = store.cat(f"{cid}/{COMPRESSED_DELTA_FILE}")
        return _decode_compressed(data, manifest, expected_shapes), manifest
    tensors, parsed = decode_delta(store.cat(f"{cid}/{DELTA_FILE}"), manifest_bytes, expected_shapes=expected_shapes)
    assert parsed is not None  # decode_delta returns the manifest when given its bytes
    return tensors, parsed


@dataclass(frozen=True)
class GlobalAdapter:
    """A global adapter as fetched from IPFS: its CID, tensors, manifest and carried exact-LoRA residual."""

    cid: str
    tensors: dict[str, torch.Tensor]
    manifest: Manifest
    residual: dict[str, torch.Tensor] = field(default_factory=dict)
    """The ``exact_lora`` residual pinned in the bundle (:data:`EXACT_RESIDUAL_FILE`); empty when it has none."""

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self.tensors.items()}


def pin_global_bundle(
    store: PinningStore,
    adapter: Mapping[str, torch.Tensor],
    manifest: Manifest,
    base_model_dir: Path,
    params: LoraTrainParams,
    *,
    residual: Mapping[str, torch.Tensor] | None = None,
    only_hash: bool = False,
) -> str:
    """Write the PEFT adapter folder plus manifest and add it; ``only_hash`` computes the CID only.

    ``residual`` (the ``exact_lora`` aggregator's; it may hold zero-rank
    factors) is written as :data:`EXACT_RESIDUAL_FILE`; None writes no file.
    """
    with tempfile.TemporaryDirectory(prefix="flare-global-") as tmp:
        folder = Path(tmp) / "adapter"
        save_peft_adapter(folder, dict(adapter), base_model_dir, params, base_id=manifest.base_model_id)
        (folder / GLOBAL_MANIFEST_FILE).write_bytes(manifest.to_bytes())
        if residual is not None:
            check_residual(adapter, residual)
            (folder / EXACT_RESIDUAL_FILE).write_bytes(adapter_safetensors_bytes(dict(residual)))
        return store.add_directory(folder, cid_version=CID_VERSION, pin=not only_hash, only_hash=only_hash)


def fetch_global_bundle(store: ContentReader, cid: str, out_dir: Path | None = None) -> GlobalAdapter:
    """Fetch a global adapter by CID (every block verified) into ``out_dir`` (a temp dir if None)."""
    with tempfile.TemporaryDirectory(prefix="flare-fetch-") as tmp:
        folder = Path(out_dir) if out_dir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        names = [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, GLOBAL_MANIFEST_FILE]
        if any(entry.name == EXACT_RESIDUAL_FILE for entry in store.ls(cid)):  # the listing is bound by the CID
            names.append(EXACT_RESIDUAL_FILE)
        for name in names:
            (folder / name).write_bytes(store.cat(f"{cid}/{name}"))
        tensors, _config = load_peft_adapter(folder)
        manifest = Manifest.from_bytes((folder / GLOBAL_MANIFEST_FILE).read_bytes())
        residual = _read_residual(folder / EXACT_RESIDUAL_FILE, tensors, cid) if EXACT_RESIDUAL_FILE in names else {}
    if manifest.kind != "adapter":
        raise IntegrityError(f"object {cid} is a {manifest.kind!r} bundle, not a global adapter")
    return GlobalAdapter(cid=cid, tensors={k: tensors[k] for k in sorted(tensors)}, manifest=manifest,
                         residual=residual)


def _read_residual(path: Path, adapter: Mapping[str, torch.Tensor], cid: str) -> dict[str, torch.Tensor]:
    """The residual file of global adapter ``cid``, checked against its adapter; IntegrityError if malformed."""
    try:
        raw = st_load(path.read_bytes())
        residual = {k: raw[k] for k in sorted(raw)}
        check_residual(adapter, residual)
    except (SafetensorError, ValueError, RuntimeError, UpdateError) as exc:
        raise IntegrityError(
            f"global adapter {cid} has a malformed {EXACT_RESIDUAL_FILE} ({exc}); flare-chain's exact_lora "
            "aggregator did not write it: a member votes against a proposal carrying it, and a committed one "
            "cannot be continued (report the round; the owner redeploys from the last sound adapter)") from None
    return residual


def with_accepted_list(store: ContentReader, proposal: Proposal) -> Proposal:
    """``proposal`` with its accepted list, read from its aggregate's manifest and checked against the chain.

    Only the manifest is fetched (every block verified against the CID). Raises
    IntegrityError when the manifest has no list or a list whose order, length
    or root differs from what the proposal put on chain (a bad proposal: vote
    against it), StoreError when the bundle cannot be fetched.
    """
    from dataclasses import replace

    from flare_chain.ipfs import cid_from_bytes
    from flare_chain.protocol.accepted import check_accepted_list

    cid = cid_from_bytes(proposal.global_cid)
    try:
        manifest = Manifest.from_bytes(store.cat(f"{cid}/{GLOBAL_MANIFEST_FILE}"))
    except UpdateError as exc:
        raise IntegrityError(f"round {proposal.round_id}'s proposed adapter {cid} has a malformed manifest: "
                             f"{exc}") from None
    if manifest.accepted is None:
        raise IntegrityError(f"round {proposal.round_id}'s proposed adapter {cid} publishes no accepted list in "
                             "its manifest; the proposal cannot be checked")
    try:
        nodes = check_accepted_list(manifest.accepted, proposal.accepted_root, proposal.accepted_count)
    except IntegrityError as exc:
        raise IntegrityError(f"round {proposal.round_id}'s proposed adapter {cid}: {exc}") from None
    return replace(proposal, accepted=nodes)


def pin_probe_corpus(store: PinningStore, corpus: NodeData | Sequence[str]) -> str:
    """Pin the federation's public probe corpus (texts or records); returns its CID (what Kubo's
    ``ipfs add`` would print)."""
    return store.add_bytes(encode_probe_corpus(corpus), cid_version=CID_VERSION, pin=True)


def probe_corpus_cid(corpus: NodeData | Sequence[str]) -> str:
    """The CID :func:`pin_probe_corpus` (or Kubo's ``ipfs add``) gives ``corpus``, computed without a store.

    An owner names it in the federation spec before pinning the corpus (the
    devnet does), and the round-0 pin is checked against it.
    """
    return cid_of_bytes(encode_probe_corpus(corpus), cid_version=CID_VERSION)


def fetch_probe_corpus(store: ContentReader, cid: str) -> NodeData:
    """The probe corpus named by a global manifest, every block verified against ``cid``.

    StoreError when it cannot be fetched: the committee's gates need it, so a
    member without it must not vote on a different accepted set.
    """
    try:
        data = store.cat(cid)
    except StoreError as exc:
        raise StoreError(
            f"the probe corpus {cid} named by the global adapter cannot be fetched ({exc}); every committee "
            f"member and auditor needs it: pin it on your IPFS endpoint (`ipfs pin add {cid}`)") from exc
    return decode_probe_corpus(data, cid=cid)
