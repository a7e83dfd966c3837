// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {VRFVerifier} from "../VRFVerifier.sol";

/// @title VRFVerifierHarness
/// @notice Test-only contract exposing the internal functions of the `VRFVerifier` library, so tests
///         can call them and measure their gas. Never deployed outside tests.
contract VRFVerifierHarness {
    /// @notice Verify a VRF proof with `VRFVerifier.verify` and return its output.
    /// @dev Reverts with the library's `VRFVerifier*` errors.
    /// @param publicKey The prover's public key `[x, y]`.
    /// @param proof `[Gamma-x, Gamma-y, c, s]`.
    /// @param message The VRF input `alpha`.
    /// @param uPoint The witness `U = s·B − c·Y` as `[x, y]`.
    /// @param vComponents The witnesses `[sH-x, sH-y, cGamma-x, cGamma-y]`.
    /// @return beta The VRF output.
    function verify(
        uint256[2] memory publicKey,
        uint256[4] memory proof,
        bytes memory message,
        uint256[2] memory uPoint,
        uint256[4] memory vComponents
    ) external view returns (bytes32 beta) {
        return VRFVerifier.verify(publicKey, proof, message, uPoint, vComponents);
    }

    /// @notice Verify a VRF proof with `VRFVerifier.verifyWithHashRoots` and return its output.
    /// @param publicKey The prover's public key `[x, y]`.
    /// @param proof `[Gamma-x, Gamma-y, c, s]`.
    /// @param message The VRF input `alpha`.
    /// @param uPoint The witness `U = s·B − c·Y` as `[x, y]`.
    /// @param vComponents The witnesses `[sH-x, sH-y, cGamma-x, cGamma-y]`.
    /// @param hashRoots One square root per hash-to-curve try.
    /// @return beta The VRF output.
    function verifyWithHashRoots(
        uint256[2] memory publicKey,
        uint256[4] memory proof,
        bytes memory message,
        uint256[2] memory uPoint,
        uint256[4] memory vComponents,
        uint256[] memory hashRoots
    ) external view returns (bytes32 beta) {
        return VRFVerifier.verifyWithHashRoots(publicKey, proof, message, uPoint, vComponents, hashRoots);
    }

    /// @notice Take the arguments of `verify` and do nothing with them.
    /// @dev Gas baseline: `verify`'s gas minus this one's is the library's own cost, without the
    ///      transaction, calldata and ABI-decoding overhead both share.
    /// @return beta Always zero.
    function verifyBaseline(
        uint256[2] memory,
        uint256[4] memory,
        bytes memory,
        uint256[2] memory,
        uint256[4] memory
    ) external pure returns (bytes32 beta) {
        return beta;
    }

    /// @notice Hash `message` to a curve point under `publicKey` with `VRFVerifier.hashToCurve`.
    /// @param publicKey The prover's public key `[x, y]` (only x and the parity of y are read).
    /// @param message The VRF input `alpha`.
    /// @return x The x-coordinate of `H`.
    /// @return y The (even) y-coordinate of `H`.
    function hashToCurve(uint256[2] memory publicKey, bytes memory message)
        external
        view
        returns (uint256 x, uint256 y)
    {
        return VRFVerifier.hashToCurve(publicKey, message);
    }

    /// @notice `H` from prover-supplied square roots with `VRFVerifier.hashToCurveWithRoots`.
    /// @param publicKey The prover's public key `[x, y]`.
    /// @param message The VRF input `alpha`.
    /// @param hashRoots One square root per try.
    /// @return x The x-coordinate of `H`.
    /// @return y The (even) y-coordinate of `H`.
    function hashToCurveWithRoots(uint256[2] memory publicKey, bytes memory message, uint256[] memory hashRoots)
        external
        view
        returns (uint256 x, uint256 y)
    {
        return VRFVerifier.hashToCurveWithRoots(publicKey, message, hashRoots);
    }
}
