"""GateSettings as a federation gets them by default, and the bounds a spec author may set them to."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from flare_chain import attacks
from flare_chain.aggregation import ClientUpdate, GateSettings, build_gates, run_gates

from ._rounds import global_adapter, honest_round


def test_the_default_settings_run_every_gate_in_the_documented_order() -> None:
    # README "What the committee checks before it aggregates": policy, duplicate, norm, direction,
    # probe loss (with its spread and inert-update tests), then the MI filter, each when its model input exists
    gates = build_gates(GateSettings(), predictor=lambda adapter: np.zeros(1, dtype=np.int64),
                        window_losses=lambda adapter: np.zeros(2))

    assert [gate.name for gate in gates] == ["policy", "duplicate", "norm", "direction", "probe_twin", "probe_loss",
                                             "probe_spread", "probe_inert", "mutual_information"]


@pytest.mark.parametrize(("round_size", "judged"), [(5, True), (4, False)])
def test_by_default_five_updates_are_judged_and_fewer_pass_the_statistical_gates(round_size: int,
                                                                                  judged: bool) -> None:
    # A federation that leaves min_candidates unset judges rounds of five; a 100x update in a round of
    # four passes, because a median and MAD of four cannot be trusted to single it out.
    updates = honest_round(round_size)
    scaled = ClientUpdate(node=updates[0].node, delta=attacks.scale(updates[0].delta, 100.0),
                          sample_count=updates[0].sample_count)

    outcome = run_gates([scaled, *updates[1:]], global_adapter(), build_gates(GateSettings()))

    assert outcome.rejected_nodes == ([scaled.node] if judged else [])


# (setting, the most lenient value its bound accepts, the nearest value it refuses)
BOUNDS = [
    ("probe_loss_z", 0.01, 0.0),
    ("probe_loss_windows", 2, 1),
    ("probe_loss_seq_len", 2, 1),
    ("mi_min_scale", 1.0, 1.01),
    ("mi_min_scale", 0.01, 0.0),
    ("min_candidates", 3, 2),
    ("probe_windows", 1, 0),
    ("probe_seq_len", 2, 1),
    ("duplicate_tolerance", 0.0, -0.01),
    ("max_update_bytes", 1, 0),
    # a cosine lies in [-1, 1]: a bound past 1 would reject updates that point along the round
    ("direction_max_cosine", 1.0, 1.01),
    ("direction_max_cosine", -1.0, -1.01),
    ("norm_threshold", 0.01, 0.0),
    ("direction_threshold", 0.01, 0.0),
    ("probe_loss_outlier_z", 0.01, 0.0),
    ("probe_loss_rise_share", 0.01, 0.0),
    ("probe_loss_rise_share", 10.0, 10.01),
    ("probe_loss_spread_z", 0.01, 0.0),
    # a share of the round's typical probe effect: 0 would reject nothing, 1 half the honest nodes
    ("probe_loss_min_effect", 0.01, 0.0),
    ("probe_loss_min_effect", 0.99, 1.0),
    # a relative distance: 0 would reject nothing, 1 every pair of updates that point anywhere alike
    ("probe_loss_twin_tolerance", 0.01, 0.0),
    ("probe_loss_twin_tolerance", 0.99, 1.0),
    ("mi_threshold", 0.01, 0.0),
]


@pytest.mark.parametrize(("name", "edge", "past"), BOUNDS, ids=[f"{b[0]}={b[1]}" for b in BOUNDS])
def test_each_setting_accepts_its_bound_and_refuses_just_past_it(name: str, edge: float, past: float) -> None:
    assert getattr(GateSettings(**{name: edge}), name) == edge
    with pytest.raises(ValidationError, match=name):
        GateSettings(**{name: past})


def test_gate_settings_cannot_be_changed_in_place() -> None:
    # the federation spec pins them by CID and every member runs the gates with them: no code may alter a copy
    settings = GateSettings()
    with pytest.raises(ValidationError):
        settings.norm_threshold = 0.1  # type: ignore[misc]
