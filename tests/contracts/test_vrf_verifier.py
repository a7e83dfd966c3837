"""The VRFVerifier library agrees with the Python ECVRF reference (flare_chain.committee.vrf) on chain.

The library is reached through contracts/test/VRFVerifierHarness.sol on an in-process
chain. Vectors: tests/committee/data/witnet_vrf_vectors.json (witnet/vrf-solidity
``test/data.json`` and witnet/vrf-rs unit tests; the file names both sources).
The witness points (U, sH, cGamma) come from ``vrf.compute_fast_verify_params``.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import Web3

from flare_chain.chain import ARTIFACTS_DIR, ErrorDecoder, fund_accounts, in_process_chain, load_artifact
from flare_chain.chain.transactions import call_view, send_transaction
from flare_chain.committee import secp256k1 as ec
from flare_chain.committee import vrf
from flare_chain.committee.vrf import (
    InvalidProof,
    compute_fast_verify_params,
    decode_proof,
    decompress,
    hash_to_curve,
    prove,
    public_key,
    verify,
)
from flare_chain.errors import ChainError

VECTORS = json.loads(
    (Path(__file__).parents[1] / "committee" / "data" / "witnet_vrf_vectors.json").read_text()
)
SOL = VECTORS["witnet_vrf_solidity"]
RS = VECTORS["witnet_vrf_rs"]

# The library's own cost must leave room in a ~100k-gas seat-claim transaction.
VERIFY_GAS_BUDGET = 75_000

Point = tuple[int, int]
Args = tuple[Point, tuple[int, int, int, int], bytes, Point, tuple[int, int, int, int]]
Reverts = Callable[..., AbstractContextManager[None]]


class Operand(IntEnum):
    """Mirror of ``VRFVerifier.Operand`` (errors carry it as a uint8)."""

    PUBLIC_KEY = 0
    GAMMA = 1
    U_POINT = 2
    SH = 3
    C_GAMMA = 4
    HASH_POINT = 5


# -- the harness on an in-process chain -----------------------------------------------------


@dataclass
class Harness:
    w3: Web3
    contract: Any
    sender: LocalAccount
    decoder: ErrorDecoder

    def verify(self, args: Args) -> bytes:
        return bytes(call_view(self.contract.functions.verify(*args), "verify", self.decoder))

    def verify_with_hash_roots(self, args: Args, roots: tuple[int, ...]) -> bytes:
        fn = self.contract.functions.verifyWithHashRoots(*args, list(roots))
        return bytes(call_view(fn, "verifyWithHashRoots", self.decoder))

    def hash_to_curve(self, pk: Point, message: bytes) -> Point:
        x, y = call_view(self.contract.functions.hashToCurve(pk, message), "hashToCurve", self.decoder)
        return (x, y)

    def gas_used(self, fn_name: str, args: Args) -> int:
        """Gas of a mined transaction calling ``fn_name`` (the functions are views; this measures them)."""
        data = self.contract.encode_abi(fn_name, args=list(args))
        result = send_transaction(
            self.w3, self.sender, to=self.contract.address, data=data, label=fn_name, decoder=self.decoder
        )
        return result.gas_used


@pytest.fixture(scope="module")
def harness() -> Harness:
    artifact = load_artifact("VRFVerifierHarness", ARTIFACTS_DIR / "test")
    w3 = in_process_chain()
    sender = Account.from_key(keccak(text="flare-chain test vrf verifier"))
    fund_accounts(w3, [sender], 10**20)
    decoder = ErrorDecoder(artifact.abi)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    deployed = send_transaction(
        w3, sender, to=None, data=factory.constructor().data_in_transaction, label="deploy", decoder=decoder
    )
    contract = w3.eth.contract(address=deployed.receipt["contractAddress"], abi=artifact.abi)
    return Harness(w3, contract, sender, decoder)


# -- helpers ----------------------------------------------------------------------------------


def _bytes(hex_string: str) -> bytes:
    digits = hex_string.removeprefix("0x")
    return bytes.fromhex(digits.rjust(len(digits) + len(digits) % 2, "0"))


def _point(d: dict[str, str]) -> Point:
    return (int(d["x"], 16), int(d["y"], 16))


def _uncompressed(p: Point) -> bytes:
    return b"\x04" + p[0].to_bytes(32, "big") + p[1].to_bytes(32, "big")


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [str(c.get("description") or i) for i, c in enumerate(cases)]


def _args(pk: bytes, proof: bytes, alpha: bytes) -> Args:
    """``fastVerify`` arguments with honest witnesses for (possibly wrong) ``pk``, ``proof``, ``alpha``."""
    return compute_fast_verify_params(pk, proof, alpha).fast_verify_args()


def _vector_args(case: dict[str, Any]) -> Args:
    """``fastVerify`` arguments exactly as a witnet fastVerify vector lists them."""
    gamma, c, s = decode_proof(_bytes(case["pi"]))
    v = case["vComponents"]
    return (
        _point(case["publicKey"]),
        (*gamma, c, s),
        _bytes(case["message"]),
        _point(case["uPoint"]),
        (*_point(v["sH"]), *_point(v["cGamma"])),
    )


def _encode(gamma: Point, c: int, s: int) -> bytes:
    return ec.compress(gamma) + c.to_bytes(16, "big") + s.to_bytes(32, "big")


def _recomputed_challenge(args: Args) -> int:
    """The challenge the contract recomputes from ``args`` (H from key and message, V = sH − cGamma)."""
    pk, (gx, gy, _, _), alpha, u, (shx, shy, cgx, cgy) = args
    h = hash_to_curve(_uncompressed(pk), alpha)
    v = ec.add((shx, shy), ec.neg((cgx, cgy)))
    assert v is not None
    return vrf._hash_points(h, (gx, gy), u, v)


def _off_curve(x: int, y: int) -> Point:
    assert not ec.is_on_curve((x, y))
    return (x, y)


SK = bytes.fromhex("c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721")
PK = public_key(SK)
ALPHA = b"sample"
PROOF = prove(SK, ALPHA)
ARGS = _args(PK, PROOF, ALPHA)
GAMMA, C, S = decode_proof(PROOF)
U = ARGS[3]
SH, CGAMMA = ARGS[4][:2], ARGS[4][2:]
BETA = verify(PK, PROOF, ALPHA)


def _replace(args: Args, **fields: Any) -> Args:
    """``args`` with some of: pk, gamma, c, s, message, u, sh, cgamma replaced."""
    pk, (gx, gy, c, s), message, u, (shx, shy, cgx, cgy) = args
    gamma = fields.get("gamma", (gx, gy))
    sh, cgamma = fields.get("sh", (shx, shy)), fields.get("cgamma", (cgx, cgy))
    return (
        fields.get("pk", pk),
        (*gamma, fields.get("c", c), fields.get("s", s)),
        fields.get("message", message),
        fields.get("u", u),
        (*sh, *cgamma),
    )


# -- valid vectors ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", SOL["verify"]["valid"], ids=_ids(SOL["verify"]["valid"]))
def test_witnet_valid_vector_verifies_on_chain_to_its_beta(harness: Harness, case: dict[str, str]) -> None:
    # Prepare
    pk, pi, alpha = _bytes(case["pub"]), _bytes(case["pi"]), _bytes(case["message"])

    # Execute
    beta = harness.verify(_args(pk, pi, alpha))

    # Assert
    assert beta == _bytes(case["hash"]) == verify(pk, pi, alpha)


@pytest.mark.parametrize("case", SOL["fastVerify"]["valid"], ids=_ids(SOL["fastVerify"]["valid"]))
def test_witnet_fast_verify_vector_verifies_on_chain(harness: Harness, case: dict[str, Any]) -> None:
    args = _vector_args(case)

    beta = harness.verify(args)

    assert beta == vrf.fast_verify(*args) == verify(_uncompressed(args[0]), _bytes(case["pi"]), args[2])


def test_vrf_rs_vectors_verify_on_chain(harness: Harness) -> None:
    (verify_case,) = RS["verify"]
    (prove_case,) = RS["prove"]
    pk = _bytes(verify_case["pub"])

    assert harness.verify(_args(pk, _bytes(verify_case["pi"]), b"sample")) == _bytes(verify_case["hash"])
    assert harness.verify(_args(pk, _bytes(prove_case["pi"]), b"sample")) == _bytes(verify_case["hash"])


@pytest.mark.parametrize(
    "case", SOL["hashToTryAndIncrement"]["valid"], ids=_ids(SOL["hashToTryAndIncrement"]["valid"])
)
def test_hash_to_curve_matches_witnet_hashToTryAndIncrement(harness: Harness, case: dict[str, Any]) -> None:
    assert harness.hash_to_curve(_point(case["publicKey"]), _bytes(case["message"])) == _point(
        case["hashPoint"]
    )


# -- invalid vectors --------------------------------------------------------------------------

# What each witnet fastVerify invalid vector breaks, and so which witness check fails first.
_FAST_VERIFY_FAILURES = {
    "wrong gamma sign": Operand.C_GAMMA,
    "wrong public key": Operand.U_POINT,
    "wrong message": Operand.SH,
    "wrong u Point": Operand.U_POINT,
    "wrong sH": Operand.SH,
    "wrong cGamma": Operand.C_GAMMA,
}


@pytest.mark.parametrize("case", SOL["fastVerify"]["invalid"], ids=_ids(SOL["fastVerify"]["invalid"]))
def test_witnet_fast_verify_invalid_vector_reverts(
    harness: Harness, reverts: Reverts, case: dict[str, Any]
) -> None:
    # Prepare
    args = _vector_args(case)
    operand = _FAST_VERIFY_FAILURES[case["description"]]
    witness = {Operand.U_POINT: args[3], Operand.SH: args[4][:2], Operand.C_GAMMA: args[4][2:]}[operand]

    # Execute / Assert
    with reverts("VRFVerifierWitnessMismatch", operand, *witness):
        harness.verify(args)


@pytest.mark.parametrize("case", SOL["verify"]["invalid"], ids=_ids(SOL["verify"]["invalid"]))
def test_witnet_verify_invalid_vector_with_honest_witnesses_fails_the_challenge(
    harness: Harness, reverts: Reverts, case: dict[str, Any]
) -> None:
    # The witnesses are the true products for the wrong key/message/Gamma, so only c can catch it.
    args = _args(_uncompressed(_point(case["publicKey"])), _bytes(case["pi"]), _bytes(case["message"]))

    with reverts("VRFVerifierChallengeMismatch", _recomputed_challenge(args), args[1][2]):
        harness.verify(args)


@pytest.mark.parametrize("case", RS["invalid"], ids=_ids(RS["invalid"]))
def test_vrf_rs_invalid_vector_never_reaches_the_chain(case: dict[str, str]) -> None:
    # Both vrf-rs vectors are short proofs (66 and 16 bytes); the 81 bytes are split into the
    # contract's words off chain, so the decoder is what rejects them.
    with pytest.raises(InvalidProof, match="bytes, expected 81"):
        _args(_bytes(case["pub"]), _bytes(case["pi"]), _bytes(case["message"]))


# -- one field altered ------------------------------------------------------------------------


def _altered_cases() -> Iterator[Any]:
    neg_gamma, neg_u = ec.neg(GAMMA), ec.neg(U)
    neg_sh, neg_cgamma = ec.neg(SH), ec.neg(CGAMMA)
    yield pytest.param(
        {"gamma": neg_gamma}, ("VRFVerifierWitnessMismatch", Operand.C_GAMMA, *CGAMMA), id="gamma-negated"
    )
    gx1 = _off_curve(GAMMA[0] + 1, GAMMA[1])
    yield pytest.param({"gamma": gx1}, ("VRFVerifierNotOnCurve", Operand.GAMMA, *gx1), id="gamma-x-plus-one")
    gy1 = _off_curve(GAMMA[0], GAMMA[1] + 1)
    yield pytest.param({"gamma": gy1}, ("VRFVerifierNotOnCurve", Operand.GAMMA, *gy1), id="gamma-y-plus-one")
    yield pytest.param({"c": C + 1}, ("VRFVerifierWitnessMismatch", Operand.U_POINT, *U), id="c-plus-one")
    yield pytest.param({"s": S + 1}, ("VRFVerifierWitnessMismatch", Operand.U_POINT, *U), id="s-plus-one")
    yield pytest.param({"u": neg_u}, ("VRFVerifierWitnessMismatch", Operand.U_POINT, *neg_u), id="u-negated")
    yield pytest.param(
        {"u": ec.GENERATOR},
        ("VRFVerifierWitnessMismatch", Operand.U_POINT, *ec.GENERATOR),
        id="u-replaced",
    )
    ux1 = _off_curve(U[0] + 1, U[1])
    yield pytest.param({"u": ux1}, ("VRFVerifierNotOnCurve", Operand.U_POINT, *ux1), id="u-x-plus-one")
    yield pytest.param({"sh": neg_sh}, ("VRFVerifierWitnessMismatch", Operand.SH, *neg_sh), id="sH-negated")
    shy1 = _off_curve(SH[0], SH[1] + 1)
    yield pytest.param({"sh": shy1}, ("VRFVerifierNotOnCurve", Operand.SH, *shy1), id="sH-y-plus-one")
    yield pytest.param(
        {"cgamma": neg_cgamma},
        ("VRFVerifierWitnessMismatch", Operand.C_GAMMA, *neg_cgamma),
        id="cGamma-negated",
    )
    cgx1 = _off_curve(CGAMMA[0] + 1, CGAMMA[1])
    yield pytest.param(
        {"cgamma": cgx1}, ("VRFVerifierNotOnCurve", Operand.C_GAMMA, *cgx1), id="cGamma-x-plus-one"
    )


@pytest.mark.parametrize(("fields", "error"), list(_altered_cases()))
def test_proof_or_witness_field_altered_reverts_with_its_error(
    harness: Harness, reverts: Reverts, fields: dict[str, Any], error: tuple[Any, ...]
) -> None:
    assert harness.verify(ARGS) == BETA  # the unaltered arguments verify

    with reverts(*error):
        harness.verify(_replace(ARGS, **fields))


@pytest.mark.parametrize(
    "proof",
    [
        pytest.param(_encode(ec.neg(GAMMA), C, S), id="gamma-negated"),
        pytest.param(_encode(ec.GENERATOR, C, S), id="gamma-replaced"),
        pytest.param(_encode(GAMMA, C + 1, S), id="c-plus-one"),
        pytest.param(_encode(GAMMA, C, S + 1), id="s-plus-one"),
    ],
)
def test_altered_proof_with_honest_witnesses_fails_the_challenge(
    harness: Harness, reverts: Reverts, proof: bytes
) -> None:
    args = _args(PK, proof, ALPHA)

    with reverts("VRFVerifierChallengeMismatch", _recomputed_challenge(args), args[1][2]):
        harness.verify(args)


def test_proof_for_another_message_reverts(harness: Harness, reverts: Reverts) -> None:
    other = b"another input"
    with reverts("VRFVerifierWitnessMismatch", Operand.SH, *SH):
        harness.verify(_replace(ARGS, message=other))
    honest = _args(PK, PROOF, other)
    with reverts("VRFVerifierChallengeMismatch", _recomputed_challenge(honest), C):
        harness.verify(honest)


def test_proof_under_another_key_reverts(harness: Harness, reverts: Reverts) -> None:
    other = public_key((7).to_bytes(32, "big"))
    with reverts("VRFVerifierWitnessMismatch", Operand.U_POINT, *U):
        harness.verify(_replace(ARGS, pk=decompress(other)))
    honest = _args(other, PROOF, ALPHA)
    with reverts("VRFVerifierChallengeMismatch", _recomputed_challenge(honest), C):
        harness.verify(honest)


# -- malformed inputs -------------------------------------------------------------------------


@pytest.mark.parametrize(("c", "s"), [(0, S), (C, 0), (0, 0)], ids=["c-zero", "s-zero", "both-zero"])
def test_zero_scalar_reverts(harness: Harness, reverts: Reverts, c: int, s: int) -> None:
    with reverts("VRFVerifierZeroScalar", c, s):
        harness.verify(_replace(ARGS, c=c, s=s))


@pytest.mark.parametrize(
    ("c", "s"),
    [(C, ec.N), (C, ec.N + 1), (C, 2**256 - 1), (2**128, S), (C + 2**128, S)],
    ids=["s-is-n", "s-is-n-plus-one", "s-max", "c-is-2^128", "c-plus-2^128"],
)
def test_scalar_out_of_range_reverts(harness: Harness, reverts: Reverts, c: int, s: int) -> None:
    with reverts("VRFVerifierScalarOutOfRange", c, s):
        harness.verify(_replace(ARGS, c=c, s=s))


_FIELDS = {
    Operand.PUBLIC_KEY: ("pk", ARGS[0]),
    Operand.GAMMA: ("gamma", GAMMA),
    Operand.U_POINT: ("u", U),
    Operand.SH: ("sh", SH),
    Operand.C_GAMMA: ("cgamma", CGAMMA),
}


@pytest.mark.parametrize("operand", list(_FIELDS), ids=[o.name for o in _FIELDS])
@pytest.mark.parametrize("coordinate", [0, 1], ids=["x", "y"])
def test_coordinate_not_below_p_reverts(
    harness: Harness, reverts: Reverts, operand: Operand, coordinate: int
) -> None:
    # x + p (or y + p) is the same point mod p: the canonical-form check must catch it.
    field, point = _FIELDS[operand]
    bad = (point[0] + ec.P, point[1]) if coordinate == 0 else (point[0], point[1] + ec.P)
    if max(bad) >= 2**256:
        bad = (ec.P, point[1]) if coordinate == 0 else (point[0], ec.P)

    with reverts("VRFVerifierCoordinateOutOfRange", operand, *bad):
        harness.verify(_replace(ARGS, **{field: bad}))


@pytest.mark.parametrize("operand", list(_FIELDS), ids=[o.name for o in _FIELDS])
def test_point_off_the_curve_reverts(harness: Harness, reverts: Reverts, operand: Operand) -> None:
    field, point = _FIELDS[operand]
    bad = _off_curve(point[0], (point[1] + 1) % ec.P)

    with reverts("VRFVerifierNotOnCurve", operand, *bad):
        harness.verify(_replace(ARGS, **{field: bad}))


def _point_with_x_not_below_n() -> Point:
    point = next(p for k in range(100) if (p := ec.lift_x(ec.N + k, odd=False)) is not None)
    assert ec.N <= point[0] < ec.P
    return point


def test_public_key_with_x_not_below_n_is_unrecoverable(harness: Harness, reverts: Reverts) -> None:
    key = _point_with_x_not_below_n()
    with reverts("VRFVerifierUnrecoverablePoint", Operand.PUBLIC_KEY, key[0]):
        harness.verify(_replace(ARGS, pk=key))


def test_gamma_with_x_not_below_n_is_unrecoverable(harness: Harness, reverts: Reverts) -> None:
    gamma = _point_with_x_not_below_n()
    with reverts("VRFVerifierUnrecoverablePoint", Operand.GAMMA, gamma[0]):
        harness.verify(_replace(ARGS, gamma=gamma))


def test_witnesses_sharing_x_revert_before_the_addition(harness: Harness, reverts: Reverts) -> None:
    # s = −c·x gives sH = −cGamma: every witness is a true product, but V needs a doubling.
    x = int.from_bytes(SK, "big")
    proof = _encode(GAMMA, C, (-C * x) % ec.N)
    args = _args(PK, proof, ALPHA)
    assert args[4][:2] == ec.neg(args[4][2:])

    with reverts("VRFVerifierDegenerateAddition", args[4][0]):
        harness.verify(args)


# -- gas ----------------------------------------------------------------------------------------


def test_verify_gas_is_well_under_the_claim_budget(harness: Harness) -> None:
    # Prepare: every valid vector with a proof, as on-chain arguments
    cases = [_args(_bytes(c["pub"]), _bytes(c["pi"]), _bytes(c["message"])) for c in SOL["verify"]["valid"]]
    cases += [_vector_args(c) for c in SOL["fastVerify"]["valid"]]

    # Execute: the library's cost is verify's gas minus that of a call taking the same arguments
    costs = [harness.gas_used("verify", a) - harness.gas_used("verifyBaseline", a) for a in cases]

    # Assert
    print(
        f"\nVRFVerifier.verify gas over {len(costs)} vectors: mean {statistics.mean(costs):,.0f}, "
        f"min {min(costs):,}, max {max(costs):,}"
    )
    assert max(costs) < VERIFY_GAS_BUDGET


def test_verify_with_hash_roots_costs_less_than_computing_the_roots(harness: Harness) -> None:
    # Prepare: every witnet valid vector with its hash-to-curve roots
    cases = [
        compute_fast_verify_params(_bytes(c["pub"]), _bytes(c["pi"]), _bytes(c["message"]))
        for c in SOL["verify"]["valid"]
    ]

    # Execute
    computed = [harness.gas_used("verify", p.fast_verify_args()) for p in cases]
    supplied = [
        harness.gas_used("verifyWithHashRoots", (*p.fast_verify_args(), list(p.hash_roots))) for p in cases
    ]

    # Assert: same outputs, and cheaper for every vector (a modexp per try replaced by a mulmod)
    assert all(
        harness.verify_with_hash_roots(p.fast_verify_args(), p.hash_roots)
        == harness.verify(p.fast_verify_args())
        for p in cases
    )
    print(
        f"\nverify {statistics.mean(computed):,.0f} gas vs verifyWithHashRoots {statistics.mean(supplied):,.0f}"
    )
    assert all(s < c for s, c in zip(supplied, computed, strict=True))


@pytest.mark.parametrize(
    "case", SOL["hashToTryAndIncrement"]["valid"], ids=_ids(SOL["hashToTryAndIncrement"]["valid"])
)
def test_hash_to_curve_with_roots_matches_witnet_hashToTryAndIncrement(
    harness: Harness, case: dict[str, Any]
) -> None:
    pk, message = _point(case["publicKey"]), _bytes(case["message"])
    roots = vrf.hash_to_curve_roots(_uncompressed(pk), message)
    fn = harness.contract.functions.hashToCurveWithRoots(pk, message, list(roots))
    assert tuple(call_view(fn, "hashToCurveWithRoots", harness.decoder)) == _point(case["hashPoint"])


# -- properties ---------------------------------------------------------------------------------

secret_keys = st.integers(min_value=1, max_value=ec.N - 1).map(lambda x: x.to_bytes(32, "big"))
alphas = st.binary(max_size=64)
_PROPERTY_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@_PROPERTY_SETTINGS
@given(sk=secret_keys, alpha=alphas)
def test_any_honest_proof_verifies_on_chain_to_pythons_beta(
    harness: Harness, sk: bytes, alpha: bytes
) -> None:
    pk = public_key(sk)
    pi = prove(sk, alpha)

    params = compute_fast_verify_params(pk, pi, alpha)

    beta = harness.verify(params.fast_verify_args())

    assert beta == verify(pk, pi, alpha)
    assert harness.verify_with_hash_roots(params.fast_verify_args(), params.hash_roots) == beta
    assert harness.hash_to_curve(decompress(pk), alpha) == hash_to_curve(pk, alpha)


@_PROPERTY_SETTINGS
@given(
    sk=secret_keys,
    alpha=alphas,
    index=st.integers(min_value=0, max_value=vrf.PROOF_LEN - 1),
    flip=st.integers(min_value=1, max_value=255),
)
def test_any_single_byte_change_is_rejected_off_or_on_chain(
    harness: Harness, sk: bytes, alpha: bytes, index: int, flip: int
) -> None:
    pk = public_key(sk)
    pi = bytearray(prove(sk, alpha))
    pi[index] ^= flip

    with pytest.raises(InvalidProof):  # Python's verifier rejects it ...
        verify(pk, bytes(pi), alpha)
    try:
        args = _args(pk, bytes(pi), alpha)
    except InvalidProof:
        return  # the 81 bytes do not decode (bad prefix, Gamma off the curve, s >= n): never sent
    roots = vrf.hash_to_curve_roots(pk, alpha)
    for check in (lambda: harness.verify(args), lambda: harness.verify_with_hash_roots(args, roots)):
        with pytest.raises(ChainError) as info:  # ... and so does the contract, either way
            check()
        assert info.value.error_name is not None and info.value.error_name.startswith("VRFVerifier")
