"""Node config: TOML to typed settings, environment overrides, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from flare_chain.errors import ConfigError, TrainingError
from flare_chain.node.config import load_node_config

GOOD = """
[node]
name = "node-1"
data_dir = "state/node-1"
keystore = "keys/node-1.json"
password_env = "NODE1_PW"

[chain]
rpc_url = "http://127.0.0.1:8545"
deployment = "deployment.json"

[data]
domain = "email"

[training]
rank = 4
learning_rate = 0.01
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_config_loads_with_defaults_and_resolved_paths(tmp_path: Path) -> None:
    config = load_node_config(_write(tmp_path, GOOD), env={})
    assert config.node.name == "node-1"
    assert config.node.keystore == tmp_path / "keys/node-1.json"
    assert config.chain.deployment == tmp_path / "deployment.json"
    assert config.chain.poll_interval_s == 2.0
    assert config.ipfs.endpoint == "http://127.0.0.1:5001"
    assert config.train_params().rank == 4


def test_environment_overrides_a_key(tmp_path: Path) -> None:
    config = load_node_config(_write(tmp_path, GOOD), env={
        "FLARE__CHAIN__RPC_URL": "http://10.0.0.7:8545", "FLARE__CHAIN__CONFIRMATIONS": "3"})
    assert config.chain.rpc_url == "http://10.0.0.7:8545"
    assert config.chain.confirmations == 3


def test_missing_key_is_named_with_its_env_override(tmp_path: Path) -> None:
    text = GOOD.replace('rpc_url = "http://127.0.0.1:8545"\n', "")
    with pytest.raises(ConfigError, match=r"chain\.rpc_url: missing \(or FLARE__CHAIN__RPC_URL\)"):
        load_node_config(_write(tmp_path, text), env={})


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"chain\.rpc_ur1: unknown key"):
        load_node_config(_write(tmp_path, GOOD.replace("[chain]", '[chain]\nrpc_ur1 = "x"')), env={})


def test_bad_training_parameter_names_the_parameter(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"training.*rank"):
        load_node_config(_write(tmp_path, GOOD.replace("rank = 4", "rank = 0")), env={})


def test_contract_and_deployment_are_mutually_exclusive(tmp_path: Path) -> None:
    text = GOOD.replace('deployment = "deployment.json"',
                        'deployment = "deployment.json"\ncontract = "0x' + "ab" * 20 + '"')
    with pytest.raises(ConfigError, match="exactly one of contract"):
        load_node_config(_write(tmp_path, text), env={})


def test_private_key_in_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"node\.private_key: unknown key"):
        load_node_config(_write(tmp_path, GOOD.replace("[node]", '[node]\nprivate_key = "0x01"')), env={})


