"""The shipped node configs (nodes/*.toml) load with the node config loader and suit a devnet."""

from __future__ import annotations

from pathlib import Path

import pytest

from flare_chain.lora.skills import SKILLS_SEQ_LEN
from flare_chain.node.config import load_node_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "nodes").glob("*.toml"))


def test_four_nodes_ship() -> None:
    assert [p.name for p in CONFIGS] == [f"node-{i}.toml" for i in range(1, 5)]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_validates_with_tiny_training(path: Path) -> None:
    config = load_node_config(path, env={})
    assert config.node.name == path.stem
    assert config.chain.deployment is not None and config.chain.contract is None
    params = config.train_params()
    assert params.rank <= 8 and (params.max_train_windows or 0) <= 64
    assert params.seq_len >= SKILLS_SEQ_LEN  # every skills-task example fits whole


def test_each_node_has_its_own_share_of_the_skills_task_and_keystore() -> None:
    configs = [load_node_config(p, env={}) for p in CONFIGS]
    assert {c.data.task for c in configs} == {"skills"}
    assert sorted(c.data.task_part or 0 for c in configs) == list(range(1, len(configs) + 1))
    assert {(c.data.task_parts, c.data.task_seed, c.data.task_records) for c in configs} == {(len(configs), 0, 240)}
    shares = [c.data.load() for c in configs]
    assert len({r.instruction for data in shares for r in data.records}) == sum(len(d.records) for d in shares)
    assert len({c.node.keystore for c in configs}) == len(configs)
    assert len({c.node.data_dir for c in configs}) == len(configs)


def test_devnet_overrides_apply(tmp_path: Path) -> None:
    env = {"FLARE__CHAIN__RPC_URL": "http://127.0.0.1:9999", "FLARE__NODE__KEYSTORE": f'"{tmp_path}/k.json"'}
    config = load_node_config(CONFIGS[0], env=env)
    assert config.chain.rpc_url == "http://127.0.0.1:9999" and config.node.keystore == tmp_path / "k.json"
