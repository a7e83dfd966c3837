"""LoRA training, adapter and delta files, and the offline reference model.

A node's local step: ``train_lora(model_dir, load_node_data(path), LoraTrainParams())``
(or a list of texts such as ``domain_texts(name)``)
→ ``TrainResult`` (adapter, delta, sample_count, metrics); ``encode_delta`` /
``decode_delta`` turn a delta into bytes for IPFS and back, with every check a
receiver needs; ``save_peft_adapter`` writes the global adapter as a
byte-deterministic PEFT directory. ``ensure_reference_model`` builds (once)
the small Llama the demo fine-tunes, with no downloads.

Importing this package imports torch; it does not import transformers or peft
until a model is loaded.
"""

from __future__ import annotations

from flare_chain.lora.adapter import adapter_shapes, adapter_tensors, check_adapter, initial_adapter
from flare_chain.lora.base import (
    base_model_id,
    check_params_for_model,
    linear_module_names,
    load_base_model,
    model_fingerprint,
)
from flare_chain.lora.data import WindowSplit, split_windows, texts_to_windows, windows_for_training
from flare_chain.lora.datasets import NodeData, load_node_data
from flare_chain.lora.domains import DOMAINS, available_domains, domain_texts, pretraining_texts
from flare_chain.lora.evaluate import evaluate_loss, held_out_examples, held_out_windows
from flare_chain.lora.files import Manifest, canonical_json, decode_delta, encode_delta, tensor_shapes
from flare_chain.lora.params import DEFAULT_TARGET_MODULES, LoraTrainParams
from flare_chain.lora.peft_files import load_peft_adapter, save_peft_adapter
from flare_chain.lora.reference import ReferenceSpec, default_cache_dir, ensure_reference_model
from flare_chain.lora.targets import detect_target_modules, resolve_params
from flare_chain.lora.tokenizer import BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE, decode, encode, load_tokenizer
from flare_chain.lora.train import TrainResult, train_lora

__all__ = [
    "BOS_ID",
    "DEFAULT_TARGET_MODULES",
    "DOMAINS",
    "EOS_ID",
    "PAD_ID",
    "VOCAB_SIZE",
    "LoraTrainParams",
    "Manifest",
    "NodeData",
    "ReferenceSpec",
    "TrainResult",
    "WindowSplit",
    "adapter_shapes",
    "adapter_tensors",
    "available_domains",
    "base_model_id",
    "canonical_json",
    "check_adapter",
    "check_params_for_model",
    "decode",
    "decode_delta",
    "default_cache_dir",
    "detect_target_modules",
    "domain_texts",
    "encode",
    "encode_delta",
    "ensure_reference_model",
    "evaluate_loss",
    "held_out_examples",
    "held_out_windows",
    "initial_adapter",
    "linear_module_names",
    "load_base_model",
    "load_node_data",
    "load_peft_adapter",
    "load_tokenizer",
    "model_fingerprint",
    "pretraining_texts",
    "resolve_params",
    "save_peft_adapter",
    "split_windows",
    "tensor_shapes",
    "texts_to_windows",
    "train_lora",
    "windows_for_training",
]
