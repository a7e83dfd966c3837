// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title CommitteeSource
/// @notice The seam between the round state machine and whoever decides who judges a round.
/// @dev The coordinator only ever asks these four questions. Issue #2 answers them with a snapshot of
///      registered validators (`ValidatorSnapshotCommittee`); a later issue answers them with seats
///      claimed through VRF sortition proofs verified on-chain. Swapping the committee means
///      inheriting a different implementation of this contract, not touching the round logic.
abstract contract CommitteeSource {
    /// @dev Called once when a node registers; `firstEligibleRound` is the first round it may judge.
    function _onNodeRegistered(address node, bool validator, uint256 firstEligibleRound) internal virtual;

    /// @dev Called once when `round` opens, before its `RoundOpened` event. Returns the committee size
    ///      known at opening (the snapshot implementation fixes it here).
    function _onRoundOpened(uint256 round) internal virtual returns (uint32 committeeSize);

    /// @dev Whether `account` holds a seat on the committee of `round`.
    function _isCommitteeMember(uint256 round, address account) internal view virtual returns (bool);

    /// @dev The number of seats of `round`'s committee, the denominator of the approval threshold.
    function _committeeSize(uint256 round) internal view virtual returns (uint32);
}
