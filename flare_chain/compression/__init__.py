"""Update compression: PowerSGD low-rank factors with error feedback, and their wire format.

* :mod:`~flare_chain.compression.powersgd` — the pure maths of one compression step;
* :mod:`~flare_chain.compression.codec` — safetensors bytes in and out, checked;
* :mod:`~flare_chain.compression.error_feedback` — the node's state between rounds.
"""

from flare_chain.compression.codec import decode, encode
from flare_chain.compression.error_feedback import (
    CompressionInfo,
    FeedbackStep,
    PowerSGDCompressor,
    feedback_step,
)
from flare_chain.compression.powersgd import (
    CompressedUpdate,
    LowRankFactors,
    PowerSGDConfig,
    compress,
    decompress,
    relative_error,
)

__all__ = [
    "CompressedUpdate",
    "CompressionInfo",
    "FeedbackStep",
    "LowRankFactors",
    "PowerSGDCompressor",
    "PowerSGDConfig",
    "compress",
    "decode",
    "decompress",
    "encode",
    "feedback_step",
    "relative_error",
]
