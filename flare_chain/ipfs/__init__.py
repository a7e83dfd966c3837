"""IPFS for flare-chain: CIDs and an embedded content store that agrees with Kubo.

``cid_of_bytes(b"hello world")`` is what ``ipfs add --only-hash`` prints;
``ContentStore(path)`` keeps blocks on disk, pins them and verifies every read.
Modules: ``multiformats`` (varint, multihash, CID text/binary), ``dagpb``
(dag-pb and UnixFS protobuf), ``unixfs`` (pure DAG building), ``importer``
(files and folders from disk), ``dag`` (walking DAGs), ``store`` (the repo),
``fetch`` (verifying blocks from untrusted endpoints), ``kubo_client`` (the Kubo
RPC client, ``KuboClient``), ``multipart`` (its upload bodies), ``rpc_server``
(the store served over the same RPC, ``serve_in_thread``).
Nothing here imports torch.
"""

from flare_chain.ipfs.dag import DirEntry
from flare_chain.ipfs.fetch import VerifiedBlocks, verify_block
from flare_chain.ipfs.importer import cid_of_directory, cid_of_file
from flare_chain.ipfs.kubo_client import AddedEntry, KuboClient
from flare_chain.ipfs.multiformats import (
    CODEC_DAG_PB,
    CODEC_RAW,
    Cid,
    cid_from_bytes,
    cid_to_bytes,
    parse_cid,
)
from flare_chain.ipfs.rpc_server import KuboRpcServer, ServerHandle, serve_in_thread
from flare_chain.ipfs.store import ContentStore, GcResult
from flare_chain.ipfs.unixfs import ImportOptions, cid_of_bytes

__all__ = [
    "CODEC_DAG_PB",
    "CODEC_RAW",
    "AddedEntry",
    "Cid",
    "ContentStore",
    "DirEntry",
    "GcResult",
    "ImportOptions",
    "KuboClient",
    "KuboRpcServer",
    "ServerHandle",
    "VerifiedBlocks",
    "cid_from_bytes",
    "cid_of_bytes",
    "cid_of_directory",
    "cid_of_file",
    "cid_to_bytes",
    "parse_cid",
    "serve_in_thread",
    "verify_block",
]
