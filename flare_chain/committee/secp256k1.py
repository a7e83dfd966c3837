"""Affine secp256k1 point helpers for the VRF: encodings in pure ints, arithmetic in libsecp256k1.

Points are ``(x, y)`` tuples of ints, the form the Solidity verifier takes them
in; ``None`` stands for the point at infinity wherever a sum or product can
land on it. Multiplication and addition go through coincurve (libsecp256k1);
square roots and the on-curve check are plain modular arithmetic, since the
field prime is 3 mod 4 (``sqrt(a) = a^((p+1)/4)``).

Curve constants are those of SEC 2 (v2), section 2.4.1.
"""

from __future__ import annotations

from coincurve import PublicKey

__all__ = [
    "GENERATOR",
    "N",
    "P",
    "Point",
    "add",
    "compress",
    "is_on_curve",
    "lift_x",
    "mul",
    "neg",
    "parse_point",
]

Point = tuple[int, int]

P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
"""The field prime."""
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
"""The group order (the cofactor is 1)."""
GENERATOR: Point = (
    0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
    0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8,
)


def is_on_curve(point: Point) -> bool:
    """True when ``point`` has coordinates in [0, p) and satisfies y² = x³ + 7."""
    x, y = point
    return 0 <= x < P and 0 <= y < P and (y * y - x * x * x - 7) % P == 0


def lift_x(x: int, odd: bool) -> Point | None:
    """The curve point with this ``x`` and y of the given parity, or None if there is none."""
    if not 0 <= x < P:
        return None
    rhs = (x * x * x + 7) % P
    y = pow(rhs, (P + 1) // 4, P)
    if y * y % P != rhs:
        return None
    if (y & 1) != odd:
        y = P - y
    return (x, y)


def compress(point: Point) -> bytes:
    """SEC 1 compressed encoding: ``0x02 | parity(y)`` then x as 32 big-endian bytes."""
    x, y = point
    return bytes([2 | (y & 1)]) + x.to_bytes(32, "big")


def parse_point(data: bytes) -> Point:
    """Decode a 33-byte compressed or 65-byte uncompressed SEC 1 point.

    Raises ``ValueError`` naming what is wrong (length, prefix, off-curve); the
    callers turn it into the ``FlareError`` that fits their context.
    """
    if len(data) == 33:
        if data[0] not in (2, 3):
            raise ValueError(f"compressed point has prefix 0x{data[0]:02x}, expected 0x02 or 0x03")
        x = int.from_bytes(data[1:], "big")
        point = lift_x(x, data[0] == 3)
        if point is None:
            raise ValueError(f"x = 0x{x:064x} is not the x-coordinate of a secp256k1 point")
        return point
    if len(data) == 65:
        if data[0] != 4:
            raise ValueError(f"uncompressed point has prefix 0x{data[0]:02x}, expected 0x04")
        point = (int.from_bytes(data[1:33], "big"), int.from_bytes(data[33:], "big"))
        if not is_on_curve(point):
            raise ValueError("uncompressed point is not on secp256k1")
        return point
    raise ValueError(f"point encoding is {len(data)} bytes, expected 33 (compressed) or 65 (uncompressed)")


def _to_lib(point: Point) -> PublicKey:
    return PublicKey.from_point(*point)


def mul(scalar: int, point: Point = GENERATOR) -> Point | None:
    """``scalar · point`` (scalar taken mod n); None when the product is infinity."""
    scalar %= N
    if scalar == 0:
        return None
    if point == GENERATOR:
        product = PublicKey.from_secret(scalar.to_bytes(32, "big"))
    else:
        product = _to_lib(point).multiply(scalar.to_bytes(32, "big"))
    return product.point()


def add(a: Point | None, b: Point | None) -> Point | None:
    """``a + b`` with None as the point at infinity."""
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0] and a[1] != b[1]:
        return None  # b = -a
    return PublicKey.combine_keys([_to_lib(a), _to_lib(b)]).point()


def neg(point: Point) -> Point:
    """``-point``: same x, y mirrored."""
    return (point[0], (P - point[1]) % P)
