"""An attacking node as configuration: ``[attack] kind = …`` makes a daemon submit a crafted update.

The committee is real (in-process chain, embedded store, the tiny model): the
attacker's bundle on IPFS is its trained update turned around, and the
honest members' gates leave it out of the committed round.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from flare_chain.chain import RoundStatus
from flare_chain.errors import ConfigError
from flare_chain.ipfs import cid_from_bytes
from flare_chain.node.bundles import fetch_update_bundle, with_accepted_list
from flare_chain.node.config import load_node_config
from flare_chain.node.daemon import DaemonSettings
from flare_chain.node.localnet import drive, make_daemon, make_net, open_round, register_all

CONFIG = """
[node]
name = "node-9"
data_dir = "data"
keystore = "key.json"
password_env = "PW"

[chain]
rpc_url = "http://127.0.0.1:8545"
contract = "0x0000000000000000000000000000000000000001"

[data]
task = "skills"
task_part = 1
task_parts = 4
"""


def _config(tmp_path: Path, attack: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(CONFIG + attack, encoding="utf-8")
    return path


def test_a_node_config_names_a_registered_attack_a_daemon_can_run(tmp_path: Path) -> None:
    config = load_node_config(_config(tmp_path, '[attack]\nkind = "sign_flip"\n'), env={})
    assert config.attack is not None and config.attack.kind == "sign_flip"
    assert load_node_config(_config(tmp_path, ""), env={}).attack is None
    # the devnet's way: one environment variable turns a template's node into an attacker
    from_env = load_node_config(_config(tmp_path, ""), env={"FLARE__ATTACK__KIND": "scale10"})
    assert from_env.attack is not None and from_env.attack.kind == "scale10"


@pytest.mark.parametrize(("kind", "fragment"), [
    ("sing_flip", "attack.kind: .*unknown attack 'sing_flip'; choose one of .*sign_flip"),
    ("alie", "attack.kind: .*needs the round's honest updates.*a daemon runs .*sign_flip"),
    ("backdoor", "attack.kind: .*needs backdoor training data"),
])
def test_an_attack_a_daemon_cannot_run_is_refused_naming_the_ones_it_can(tmp_path: Path, kind: str,
                                                                          fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_node_config(_config(tmp_path, f'[attack]\nkind = "{kind}"\n'), env={})


def test_an_unknown_key_in_the_attack_table_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"attack\.strength: unknown key"):
        load_node_config(_config(tmp_path, '[attack]\nkind = "sign_flip"\nstrength = 2\n'), env={})


@pytest.mark.slow  # five daemons train, judge and vote a round: minutes on two cores
def test_a_sign_flipping_daemon_submits_its_update_negated_and_the_honest_gates_leave_it_out(
        tmp_path: Path, tiny_model_dir: Path, tiny_train_params, caplog: pytest.LogCaptureFixture) -> None:
    # Prepare: five nodes (the statistical gates judge rounds of five or more); node 0 flips its sign.
    # Uncompressed updates, so the bundle on IPFS is exactly what the daemon crafted.
    params = tiny_train_params.model_copy(update={"max_train_windows": 16, "max_val_windows": 8})
    net = make_net(tmp_path, tiny_model_dir, params, nodes=5)
    plain = dict(poll_interval_s=0.01, backoff_s=0.01, compression=None)
    for i in range(5):
        net.daemons[i].state.close()
        net.daemons[i] = make_daemon(net, i, settings=DaemonSettings(**plain, attack="sign_flip" if i == 0 else None))
    honest_twin = make_daemon(net, 0, settings=DaemonSettings(**plain))  # what node 0 would have sent
    try:
        register_all(net)
        round_id = open_round(net)
        # Execute
        with caplog.at_level(logging.WARNING, logger="flare_chain.node"):
            drive(net, round_id)
        # Assert: the submitted update is −(the trained one), bit for bit
        assert "attacking: submitting a sign_flip update" in caplog.text
        attacker = net.daemons[0].address
        sub = next(s for s in net.coordinator.submissions(round_id) if s.node == attacker)
        previous = honest_twin._previous(round_id)
        sent, _manifest = fetch_update_bundle(net.store, cid_from_bytes(sub.cid), sub.manifest_hash,
                                              expected_shapes=previous.shapes)
        trained = _trained(honest_twin, previous.tensors)
        assert sorted(sent) == sorted(trained)
        assert all(torch.equal(sent[k], -trained[k]) for k in sent)
        # … and the committed round holds every honest update but not the attacker's
        assert net.coordinator.round_info(round_id).status == RoundStatus.COMMITTED
        accepted = {a.lower() for a in with_accepted_list(net.store, net.coordinator.proposal(round_id)).accepted or ()}
        assert attacker.lower() not in accepted
        assert accepted == {d.address.lower() for d in net.daemons[1:]}
    finally:
        honest_twin.state.close()
        for d in net.daemons:
            d.state.close()


def _trained(daemon, start: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The delta ``daemon`` trains from ``start`` (training is seeded, so this is what its attacking twin trained)."""
    from flare_chain.lora.train import train_lora

    result = train_lora(daemon.model_dir, daemon._texts, daemon.params, start_adapter=start, show_progress=False)
    return result.delta
