"""The base model by CID: check a model folder, publish it to IPFS, fetch and cache it, pick what to load.

``publish_model(folder, store_or_kubo)`` pins a safetensors Hugging Face
folder and returns its CID (what ``ipfs add -r`` prints);
``fetch_model(cid, fetch, cache_root)`` brings it back, verified block by
block and as a whole, into ``cache_root/<CID>``; ``resolve_base_model``
decides between a node's local folder and the federation's CID. The CID is
the model's identity in manifests and in the policy gate. Nothing here
imports torch.
"""

from flare_chain.basemodel.fetch import cached_model_path, fetch_model
from flare_chain.basemodel.folder import ModelFolder, check_model_folder, cid_version_of, model_cid
from flare_chain.basemodel.publish import publish_model
from flare_chain.basemodel.resolve import ResolvedModel, publish_and_load, resolve_base_model

__all__ = [
    "ModelFolder",
    "ResolvedModel",
    "cached_model_path",
    "check_model_folder",
    "cid_version_of",
    "fetch_model",
    "model_cid",
    "publish_and_load",
    "publish_model",
    "resolve_base_model",
]
