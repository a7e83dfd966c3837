// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title CommitteeSource
/// @notice The seam between the round state machine and whoever decides who judges a round.
/// @dev Two sides, each answering the other's questions, so a committee rule is swapped by
///      inheriting a different implementation of the first group, not by touching the round logic.
///
///      The committee answers (implemented by `VrfSortitionCommittee`, seats claimed with VRF proofs
///      verified on-chain): who is registered, what the committee of a round looks like once the
///      round opens, who sits on it, how many seats it has and in which order members may propose.
///
///      The round logic answers (implemented by `FlareCoordinator`): which round is the latest, and
///      what a round's seed is, whether a round is in its seat-claim window, and whether it ended.
abstract contract CommitteeSource {
    // ------------------------------------------------------------ answered by the committee

    /// @dev Whether `node` is registered and has not asked to unbond (and so may submit updates).
    function _isRegistered(address node) internal view virtual returns (bool);

    /// @dev Called once when `round` opens, before its `RoundOpened` event: fix the round's
    ///      sortition parameters. Returns the number of nodes eligible for the round and their
    ///      total stake.
    function _onRoundOpened(uint256 round, uint16 expectedCommitteeSize)
        internal
        virtual
        returns (uint32 eligibleNodes, uint96 totalStake);

    /// @dev Whether `account` holds a seat on the committee of `round`.
    function _isCommitteeMember(uint256 round, address account) internal view virtual returns (bool);

    /// @dev The voting weight of `account` on `round`'s committee (0: no seat).
    function _seatWeight(uint256 round, address account) internal view virtual returns (uint32);

    /// @dev The number of members seated on `round`'s committee.
    function _committeeSize(uint256 round) internal view virtual returns (uint32);

    /// @dev The total weight of `round`'s committee: the denominator of the approval threshold and
    ///      what the minimum committee is measured in.
    function _committeeWeight(uint256 round) internal view virtual returns (uint32);

    /// @dev The rank of seated `proposer` among the members of `round` (0 = the leader): how many
    ///      members have a lower leader score, counted up to a bound past which nobody proposes.
    function _proposerRank(uint256 round, address proposer) internal view virtual returns (uint256 rank);

    // ------------------------------------------------------------ answered by the round logic

    /// @dev Id of the latest opened round (0 before the first).
    function _latestRound() internal view virtual returns (uint256);

    /// @dev The seed `round`'s seats are drawn on, where this block can read it; reverts otherwise.
    function _roundSeed(uint256 round) internal view virtual returns (bytes32);

    /// @dev The claim seed of `round` if seats of `round` may be claimed in this block; reverts otherwise.
    function _requireClaimWindow(uint256 round) internal view virtual returns (bytes32 seed);

    /// @dev Whether `round` can no longer change (Committed or Failed); round 0 counts as ended.
    function _roundEnded(uint256 round) internal view virtual returns (bool);
}
