// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {CommitteeSource} from "./CommitteeSource.sol";

/// @title ValidatorSnapshotCommittee
/// @notice Committee of round `r` = every node registered as a validator before round `r` opened.
/// @dev Each validator stores the first round it may judge (`currentRound + 1` at registration), so
///      membership is one storage read and needs no per-round copying. The committee size is the
///      validator count at the moment the round opens, fixed for that round.
abstract contract ValidatorSnapshotCommittee is CommitteeSource {
    /// @dev validator => first round it sits on the committee of; 0 means "not a validator".
    mapping(address validator => uint256) private _firstEligibleRound;
    /// @dev round => number of validators when the round opened.
    mapping(uint256 round => uint32) private _committeeSizes;
    uint32 private _validatorCount;

    /// @notice Number of validators registered so far (the size of the next round's committee).
    function validatorCount() public view returns (uint32) {
        return _validatorCount;
    }

    function _onNodeRegistered(address node, bool validator, uint256 firstEligibleRound) internal virtual override {
        if (!validator) return;
        _firstEligibleRound[node] = firstEligibleRound;
        _validatorCount += 1;
    }

    function _onRoundOpened(uint256 round) internal virtual override returns (uint32 committeeSize) {
        committeeSize = _validatorCount;
        _committeeSizes[round] = committeeSize;
    }

    function _isCommitteeMember(uint256 round, address account) internal view virtual override returns (bool) {
        uint256 first = _firstEligibleRound[account];
        return first != 0 && first <= round;
    }

    function _committeeSize(uint256 round) internal view virtual override returns (uint32) {
        return _committeeSizes[round];
    }
}
