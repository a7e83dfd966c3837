"""``flare-chain spec init / pin / show``."""

from __future__ import annotations

import json
from pathlib import Path

from flare_chain.cli.main import main as cli_main
from flare_chain.errors import ConfigError
from flare_chain.protocol.spec import FederationSpec, spec_cid


def test_init_pin_and_show_by_cid(tmp_path: Path, capsys) -> None:
    spec_file, repo = tmp_path / "spec.toml", tmp_path / "repo"
    assert cli_main(["spec", "init", "--out", str(spec_file)]) == 0
    assert FederationSpec.from_toml(spec_file) == FederationSpec()
    assert cli_main(["spec", "init", "--out", str(spec_file)]) == ConfigError.exit_code
    assert "already exists" in capsys.readouterr().err
    spec_file.write_text(spec_file.read_text().replace('name = "fedavg"', 'name = "median"'))
    assert cli_main(["spec", "pin", str(spec_file), "--spec-repo", str(repo)]) == 0
    cid = capsys.readouterr().out.strip()
    assert cid == spec_cid(FederationSpec.from_toml(spec_file))
    assert cli_main(["spec", "show", cid, "--spec-repo", str(repo), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["cid"] == cid and shown["spec"]["aggregator"]["name"] == "median"
    assert cli_main(["spec", "show", str(spec_file)]) == 0
    assert f"# federation spec {cid}" in capsys.readouterr().out


def test_show_by_cid_needs_a_store(capsys) -> None:
    assert cli_main(["spec", "show", "bafkreiekwxlcx2ebvb3x4wtj5bqj7p5ru6zw2enyakfdjxibpl7kla3rea"]) == 2
    assert "--spec-repo DIR" in capsys.readouterr().err
