// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {FlareCoordinator} from "../FlareCoordinator.sol";

/// @title WeakQuorumCoordinator (TEST ONLY, never deploy)
/// @notice FlareCoordinator whose vote commits a round on the first approval, whatever the approval
///         threshold says. The audit tests deploy it to produce a history in which a round was
///         committed with fewer approvals than required, which the auditor must name.
/// @dev Everything else (events, errors, views, ABI) is FlareCoordinator's, so the same client and
///      auditor read it.
contract WeakQuorumCoordinator is FlareCoordinator {
    /// @param approvalThresholdBps_ recorded and reported as usual, but not enforced.
    /// @param minCommitteeSize_ fewest seats a round's committee may have.
    /// @param leaderBlocks_ blocks each proposer in rank order has before the next may propose.
    /// @param minStake_ smallest stake (wei) a node may register with.
    /// @param maxSampleCount_ the most samples one submission may claim.
    constructor(
        uint16 approvalThresholdBps_,
        uint16 minCommitteeSize_,
        uint64 leaderBlocks_,
        uint256 minStake_,
        uint64 maxSampleCount_
    ) FlareCoordinator(approvalThresholdBps_, minCommitteeSize_, leaderBlocks_, minStake_, maxSampleCount_) {}

    /// @dev Deliberately weakened: any approval commits.
    function _quorumReached(uint32 approvals, uint256) internal pure override returns (bool) {
        return approvals >= 1;
    }
}
