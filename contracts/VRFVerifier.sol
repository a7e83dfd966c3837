// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title VRFVerifier
/// @notice Verifies ECVRF proofs of the suite SECP256K1_SHA256_TAI (suite byte 0xFE, as
///         witnet/vrf-rs and witnet/vrf-solidity) and returns the VRF output `beta`.
/// @dev The construction is draft-irtf-cfrg-vrf-05 section 5; flare_chain/committee/vrf.py is the
///      reference (prover, verifier and the witness computation used here):
///
///      * `H = hashToCurve(Y, alpha)`: try-and-increment, `x = sha256(0xFE ‖ 0x01 ‖ compressed(Y) ‖
///        alpha ‖ ctr)` for ctr = 0, 1, …, the first `x < p` with `x³ + 7` a square gives `H = (x, even y)`;
///      * the proof is `(Gamma, c, s)` with `c < 2^128`, `0 < s < n`;
///      * it verifies when `c == sha256(0xFE ‖ 0x02 ‖ H ‖ Gamma ‖ U ‖ V)[:16]` (points compressed),
///        `U = s·B − c·Y`, `V = s·H − c·Gamma`;
///      * `beta = sha256(0xFE ‖ 0x03 ‖ compressed(Gamma))`.
///
///      No scalar multiplication is done on chain. The prover supplies `U`, `s·H` and `c·Gamma`
///      (`vrf.compute_fast_verify_params`, the arguments of witnet's `fastVerify`) and each is
///      checked with one `ecrecover` (V. Buterin's trick, as Chainlink's VRF and witnet's
///      `fastVerify`): `ecrecover(e, v, r, t)` returns the address of `r⁻¹·(t·R − e·B)` where `R` is
///      the point with x-coordinate `r` and y-parity `v − 27`. So
///      `ecrecover(−s·Yx, Y, Yx, −c·Yx)` is the address of `s·B − c·Y` and
///      `ecrecover(0, Q, Qx, k·Qx)` the address of `k·Q`. A supplied point passes when its address
///      (last 20 bytes of keccak256(x ‖ y)) equals the recovered one; every check must pass.
///      `V = s·H − c·Gamma` is then one affine addition. Its modular inverse is computed here with
///      the modexp precompile (`d^(p−2)`, 1,360 gas by EIP-2565) rather than supplied by the prover,
///      so the arguments stay exactly those of witnet's `fastVerify` and of
///      `FastVerifyParams.fast_verify_args()`; a prover-supplied inverse checked by one `mulmod`
///      would save about 1.5k gas at the price of a sixth argument.
///
///      Reverts with a `VRFVerifier*` error naming the failed check. Two rejections are not about
///      the proof's validity but about the `ecrecover` technique: a point (Y, H or Gamma) whose x is
///      not below the group order n cannot be used as `r` (`VRFVerifierUnrecoverablePoint`), and
///      `s·H` and `c·Gamma` sharing an x-coordinate would need a doubling or give infinity
///      (`VRFVerifierDegenerateAddition`). Neither happens for an honest proof except with
///      probability about 2^-127.
///
///      Gas (cancun, optimizer 200, measured over witnet's vectors): about 11.6k plus 2.2k per
///      hash-to-curve try (mostly the modexp square root); a try succeeds with probability 1/2.
///      `verifyWithHashRoots` takes those square roots from the prover instead (one `mulmod` each
///      to check, plus 32 bytes of calldata), which is what `FlareCoordinator.claimSeat` uses.
library VRFVerifier {
    /// @notice The points a proof's verification reads, to say which one failed a check.
    enum Operand {
        PublicKey,
        Gamma,
        UPoint,
        SH,
        CGamma,
        HashPoint
    }

    /// @notice Field modulus p of secp256k1.
    uint256 internal constant P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F;
    /// @notice Group order n of secp256k1.
    uint256 internal constant N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
    /// @notice Suite byte of SECP256K1_SHA256_TAI in witnet's implementations.
    uint8 internal constant SUITE = 0xFE;
    /// @notice Tries of the one-byte counter in hash-to-curve.
    uint256 internal constant HASH_TO_CURVE_TRIES = 256;

    /// @dev `(p + 1) / 4`: `a^((p+1)/4)` is a square root of `a` mod p whenever `a` has one (p ≡ 3 mod 4).
    uint256 private constant _SQRT_EXPONENT = (P + 1) / 4;
    /// @dev `p − 2`: `a^(p−2)` is the inverse of `a` mod p (Fermat).
    uint256 private constant _INVERSE_EXPONENT = P - 2;
    /// @dev `c` is 16 bytes.
    uint256 private constant _C_BOUND = 1 << 128;
    /// @dev Addresses of the sha256 and modexp (EIP-198) precompiles.
    uint256 private constant _SHA256 = 0x02;
    uint256 private constant _MODEXP = 0x05;

    /// @notice `c` or `s` is zero; no proof has either.
    error VRFVerifierZeroScalar(uint256 c, uint256 s);

    /// @notice `c` is not below 2^128 or `s` is not below the group order n.
    error VRFVerifierScalarOutOfRange(uint256 c, uint256 s);

    /// @notice A coordinate of `point` is not below the field modulus p.
    error VRFVerifierCoordinateOutOfRange(Operand point, uint256 x, uint256 y);

    /// @notice `point` does not satisfy y² = x³ + 7 (mod p).
    error VRFVerifierNotOnCurve(Operand point, uint256 x, uint256 y);

    /// @notice The x-coordinate of `point` is 0 or not below n, so `ecrecover` cannot take it as `r`.
    error VRFVerifierUnrecoverablePoint(Operand point, uint256 x);

    /// @notice The supplied `witness` (U, sH or cGamma) is not the product it must be.
    error VRFVerifierWitnessMismatch(Operand witness, uint256 x, uint256 y);

    /// @notice sH and cGamma share the x-coordinate `x`: sH − cGamma is infinity or needs a doubling.
    error VRFVerifierDegenerateAddition(uint256 x);

    /// @notice The challenge recomputed from H, Gamma, U and V differs from the proof's `c`.
    error VRFVerifierChallengeMismatch(uint256 recomputed, uint256 c);

    /// @notice `verifyWithHashRoots` got `count` hash-to-curve roots; it takes 1 to `maxCount`.
    error VRFVerifierHashRootCount(uint256 count, uint256 maxCount);

    /// @notice The supplied hash-to-curve `root` of try `ctr` is not the square root it must be
    ///         (of −(x³+7) for a failed try, of x³+7 for the last), or the last try has no point.
    error VRFVerifierHashRootInvalid(uint256 ctr, uint256 root);

    /// @notice No counter value in `tries` tries hashed to a curve point (probability ~2^-256).
    error VRFVerifierHashToCurveFailed(uint256 tries);

    /// @notice The call to the sha256 or modexp `precompile` failed (out of gas).
    error VRFVerifierPrecompileFailed(uint256 precompile);

    /// @notice Verify a VRF proof of `message` under `publicKey` and return its output `beta`.
    /// @dev Arguments are those of witnet's `fastVerify`, in its order; reverts with a
    ///      `VRFVerifier*` error on any failed check.
    /// @param publicKey The prover's public key `Y` as `[x, y]`.
    /// @param proof `[Gamma-x, Gamma-y, c, s]`, the decoded 81-byte proof.
    /// @param message The VRF input `alpha`.
    /// @param uPoint The witness `U = s·B − c·Y` as `[x, y]`.
    /// @param vComponents The witnesses `[sH-x, sH-y, cGamma-x, cGamma-y]`.
    /// @return beta `sha256(0xFE ‖ 0x03 ‖ compressed(Gamma))`, the VRF output.
    function verify(
        uint256[2] memory publicKey,
        uint256[4] memory proof,
        bytes memory message,
        uint256[2] memory uPoint,
        uint256[4] memory vComponents
    ) internal view returns (bytes32 beta) {
        _requireWellFormed(publicKey, proof, uPoint, vComponents);
        (uint256 hx, uint256 hy) = hashToCurve(publicKey, message);
        return _verifyWithHashPoint(publicKey, proof, hx, hy, uPoint, vComponents);
    }

    /// @notice `verify` with the hash-to-curve square roots supplied by the prover: the same checks
    ///         and result, with a `mulmod` per try where `verify` computes a square root.
    /// @dev `hashRoots[i]` for every try but the last is a square root of `−(x_i³ + 7)`, which
    ///      exists exactly when `x_i³ + 7` has none (−1 is not a square mod p, as p ≡ 3 mod 4), so
    ///      it proves the try failed; the last is a square root of `x³ + 7`, giving `H`. `H` is thus
    ///      the first try that succeeds, the point `hashToCurve` computes; no other roots pass.
    ///      A try whose `x` is not below p (probability 2^-224) fails without a root (pass 0).
    ///      `vrf.compute_fast_verify_params` makes them (`FastVerifyParams.hash_roots`). Saves
    ///      about 1.4k gas per try (the modexp square root) and bounds the cost's spread.
    /// @param publicKey The prover's public key `Y` as `[x, y]`.
    /// @param proof `[Gamma-x, Gamma-y, c, s]`, the decoded 81-byte proof.
    /// @param message The VRF input `alpha`.
    /// @param uPoint The witness `U = s·B − c·Y` as `[x, y]`.
    /// @param vComponents The witnesses `[sH-x, sH-y, cGamma-x, cGamma-y]`.
    /// @param hashRoots One square root per hash-to-curve try, as above (1 to 256 entries).
    /// @return beta `sha256(0xFE ‖ 0x03 ‖ compressed(Gamma))`, the VRF output.
    function verifyWithHashRoots(
        uint256[2] memory publicKey,
        uint256[4] memory proof,
        bytes memory message,
        uint256[2] memory uPoint,
        uint256[4] memory vComponents,
        uint256[] memory hashRoots
    ) internal view returns (bytes32 beta) {
        _requireWellFormed(publicKey, proof, uPoint, vComponents);
        (uint256 hx, uint256 hy) = hashToCurveWithRoots(publicKey, message, hashRoots);
        return _verifyWithHashPoint(publicKey, proof, hx, hy, uPoint, vComponents);
    }

    /// @notice `H` as `hashToCurve` computes it, from prover-supplied square roots (see
    ///         `verifyWithHashRoots`); reverts with `VRFVerifierHashRootInvalid` on a wrong root.
    /// @param publicKey `[x, y]` of the prover's key.
    /// @param message The VRF input `alpha`.
    /// @param hashRoots One square root per try.
    /// @return x The x-coordinate of `H`, below p.
    /// @return y The even y-coordinate of `H`.
    function hashToCurveWithRoots(uint256[2] memory publicKey, bytes memory message, uint256[] memory hashRoots)
        internal
        view
        returns (uint256 x, uint256 y)
    {
        uint256 tries = hashRoots.length;
        if (tries == 0 || tries > HASH_TO_CURVE_TRIES) revert VRFVerifierHashRootCount(tries, HASH_TO_CURVE_TRIES);
        bytes memory input =
            abi.encodePacked(SUITE, uint8(0x01), _prefix(publicKey[1]), publicKey[0], message, uint8(0));
        uint256 start;
        assembly ("memory-safe") {
            start := add(input, 0x20)
        }
        uint256 last = tries - 1;
        for (uint256 ctr = 0; ctr < last; ++ctr) {
            _requireFailedTry(ctr, _sha256InPlace(start + input.length - 1, ctr, start, input.length), hashRoots[ctr]);
        }
        x = _sha256InPlace(start + input.length - 1, last, start, input.length);
        y = _hashPointY(last, x, hashRoots[last]);
    }

    /// @dev Revert unless `root` shows that try `ctr` (digest `x`) gave no point: `x ≥ p`, or
    ///      `root² = −(x³ + 7)`, which has a solution exactly when `x³ + 7` has none (−1 is not a
    ///      square mod p). `x³ + 7` is never 0: secp256k1 has no point of order 2.
    function _requireFailedTry(uint256 ctr, uint256 x, uint256 root) private pure {
        if (x >= P) return;
        uint256 rhs = addmod(mulmod(mulmod(x, x, P), x, P), 7, P);
        if (root >= P || mulmod(root, root, P) != P - rhs) revert VRFVerifierHashRootInvalid(ctr, root);
    }

    /// @dev The even y of the point with x-coordinate `x` (try `ctr`, the last), from `root`, a
    ///      square root of `x³ + 7`; reverts if it is not one.
    function _hashPointY(uint256 ctr, uint256 x, uint256 root) private pure returns (uint256) {
        if (x >= P || root >= P || mulmod(root, root, P) != addmod(mulmod(mulmod(x, x, P), x, P), 7, P)) {
            revert VRFVerifierHashRootInvalid(ctr, root);
        }
        return root & 1 == 1 ? P - root : root;
    }

    /// @notice `H`: `message` hashed onto the curve under `publicKey` by try-and-increment.
    /// @dev Identical to witnet's `hashToTryAndIncrement` and `vrf.hash_to_curve`. Reads only the
    ///      key's x and the parity of its y (its compressed form); it does not check the key is a
    ///      curve point (`verify` does).
    /// @param publicKey `[x, y]` of the prover's key.
    /// @param message The VRF input `alpha`.
    /// @return x The x-coordinate of `H`, below p.
    /// @return y The even y-coordinate of `H`.
    function hashToCurve(uint256[2] memory publicKey, bytes memory message)
        internal
        view
        returns (uint256 x, uint256 y)
    {
        bytes memory input =
            abi.encodePacked(SUITE, uint8(0x01), _prefix(publicKey[1]), publicKey[0], message, uint8(0));
        uint256 start;
        uint256 length = input.length;
        assembly ("memory-safe") {
            start := add(input, 0x20)
        }
        uint256 counter = start + length - 1;
        for (uint256 ctr = 0; ctr < HASH_TO_CURVE_TRIES; ++ctr) {
            x = _sha256InPlace(counter, ctr, start, length);
            if (x >= P) continue;
            uint256 rhs = addmod(mulmod(mulmod(x, x, P), x, P), 7, P);
            y = _modExp(rhs, _SQRT_EXPONENT);
            if (mulmod(y, y, P) != rhs) continue;
            if (y & 1 == 1) y = P - y;
            return (x, y);
        }
        revert VRFVerifierHashToCurveFailed(HASH_TO_CURVE_TRIES);
    }

    /// @dev sha256 of the `length` bytes at `start` after writing `ctr` into the byte at `counter`
    ///      (the input's last byte: hashing in place instead of copying per try).
    function _sha256InPlace(uint256 counter, uint256 ctr, uint256 start, uint256 length)
        private
        view
        returns (uint256 digest)
    {
        bool ok;
        assembly ("memory-safe") {
            mstore8(counter, ctr)
            ok := staticcall(gas(), _SHA256, start, length, 0x00, 0x20)
            digest := mload(0x00)
        }
        if (!ok) revert VRFVerifierPrecompileFailed(_SHA256);
    }

    /// @dev Scalars in range, every supplied point on the curve.
    function _requireWellFormed(
        uint256[2] memory publicKey,
        uint256[4] memory proof,
        uint256[2] memory uPoint,
        uint256[4] memory vComponents
    ) private pure {
        uint256 c = proof[2];
        uint256 s = proof[3];
        if (c == 0 || s == 0) revert VRFVerifierZeroScalar(c, s);
        if (c >= _C_BOUND || s >= N) revert VRFVerifierScalarOutOfRange(c, s);
        _requireCurvePoint(Operand.PublicKey, publicKey[0], publicKey[1]);
        _requireCurvePoint(Operand.Gamma, proof[0], proof[1]);
        _requireCurvePoint(Operand.UPoint, uPoint[0], uPoint[1]);
        _requireCurvePoint(Operand.SH, vComponents[0], vComponents[1]);
        _requireCurvePoint(Operand.CGamma, vComponents[2], vComponents[3]);
    }

    /// @dev The checks after `H` is known: the three witnesses, V, the challenge; then beta.
    function _verifyWithHashPoint(
        uint256[2] memory publicKey,
        uint256[4] memory proof,
        uint256 hx,
        uint256 hy,
        uint256[2] memory uPoint,
        uint256[4] memory vComponents
    ) private view returns (bytes32 beta) {
        _requireWitnesses(publicKey, proof, hx, hy, uPoint, vComponents);
        (uint256 vx, uint256 vy) = _subtract(vComponents);
        uint256 recomputed = _challenge(hx, hy, proof, uPoint, vx, vy);
        if (recomputed != proof[2]) revert VRFVerifierChallengeMismatch(recomputed, proof[2]);
        return sha256(abi.encodePacked(SUITE, uint8(0x03), _prefix(proof[1]), proof[0]));
    }

    /// @dev Revert unless `(x, y)` is an affine point of secp256k1 in canonical form.
    function _requireCurvePoint(Operand point, uint256 x, uint256 y) private pure {
        if (x >= P || y >= P) revert VRFVerifierCoordinateOutOfRange(point, x, y);
        if (mulmod(y, y, P) != addmod(mulmod(mulmod(x, x, P), x, P), 7, P)) {
            revert VRFVerifierNotOnCurve(point, x, y);
        }
    }

    /// @dev Check U = s·B − c·Y, sH = s·H and cGamma = c·Gamma with one `ecrecover` each.
    function _requireWitnesses(
        uint256[2] memory publicKey,
        uint256[4] memory proof,
        uint256 hx,
        uint256 hy,
        uint256[2] memory uPoint,
        uint256[4] memory vComponents
    ) private pure {
        uint256 yx = _recoverableX(Operand.PublicKey, publicKey[0]);
        uint256 gx = _recoverableX(Operand.Gamma, proof[0]);
        _recoverableX(Operand.HashPoint, hx);
        uint256 c = proof[2];
        uint256 s = proof[3];
        // r⁻¹·(t·R − e·B) with R = Y, r = Yx, e = −s·Yx, t = −c·Yx is s·B − c·Y. Both are in [1, n−1]:
        // s, c and Yx are, and n is prime.
        _requireProduct(
            Operand.UPoint, N - mulmod(s, yx, N), publicKey[1], yx, N - mulmod(c, yx, N), uPoint[0], uPoint[1]
        );
        // With e = 0 and t = k·Rx, ecrecover gives k·R.
        _requireProduct(Operand.SH, 0, hy, hx, mulmod(s, hx, N), vComponents[0], vComponents[1]);
        _requireProduct(Operand.CGamma, 0, proof[1], gx, mulmod(c, gx, N), vComponents[2], vComponents[3]);
    }

    /// @dev `x` if it can serve as ecrecover's `r` (0 < x < n), else revert.
    function _recoverableX(Operand point, uint256 x) private pure returns (uint256) {
        if (x == 0 || x >= N) revert VRFVerifierUnrecoverablePoint(point, x);
        return x;
    }

    /// @dev Revert unless ecrecover(e, parity(ry), rx, t) is the address of (x, y).
    function _requireProduct(Operand witness, uint256 e, uint256 ry, uint256 rx, uint256 t, uint256 x, uint256 y)
        private
        pure
    {
        address recovered = ecrecover(bytes32(e), uint8(27 + (ry & 1)), bytes32(rx), bytes32(t));
        if (recovered == address(0) || recovered != _pointAddress(x, y)) {
            revert VRFVerifierWitnessMismatch(witness, x, y);
        }
    }

    /// @dev The Ethereum address of a point: the low 20 bytes of keccak256(x ‖ y).
    function _pointAddress(uint256 x, uint256 y) private pure returns (address addr) {
        assembly ("memory-safe") {
            mstore(0x00, x)
            mstore(0x20, y)
            addr := and(keccak256(0x00, 0x40), 0xffffffffffffffffffffffffffffffffffffffff)
        }
    }

    /// @dev `V = sH − cGamma` by one affine addition of sH and −cGamma (both checked curve points).
    function _subtract(uint256[4] memory vComponents) private view returns (uint256 vx, uint256 vy) {
        uint256 x1 = vComponents[0];
        uint256 y1 = vComponents[1];
        uint256 x2 = vComponents[2];
        if (x1 == x2) revert VRFVerifierDegenerateAddition(x1);
        // (x1, y1) + (x2, −y2): λ = (−y2 − y1) / (x2 − x1) = (y1 + y2) / (x1 − x2).
        uint256 lambda = mulmod(
            addmod(y1, vComponents[3], P), _modExp(addmod(x1, P - x2, P), _INVERSE_EXPONENT), P
        );
        vx = addmod(mulmod(lambda, lambda, P), P - addmod(x1, x2, P), P);
        vy = addmod(mulmod(lambda, addmod(x1, P - vx, P), P), P - y1, P);
    }

    /// @dev `sha256(0xFE ‖ 0x02 ‖ H ‖ Gamma ‖ U ‖ V)[:16]`, the points compressed.
    function _challenge(
        uint256 hx,
        uint256 hy,
        uint256[4] memory proof,
        uint256[2] memory uPoint,
        uint256 vx,
        uint256 vy
    ) private pure returns (uint256) {
        bytes memory input = abi.encodePacked(
            SUITE,
            uint8(0x02),
            _prefix(hy),
            hx,
            _prefix(proof[1]),
            proof[0],
            _prefix(uPoint[1]),
            uPoint[0],
            _prefix(vy),
            vx
        );
        return uint256(sha256(input)) >> 128;
    }

    /// @dev SEC 1 compressed-point prefix: 0x02 for even y, 0x03 for odd.
    function _prefix(uint256 y) private pure returns (uint8) {
        return uint8(2 + (y & 1));
    }

    /// @dev `base^exponent mod p` with the modexp precompile (EIP-198).
    function _modExp(uint256 base, uint256 exponent) private view returns (uint256 result) {
        bool ok;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, 0x20)
            mstore(add(ptr, 0x20), 0x20)
            mstore(add(ptr, 0x40), 0x20)
            mstore(add(ptr, 0x60), base)
            mstore(add(ptr, 0x80), exponent)
            mstore(add(ptr, 0xa0), P)
            ok := staticcall(gas(), _MODEXP, ptr, 0xc0, ptr, 0x20)
            result := mload(ptr)
        }
        if (!ok) revert VRFVerifierPrecompileFailed(_MODEXP);
    }
}
