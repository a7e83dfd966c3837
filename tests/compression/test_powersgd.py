"""PowerSGD maths on hand-made matrices with known answers (Vogels et al., 2019)."""

from __future__ import annotations

import math

import pytest
import torch

from flare_chain.compression.powersgd import (
    PowerSGDConfig,
    compress,
    decompress,
    initial_q,
    orthonormalize,
    power_step,
    relative_error,
    worth_compressing,
)
from flare_chain.errors import ConfigError, UpdateError


def _low_rank(rows: int, cols: int, rank: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols if rank == 0 else rank, generator=gen) @ torch.randn(
        rank, cols, generator=gen
    )


def _optimal_rel_error(m: torch.Tensor, rank: int) -> float:
    s = torch.linalg.svdvals(m.to(torch.float64))
    return math.sqrt(float((s[rank:] ** 2).sum() / (s**2).sum()))


def test_rank_q_matrix_is_reconstructed_exactly_in_float32() -> None:
    # Prepare: a rank-2 matrix, rank-2 compression on a float32 wire
    m = _low_rank(64, 48, 2, seed=1)
    config = PowerSGDConfig(rank=2, dtype="float32")
    # Execute
    sent, _ = compress({"w": m}, config)
    out = decompress(sent)
    # Assert
    assert "w" in sent.low_rank
    assert relative_error({"w": m}, out) < 1e-5


@pytest.mark.parametrize(("dtype", "bound"), [("float16", 2e-3), ("bfloat16", 1.5e-2)])
def test_rank_q_matrix_is_exact_up_to_wire_rounding(dtype: str, bound: float) -> None:
    m = _low_rank(64, 48, 3, seed=2)
    sent, _ = compress({"w": m}, PowerSGDConfig(rank=3, dtype=dtype))
    assert sent.low_rank["w"].p.dtype == getattr(torch, dtype)
    assert relative_error({"w": m}, decompress(sent)) < bound


@pytest.mark.parametrize("seed", range(4))
def test_random_matrix_error_lies_between_the_svd_optimum_and_one(seed: int) -> None:
    # Prepare: a full-rank Gaussian matrix; no rank-4 approximation beats the truncated SVD
    gen = torch.Generator().manual_seed(seed)
    m = torch.randn(40, 30, generator=gen)
    # Execute
    sent, _ = compress({"w": m}, PowerSGDConfig(rank=4, dtype="float32"))
    err = relative_error({"w": m}, decompress(sent))
    # Assert: a projection never adds energy, and cannot beat Eckart–Young
    assert _optimal_rel_error(m, 4) - 1e-6 <= err <= 1.0


def test_low_rank_plus_noise_error_is_near_the_noise_level() -> None:
    gen = torch.Generator().manual_seed(7)
    signal = _low_rank(80, 60, 2, seed=7)
    noise = 1e-3 * signal.norm() / math.sqrt(80 * 60) * torch.randn(80, 60, generator=gen)
    m = signal + noise
    sent, _ = compress({"w": m}, PowerSGDConfig(rank=2, dtype="float32"))
    err = relative_error({"w": m}, decompress(sent))
    # one power step without oversampling is not optimal, but stays within a small factor of the noise
    assert err < 10 * _optimal_rel_error(m, 2)


def test_warm_start_makes_the_second_round_better_on_a_fixed_matrix() -> None:
    # Prepare: a matrix with slowly decaying spectrum, so one power step from random Q is far from optimal
    gen = torch.Generator().manual_seed(3)
    u, _ = torch.linalg.qr(torch.randn(64, 64, generator=gen))
    v, _ = torch.linalg.qr(torch.randn(48, 48, generator=gen))
    s = torch.tensor([0.8**i for i in range(48)])
    m = (u[:, :48] * s) @ v.T
    config = PowerSGDConfig(rank=2, dtype="float32")
    # Execute: the same matrix, round after round, each from the previous round's Q
    errors = []
    q = None
    for _ in range(15):
        sent, q = compress({"w": m}, config, warm_q=q)
        errors.append(relative_error({"w": m}, decompress(sent)))
    # Assert: the 2nd round is better than the 1st, and warm starts converge to the SVD optimum
    assert errors[1] < errors[0]
    assert errors[-1] < _optimal_rel_error(m, 2) * 1.01


def test_orthonormalize_gives_orthonormal_columns_with_fixed_signs() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(20, 3, generator=gen)
    q = orthonormalize(a)
    assert torch.allclose(q.T @ q, torch.eye(3), atol=1e-6)
    # sign convention: diag(Qᵀ A) = diag(R) >= 0
    assert bool((torch.diagonal(q.T @ a) >= 0).all())
    assert torch.equal(q, orthonormalize(a.clone()))


def test_orthonormalize_of_zero_matrix_still_gives_orthonormal_columns() -> None:
    q = orthonormalize(torch.zeros(10, 2))
    assert torch.allclose(q.T @ q, torch.eye(2), atol=1e-6)


