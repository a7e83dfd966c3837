"""ECVRF on secp256k1, cipher suite ``SECP256K1_SHA256_TAI`` (suite byte 0xFE).

The committee draws its members from VRF outputs, and a node's Ethereum key is
its VRF key, so the proofs here must verify in witnet's Solidity verifier and
agree with witnet's Rust prover. The construction is draft-irtf-cfrg-vrf-05
(section 5) with the choices made by witnet/vrf-rs (``src/openssl/mod.rs``,
suite ``SECP256K1_SHA256_TAI``) and witnet/vrf-solidity (``contracts/VRF.sol``):

* hash to curve, try-and-increment: for ``ctr`` = 0, 1, …
  ``x = sha256(0xFE ‖ 0x01 ‖ compressed(Y) ‖ alpha ‖ ctr)`` read as a big-endian
  integer; the first ``x`` that is a curve x-coordinate (below p) gives
  ``H = (x, even y)``, i.e. the string ``0x02 ‖ digest`` decoded as a point;
  the cofactor is 1, so no clearing step;
* nonce: RFC 6979 section 3.2 with HMAC-SHA256, secret key ``x`` and message
  ``compressed(H)`` (``h1 = sha256(compressed(H))``, as in draft-05);
* challenge: ``c = sha256(0xFE ‖ 0x02 ‖ H ‖ Gamma ‖ U ‖ V)[:16]``, each point
  compressed (33 bytes);
* proof: ``compressed(Gamma) (33) ‖ c (16) ‖ s (32)``, 81 bytes, with
  ``Gamma = x·H``, ``s = k + c·x mod n``;
* output: ``beta = sha256(0xFE ‖ 0x03 ‖ compressed(Gamma))``.

For the on-chain verifier this module also computes the witness points of
witnet's ``fastVerify`` (the ``ecrecover`` trick, after V. Buterin's ethresear.ch
note): ``U = s·B − c·Y``, ``s·H`` and ``c·Gamma``. ``fast_verify`` is a Python
model of that contract function, so the same vectors serve both sides.

Secrets are handled with Python integers, which are not constant-time: run
``prove`` only where timing cannot be observed by an adversary (the node's own
machine), as vrf-rs also warns.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from coincurve import PublicKey
from eth_utils import keccak, to_checksum_address

from flare_chain.committee import secp256k1 as ec
from flare_chain.committee.secp256k1 import Point
from flare_chain.errors import ConfigError, IntegrityError

__all__ = [
    "BETA_LEN",
    "PROOF_LEN",
    "SUITE",
    "FastVerifyParams",
    "InvalidProof",
    "Point",
    "address_of",
    "compute_fast_verify_params",
    "decode_proof",
    "decompress",
    "fast_verify",
    "hash_to_curve",
    "hash_to_curve_roots",
    "proof_to_hash",
    "prove",
    "public_key",
    "verify",
]

SUITE = 0xFE
"""Suite string of ``SECP256K1_SHA256_TAI`` in witnet's implementations."""
PROOF_LEN = 81
"""Bytes in a proof: compressed Gamma (33), c (16), s (32)."""
BETA_LEN = 32
"""Bytes in a VRF output (a SHA-256 digest)."""
_C_LEN = 16
_HASH_TO_CURVE_TRIES = 256  # ctr is one byte; failing all 256 has probability ~2^-256


class InvalidProof(IntegrityError):
    """A VRF proof is malformed or does not verify for the given key and input."""


# -- keys ---------------------------------------------------------------------------------------


def _secret_scalar(secret_key: bytes) -> int:
    if not isinstance(secret_key, bytes | bytearray) or len(secret_key) != 32:
        size = len(secret_key) if isinstance(secret_key, bytes | bytearray) else type(secret_key).__name__
        raise ConfigError(f"VRF secret key must be 32 bytes, got {size}")
    x = int.from_bytes(secret_key, "big")
    if not 0 < x < ec.N:
        raise ConfigError("VRF secret key is out of range: it must be in [1, n-1] for secp256k1")
    return x


def decompress(public_key: bytes) -> Point:
    """Decode a public key (33-byte compressed or 65-byte uncompressed) to ``(x, y)``.

    Raises ``ConfigError`` naming the problem when the bytes are not a point of
    secp256k1.
    """
    try:
        return ec.parse_point(bytes(public_key))
    except ValueError as exc:
        raise ConfigError(f"bad VRF public key {bytes(public_key).hex()}: {exc}") from None


def public_key(secret_key: bytes) -> bytes:
    """The 33-byte compressed public key ``x·B`` of a 32-byte secret key."""
    return PublicKey.from_secret(_secret_scalar(secret_key).to_bytes(32, "big")).format(compressed=True)


