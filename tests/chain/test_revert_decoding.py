"""Revert data from any endpoint becomes a ChainError naming the custom error and its arguments."""

from __future__ import annotations

from eth_abi import encode
from eth_utils import keccak

from flare_chain.chain import ErrorDecoder, RoundStatus, load_artifact
from flare_chain.chain.revert import revert_data_from_exception

DECODER = ErrorDecoder(load_artifact("FlareCoordinator").abi)


def _error(signature: str, types: list[str], values: list[object]) -> bytes:
    return keccak(text=signature)[:4] + encode(types, values)


def test_custom_error_decodes_to_name_arguments_and_hint():
    data = _error("CoordinatorLateSubmission(uint256,uint256)", ["uint256", "uint256"], [3, 120])
    err = DECODER.chain_error("submitUpdate", data, "fallback")
    assert (err.error_name, err.error_args) == ("CoordinatorLateSubmission", (3, 120))
    assert str(err).startswith(
        "submitUpdate reverted with CoordinatorLateSubmission(round=3, deadline=120): "
    )
    assert "next round" in str(err)


def test_enum_arguments_decode_to_RoundStatus():
    data = _error("CoordinatorRoundNotOpen(uint256,uint8)", ["uint256", "uint8"], [2, 4])
    decoded = DECODER.decode(data)
    assert decoded.args == (2, RoundStatus.FAILED) and decoded.args[1] is RoundStatus.FAILED
    assert "status=FAILED" in decoded.signature_text()


def test_addresses_decode_checksummed():
    node = "0x" + "ab" * 20
    data = _error("CoordinatorNotRegistered(address)", ["address"], [node])
    assert DECODER.decode(data).args == ("0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB",)


def test_builtin_error_string_and_unknown_selector():
    assert DECODER.decode(_error("Error(string)", ["string"], ["boom"])).args == ("boom",)
    err = DECODER.chain_error("vote", b"\xde\xad\xbe\xef", "fallback")
    assert err.error_name is None and "0xdeadbeef" in str(err)
    assert DECODER.chain_error("vote", None, "node said no").error_name is None


def test_revert_data_is_found_in_jsonrpc_data_and_in_eth_tester_messages():
    class RpcError(Exception):
        data = "0x12345678aa"

    assert revert_data_from_exception(RpcError()) == bytes.fromhex("12345678aa")
    tester_message = Exception("execution reverted: b'T(\\xd4I\\x00'")
    assert revert_data_from_exception(tester_message) == b"T(\xd4I\x00"
    assert revert_data_from_exception(Exception("connection refused to 0x1234567890")) is None