def test_power_step_reconstruction_is_the_projection_on_p() -> None:
    gen = torch.Generator().manual_seed(5)
    m = torch.randn(12, 9, generator=gen)
    p, q = power_step(m, torch.randn(9, 2, generator=gen))
    assert torch.allclose(p @ q.T, p @ p.T @ m, atol=1e-6)


def test_initial_q_depends_on_key_and_seed_not_on_call_order() -> None:
    a = initial_q("x", 8, 2, seed=0)
    assert torch.equal(a, initial_q("x", 8, 2, seed=0))
    assert not torch.equal(a, initial_q("y", 8, 2, seed=0))
    assert not torch.equal(a, initial_q("x", 8, 2, seed=1))


def test_small_and_one_dimensional_tensors_go_dense() -> None:
    # Prepare: (4+32)*4*2 = 288 >= 128 -> not worth it; a bias is 1-D
    tensors = {"a": torch.ones(4, 32), "bias": torch.ones(7), "big": torch.ones(64, 64)}
    # Execute
    sent, next_q = compress(tensors, PowerSGDConfig(rank=4))
    # Assert
    assert sorted(sent.dense) == ["a", "bias"]
    assert sorted(sent.low_rank) == ["big"]
    assert list(next_q) == ["big"]
    assert not worth_compressing((4, 32), 4, 2.0)
    assert worth_compressing((16, 4096), 4, 2.0)
    assert not worth_compressing((5,), 1, 1.0)


def test_higher_dimensional_tensors_are_viewed_as_matrices() -> None:
    m = _low_rank(16, 60, 1, seed=9).reshape(16, 3, 20)
    sent, _ = compress({"conv": m}, PowerSGDConfig(rank=1, dtype="float32"))
    assert sent.low_rank["conv"].shape == (16, 3, 20)
    assert tuple(sent.low_rank["conv"].q.shape) == (60, 1)
    out = decompress(sent)["conv"]
    assert out.shape == (16, 3, 20)
    assert relative_error({"c": m}, {"c": out}) < 1e-5


def test_nan_input_is_refused_with_the_tensor_named() -> None:
    bad = torch.ones(64, 64)
    bad[3, 3] = float("nan")
    with pytest.raises(UpdateError, match=r"'layers.0.q_proj.lora_B.weight' contains NaN"):
        compress({"layers.0.q_proj.lora_B.weight": bad}, PowerSGDConfig())


def test_float16_overflow_is_refused_with_a_fix() -> None:
    with pytest.raises(UpdateError, match=r"'w' overflows float16.*bfloat16"):
        compress({"w": torch.full((3,), 1e6)}, PowerSGDConfig())


def test_warm_start_of_wrong_shape_is_refused() -> None:
    with pytest.raises(UpdateError, match=r"warm-start Q for 'w' has shape \(64, 3\), expected \(64, 2\)"):
        compress({"w": torch.ones(64, 64)}, PowerSGDConfig(rank=2), warm_q={"w": torch.ones(64, 3)})


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rank": 0}, "rank"),
        ({"min_compression_rate": 0.5}, "min_compression_rate"),
        ({"dtype": "int8"}, "dtype"),
        ({"seed": -1}, "seed"),
        ({"seed": True}, "seed"),  # a TOML `seed = true` is a mistake, not seed 1
        ({"seed": 1.5}, "seed"),
        ({"rank": True}, "rank"),
        ({"min_compression_rate": math.inf}, "min_compression_rate"),
    ],
)
def test_config_validation_names_the_parameter(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        PowerSGDConfig(**kwargs)  # type: ignore[arg-type]


def test_config_accepts_each_bound_at_its_edge() -> None:
    # rank 1, rate 1 (compress whenever the factors are smaller at all) and seed 0 are what the messages allow
    config = PowerSGDConfig(rank=1, min_compression_rate=1.0, seed=0)
    assert (config.rank, config.min_compression_rate, config.seed) == (1, 1.0, 0)


@pytest.mark.parametrize(
    ("rate", "worth"),
    [(3.99, True), (4.0, False), (4.01, False)],
)
def test_worth_compressing_needs_factors_strictly_rate_times_smaller(rate: float, worth: bool) -> None:
    # (8 + 8)·1 = 16 factor entries against 64: exactly 4× smaller, so a rate of 4 is not met strictly.
    assert worth_compressing((8, 8), 1, rate) is worth


def test_worth_compressing_counts_the_rank() -> None:
    # (8 + 8)·2 = 32 entries against 64: 2× smaller, not 3×; rank 1 would be 4× smaller.
    assert not worth_compressing((8, 8), 2, 3.0)
    assert worth_compressing((8, 8), 1, 3.0)


def test_relative_error_of_an_all_zero_update() -> None:
    # The node logs this figure each round: a zero update sent exactly is error 0, anything sent for it is infinite
    zero = {"a": torch.zeros(3, 4), "b": torch.zeros(2)}
    assert relative_error(zero, {k: v.clone() for k, v in zero.items()}) == 0.0
    assert relative_error(zero, {"a": torch.zeros(3, 4), "b": torch.tensor([0.0, 1e-3])}) == math.inf
    with pytest.raises(UpdateError, match="different tensor names"):
        relative_error(zero, {"a": torch.zeros(3, 4)})