def address_of(public_key: bytes) -> str:
    """The EIP-55 checksummed Ethereum address of a public key (compressed or uncompressed).

    It is the last 20 bytes of ``keccak256(x ‖ y)``, the same address the node's
    transactions come from, so the chain can tie a VRF key to a registered node.
    """
    x, y = decompress(public_key)
    return to_checksum_address(keccak(x.to_bytes(32, "big") + y.to_bytes(32, "big"))[-20:])


# -- the suite's hash functions -------------------------------------------------------------


def _hash_to_curve_point(pk: Point, alpha: bytes) -> Point:
    prefix = bytes([SUITE, 0x01]) + ec.compress(pk) + bytes(alpha)
    for ctr in range(_HASH_TO_CURVE_TRIES):
        x = int.from_bytes(hashlib.sha256(prefix + bytes([ctr])).digest(), "big")
        point = ec.lift_x(x, odd=False)
        if point is not None:
            return point
    raise IntegrityError(f"hash_to_curve found no curve point in {_HASH_TO_CURVE_TRIES} tries")


def hash_to_curve(public_key: bytes, alpha: bytes) -> Point:
    """``H``: the input ``alpha`` hashed onto the curve under ``public_key`` (try-and-increment).

    Deterministic; identical to witnet's ``hashToTryAndIncrement``.
    """
    return _hash_to_curve_point(decompress(public_key), alpha)


