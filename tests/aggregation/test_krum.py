"""Krum and Multi-Krum (Blanchard et al., 2017) on hand-made inputs with known answers.

The honest values 1.0, 1.02, 0.97, 1.1, 0.9 with f = 1 use n − f − 2 = 3 neighbours
(the outlier at 100 is never among the 3 nearest of an honest update). Squared distances by hand:

    1.00: .0004 + .0009 + .0100 = .0113
    1.02: .0004 + .0025 + .0064 = .0093
    0.97: .0009 + .0025 + .0049 = .0083   <- best
    1.10: .0064 + .0100 + .0169 = .0333
    0.90: .0049 + .0100 + .0144 = .0293
"""

from __future__ import annotations

import pytest
import torch

from flare_chain.aggregation import ClientUpdate, Krum, MultiKrum
from flare_chain.aggregation.krum import krum_scores, pairwise_sq_distances
from flare_chain.errors import ConfigError

HONEST = {"0x01": 1.0, "0x02": 1.02, "0x03": 0.97, "0x04": 1.1, "0x05": 0.9}


def _updates(values: dict[str, float], counts: dict[str, int] | None = None) -> list[ClientUpdate]:
    counts = counts or {}
    return [
        ClientUpdate(
            node=node,
            delta={"w": torch.tensor([v], dtype=torch.float64), "b": torch.tensor([[v, 0.0]])},
            sample_count=counts.get(node, 1),
        )
        for node, v in values.items()
    ]


def test_scores_match_the_hand_computation() -> None:
    # Prepare: only "w" carries the value here, so distances are exactly the squared differences
    updates = [
        ClientUpdate(node=n, delta={"w": torch.tensor([v], dtype=torch.float64)}, sample_count=1)
        for n, v in HONEST.items()
    ]
    # Execute
    scores = krum_scores(pairwise_sq_distances(updates), num_byzantine=0)  # n - 0 - 2 = 3 neighbours
    # Assert
    assert scores == pytest.approx([0.0113, 0.0093, 0.0083, 0.0333, 0.0293], abs=1e-12)


def test_krum_picks_the_honest_cluster_over_an_outlier_times_100() -> None:
    # Prepare
    updates = _updates({**HONEST, "0xff": 100.0})
    # Execute
    out = Krum(num_byzantine=1).aggregate(updates)
    # Assert: the most central honest update, 0.97, as is
    assert torch.equal(out["w"], torch.tensor([0.97]))
    assert Krum(num_byzantine=1).selected(updates) == ["0x03"]


def test_multikrum_averages_the_m_best() -> None:
    updates = _updates({**HONEST, "0xff": 100.0})
    out = MultiKrum(num_byzantine=1, num_selected=3).aggregate(updates)
    assert out["w"].item() == pytest.approx((0.97 + 1.02 + 1.0) / 3, abs=1e-7)
    assert MultiKrum(num_byzantine=1, num_selected=3).selected(updates) == ["0x03", "0x02", "0x01"]


def test_multikrum_mean_is_weighted_by_sample_count_unless_told_not_to() -> None:
    updates = _updates({**HONEST, "0xff": 100.0}, counts={"0x03": 3})
    weighted = MultiKrum(num_byzantine=1, num_selected=2).aggregate(updates)["w"].item()
    plain = MultiKrum(num_byzantine=1, num_selected=2, weighted=False).aggregate(updates)["w"].item()
    assert weighted == pytest.approx((3 * 0.97 + 1.02) / 4, abs=1e-7)
    assert plain == pytest.approx((0.97 + 1.02) / 2, abs=1e-7)


def test_multikrum_default_keeps_n_minus_f_and_drops_the_outlier() -> None:
    updates = _updates({**HONEST, "0xff": 100.0})
    assert MultiKrum(num_byzantine=1).selected(updates) == ["0x03", "0x02", "0x01", "0x05", "0x04"]
    assert MultiKrum(num_byzantine=1).aggregate(updates)["w"].item() == pytest.approx(
        sum(HONEST.values()) / 5
    )


def test_sample_counts_do_not_change_the_selection() -> None:
    updates = _updates({**HONEST, "0xff": 100.0}, counts={"0xff": 1_000_000})
    assert Krum(num_byzantine=1).selected(updates) == ["0x03"]


def test_ties_go_to_the_first_node_in_canonical_order() -> None:
    same = {"0xCC": 1.0, "0xaa": 1.0, "0xbb": 1.0, "0xdd": 1.0, "0xee": 1.0}
    assert Krum(num_byzantine=1).selected(_updates(same)) == ["0xaa"]


def test_colluding_identical_attackers_are_not_chosen_when_far() -> None:
    values = {**HONEST, "0xf1": 50.0, "0xf2": 50.0}
    assert Krum(num_byzantine=2).selected(_updates(values)) == ["0x03"]


@pytest.mark.parametrize(("n", "f"), [(4, 1), (2, 0), (6, 2)])
def test_too_few_updates_for_f_are_refused_with_the_bound(n: int, f: int) -> None:
    updates = _updates({f"0x{i:02x}": float(i) for i in range(n)})
    with pytest.raises(ConfigError, match=rf"num_byzantine={f} needs more than {2 * f + 2} updates.*got {n}"):
        Krum(num_byzantine=f).aggregate(updates)


def test_invalid_parameters_are_refused() -> None:
    with pytest.raises(ConfigError, match="num_byzantine"):
        Krum(num_byzantine=-1)
    with pytest.raises(ConfigError, match="num_selected"):
        MultiKrum(num_byzantine=0, num_selected=0)
    with pytest.raises(ConfigError, match=r"num_selected must be in \[1, 6\]"):
        MultiKrum(num_byzantine=1, num_selected=7).aggregate(_updates({**HONEST, "0xff": 100.0}))


def test_distances_are_symmetric_with_zero_diagonal_and_span_all_tensors() -> None:
    updates = _updates({"0x01": 0.0, "0x02": 1.0, "0x03": 3.0})
    d = pairwise_sq_distances(updates)
    assert torch.equal(d, d.T)
    assert torch.equal(torch.diagonal(d), torch.zeros(3, dtype=torch.float64))
    # "w" and the first entry of "b" both carry the value: distance counts it twice
    assert d[0, 2].item() == pytest.approx(2 * 9.0)


def test_distances_stay_exact_when_every_update_shares_a_large_common_part() -> None:
    # Honest clients that all moved the same way share a component far larger than their differences.
    # The Gram form |x|² + |y|² - 2x·y cancels that component catastrophically unless it is removed
    # first; the distances (hence Krum's choice) must be those of the differences alone.
    gen = torch.Generator().manual_seed(11)
    common = torch.full((2000,), 1.0e4, dtype=torch.float64)
    spread = [torch.randn(2000, generator=gen, dtype=torch.float64) * 1e-3 for _ in range(4)]
    updates = [ClientUpdate(node=f"0x0{i}", sample_count=1, delta={"w": common + s}) for i, s in enumerate(spread)]
    exact = torch.tensor([[float(((a - b) ** 2).sum()) for b in spread] for a in spread], dtype=torch.float64)
    assert torch.allclose(pairwise_sq_distances(updates), exact, rtol=1e-6, atol=0)
