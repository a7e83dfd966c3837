// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Ownable} from "./Ownable.sol";
import {ValidatorSnapshotCommittee} from "./ValidatorSnapshotCommittee.sol";

/// @title FlareCoordinator
/// @notice Single source of truth for a federated-learning run: who registered, what each node
///         submitted in each round, which aggregate was proposed, how the committee voted and which
///         global adapter won.
/// @dev Storage keeps hashes and counters only; every byte an auditor needs (CIDs, accepted lists)
///      is in events. Round ids start at 1; round 0 only holds seed_0.
///
///      Submission record layout (one storage slot per (round, node), so a submission costs one new
///      slot): the upper 24 bytes are the upper 24 bytes of
///      `keccak256(abi.encode(cid, sampleCount, manifestHash))`, the lower 8 bytes are `sampleCount`.
///      `sampleCount > 0` makes a zero record mean "no submission". See `submissionRecord`.
contract FlareCoordinator is Ownable, ValidatorSnapshotCommittee {
    /// @notice Lifecycle of a round. Committed and Failed are final.
    enum RoundStatus {
        None,
        Open,
        Proposed,
        Committed,
        Failed
    }

    /// @notice Why a round failed.
    enum FailureReason {
        Rejected,
        NoProposal,
        VoteTimeout
    }

    /// @notice What a committee member voted in a round.
    enum VoteChoice {
        None,
        Approve,
        Reject
    }

    /// @notice Snapshot of one round, returned by `roundInfo`.
    struct RoundInfo {
        RoundStatus status;
        bytes32 seed;
        uint64 submissionDeadline;
        uint64 proposalDeadline;
        uint64 voteDeadline;
        uint32 committeeSize;
        uint32 submissionCount;
        uint32 approvals;
        uint32 rejections;
        bytes32 proposalHash;
    }

    /// @dev Packed so the first slot (status, deadlines, submission count) is the only round slot a
    ///      submission touches.
    struct Round {
        RoundStatus status;
        uint64 submissionDeadline;
        uint64 proposalDeadline;
        uint64 voteDeadline;
        uint32 submissionCount;
        uint32 approvals;
        uint32 rejections;
        bytes32 seed;
        bytes32 proposalHash;
    }

    uint256 private constant _BPS = 10_000;
    uint256 private constant _MIN_CID_LENGTH = 2;
    uint256 private constant _MAX_CID_LENGTH = 64;
    uint256 private constant _SAMPLE_COUNT_MASK = type(uint64).max;

    uint16 private immutable _approvalThresholdBps;
    uint16 private immutable _minCommitteeSize;

    uint256 private _currentRound;
    bytes private _globalAdapterCid;
    bytes private _proposedCid;
    mapping(uint256 round => Round) private _rounds;
    mapping(address node => bool) private _registered;
    mapping(uint256 round => mapping(address node => bytes32)) private _submissions;
    mapping(uint256 round => mapping(address voter => VoteChoice)) private _votes;

    error CoordinatorInvalidThreshold(uint16 approvalThresholdBps);
    error CoordinatorInvalidMinCommitteeSize(uint16 minCommitteeSize);
    error CoordinatorAlreadyRegistered(address node);
    error CoordinatorNotRegistered(address node);
    error CoordinatorInvalidCidLength(uint256 length, uint256 minLength, uint256 maxLength);
    error CoordinatorGlobalAdapterAlreadyInitialized(bytes cid);
    error CoordinatorGlobalAdapterNotInitialized();
    error CoordinatorPreviousRoundNotFinalized(uint256 round, RoundStatus status);
    error CoordinatorZeroDuration(uint64 submissionBlocks, uint64 proposalBlocks, uint64 votingBlocks);
    error CoordinatorCommitteeTooSmall(uint32 committeeSize, uint16 minCommitteeSize);
    error CoordinatorRoundNotOpen(uint256 round, RoundStatus status);
    error CoordinatorLateSubmission(uint256 round, uint256 deadline);
    error CoordinatorDuplicateSubmission(uint256 round, address node);
    error CoordinatorZeroSampleCount(uint256 round, address node);
    error CoordinatorNotCommitteeMember(uint256 round, address account);
    error CoordinatorSubmissionStillOpen(uint256 round, uint256 submissionDeadline);
    error CoordinatorProposalClosed(uint256 round, uint256 proposalDeadline);
    error CoordinatorEmptyAcceptedSet(uint256 round);
    error CoordinatorAcceptedNotStrictlyIncreasing(uint256 round, uint256 index, address previous, address current);
    error CoordinatorAcceptedWithoutSubmission(uint256 round, address node);
    error CoordinatorNoProposal(uint256 round, RoundStatus status);
    error CoordinatorVoteClosed(uint256 round, uint256 voteDeadline);
    error CoordinatorDuplicateVote(uint256 round, address voter);
    error CoordinatorNothingToFinalize(uint256 round, RoundStatus status, uint256 finalizableAfterBlock);

    /// @notice `node` registered; a validator sits on committees from `firstEligibleRound` on.
    event NodeRegistered(address indexed node, bool validator, uint256 firstEligibleRound);
    /// @notice The owner set the initial global adapter.
    event GlobalAdapterInitialized(bytes cid);
    /// @notice Round `round` opened; all deadlines are absolute block numbers (inclusive).
    event RoundOpened(
        uint256 indexed round,
        bytes32 seed,
        bytes globalCid,
        uint64 submissionDeadline,
        uint64 proposalDeadline,
        uint64 voteDeadline,
        uint32 committeeSize
    );
    /// @notice `node` submitted its update for `round`.
    event UpdateSubmitted(
        uint256 indexed round, address indexed node, bytes cid, uint64 sampleCount, bytes32 manifestHash
    );
    /// @notice `proposer` proposed `globalCid` aggregated from the updates of `accepted`.
    event AggregateProposed(
        uint256 indexed round, address indexed proposer, bytes globalCid, address[] accepted, uint256 acceptedSamples
    );
    /// @notice Committee member `voter` voted on the proposal of `round`.
    event VoteCast(uint256 indexed round, address indexed voter, bool approve);
    /// @notice The proposal of `round` reached the approval threshold; `globalCid` is the new global adapter.
    event RoundCommitted(uint256 indexed round, bytes globalCid, uint32 approvals, uint32 committeeSize);
    /// @notice `round` ended without a new global adapter; the previous one stays.
    event RoundFailed(uint256 indexed round, FailureReason reason);

    /// @param approvalThresholdBps_ share of the committee (basis points, (0, 10000]) whose approval commits.
    /// @param minCommitteeSize_ smallest committee a round may open with (at least 1).
    constructor(uint16 approvalThresholdBps_, uint16 minCommitteeSize_) Ownable(msg.sender) {
        if (approvalThresholdBps_ == 0 || approvalThresholdBps_ > _BPS) {
            revert CoordinatorInvalidThreshold(approvalThresholdBps_);
        }
        if (minCommitteeSize_ == 0) revert CoordinatorInvalidMinCommitteeSize(minCommitteeSize_);
        _approvalThresholdBps = approvalThresholdBps_;
        _minCommitteeSize = minCommitteeSize_;
        _rounds[0].seed = keccak256(abi.encode(block.chainid, address(this)));
    }

    // ------------------------------------------------------------------ registration

    /// @notice Register the caller as a participant, once. A validator judges rounds opened after this call.
    /// @param validator whether the caller wants a committee seat.
    function registerNode(bool validator) external {
        if (_registered[msg.sender]) revert CoordinatorAlreadyRegistered(msg.sender);
        uint256 firstEligibleRound = _currentRound + 1;
        _registered[msg.sender] = true;
        _onNodeRegistered(msg.sender, validator, firstEligibleRound);
        emit NodeRegistered(msg.sender, validator, firstEligibleRound);
    }

    // ------------------------------------------------------------------ owner

    /// @notice Set the starting global adapter, once, before the first round (owner only).
    /// @param cid binary CID of the initial adapter, 2..64 bytes.
    function initializeGlobalAdapter(bytes calldata cid) external onlyOwner {
        if (_globalAdapterCid.length != 0) revert CoordinatorGlobalAdapterAlreadyInitialized(_globalAdapterCid);
        _requireCidLength(cid.length);
        _globalAdapterCid = cid;
        emit GlobalAdapterInitialized(cid);
    }

    /// @notice Open the next round (owner only). The previous round must be Committed or Failed.
    /// @param submissionBlocks blocks from now until the submission deadline (inclusive).
    /// @param proposalBlocks blocks after the submission deadline until the proposal deadline.
    /// @param votingBlocks blocks after the proposal deadline until the vote deadline.
    /// @return round the id of the opened round.
    function openRound(uint64 submissionBlocks, uint64 proposalBlocks, uint64 votingBlocks)
        external
        onlyOwner
        returns (uint256 round)
    {
        if (_globalAdapterCid.length == 0) revert CoordinatorGlobalAdapterNotInitialized();
        uint256 previous = _currentRound;
        RoundStatus previousStatus = _rounds[previous].status;
        if (previous != 0 && previousStatus != RoundStatus.Committed && previousStatus != RoundStatus.Failed) {
            revert CoordinatorPreviousRoundNotFinalized(previous, previousStatus);
        }
        if (submissionBlocks == 0 || proposalBlocks == 0 || votingBlocks == 0) {
            revert CoordinatorZeroDuration(submissionBlocks, proposalBlocks, votingBlocks);
        }

        round = previous + 1;
        uint32 committeeSize = _onRoundOpened(round);
        if (committeeSize < _minCommitteeSize) revert CoordinatorCommitteeTooSmall(committeeSize, _minCommitteeSize);

        Round storage r = _rounds[round];
        uint64 submissionDeadline = uint64(block.number) + submissionBlocks;
        uint64 proposalDeadline = submissionDeadline + proposalBlocks;
        uint64 voteDeadline = proposalDeadline + votingBlocks;
        bytes32 seed = keccak256(abi.encode(_rounds[previous].seed, block.prevrandao));
        _currentRound = round;
        r.status = RoundStatus.Open;
        r.submissionDeadline = submissionDeadline;
        r.proposalDeadline = proposalDeadline;
        r.voteDeadline = voteDeadline;
        r.seed = seed;
        emit RoundOpened(
            round, seed, _globalAdapterCid, submissionDeadline, proposalDeadline, voteDeadline, committeeSize
        );
    }

    // ------------------------------------------------------------------ participants

    /// @notice Submit the caller's update for the open round, once, until the submission deadline.
    /// @param round the open round.
    /// @param cid binary CID of the update (2..64 bytes).
    /// @param sampleCount number of local training samples (> 0), the update's aggregation weight.
    /// @param manifestHash hash of the update's manifest.
    function submitUpdate(uint256 round, bytes calldata cid, uint64 sampleCount, bytes32 manifestHash) external {
        if (!_registered[msg.sender]) revert CoordinatorNotRegistered(msg.sender);
        Round storage r = _rounds[round];
        RoundStatus status = r.status;
        if (status != RoundStatus.Open && status != RoundStatus.Proposed) revert CoordinatorRoundNotOpen(round, status);
        if (block.number > r.submissionDeadline) revert CoordinatorLateSubmission(round, r.submissionDeadline);
        if (sampleCount == 0) revert CoordinatorZeroSampleCount(round, msg.sender);
        _requireCidLength(cid.length);
        mapping(address => bytes32) storage submissions = _submissions[round];
        if (submissions[msg.sender] != 0) revert CoordinatorDuplicateSubmission(round, msg.sender);

        submissions[msg.sender] = submissionRecord(cid, sampleCount, manifestHash);
        unchecked {
            // bounded by the number of registered addresses, far below 2^32 in practice
            r.submissionCount += 1;
        }
        emit UpdateSubmitted(round, msg.sender, cid, sampleCount, manifestHash);
    }

    /// @notice Propose the round's aggregate (committee members, once per round, between the
    ///         submission and the proposal deadline).
    /// @param round the open round.
    /// @param globalCid binary CID of the aggregated adapter.
    /// @param accepted the submitters whose updates were aggregated, strictly increasing, non-empty.
    function proposeAggregate(uint256 round, bytes calldata globalCid, address[] calldata accepted) external {
        if (!_isCommitteeMember(round, msg.sender) || round > _currentRound) {
            revert CoordinatorNotCommitteeMember(round, msg.sender);
        }
        Round storage r = _rounds[round];
        if (r.status != RoundStatus.Open) revert CoordinatorRoundNotOpen(round, r.status);
        if (block.number <= r.submissionDeadline) revert CoordinatorSubmissionStillOpen(round, r.submissionDeadline);
        if (block.number > r.proposalDeadline) revert CoordinatorProposalClosed(round, r.proposalDeadline);
        _requireCidLength(globalCid.length);
        if (accepted.length == 0) revert CoordinatorEmptyAcceptedSet(round);

        mapping(address => bytes32) storage submissions = _submissions[round];
        uint256 acceptedSamples;
        address previous;
        for (uint256 i; i < accepted.length; ++i) {
            address node = accepted[i];
            if (i != 0 && node <= previous) revert CoordinatorAcceptedNotStrictlyIncreasing(round, i, previous, node);
            uint256 record = uint256(submissions[node]);
            if (record == 0) revert CoordinatorAcceptedWithoutSubmission(round, node);
            acceptedSamples += record & _SAMPLE_COUNT_MASK;
            previous = node;
        }

        r.status = RoundStatus.Proposed;
        r.proposalHash = keccak256(abi.encode(globalCid, accepted));
        _proposedCid = globalCid;
        emit AggregateProposed(round, msg.sender, globalCid, accepted, acceptedSamples);
    }

    /// @notice Vote on the round's proposal (committee members, once, until the vote deadline). The vote
    ///         that reaches the approval threshold commits the round; the one that makes it unreachable
    ///         fails it.
    /// @param round the round whose proposal is judged.
    /// @param approve true to approve, false to reject.
    function vote(uint256 round, bool approve) external {
        if (!_isCommitteeMember(round, msg.sender) || round > _currentRound) {
            revert CoordinatorNotCommitteeMember(round, msg.sender);
        }
        Round storage r = _rounds[round];
        if (r.status != RoundStatus.Proposed) revert CoordinatorNoProposal(round, r.status);
        if (block.number > r.voteDeadline) revert CoordinatorVoteClosed(round, r.voteDeadline);
        if (_votes[round][msg.sender] != VoteChoice.None) revert CoordinatorDuplicateVote(round, msg.sender);

        _votes[round][msg.sender] = approve ? VoteChoice.Approve : VoteChoice.Reject;
        uint32 approvals = r.approvals;
        uint32 rejections = r.rejections;
        if (approve) {
            approvals += 1;
            r.approvals = approvals;
        } else {
            rejections += 1;
            r.rejections = rejections;
        }
        emit VoteCast(round, msg.sender, approve);

        uint32 committeeSize = _committeeSize(round);
        uint256 needed = uint256(_approvalThresholdBps) * committeeSize;
        if (uint256(approvals) * _BPS >= needed) {
            bytes memory cid = _proposedCid;
            r.status = RoundStatus.Committed;
            _globalAdapterCid = cid;
            delete _proposedCid;
            emit RoundCommitted(round, cid, approvals, committeeSize);
        } else if (rejections >= committeeSize || uint256(committeeSize - rejections) * _BPS < needed) {
            _fail(round, r, FailureReason.Rejected);
        }
    }

    /// @notice Close a round that ran out of time (anyone may call): no proposal by the proposal
    ///         deadline, or no commit by the vote deadline. The previous global adapter stays.
    /// @param round the round to finalize.
    function finalizeRound(uint256 round) external {
        Round storage r = _rounds[round];
        RoundStatus status = r.status;
        if (status == RoundStatus.Open && block.number > r.proposalDeadline) {
            _fail(round, r, FailureReason.NoProposal);
        } else if (status == RoundStatus.Proposed && block.number > r.voteDeadline) {
            _fail(round, r, FailureReason.VoteTimeout);
        } else {
            uint256 after_ = status == RoundStatus.Open
                ? r.proposalDeadline
                : status == RoundStatus.Proposed ? r.voteDeadline : 0;
            revert CoordinatorNothingToFinalize(round, status, after_);
        }
    }

    // ------------------------------------------------------------------ views

    /// @notice Id of the latest opened round (0 before the first).
    function currentRound() external view returns (uint256) {
        return _currentRound;
    }

    /// @notice Binary CID of the current global adapter (empty before initialisation).
    function globalAdapterCid() external view returns (bytes memory) {
        return _globalAdapterCid;
    }

    /// @notice State, seed, deadlines and counters of `round` (all zero for a round never opened).
    function roundInfo(uint256 round) external view returns (RoundInfo memory info) {
        Round storage r = _rounds[round];
        info = RoundInfo({
            status: r.status,
            seed: r.seed,
            submissionDeadline: r.submissionDeadline,
            proposalDeadline: r.proposalDeadline,
            voteDeadline: r.voteDeadline,
            committeeSize: _committeeSize(round),
            submissionCount: r.submissionCount,
            approvals: r.approvals,
            rejections: r.rejections,
            proposalHash: r.proposalHash
        });
    }

    /// @notice The stored submission record of `node` in `round` (zero if none); see `submissionRecord`.
    function submissionHash(uint256 round, address node) external view returns (bytes32) {
        return _submissions[round][node];
    }

    /// @notice The record stored for a submission: upper 24 bytes of
    ///         keccak256(abi.encode(cid, sampleCount, manifestHash)), then sampleCount as 8 bytes.
    /// @dev Public so auditors and clients can recompute it from an `UpdateSubmitted` event.
    function submissionRecord(bytes calldata cid, uint64 sampleCount, bytes32 manifestHash)
        public
        pure
        returns (bytes32)
    {
        bytes32 digest = keccak256(abi.encode(cid, sampleCount, manifestHash));
        return bytes32((uint256(digest) & ~_SAMPLE_COUNT_MASK) | sampleCount);
    }

    /// @notice The hash stored for a proposal: keccak256(abi.encode(globalCid, accepted)).
    function proposalRecord(bytes calldata globalCid, address[] calldata accepted) external pure returns (bytes32) {
        return keccak256(abi.encode(globalCid, accepted));
    }

    /// @notice Whether `account` registered (as validator or not).
    function isRegistered(address account) external view returns (bool) {
        return _registered[account];
    }

    /// @notice Whether `account` sits on the committee of `round` (false for rounds not yet opened).
    function isCommitteeMember(uint256 round, address account) external view returns (bool) {
        return round != 0 && round <= _currentRound && _isCommitteeMember(round, account);
    }

    /// @notice What `voter` voted in `round`.
    function voteOf(uint256 round, address voter) external view returns (VoteChoice) {
        return _votes[round][voter];
    }

    /// @notice Approval share (basis points of the committee size) needed to commit a proposal.
    function approvalThresholdBps() external view returns (uint16) {
        return _approvalThresholdBps;
    }

    /// @notice Smallest committee a round may open with.
    function minCommitteeSize() external view returns (uint16) {
        return _minCommitteeSize;
    }

    // ------------------------------------------------------------------ internals

    function _fail(uint256 round, Round storage r, FailureReason reason) private {
        r.status = RoundStatus.Failed;
        delete _proposedCid;
        emit RoundFailed(round, reason);
    }

    function _requireCidLength(uint256 length) private pure {
        if (length < _MIN_CID_LENGTH || length > _MAX_CID_LENGTH) {
            revert CoordinatorInvalidCidLength(length, _MIN_CID_LENGTH, _MAX_CID_LENGTH);
        }
    }
}