def test_missing_file_and_bad_toml_have_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_node_config(tmp_path / "absent.toml", env={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_node_config(_write(tmp_path, "[node\nname="), env={})


def test_malformed_env_override_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SECTION__KEY"):
        load_node_config(_write(tmp_path, GOOD), env={"FLARE__RPC_URL": "http://x"})


def test_compression_is_on_by_default_and_its_keys_are_checked(tmp_path: Path) -> None:
    config = load_node_config(_write(tmp_path, GOOD), env={})
    assert config.compression.enabled and config.compression.rank == 2 and config.compression.dtype == "float16"
    off = load_node_config(_write(tmp_path, GOOD), env={"FLARE__COMPRESSION__RANK": "0"})
    assert off.compression.powersgd_config() is None
    bf16 = load_node_config(_write(tmp_path, GOOD + '\n[compression]\nrank = 1\ndtype = "bf16"\n'), env={})
    assert bf16.compression.powersgd_config().dtype == "bfloat16"
    with pytest.raises(ConfigError, match=r"compression\.dtype"):
        load_node_config(_write(tmp_path, GOOD + '\n[compression]\ndtype = "int8"\n'), env={})
    with pytest.raises(ConfigError, match=r"compression\.min_compression_rate"):
        load_node_config(_write(tmp_path, GOOD + "\n[compression]\nmin_compression_rate = 0.5\n"), env={})


def test_data_path_and_format_load_validated_records(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "node-1.jsonl").write_text(
        '{"instruction": "Say hi.", "output": "hi"}\n{"instruction": "Say bye.", "output": "bye"}\n')
    text = GOOD.replace('domain = "email"', 'path = "data/node-1.jsonl"')
    config = load_node_config(_write(tmp_path, text), env={})
    assert config.data.path == tmp_path / "data" / "node-1.jsonl" and config.data.format == "auto"
    data = config.data.load()
    assert data.format == "instruction" and len(data) == 2
    forced = load_node_config(_write(tmp_path, text.replace('path = "data/node-1.jsonl"',
                                                            'path = "data/node-1.jsonl"\nformat = "chat"')), env={})
    with pytest.raises(TrainingError, match=r'node-1.jsonl line 1: field "messages" is missing'):
        forced.data.load()


def test_two_data_sources_are_refused(tmp_path: Path) -> None:
    text = GOOD.replace('domain = "email"', 'domain = "email"\npath = "data.jsonl"')
    with pytest.raises(ConfigError, match="exactly one of domain, texts_dir, path or task"):
        load_node_config(_write(tmp_path, text), env={})


def test_the_skills_task_gives_the_node_its_share(tmp_path: Path) -> None:
    text = GOOD.replace('domain = "email"', 'task = "skills"\ntask_part = 2\ntask_parts = 3\ntask_records = 30')
    data = load_node_config(_write(tmp_path, text), env={}).data.load()
    assert data.format == "instruction" and len(data) == 30
    first = load_node_config(_write(tmp_path, text.replace("task_part = 2", "task_part = 1")), env={}).data.load()
    assert not {r.instruction for r in data.records} & {r.instruction for r in first.records}
    with pytest.raises(ConfigError, match="task_part = 4 exceeds task_parts = 3"):
        load_node_config(_write(tmp_path, text.replace("task_part = 2", "task_part = 4")), env={})
    with pytest.raises(ConfigError, match="needs task_part and task_parts"):
        load_node_config(_write(tmp_path, text.replace("task_parts = 3", "")), env={})


def test_a_bad_data_line_stops_the_node_before_it_touches_keys_chain_or_ipfs(tmp_path: Path) -> None:
    from flare_chain.cli.node import build_daemon

    (tmp_path / "node-1.jsonl").write_text('{"instruction": "a", "output": "b"}\n' * 16
                                           + '{"instruction": "a"}\n')
    text = GOOD.replace('domain = "email"', 'path = "node-1.jsonl"')
    config = load_node_config(_write(tmp_path, text), env={})  # keystore, chain and IPFS do not exist
    with pytest.raises(TrainingError, match=r'node-1.jsonl line 17: field "output" is missing$'):
        build_daemon(config, show_progress=False)


def test_the_model_section_takes_a_cid_and_a_cache_folder(tmp_path: Path) -> None:
    cid = "QmSAhs94AVqqmp6ZXz45Q4kprE9tTuc87ehGxBgUkKP9qc"
    text = GOOD + f'\n[model]\nmodel_dir = "models/mine"\ncid = "{cid}"\ncache_dir = "cache"\n'
    config = load_node_config(_write(tmp_path, text), env={})
    assert config.model.cid == cid
    assert (config.model.model_dir, config.model.cache_dir) == (tmp_path / "models/mine", tmp_path / "cache")
    with pytest.raises(ConfigError, match=r"model\.cid: Value error, not a CID"):
        load_node_config(_write(tmp_path, text.replace(cid, "Qm-not-a-cid")), env={})


def test_device_is_cpu_unless_set_and_other_values_are_refused(tmp_path: Path) -> None:
    assert load_node_config(_write(tmp_path, GOOD), env={}).model.device == "cpu"
    gpu = load_node_config(_write(tmp_path, GOOD + '\n[model]\ndevice = "cuda"\n'), env={})
    assert gpu.model.device == "cuda"
    assert load_node_config(_write(tmp_path, GOOD), env={"FLARE__MODEL__DEVICE": "auto"}).model.device == "auto"
    with pytest.raises(ConfigError, match=r"model\.device"):
        load_node_config(_write(tmp_path, GOOD + '\n[model]\ndevice = "gpu"\n'), env={})
