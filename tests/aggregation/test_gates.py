"""The policy gate names the first field where an update departs from the round's adapter."""

from __future__ import annotations

import pytest

from flare_chain.aggregation.gates import policy_gate
from flare_chain.errors import GateRejection
from flare_chain.lora.files import Manifest

NODE = "0x00000000000000000000000000000000000000aA"


def _reference() -> Manifest:
    return Manifest(kind="adapter", base_model_id="ref", base_model_sha256="ab" * 32, rank=4, alpha=8.0,
                    target_modules=["q_proj", "v_proj"], sample_count=0,
                    shapes={"m.q_proj.lora_A.weight": [4, 16], "m.q_proj.lora_B.weight": [16, 4],
                            "m.v_proj.lora_A.weight": [4, 16], "m.v_proj.lora_B.weight": [16, 4]}, round=0)


def _update(**changes: object) -> Manifest:
    base = _reference().model_copy(update={"kind": "delta", "round": 3, "node": NODE, "sample_count": 12})
    return base.model_copy(update=changes)


def test_matching_update_passes() -> None:
    policy_gate(_update(), _reference(), round_id=3, node=NODE.lower(), onchain_sample_count=12)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"kind": "adapter"}, "kind"),
        ({"base_model_sha256": "cd" * 32}, "base model"),
        ({"rank": 8, "shapes": {"m.q_proj.lora_A.weight": [8, 16], "m.q_proj.lora_B.weight": [16, 8]}}, "rank"),
        ({"shapes": {"m.q_proj.lora_A.weight": [4, 16], "m.q_proj.lora_B.weight": [16, 4]}}, "shapes"),
        ({"alpha": 16.0}, "alpha"),
        ({"target_modules": ["k_proj", "v_proj"]}, "target_modules"),
        ({"shapes": {"m.q_proj.lora_A.weight": [4, 17], "m.q_proj.lora_B.weight": [16, 4]}}, "shapes"),
        ({"round": 2}, "round 2"),
        ({"node": "0x" + "bb" * 20}, "names node"),
        ({"sample_count": 13}, "13 samples"),
    ],
)
def test_each_departure_is_rejected_with_its_reason(changes: dict[str, object], fragment: str) -> None:
    with pytest.raises(GateRejection, match=fragment) as info:
        policy_gate(_update(**changes), _reference(), round_id=3, node=NODE, onchain_sample_count=12)
    assert info.value.gate == "policy"
    assert fragment.split()[0] in info.value.reason


def test_targets_that_do_not_select_the_tensors_are_rejected_even_when_both_sides_agree() -> None:
    # Prepare: a global adapter and an update that agree on targets and tensors, but the targets
    # (GPT-2's attention out-projection) do not name the layers the tensors adapt (the MLP's c_proj)
    shapes = {"h.0.mlp.c_proj.lora_A.weight": [4, 16], "h.0.mlp.c_proj.lora_B.weight": [16, 4]}
    reference = _reference().model_copy(update={"target_modules": ["attn.c_proj"], "shapes": shapes})
    update = reference.model_copy(update={"kind": "delta", "round": 3, "node": NODE, "sample_count": 12})
    # Execute / Assert
    with pytest.raises(GateRejection, match=r"'h.0.mlp.c_proj.lora_A.weight' adapts a layer outside target_modules"):
        policy_gate(update, reference, round_id=3, node=NODE, onchain_sample_count=12)
    good = {"h.0.attn.c_proj.lora_A.weight": [4, 16], "h.0.attn.c_proj.lora_B.weight": [16, 4]}
    policy_gate(update.model_copy(update={"shapes": good}), reference.model_copy(update={"shapes": good}),
                round_id=3, node=NODE, onchain_sample_count=12)


@pytest.mark.parametrize("declared", [11, 13])
def test_a_sample_count_other_than_the_chains_is_rejected_either_way(declared: int) -> None:
    # under-claiming is as much a mismatch as over-claiming: the chain's count is the aggregation weight
    with pytest.raises(GateRejection, match=f"claims {declared} samples, the chain records 12"):
        policy_gate(_update(sample_count=declared), _reference(), round_id=3, node=NODE, onchain_sample_count=12)


def test_a_manifest_that_names_no_node_is_rejected() -> None:
    with pytest.raises(GateRejection, match=f"manifest names node None, but {NODE} submitted it"):
        policy_gate(_update(node=None), _reference(), round_id=3, node=NODE, onchain_sample_count=12)


# ---------------------------------------------------------------- the base model by CID

CID_A = "QmSAhs94AVqqmp6ZXz45Q4kprE9tTuc87ehGxBgUkKP9qc"
CID_B = "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD"


def test_when_the_federation_names_a_cid_an_update_on_the_same_cid_passes() -> None:
    reference = _reference().model_copy(update={"base_model_cid": CID_A})
    policy_gate(_update(base_model_cid=CID_A), reference, round_id=3, node=NODE, onchain_sample_count=12)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"base_model_cid": CID_B}, f"trained on base model {CID_B}, the federation's is {CID_A}"),
        ({"base_model_cid": None}, f"names no base model CID, the federation's base model is {CID_A}"),
        # Same CID, other weights: the manifest contradicts itself
        ({"base_model_cid": CID_A, "base_model_sha256": "cd" * 32}, "base model weights cdcdcdcdcdcd"),
    ],
)
def test_when_the_federation_names_a_cid_another_base_is_rejected(changes: dict[str, object], fragment: str) -> None:
    reference = _reference().model_copy(update={"base_model_cid": CID_A})
    with pytest.raises(GateRejection, match=fragment):
        policy_gate(_update(**changes), reference, round_id=3, node=NODE, onchain_sample_count=12)


def test_without_a_federation_cid_only_the_weights_are_compared() -> None:
    # A node that records the CID of its own folder (e.g. its own tokenizer copy) is fine when nobody named one.
    policy_gate(_update(base_model_cid=CID_B), _reference(), round_id=3, node=NODE, onchain_sample_count=12)


def test_a_manifest_without_a_base_cid_keeps_its_old_bytes() -> None:
    plain = _reference()
    assert b"base_model_cid" not in plain.to_bytes()
    named = plain.model_copy(update={"base_model_cid": CID_A})
    assert Manifest.from_bytes(named.to_bytes()) == named and f'"base_model_cid":"{CID_A}"'.encode() in named.to_bytes()
    with pytest.raises(Exception, match="base_model_cid"):
        Manifest.from_bytes(plain.to_bytes().replace(b'"base_model_id"', b'"base_model_cid":"nope","base_model_id"'))