def hash_to_curve_roots(public_key: bytes, alpha: bytes) -> tuple[int, ...]:
    """The square roots that let a contract check ``hash_to_curve`` without computing any.

    One per try, as ``VRFVerifier.verifyWithHashRoots`` takes them: for each
    failed try a square root of ``−(x³ + 7)`` mod p (it exists exactly when
    ``x³ + 7`` has none, since −1 is not a square mod p), 0 for the
    (probability 2^-224) try whose ``x`` is not below p; for the last, the
    square root of ``x³ + 7``, i.e. ``H``'s y up to sign. Deterministic.
    """
    prefix = bytes([SUITE, 0x01]) + ec.compress(decompress(public_key)) + bytes(alpha)
    roots: list[int] = []
    for ctr in range(_HASH_TO_CURVE_TRIES):
        x = int.from_bytes(hashlib.sha256(prefix + bytes([ctr])).digest(), "big")
        if x >= ec.P:
            roots.append(0)
            continue
        rhs = (x * x * x + 7) % ec.P
        root = pow(rhs, (ec.P + 1) // 4, ec.P)
        if root * root % ec.P == rhs:
            roots.append(root)
            return tuple(roots)
        roots.append(pow(ec.P - rhs, (ec.P + 1) // 4, ec.P))
    raise IntegrityError(f"hash_to_curve found no curve point in {_HASH_TO_CURVE_TRIES} tries")


def _hash_points(*points: Point) -> int:
    data = bytes([SUITE, 0x02]) + b"".join(ec.compress(p) for p in points)
    return int.from_bytes(hashlib.sha256(data).digest()[:_C_LEN], "big")


def _gamma_to_hash(gamma: Point) -> bytes:
    return hashlib.sha256(bytes([SUITE, 0x03]) + ec.compress(gamma)).digest()


def _nonce(x: int, h_string: bytes) -> int:
    """RFC 6979 section 3.2 with HMAC-SHA256; qlen = 256, so bits2int needs no shift."""
    key = x.to_bytes(32, "big")
    h1 = int.from_bytes(hashlib.sha256(h_string).digest(), "big") % ec.N  # bits2octets
    msg = h1.to_bytes(32, "big")
    v = b"\x01" * 32
    k = b"\x00" * 32
    k = hmac.digest(k, v + b"\x00" + key + msg, "sha256")
    v = hmac.digest(k, v, "sha256")
    k = hmac.digest(k, v + b"\x01" + key + msg, "sha256")
    v = hmac.digest(k, v, "sha256")
    while True:
        v = hmac.digest(k, v, "sha256")
        nonce = int.from_bytes(v, "big")
        if 0 < nonce < ec.N:
            return nonce
        k = hmac.digest(k, v + b"\x00", "sha256")
        v = hmac.digest(k, v, "sha256")


# -- prove / verify -------------------------------------------------------------------------


def prove(secret_key: bytes, alpha: bytes) -> bytes:
    """The 81-byte VRF proof of ``alpha`` under a 32-byte secret key.

    Deterministic (RFC 6979 nonce): the same key and input always give the same
    proof, byte for byte the one witnet/vrf-rs produces.
    """
    x = _secret_scalar(secret_key)
    y_point = ec.mul(x)
    assert y_point is not None  # 0 < x < n
    h = _hash_to_curve_point(y_point, alpha)
    gamma = ec.mul(x, h)
    k = _nonce(x, ec.compress(h))
    u, v = ec.mul(k), ec.mul(k, h)
    assert gamma is not None and u is not None and v is not None  # x, k in [1, n-1], prime order
    c = _hash_points(h, gamma, u, v)
    s = (k + c * x) % ec.N
    return ec.compress(gamma) + c.to_bytes(_C_LEN, "big") + s.to_bytes(32, "big")


def decode_proof(proof: bytes) -> tuple[Point, int, int]:
    """Split a proof into ``(Gamma, c, s)``, rejecting malformed encodings.

    Raises ``InvalidProof`` when the proof is not 81 bytes, Gamma's prefix is
    not 0x02/0x03, Gamma is not a curve point, or ``s >= n``. A well-formed
    proof may still fail ``verify``.
    """
    proof = bytes(proof)
    if len(proof) != PROOF_LEN:
        raise InvalidProof(f"VRF proof is {len(proof)} bytes, expected {PROOF_LEN} (Gamma 33, c 16, s 32)")
    try:
        gamma = ec.parse_point(proof[:33])
    except ValueError as exc:
        raise InvalidProof(f"VRF proof's Gamma is malformed: {exc}") from None
    c = int.from_bytes(proof[33 : 33 + _C_LEN], "big")
    s = int.from_bytes(proof[33 + _C_LEN :], "big")
    if s >= ec.N:
        raise InvalidProof("VRF proof's s is not below the group order n")
    return gamma, c, s


def proof_to_hash(proof: bytes) -> bytes:
    """The 32-byte output ``beta`` a proof commits to.

    Only decodes the proof; it does not check it. Use ``verify`` for any proof
    that did not come from ``prove`` on this machine.
    """
    gamma, _, _ = decode_proof(proof)
    return _gamma_to_hash(gamma)


def _mul_sub_mul(a: int, p: Point, b: int, q: Point) -> Point | None:
    return ec.add(ec.mul(a, p), ec.mul(-b, q))


def verify(public_key: bytes, proof: bytes, alpha: bytes) -> bytes:
    """Check ``proof`` for ``alpha`` under ``public_key`` and return ``beta`` (32 bytes).

    Raises ``InvalidProof`` naming the failed step (malformed proof, or the
    recomputed challenge differs from ``c``), and ``ConfigError`` when
    ``public_key`` is not a secp256k1 point.
    """
    y_point = decompress(public_key)
    gamma, c, s = decode_proof(proof)
    h = _hash_to_curve_point(y_point, alpha)
    u = _mul_sub_mul(s, ec.GENERATOR, c, y_point)
    v = _mul_sub_mul(s, h, c, gamma)
    if u is None or v is None:
        # Never so for an honest proof: there U = k·B and V = k·H with 0 < k < n.
        raise InvalidProof("VRF proof does not verify: U or V is the point at infinity")
    if _hash_points(h, gamma, u, v) != c:
        raise InvalidProof(
            f"VRF proof does not verify for public key {ec.compress(y_point).hex()} and input "
            f"0x{bytes(alpha).hex()}: recomputed challenge differs from c"
        )
    return _gamma_to_hash(gamma)


# -- fastVerify witness (ecrecover) ---------------------------------------------------------


@dataclass(frozen=True)
class FastVerifyParams:
    """Everything witnet's ``fastVerify`` takes, as integers.

    ``u_point = s·B − c·Y``; ``s_h = s·H`` and ``c_gamma = c·Gamma`` let the
    contract get ``V = s_h − c_gamma`` with one affine subtraction after
    checking both products with ``ecrecover``.
    """

    public_key: Point
    gamma: Point
    c: int
    s: int
    message: bytes
    u_point: Point
    s_h: Point
    c_gamma: Point
    hash_roots: tuple[int, ...] = ()
    """``hash_to_curve_roots`` of the key and message, for ``verifyWithHashRoots`` (and ``claimSeat``)."""

    def proof_words(self) -> tuple[int, int, int, int]:
        """``[gamma-x, gamma-y, c, s]``, the contract's ``uint256[4] proof``."""
        return (self.gamma[0], self.gamma[1], self.c, self.s)

    def v_components(self) -> tuple[int, int, int, int]:
        """``[sH-x, sH-y, cGamma-x, cGamma-y]``, the contract's ``uint256[4] vComponents``."""
        return (*self.s_h, *self.c_gamma)

    def fast_verify_args(
        self,
    ) -> tuple[tuple[int, int], tuple[int, int, int, int], bytes, tuple[int, int], tuple[int, int, int, int]]:
        """Arguments of ``fastVerify(uint256[2] publicKey, uint256[4] proof, bytes message,
        uint256[2] uPoint, uint256[4] vComponents)``, in that order."""
        return (self.public_key, self.proof_words(), self.message, self.u_point, self.v_components())


def compute_fast_verify_params(public_key: bytes, proof: bytes, alpha: bytes) -> FastVerifyParams:
    """The ``fastVerify`` witness points for a proof, as witnet's ``computeFastVerifyParams``.

    Only decodes the proof (``InvalidProof`` if malformed); it does not verify
    it, so the witness of a bad proof can be computed and shown to fail on
    chain. Raises ``InvalidProof`` if a witness point is at infinity, which
    no honest proof produces.
    """
    y_point = decompress(public_key)
    gamma, c, s = decode_proof(proof)
    h = _hash_to_curve_point(y_point, alpha)
    u = _mul_sub_mul(s, ec.GENERATOR, c, y_point)
    s_h, c_gamma = ec.mul(s, h), ec.mul(c, gamma)
    if u is None or s_h is None or c_gamma is None:
        raise InvalidProof("fastVerify witness has a point at infinity (s = 0, c = 0 or U = O)")
    roots = hash_to_curve_roots(public_key, alpha)
    return FastVerifyParams(y_point, gamma, c, s, bytes(alpha), u, s_h, c_gamma, roots)


def _point_address(point: Point) -> bytes:
    return keccak(point[0].to_bytes(32, "big") + point[1].to_bytes(32, "big"))[-20:]


def _ecrecover(h: int, parity: int, r: int, s: int) -> bytes | None:
    """The EVM ``ecrecover`` precompile: the 20-byte address, or None where it returns 0."""
    if not (0 < r < ec.N and 0 < s < ec.N):
        return None
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([parity])
    try:
        key = PublicKey.from_signature_and_message(sig, h.to_bytes(32, "big"), hasher=None)
    except ValueError:
        return None
    return _point_address(key.point())


def fast_verify(
    public_key: tuple[int, int],
    proof: tuple[int, int, int, int],
    message: bytes,
    u_point: tuple[int, int],
    v_components: tuple[int, int, int, int],
) -> bytes:
    """Python model of witnet's ``fastVerify``: ``fast_verify(*params.fast_verify_args())``.

    Checks ``U = s·B − c·Y``, ``sH = s·H`` and ``cGamma = c·Gamma`` the way the
    contract does, with ``ecrecover`` (so each holds up to a 160-bit address
    match), then ``c = hash_points(H, Gamma, U, sH − cGamma)``. Returns beta or
    raises ``InvalidProof`` naming the first failed check; every check must
    pass (a contract port must combine them with ``||`` on the failure side).
    """
    y_point: Point = (public_key[0], public_key[1])
    gamma: Point = (proof[0], proof[1])
    c, s = proof[2], proof[3]
    u: Point = (u_point[0], u_point[1])
    s_h: Point = (v_components[0], v_components[1])
    c_gamma: Point = (v_components[2], v_components[3])
    named = {"public key": y_point, "Gamma": gamma, "U": u, "sH": s_h, "cGamma": c_gamma}
    for name, point in named.items():
        if not ec.is_on_curve(point):
            raise InvalidProof(f"fastVerify: {name} is not a secp256k1 point")
    if not (0 <= c < 2 ** (8 * _C_LEN) and 0 <= s < ec.N):
        raise InvalidProof("fastVerify: c or s out of range")
    h = _hash_to_curve_point(y_point, message)
    yx, y_parity = y_point[0], y_point[1] & 1
    # ecrecover(e, v, r, t) = r^-1 (t·R − e·B); with R = Y, e = −s·Yx, t = −c·Yx it is s·B − c·Y.
    if _ecrecover((-s * yx) % ec.N, y_parity, yx, (-c * yx) % ec.N) != _point_address(u):
        raise InvalidProof("fastVerify: U is not s·B − c·Y")
    # With e = 0 and t = k·Rx, ecrecover gives k·R.
    if _ecrecover(0, h[1] & 1, h[0], s * h[0] % ec.N) != _point_address(s_h):
        raise InvalidProof("fastVerify: sH is not s·H")
    if _ecrecover(0, gamma[1] & 1, gamma[0], c * gamma[0] % ec.N) != _point_address(c_gamma):
        raise InvalidProof("fastVerify: cGamma is not c·Gamma")
    v = ec.add(s_h, ec.neg(c_gamma))
    if v is None or _hash_points(h, gamma, u, v) != c:
        raise InvalidProof("fastVerify: recomputed challenge differs from c")
    return _gamma_to_hash(gamma)
