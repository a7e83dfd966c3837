"""Encrypted keystores: created once, decrypted with the right password only, key never printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flare_chain.cli.main import main
from flare_chain.errors import ConfigError
from flare_chain.node.keys import create_keystore, keystore_address, load_account, read_password

FAST = 2  # scrypt cost for tests only


def test_create_then_load_gives_the_same_address(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    address = create_keystore(path, "correct horse", kdf_iterations=FAST)
    assert load_account(path, "correct horse").address == address
    assert keystore_address(path) == address
    assert (path.stat().st_mode & 0o777) == 0o600


def test_wrong_password_is_a_config_error_and_the_file_is_untouched(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    create_keystore(path, "correct horse", kdf_iterations=FAST)
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="wrong password"):
        load_account(path, "battery staple")
    assert path.read_bytes() == before


def test_existing_keystore_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    create_keystore(path, "correct horse", kdf_iterations=FAST)
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        create_keystore(path, "another password", kdf_iterations=FAST)
    assert path.read_bytes() == before


def test_keystore_holds_no_plain_key(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    create_keystore(path, "correct horse", kdf_iterations=FAST)
    key_hex = load_account(path, "correct horse").key.hex().removeprefix("0x")
    assert key_hex not in path.read_text()
    assert "crypto" in json.loads(path.read_text())


def test_password_sources(tmp_path: Path) -> None:
    assert read_password(env_name="PW", environ={"PW": "s3cret-pass"}) == "s3cret-pass"
    with pytest.raises(ConfigError, match=r"PW .*not set"):
        read_password(env_name="PW", environ={})
    (tmp_path / "pw").write_text("from-a-file\n")
    assert read_password(file=tmp_path / "pw") == "from-a-file"
    with pytest.raises(ConfigError, match="exactly one"):
        read_password()


def test_cli_keys_new_prints_only_the_address(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import flare_chain.node.keys as keys

    real = keys.create_keystore
    monkeypatch.setattr(keys, "create_keystore", lambda p, pw: real(p, pw, kdf_iterations=FAST))
    monkeypatch.setenv("FLARE_TEST_PW", "long enough password")
    assert main(["keys", "new", str(tmp_path / "k.json"), "--password-env", "FLARE_TEST_PW"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == keystore_address(tmp_path / "k.json")
    assert main(["keys", "new", str(tmp_path / "k.json"), "--password-env", "FLARE_TEST_PW"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err


KNOWN_KEY = "0x" + "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
KNOWN_ADDRESS = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"  # eth-account's documented example key


def test_import_encrypts_an_existing_key_that_then_loads_to_the_same_account(tmp_path: Path) -> None:
    from flare_chain.node.keys import import_keystore

    path = tmp_path / "imported.json"
    assert import_keystore(path, KNOWN_KEY[2:] + "\n", "correct horse", kdf_iterations=FAST) == KNOWN_ADDRESS
    assert load_account(path, "correct horse").key.hex().removeprefix("0x") == KNOWN_KEY[2:]
    assert KNOWN_KEY[2:] not in path.read_text() and (path.stat().st_mode & 0o777) == 0o600


@pytest.mark.parametrize("bad", ["0x1234", "zz" * 32, "00" * 32, "ff" * 32])
def test_import_refuses_a_malformed_key_without_echoing_it_and_writes_nothing(tmp_path: Path, bad: str) -> None:
    from flare_chain.node.keys import import_keystore

    with pytest.raises(ConfigError) as err:
        import_keystore(tmp_path / "k.json", bad, "correct horse", kdf_iterations=FAST)
    assert bad not in str(err.value) and not (tmp_path / "k.json").exists()


def test_keys_import_cli_reads_the_key_from_a_variable_and_never_overwrites(tmp_path: Path, monkeypatch,
                                                                            capsys) -> None:
    monkeypatch.setenv("IMPORT_KEY", KNOWN_KEY)
    monkeypatch.setenv("IMPORT_PW", "correct horse")
    path = tmp_path / "k.json"
    assert main(["keys", "import", str(path), "--key-env", "IMPORT_KEY", "--password-env", "IMPORT_PW"]) == 0
    out, _ = capsys.readouterr()
    assert out.strip() == KNOWN_ADDRESS and KNOWN_KEY[2:] not in out
    before = path.read_bytes()
    assert main(["keys", "import", str(path), "--key-env", "IMPORT_KEY", "--password-env", "IMPORT_PW"]) == 2
    assert "already exists" in capsys.readouterr().err and path.read_bytes() == before
