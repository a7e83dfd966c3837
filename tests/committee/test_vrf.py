"""ECVRF SECP256K1_SHA256_TAI agrees with witnet's Rust prover and Solidity verifier.

Vectors: tests/committee/data/witnet_vrf_vectors.json, copied from
witnet/vrf-solidity ``test/data.json`` (commit 076ca33) and the secp256k1 unit
tests of witnet/vrf-rs ``src/openssl/mod.rs`` (commit 660f0aa); the file names
both sources.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flare_chain.committee import secp256k1 as ec
from flare_chain.committee import vrf
from flare_chain.committee.vrf import (
    FastVerifyParams,
    InvalidProof,
    address_of,
    compute_fast_verify_params,
    decode_proof,
    decompress,
    fast_verify,
    hash_to_curve,
    proof_to_hash,
    prove,
    public_key,
    verify,
)
from flare_chain.errors import ConfigError, FlareError, IntegrityError

VECTORS = json.loads((Path(__file__).parent / "data" / "witnet_vrf_vectors.json").read_text())
SOL = VECTORS["witnet_vrf_solidity"]
RS = VECTORS["witnet_vrf_rs"]


def _bytes(hex_string: str) -> bytes:
    digits = hex_string.removeprefix("0x")
    return bytes.fromhex(digits.rjust(len(digits) + len(digits) % 2, "0"))


def _point(d: dict[str, str]) -> tuple[int, int]:
    return (int(d["x"], 16), int(d["y"], 16))


def _uncompressed(d: dict[str, str]) -> bytes:
    x, y = _point(d)
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


def _secret(decimal: str) -> bytes:
    return int(decimal).to_bytes(32, "big")


def _ids(cases: list[dict[str, object]]) -> list[str]:
    return [str(c.get("description") or c.get("priv") or i) for i, c in enumerate(cases)]


SK = bytes.fromhex("c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721")
PK = public_key(SK)
ALPHA = b"sample"
PROOF = prove(SK, ALPHA)


# -- witnet vectors -------------------------------------------------------------------------


@pytest.mark.parametrize("case", SOL["verify"]["valid"], ids=_ids(SOL["verify"]["valid"]))
def test_witnet_valid_proof_verifies_to_published_beta(case: dict[str, str]) -> None:
    # Prepare
    pk, pi, alpha = _bytes(case["pub"]), _bytes(case["pi"]), _bytes(case["message"])

    # Execute
    beta = verify(pk, pi, alpha)

    # Assert
    assert beta == _bytes(case["hash"])
    assert proof_to_hash(pi) == beta


@pytest.mark.parametrize(
    "case",
    [c for c in SOL["verify"]["valid"] if "priv" in c],
    ids=_ids([c for c in SOL["verify"]["valid"] if "priv" in c]),
)
def test_prove_with_witnet_secret_gives_same_key_gamma_and_beta(case: dict[str, str]) -> None:
    # witnet's proofs predate the draft-05 nonce, so c and s differ; Gamma = x·H cannot.
    sk, alpha = _secret(case["priv"]), _bytes(case["message"])

    pi = prove(sk, alpha)

    assert public_key(sk) == _bytes(case["pub"])
    assert pi[:33] == _bytes(case["pi"])[:33]
    assert verify(public_key(sk), pi, alpha) == _bytes(case["hash"])


def test_prove_matches_vrf_rs_byte_for_byte() -> None:
    (case,) = RS["prove"]
    assert prove(_bytes(case["secret_key"]), _bytes(case["message"])) == _bytes(case["pi"])


def test_vrf_rs_verify_vector() -> None:
    (case,) = RS["verify"]
    assert verify(_bytes(case["pub"]), _bytes(case["pi"]), _bytes(case["message"])) == _bytes(case["hash"])


@pytest.mark.parametrize("case", SOL["verify"]["invalid"], ids=_ids(SOL["verify"]["invalid"]))
def test_witnet_invalid_proof_is_rejected(case: dict) -> None:
    with pytest.raises(InvalidProof):
        verify(_uncompressed(case["publicKey"]), _bytes(case["pi"]), _bytes(case["message"]))


@pytest.mark.parametrize("case", RS["invalid"], ids=_ids(RS["invalid"]))
def test_vrf_rs_invalid_proof_is_rejected(case: dict[str, str]) -> None:
    with pytest.raises(InvalidProof):
        verify(_bytes(case["pub"]), _bytes(case["pi"]), _bytes(case["message"]))


@pytest.mark.parametrize("case", SOL["proofs"]["valid"], ids=_ids(SOL["proofs"]["valid"]))
def test_decode_proof_matches_witnet_decodeProof(case: dict) -> None:
    gamma, c, s = decode_proof(_bytes(case["pi"]))
    assert gamma == _point(case["gamma"])
    assert c == int(case["c"], 16)
    assert s == int(case["s"], 16)


@pytest.mark.parametrize("case", SOL["proofs"]["invalid"], ids=_ids(SOL["proofs"]["invalid"]))
def test_decode_proof_rejects_witnet_malformed_proof(case: dict[str, str]) -> None:
    with pytest.raises(InvalidProof):
        decode_proof(_bytes(case["pi"]))


@pytest.mark.parametrize("case", SOL["points"]["valid"], ids=_ids(SOL["points"]["valid"]))
def test_decompress_matches_witnet_decodePoint(case: dict) -> None:
    assert decompress(_bytes(case["compressed"])) == _point(case["uncompressed"])
    assert decompress(_uncompressed(case["uncompressed"])) == _point(case["uncompressed"])


@pytest.mark.parametrize("case", SOL["points"]["invalid"], ids=_ids(SOL["points"]["invalid"]))
def test_decompress_rejects_witnet_malformed_point(case: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="bad VRF public key"):
        decompress(_bytes(case["compressed"]))


@pytest.mark.parametrize(
    "case", SOL["hashToTryAndIncrement"]["valid"], ids=_ids(SOL["hashToTryAndIncrement"]["valid"])
)
def test_hash_to_curve_matches_witnet_hashToTryAndIncrement(case: dict) -> None:
    assert hash_to_curve(_uncompressed(case["publicKey"]), _bytes(case["message"])) == _point(
        case["hashPoint"]
    )


def test_hash_points_matches_witnet_hashPoints() -> None:
    (case,) = SOL["hashPoints"]["valid"]
    points = [_point(case[k]) for k in ("hPoint", "gamma", "uPoint", "vPoint")]
    assert vrf._hash_points(*points) == int(case["hash"], 16)


@pytest.mark.parametrize("case", SOL["ecMul"]["valid"], ids=_ids(SOL["ecMul"]["valid"]))
def test_curve_mul_matches_witnet_ecMul(case: dict) -> None:
    point = (int(case["x"], 16), int(case["y"], 16))
    assert ec.mul(int(case["scalar"]), point) == _point(case["output"])


@pytest.mark.parametrize("case", SOL["ecMulSubMul"]["valid"], ids=_ids(SOL["ecMulSubMul"]["valid"]))
def test_curve_mul_sub_mul_matches_witnet_ecMulSubMul(case: dict) -> None:
    a = (int(case["a1"], 16), int(case["a2"], 16))
    b = (int(case["b1"], 16), int(case["b2"], 16))
    result = ec.add(ec.mul(int(case["scalar1"]), a), ec.mul(-int(case["scalar2"]), b))
    assert result == _point(case["output"])


@pytest.mark.parametrize(
    "case", SOL["ecMulSubMulVerify"]["valid"], ids=_ids(SOL["ecMulSubMulVerify"]["valid"])
)
def test_ecrecover_identity_matches_witnet_ecMulSubMulVerify(case: dict) -> None:
    # The contract's check: ecrecover(-s1·x, v, x, -s2·x) is the address of s1·B − s2·(x, y).
    x, y = int(case["x"], 16), int(case["y"], 16)
    s1, s2 = int(case["scalar1"]), int(case["scalar2"])
    recovered = vrf._ecrecover((-s1 * x) % ec.N, y & 1, x, (-s2 * x) % ec.N)
    assert recovered == vrf._point_address(_point(case["output"]))


def _fast_verify_case(case: dict) -> tuple[bytes, bytes, bytes]:
    return _uncompressed(case["publicKey"]), _bytes(case["pi"]), _bytes(case["message"])


def _witnet_params(case: dict) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    return _point(case["uPoint"]), _point(case["vComponents"]["sH"]), _point(case["vComponents"]["cGamma"])


@pytest.mark.parametrize(
    "case", SOL["computeFastVerifyParams"]["valid"], ids=_ids(SOL["computeFastVerifyParams"]["valid"])
)
def test_fast_verify_params_match_witnet_computeFastVerifyParams(case: dict) -> None:
    params = compute_fast_verify_params(*_fast_verify_case(case))
    assert (params.u_point, params.s_h, params.c_gamma) == _witnet_params(case)


@pytest.mark.parametrize(
    "case", SOL["computeFastVerifyParams"]["invalid"], ids=_ids(SOL["computeFastVerifyParams"]["invalid"])
)
def test_fast_verify_params_differ_where_witnet_says(case: dict) -> None:
    # ``asserts`` says, for [uX, uY, sHX, sHY, cGammaX, cGammaY], which still equal the listed values.
    params = compute_fast_verify_params(*_fast_verify_case(case))
    ours = [*params.u_point, *params.s_h, *params.c_gamma]
    listed = [coord for point in _witnet_params(case) for coord in point]
    assert [a == b for a, b in zip(ours, listed, strict=True)] == case["asserts"]


@pytest.mark.parametrize("case", SOL["fastVerify"]["valid"], ids=_ids(SOL["fastVerify"]["valid"]))
def test_fast_verify_model_accepts_witnet_vector(case: dict) -> None:
    gamma, c, s = decode_proof(_bytes(case["pi"]))
    u, s_h, c_gamma = _witnet_params(case)
    beta = fast_verify(
        _point(case["publicKey"]), (*gamma, c, s), _bytes(case["message"]), u, (*s_h, *c_gamma)
    )
    assert beta == verify(_uncompressed(case["publicKey"]), _bytes(case["pi"]), _bytes(case["message"]))


@pytest.mark.parametrize("case", SOL["fastVerify"]["invalid"], ids=_ids(SOL["fastVerify"]["invalid"]))
def test_fast_verify_model_rejects_witnet_invalid_vector(case: dict) -> None:
    gamma, c, s = decode_proof(_bytes(case["pi"]))
    u, s_h, c_gamma = _witnet_params(case)
    with pytest.raises(InvalidProof, match="fastVerify"):
        fast_verify(_point(case["publicKey"]), (*gamma, c, s), _bytes(case["message"]), u, (*s_h, *c_gamma))


# -- tampering and wrong context ------------------------------------------------------------


def _with(
    proof: bytes, *, gamma: tuple[int, int] | None = None, c: int | None = None, s: int | None = None
) -> bytes:
    g, c0, s0 = decode_proof(proof)
    g, c0, s0 = gamma or g, c0 if c is None else c, s0 if s is None else s
    return ec.compress(g) + c0.to_bytes(16, "big") + s0.to_bytes(32, "big")


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda p: _with(p, gamma=ec.neg(decode_proof(p)[0])), id="gamma-negated"),
        pytest.param(lambda p: _with(p, gamma=ec.GENERATOR), id="gamma-replaced"),
        pytest.param(lambda p: _with(p, c=(decode_proof(p)[1] + 1) % 2**128), id="c-plus-one"),
        pytest.param(lambda p: _with(p, c=0), id="c-zero"),
        pytest.param(lambda p: _with(p, s=(decode_proof(p)[2] + 1) % ec.N), id="s-plus-one"),
        pytest.param(lambda p: _with(p, s=0), id="s-zero"),
    ],
)
def test_proof_with_a_field_altered_is_rejected(tamper) -> None:
    with pytest.raises(InvalidProof, match="does not verify"):
        verify(PK, tamper(PROOF), ALPHA)


def test_s_not_below_group_order_is_malformed() -> None:
    bad = PROOF[:49] + ec.N.to_bytes(32, "big")
    with pytest.raises(InvalidProof, match="s is not below the group order"):
        decode_proof(bad)


def test_gamma_off_curve_is_malformed() -> None:
    x = next(x for x in range(1, 100) if ec.lift_x(x, odd=False) is None)
    bad = b"\x02" + x.to_bytes(32, "big") + PROOF[33:]
    with pytest.raises(InvalidProof, match="Gamma is malformed"):
        verify(PK, bad, ALPHA)


def test_proof_for_another_alpha_is_rejected() -> None:
    with pytest.raises(InvalidProof, match="recomputed challenge differs from c"):
        verify(PK, PROOF, b"another input")


def test_proof_under_another_key_is_rejected() -> None:
    other = public_key((7).to_bytes(32, "big"))
    with pytest.raises(InvalidProof, match="recomputed challenge differs from c"):
        verify(other, PROOF, ALPHA)


def test_prove_is_deterministic_and_81_bytes() -> None:
    assert prove(SK, ALPHA) == PROOF
    assert len(PROOF) == vrf.PROOF_LEN


# -- keys and errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "fragment"),
    [
        (b"\x01" * 31, "must be 32 bytes, got 31"),
        (bytes(32), "out of range"),
        (ec.N.to_bytes(32, "big"), "out of range"),
    ],
)
def test_bad_secret_key_raises_config_error(secret: bytes, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        prove(secret, ALPHA)


def test_bad_public_key_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="expected 33"):
        verify(PK[:32], PROOF, ALPHA)


def test_invalid_proof_is_an_integrity_error() -> None:
    assert issubclass(InvalidProof, IntegrityError)
    assert issubclass(InvalidProof, FlareError)


@pytest.mark.parametrize(
    ("secret", "address"),
    [
        (1, "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"),
        (2, "0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF"),
    ],
)
def test_address_of_is_the_ethereum_address(secret: int, address: str) -> None:
    pk = public_key(secret.to_bytes(32, "big"))
    x, y = decompress(pk)
    assert address_of(pk) == address
    assert address_of(b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")) == address


def test_fast_verify_args_follow_the_solidity_signature() -> None:
    params = compute_fast_verify_params(PK, PROOF, ALPHA)
    gamma, c, s = decode_proof(PROOF)

    args = params.fast_verify_args()

    assert isinstance(params, FastVerifyParams)
    assert args == (decompress(PK), (*gamma, c, s), ALPHA, params.u_point, (*params.s_h, *params.c_gamma))
    assert fast_verify(*args) == verify(PK, PROOF, ALPHA)


def test_importing_vrf_does_not_import_torch() -> None:
    code = "import sys, flare_chain.committee.vrf; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- properties -----------------------------------------------------------------------------

secret_keys = st.integers(min_value=1, max_value=ec.N - 1).map(lambda x: x.to_bytes(32, "big"))
alphas = st.binary(max_size=64)


@settings(max_examples=50, deadline=None)
@given(sk=secret_keys, alpha=alphas)
def test_any_honest_proof_verifies_and_its_hash_is_beta(sk: bytes, alpha: bytes) -> None:
    pk = public_key(sk)
    pi = prove(sk, alpha)

    beta = verify(pk, pi, alpha)

    assert len(pi) == vrf.PROOF_LEN and len(beta) == vrf.BETA_LEN
    assert proof_to_hash(pi) == beta
    assert fast_verify(*compute_fast_verify_params(pk, pi, alpha).fast_verify_args()) == beta


@settings(max_examples=50, deadline=None)
@given(
    sk=secret_keys,
    alpha=alphas,
    index=st.integers(min_value=0, max_value=vrf.PROOF_LEN - 1),
    flip=st.integers(min_value=1, max_value=255),
)
def test_any_single_byte_change_breaks_the_proof(sk: bytes, alpha: bytes, index: int, flip: int) -> None:
    pi = bytearray(prove(sk, alpha))
    pi[index] ^= flip

    with pytest.raises(InvalidProof):
        verify(public_key(sk), bytes(pi), alpha)


@settings(max_examples=50, deadline=None)
@given(sk=secret_keys, alpha=alphas)
def test_hash_to_curve_roots_prove_every_failed_try_and_give_H(sk: bytes, alpha: bytes) -> None:
    # Prepare
    pk = public_key(sk)
    p = ec.P

    # Execute
    roots = vrf.hash_to_curve_roots(pk, alpha)

    # Assert: a square root of -(x^3+7) for each failed try, of x^3+7 (H's y up to sign) at the end
    prefix = bytes([vrf.SUITE, 0x01]) + pk + alpha
    xs = [int.from_bytes(hashlib.sha256(prefix + bytes([i])).digest(), "big") for i in range(len(roots))]
    for x, root in zip(xs[:-1], roots[:-1], strict=True):
        assert x >= p or root * root % p == (-(x**3 + 7)) % p
    hx, hy = hash_to_curve(pk, alpha)
    assert xs[-1] == hx and roots[-1] in (hy, p - hy)


@pytest.mark.parametrize(("field", "span"), [("s", slice(49, 81)), ("c", slice(33, 49))])
def test_fast_verify_params_of_a_proof_with_a_zero_scalar_is_refused(field: str, span: slice) -> None:
    # A forged proof with s = 0 or c = 0 decodes (both are in range) but puts a witness point at
    # infinity, which the contract's fastVerify cannot take: one InvalidProof naming it, not a witness
    # with a missing point that fails later (or on chain) with an opaque error.
    forged = bytearray(PROOF)
    forged[span] = bytes(span.stop - span.start)
    assert decode_proof(bytes(forged))[1 if field == "c" else 2] == 0
    with pytest.raises(InvalidProof, match="point at infinity"):
        compute_fast_verify_params(PK, bytes(forged), ALPHA)
