"""Hand-made rounds shared by the gate tests: honest updates around one direction."""

from __future__ import annotations

import torch

from flare_chain.aggregation import ClientUpdate

SHAPES = {"m.lora_A.weight": (4, 32), "m.lora_B.weight": (32, 4)}


def node(i: int) -> str:
    return f"0x{i:040x}"


def global_adapter() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(99)
    return {k: torch.randn(s, generator=gen) * 0.1 for k, s in SHAPES.items()}


def honest_round(n: int = 10, seed: int = 0, spread: float = 0.3) -> list[ClientUpdate]:
    """n updates = one shared direction + independent noise ``spread`` times as large, norms ≈ equal."""
    gen = torch.Generator().manual_seed(seed)
    common = {k: torch.randn(s, generator=gen) for k, s in SHAPES.items()}
    return [
        ClientUpdate(node=node(i), sample_count=10 + i,
                     delta={k: (common[k] + spread * torch.randn(s, generator=gen)) * 1e-2 for k, s in SHAPES.items()})
        for i in range(n)
    ]
