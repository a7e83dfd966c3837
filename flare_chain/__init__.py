"""flare-chain: blockchain-coordinated federated learning of LoRA adapters.

The root re-exports only the error hierarchy operators script against; each
concern lives in its own sub-package (``chain``, ``ipfs``, ``lora``,
``aggregation``, ``committee``, ``node``). Importing the root is cheap: it
does not import torch, web3 or the compiler.
"""

from flare_chain.errors import (
    ChainError,
    ConfigError,
    FlareError,
    GateRejection,
    IntegrityError,
    StoreError,
    TrainingError,
    UpdateError,
)

__version__ = "0.1.0"

__all__ = [
    "ChainError",
    "ConfigError",
    "FlareError",
    "GateRejection",
    "IntegrityError",
    "StoreError",
    "TrainingError",
    "UpdateError",
    "__version__",
]
