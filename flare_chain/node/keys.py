"""Node keys in encrypted eth-account keystores (Web3 Secret Storage v3).

A node's Ethereum key signs its transactions and, being a secp256k1 key, is
also its VRF key. It is never written in plain text: keystores are encrypted
with a password that comes from an environment variable or a file, and the
private key never appears in a config file, a log line or an error message.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from flare_chain.errors import ConfigError

__all__ = ["create_keystore", "import_keystore", "keystore_address", "load_account", "read_password"]


def read_password(*, env_name: str | None = None, file: Path | None = None,
                  environ: dict[str, str] | None = None) -> str:
    """The keystore password from exactly one source; ConfigError naming what is missing."""
    if (env_name is None) == (file is None):
        raise ConfigError("give the keystore password through exactly one of an environment variable or a file")
    if env_name is not None:
        value = (os.environ if environ is None else environ).get(env_name)
        if not value:
            raise ConfigError(f"environment variable {env_name} (the keystore password) is not set or empty")
        return value
    assert file is not None
    try:
        value = Path(file).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"keystore password file {file} cannot be read: {exc.strerror}") from None
    if not value:
        raise ConfigError(f"keystore password file {file} is empty")
    return value


def create_keystore(path: Path, password: str, *, kdf_iterations: int | None = None) -> str:
    """Make a new random key, encrypt it into ``path`` (never overwriting), return its address.

    ``kdf_iterations`` lowers the scrypt cost for tests; leave it None in production.
    """
    return _write_keystore(path, secrets.token_bytes(32), password, kdf_iterations=kdf_iterations)


def import_keystore(path: Path, private_key: str, password: str, *, kdf_iterations: int | None = None) -> str:
    """Encrypt an existing hex private key into ``path`` (never overwriting); return its address.

    For an operator whose node key already exists (a hardware-wallet export, a
    key another tool made). Errors never repeat the key.
    """
    text = private_key.strip()
    digits = text[2:] if text.lower().startswith("0x") else text
    if len(digits) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise ConfigError(f"the private key to import is not 64 hex digits (got {len(digits)} characters); "
                          "pass the raw secp256k1 key, with or without 0x")
    key = bytes.fromhex(digits)
    if not 0 < int.from_bytes(key, "big") < _SECP256K1_ORDER:
        raise ConfigError("the private key to import is outside the secp256k1 range (zero or ≥ the curve order)")
    return _write_keystore(path, key, password, kdf_iterations=kdf_iterations)


_SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _write_keystore(path: Path, key: bytes, password: str, *, kdf_iterations: int | None) -> str:
    path = Path(path)
    if path.exists():
        raise ConfigError(f"{path} already exists; refusing to overwrite a keystore (choose another path)")
    if len(password) < 8:
        raise ConfigError("keystore password must be at least 8 characters")
    account = Account.from_key(key)
    blob = Account.encrypt(account.key, password, iterations=kdf_iterations)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(blob, fh)
    return account.address


def _read_keystore(path: Path) -> dict[str, object]:
    try:
        blob = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"keystore {path} does not exist; create one with `flare-chain keys new`") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"keystore {path} is not a readable JSON keystore: {exc}") from None
    if not isinstance(blob, dict) or ("crypto" not in blob and "Crypto" not in blob):
        raise ConfigError(f"keystore {path} is not an encrypted eth-account keystore (no 'crypto' section)")
    return blob


def keystore_address(path: Path) -> str:
    """The checksummed address a keystore declares, without decrypting it."""
    blob = _read_keystore(path)
    address = blob.get("address")
    if not isinstance(address, str):
        raise ConfigError(f"keystore {path} declares no address")
    from eth_utils import to_checksum_address

    return to_checksum_address(address if address.startswith("0x") else "0x" + address)


def load_account(path: Path, password: str) -> LocalAccount:
    """Decrypt a keystore into a signing account; ConfigError if the password is wrong."""
    blob = _read_keystore(path)
    try:
        key = Account.decrypt(blob, password)
    except ValueError:
        raise ConfigError(f"keystore {path} could not be decrypted: wrong password "
                          "(check the password variable or file the node config names)") from None
    return Account.from_key(key)
