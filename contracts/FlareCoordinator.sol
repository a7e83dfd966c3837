// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Ownable} from "./Ownable.sol";
import {VrfSortitionCommittee} from "./VrfSortitionCommittee.sol";

/// @title FlareCoordinator
/// @notice Single source of truth for a federated-learning run: who registered (with what stake and
///         key), what each node submitted in each round, who won a committee seat by VRF sortition,
///         which aggregate was proposed, how the committee voted and which global adapter won.
/// @dev Storage keeps hashes and counters only; every byte an auditor needs is in events (CIDs,
///      hashes) or in the IPFS objects they name (a proposal's accepted list is in its aggregate's
///      manifest, with only its hash and length here). Round ids start at 1; round 0 only holds seed_0.
///
///      A round has four phases, all deadlines absolute and inclusive block numbers:
///      submission (until `submissionDeadline`) → seat claims (`VrfSortitionCommittee.claimSeat`,
///      until `claimDeadline`) → proposal (until `proposalDeadline`) → voting (until `voteDeadline`).
///      The member with the lowest leader score (rank 0) may propose from the first block after the
///      claim deadline; rank `i` from `leaderBlocks·i` blocks later, so a silent leader is replaced.
///      Fallback: a proposal the committee rejects does not end the round while a higher rank is
///      left (`PROPOSER_RANKS` in all): the round reopens for proposals from the block after the
///      rejecting vote, with fresh proposal and voting windows as long as the first ones, turns
///      starting at the rejected proposer's rank + 1 and every vote counted afresh
///      (`ProposalRejected`). So a round makes at most `PROPOSER_RANKS` proposals, and lasts at most
///      `PROPOSER_RANKS` times its proposal and voting windows past the claim deadline.
///      Votes count by seat weight (`VrfSortitionCommittee`): approvals needed are
///      `approvalThresholdBps` of the committee's total weight; a round whose committee weighs less
///      than `minCommitteeSize` at the claim deadline fails (`CommitteeTooSmall`).
///
///      Seeds. A round has two: the round seed, fixed when it opens, and the claim seed, which the
///      VRF and the probe windows use and which nobody knows until the submission deadline has passed.
///      `seed_r = keccak256(abi.encode(seed_{r-1}, block.prevrandao))` with the prevrandao of the
///      block that opens round r, `seed_0 = keccak256(abi.encode(chainid, address(this)))`; and
///      `claimSeed_r = keccak256(abi.encode(seed_r, blockhash(submissionDeadline_r)))` (`claimSeed`).
///      The owner picks the opening block, so it can re-draw `seed_r` by waiting a block at a time,
///      but when it opens, the submission deadline block is at least one block in the future and its
///      hash unknown to everyone, so no choice of opening block (or of phase lengths) moves the claim
///      seed's distribution. The claim window is at most `_MAX_CLAIM_BLOCKS` = 256 blocks so that
///      `blockhash(submissionDeadline)` is readable by every claim; nothing after the window needs it
///      on-chain (auditors read the block's hash from any RPC). What is left to grinding: whoever
///      builds the submission deadline block can re-roll the claim seed as often as it can rebuild that
///      block (a different transaction order, timestamp or extra data gives another hash), or withhold
///      the block, which costs it the slot; on a proof-of-stake chain that is the proposer (or its
///      builder) of one slot per round, drawn by the chain in proportion to validator stake. No seed
///      lets anyone choose a VRF output: outputs depend on each node's secret key, keys are registered
///      before the seed of any round they take part in exists (a node registered after a round
///      opened is not eligible for it), and the VRF input binds chain id, contract, round and seed.
///
///      Submission record layout (one storage slot per (round, node), so a submission costs one new
///      slot): the upper 24 bytes are the upper 24 bytes of
///      `keccak256(abi.encode(cid, sampleCount, manifestHash))`, the lower 8 bytes are `sampleCount`.
///      `sampleCount > 0` makes a zero record mean "no submission". See `submissionRecord`.
contract FlareCoordinator is Ownable, VrfSortitionCommittee {
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
        VoteTimeout,
        CommitteeTooSmall
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
        uint64 claimDeadline;
        uint64 proposalDeadline;
        uint64 voteDeadline;
        uint32 committeeSize;
        uint32 committeeWeight;
        uint32 submissionCount;
        uint32 approvals;
        uint32 rejections;
        bytes32 proposalHash;
        uint64 turnsStart;
        uint8 firstRank;
        uint8 rejectedProposals;
    }

    /// @dev Packed so the first slot (status, the first three deadlines, submission count) is the
    ///      only round slot a submission touches, and a seat claim reads it and the seed. The proposal
    ///      attempt's fields share the vote counters' slot: `turnsStart` is the first block of the
    ///      current attempt's proposer turns (the block after the claim deadline, or after the vote
    ///      that rejected the last proposal), `firstRank` the lowest rank that may propose in it,
    ///      `proposerRank` the current proposal's rank and `rejectedProposals` the attempt's number.
    ///      `proposalDeadline` and `voteDeadline` are the current attempt's.
    struct Round {
        RoundStatus status;
        uint64 submissionDeadline;
        uint64 claimDeadline;
        uint64 proposalDeadline;
        uint32 submissionCount;
        uint64 voteDeadline;
        uint32 approvals;
        uint32 rejections;
        uint64 turnsStart;
        uint8 firstRank;
        uint8 proposerRank;
        uint8 rejectedProposals;
        bytes32 seed;
        bytes32 proposalHash;
    }

    uint256 private constant _BPS = 10_000;
    uint256 private constant _MIN_CID_LENGTH = 2;
    uint256 private constant _MAX_CID_LENGTH = 64;
    uint256 private constant _SAMPLE_COUNT_MASK = type(uint64).max;
    /// @dev Bounds on what the owner may set, so no choice of parameters hands the committee to a
    ///      few seats or freezes the contract: every phase at most `_MAX_PHASE_BLOCKS` (two weeks
    ///      of 12-second blocks), the claim window at least `_MIN_CLAIM_BLOCKS` so that honest
    ///      nodes' claims are mined before it shuts and at most `_MAX_CLAIM_BLOCKS`, the reach of
    ///      `blockhash`, so every claim can read the submission deadline block's hash (the claim seed),
    ///      and `k` at most `_MAX_EXPECTED_COMMITTEE_SIZE`.
    uint64 private constant _MIN_CLAIM_BLOCKS = 3;
    uint64 private constant _MAX_CLAIM_BLOCKS = 256;
    uint64 private constant _MAX_PHASE_BLOCKS = 100_800;
    uint16 private constant _MAX_EXPECTED_COMMITTEE_SIZE = 1_000;

    uint16 private immutable _approvalThresholdBps;
    uint16 private immutable _minCommitteeSize;
    uint64 private immutable _leaderBlocks;
    uint64 private immutable _maxSampleCount;

    uint256 private _currentRound;
    bytes private _globalAdapterCid;
    bytes private _federationSpecCid;
    bytes private _proposedCid;
    mapping(uint256 round => Round) private _rounds;
    mapping(uint256 round => mapping(address node => bytes32)) private _submissions;
    mapping(uint256 round => mapping(uint256 attempt => mapping(address voter => VoteChoice))) private _votes;

    error CoordinatorInvalidThreshold(uint16 approvalThresholdBps);
    error CoordinatorInvalidMinCommitteeSize(uint16 minCommitteeSize);
    error CoordinatorInvalidLeaderBlocks(uint64 leaderBlocks);
    /// @notice With a committee of `minCommitteeSize` weight and `approvalThresholdBps`, a single
    ///         unit of weight could commit a round alone: `minCommitteeSize · approvalThresholdBps`
    ///         must exceed 10000.
    error CoordinatorOneSeatCommits(uint16 approvalThresholdBps, uint16 minCommitteeSize);
    /// @notice The sample-count cap set at deployment is zero.
    error CoordinatorInvalidMaxSampleCount(uint64 maxSampleCount);
    /// @notice A phase length is outside its bounds: `phase` 0 submission, 1 claim, 2 proposal, 3 voting.
    error CoordinatorPhaseOutOfBounds(uint8 phase, uint64 blocks, uint64 minBlocks, uint64 maxBlocks);
    error CoordinatorInvalidCidLength(uint256 length, uint256 minLength, uint256 maxLength);
    error CoordinatorGlobalAdapterAlreadyInitialized(bytes cid);
    error CoordinatorGlobalAdapterNotInitialized();
    /// @notice The federation spec is set once; `cid` is the one already recorded.
    error CoordinatorFederationSpecAlreadySet(bytes cid);
    /// @notice The federation spec may only be set before the first round opens; `round` already did.
    error CoordinatorFederationSpecAfterFirstRound(uint256 round);
    error CoordinatorPreviousRoundNotFinalized(uint256 round, RoundStatus status);
    /// @notice `expectedCommitteeSize` is below `minCommitteeSize` or above `maxExpectedCommitteeSize`.
    error CoordinatorInvalidExpectedCommitteeSize(
        uint16 expectedCommitteeSize, uint16 minCommitteeSize, uint16 maxExpectedCommitteeSize
    );
    error CoordinatorTooFewNodes(uint32 nodes, uint16 minCommitteeSize);
    error CoordinatorRoundNotOpen(uint256 round, RoundStatus status);
    error CoordinatorLateSubmission(uint256 round, uint256 deadline);
    error CoordinatorDuplicateSubmission(uint256 round, address node);
    error CoordinatorZeroSampleCount(uint256 round, address node);
    /// @notice `node` claimed `sampleCount` samples, more than the deployment's cap `maxSampleCount`.
    error CoordinatorSampleCountAboveCap(uint256 round, address node, uint64 sampleCount, uint64 maxSampleCount);
    error CoordinatorOutsideClaimWindow(uint256 round, uint256 firstBlock, uint256 lastBlock);
    /// @notice The claim seed of `round` is readable only in blocks `firstBlock..lastBlock` (while the
    ///         submission deadline block's hash is within `blockhash`'s reach); read the block's hash
    ///         from an RPC node and use `flare_chain.committee.sortition.claim_seed` outside them.
    error CoordinatorClaimSeedUnavailable(uint256 round, uint256 firstBlock, uint256 lastBlock);
    error CoordinatorClaimsStillOpen(uint256 round, uint256 claimDeadline);
    /// @notice `round`'s committee weighs `weight`, less than `minCommitteeSize`: it cannot act.
    error CoordinatorCommitteeTooSmall(uint256 round, uint32 weight, uint16 minCommitteeSize);
    error CoordinatorNotLeader(uint256 round, address proposer, uint256 rank, uint256 turnStartsAtBlock);
    /// @notice `proposer`'s rank `rank` has no turn left in `round`: only ranks `firstRank` to
    ///         `PROPOSER_RANKS − 1` may propose (lower ones had their turn before a rejection; higher
    ///         ones never propose).
    error CoordinatorRankHasNoTurn(uint256 round, address proposer, uint256 rank, uint256 firstRank, uint256 lastRank);
    error CoordinatorProposalClosed(uint256 round, uint256 proposalDeadline);
    error CoordinatorEmptyAcceptedSet(uint256 round);
    error CoordinatorNoProposal(uint256 round, RoundStatus status);
    error CoordinatorVoteClosed(uint256 round, uint256 voteDeadline);
    error CoordinatorDuplicateVote(uint256 round, address voter);
    /// @notice The vote is for proposal `attempt` of `round`, but the round is on proposal `current`
    ///         (an earlier one was rejected, or this one is not made yet).
    error CoordinatorVoteOnOtherProposal(uint256 round, uint256 attempt, uint256 current);
    error CoordinatorNothingToFinalize(uint256 round, RoundStatus status, uint256 finalizableAfterBlock);

    /// @notice The owner set the initial global adapter.
    event GlobalAdapterInitialized(bytes cid);
    /// @notice The owner fixed the federation spec (the IPFS CID of the document every member follows).
    event FederationSpecSet(bytes cid);
    /// @notice Round `round` opened; all deadlines are absolute block numbers (inclusive). Its
    ///         committee is drawn by sortition with expected size `expectedCommitteeSize` among
    ///         `eligibleNodes` nodes staking `totalStake` wei.
    event RoundOpened(
        uint256 indexed round,
        bytes32 seed,
        bytes globalCid,
        uint64 submissionDeadline,
        uint64 claimDeadline,
        uint64 proposalDeadline,
        uint64 voteDeadline,
        uint16 expectedCommitteeSize,
        uint32 eligibleNodes,
        uint256 totalStake
    );
    /// @notice `node` submitted its update for `round`.
    event UpdateSubmitted(
        uint256 indexed round, address indexed node, bytes cid, uint64 sampleCount, bytes32 manifestHash
    );
    /// @notice `proposer` (of committee rank `rank`) proposed `globalCid` aggregated from `acceptedCount`
    ///         updates whose sorted submitters hash to `acceptedRoot` (`acceptedListHash`).
    /// @dev The list is in the aggregate's manifest on IPFS, not in calldata or the log, so a proposal
    ///      costs the same whatever the number of accepted updates; members and auditors fetch it by
    ///      `globalCid` and check it against the root and the submissions.
    event AggregateProposed(
        uint256 indexed round,
        address indexed proposer,
        bytes globalCid,
        bytes32 acceptedRoot,
        uint32 acceptedCount,
        uint256 rank
    );
    /// @notice The committee rejected the proposal of `round` made by rank `rejectedRank`; the round
    ///         is open for proposals again: ranks from `nextRank` take turns from block `turnsStart`
    ///         until `proposalDeadline`, and the new proposal is voted on until `voteDeadline`.
    event ProposalRejected(
        uint256 indexed round,
        uint256 rejectedRank,
        uint256 nextRank,
        uint64 turnsStart,
        uint64 proposalDeadline,
        uint64 voteDeadline
    );
    /// @notice Committee member `voter` cast its seat weight `weight` on the current proposal of `round`.
    event VoteCast(uint256 indexed round, address indexed voter, bool approve, uint32 weight);
    /// @notice The proposal of `round` reached the approval threshold with `approvalWeight` of the
    ///         committee's `committeeWeight`; `globalCid` is the new global adapter.
    event RoundCommitted(uint256 indexed round, bytes globalCid, uint32 approvalWeight, uint32 committeeWeight);
    /// @notice `round` ended without a new global adapter; the previous one stays.
    event RoundFailed(uint256 indexed round, FailureReason reason);

    /// @param approvalThresholdBps_ share of the committee's weight (basis points, (0, 10000]) whose approval commits.
    /// @param minCommitteeSize_ least total weight a round's committee may have, in [1, 1000], and large
    ///        enough that one unit cannot commit: `minCommitteeSize_ · approvalThresholdBps_ > 10000`.
    /// @param leaderBlocks_ blocks each proposer in rank order has before the next one may propose, in [1, 100800].
    /// @param minStake_ smallest stake (wei) a node may register with.
    /// @param maxSampleCount_ the most samples one submission may claim (≥ 1): it caps one update's
    ///        aggregation weight at `maxSampleCount_` whatever the node declares.
    constructor(
        uint16 approvalThresholdBps_,
        uint16 minCommitteeSize_,
        uint64 leaderBlocks_,
        uint256 minStake_,
        uint64 maxSampleCount_
    ) Ownable(msg.sender) VrfSortitionCommittee(minStake_) {
        if (approvalThresholdBps_ == 0 || approvalThresholdBps_ > _BPS) {
            revert CoordinatorInvalidThreshold(approvalThresholdBps_);
        }
        if (minCommitteeSize_ == 0 || minCommitteeSize_ > _MAX_EXPECTED_COMMITTEE_SIZE) {
            revert CoordinatorInvalidMinCommitteeSize(minCommitteeSize_);
        }
        if (uint256(minCommitteeSize_) * approvalThresholdBps_ <= _BPS) {
            revert CoordinatorOneSeatCommits(approvalThresholdBps_, minCommitteeSize_);
        }
        if (leaderBlocks_ == 0 || leaderBlocks_ > _MAX_PHASE_BLOCKS) revert CoordinatorInvalidLeaderBlocks(leaderBlocks_);
        if (maxSampleCount_ == 0) revert CoordinatorInvalidMaxSampleCount(maxSampleCount_);
        _approvalThresholdBps = approvalThresholdBps_;
        _minCommitteeSize = minCommitteeSize_;
        _leaderBlocks = leaderBlocks_;
        _maxSampleCount = maxSampleCount_;
        _rounds[0].seed = keccak256(abi.encode(block.chainid, address(this)));
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

    /// @notice Fix the federation spec's CID, once, before the first round (owner only).
    /// @dev Members and auditors load the spec by this CID and refuse to act on any other copy, so
    ///      it must not change under a running federation: it can be set only while no round exists.
    /// @param cid binary CID of the canonical spec document, 2..64 bytes.
    function setFederationSpec(bytes calldata cid) external onlyOwner {
        if (_federationSpecCid.length != 0) revert CoordinatorFederationSpecAlreadySet(_federationSpecCid);
        if (_currentRound != 0) revert CoordinatorFederationSpecAfterFirstRound(_currentRound);
        _requireCidLength(cid.length);
        _federationSpecCid = cid;
        emit FederationSpecSet(cid);
    }

    /// @notice Open the next round (owner only). The previous round must be Committed or Failed.
    /// @dev Fixes the round's seed from this block's prevrandao and its sortition: every node
    ///      registered so far is eligible, with the current total stake as `W`. The seats are drawn
    ///      on the claim seed, which also mixes in the hash of the submission deadline block, unknown
    ///      now (see the contract's notes on seeds and grinding).
    /// @param submissionBlocks blocks from now until the submission deadline (inclusive).
    ///        Every phase is at least 1 block and at most 100800 blocks (`phaseBounds`).
    /// @param claimBlocks blocks after the submission deadline until the claim deadline (3 to 256).
    /// @param proposalBlocks blocks after the claim deadline until the proposal deadline.
    /// @param votingBlocks blocks after the proposal deadline until the vote deadline.
    /// @param expectedCommitteeSize `k`, the expected number of seats, in [`minCommitteeSize`, 1000].
    /// @return round the id of the opened round.
    function openRound(
        uint64 submissionBlocks,
        uint64 claimBlocks,
        uint64 proposalBlocks,
        uint64 votingBlocks,
        uint16 expectedCommitteeSize
    ) external onlyOwner returns (uint256 round) {
        if (_globalAdapterCid.length == 0) revert CoordinatorGlobalAdapterNotInitialized();
        uint256 previous = _currentRound;
        RoundStatus previousStatus = _rounds[previous].status;
        if (previous != 0 && previousStatus != RoundStatus.Committed && previousStatus != RoundStatus.Failed) {
            revert CoordinatorPreviousRoundNotFinalized(previous, previousStatus);
        }
        _requirePhase(0, submissionBlocks, 1, _MAX_PHASE_BLOCKS);
        _requirePhase(1, claimBlocks, _MIN_CLAIM_BLOCKS, _MAX_CLAIM_BLOCKS);
        _requirePhase(2, proposalBlocks, 1, _MAX_PHASE_BLOCKS);
        _requirePhase(3, votingBlocks, 1, _MAX_PHASE_BLOCKS);
        if (expectedCommitteeSize < _minCommitteeSize || expectedCommitteeSize > _MAX_EXPECTED_COMMITTEE_SIZE) {
            revert CoordinatorInvalidExpectedCommitteeSize(
                expectedCommitteeSize, _minCommitteeSize, _MAX_EXPECTED_COMMITTEE_SIZE
            );
        }

        round = previous + 1;
        (uint32 eligibleNodes,) = _onRoundOpened(round, expectedCommitteeSize);
        if (eligibleNodes < _minCommitteeSize) revert CoordinatorTooFewNodes(eligibleNodes, _minCommitteeSize);

        Round storage r = _rounds[round];
        uint64 submissionDeadline = uint64(block.number) + submissionBlocks;
        uint64 claimDeadline = submissionDeadline + claimBlocks;
        uint64 proposalDeadline = claimDeadline + proposalBlocks;
        _currentRound = round;
        r.status = RoundStatus.Open;
        r.submissionDeadline = submissionDeadline;
        r.claimDeadline = claimDeadline;
        r.proposalDeadline = proposalDeadline;
        r.voteDeadline = proposalDeadline + votingBlocks;
        r.turnsStart = claimDeadline + 1;
        r.seed = keccak256(abi.encode(_rounds[previous].seed, block.prevrandao));
        _emitRoundOpened(round, r);
    }

    // ------------------------------------------------------------------ participants

    /// @notice Submit the caller's update for the open round, once, until the submission deadline.
    /// @param round the open round.
    /// @param cid binary CID of the update (2..64 bytes).
    /// @param sampleCount number of local training samples, in [1, `maxSampleCount`]: the update's
    ///        aggregation weight, so its cap bounds what one node's claim can weigh.
    /// @param manifestHash hash of the update's manifest.
    function submitUpdate(uint256 round, bytes calldata cid, uint64 sampleCount, bytes32 manifestHash) external {
        if (!_isRegistered(msg.sender)) revert CoordinatorNotRegistered(msg.sender);
        Round storage r = _rounds[round];
        RoundStatus status = r.status;
        if (status != RoundStatus.Open && status != RoundStatus.Proposed) revert CoordinatorRoundNotOpen(round, status);
        if (block.number > r.submissionDeadline) revert CoordinatorLateSubmission(round, r.submissionDeadline);
        if (sampleCount == 0) revert CoordinatorZeroSampleCount(round, msg.sender);
        if (sampleCount > _maxSampleCount) {
            revert CoordinatorSampleCountAboveCap(round, msg.sender, sampleCount, _maxSampleCount);
        }
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

    /// @notice Propose the round's aggregate (a committee member whose turn it is, after the claim
    ///         deadline and until the proposal deadline; one proposal per attempt, see fallback).
    /// @dev The member of rank `i` (`i` members have a lower leader score) may propose from block
    ///      `turnsStart + (i − firstRank)·leaderBlocks`, for `firstRank ≤ i < PROPOSER_RANKS`; in the
    ///      first attempt `turnsStart = claimDeadline + 1` and `firstRank = 0`. The rank is read from
    ///      the round's stored proposer scores, so the cost does not depend on the committee's size.
    /// @param round the open round.
    /// @param globalCid binary CID of the aggregated adapter.
    /// @param acceptedRoot `acceptedListHash(accepted)` of the submitters whose updates were aggregated
    ///        (strictly increasing addresses). The list itself is in the aggregate's manifest on IPFS (its
    ///        `accepted` field), which `globalCid` names: the proposal costs the same for 1 or 1,000
    ///        accepted updates. Members check the manifest's list against this hash, against the
    ///        submissions and against their own gates before they vote; the audit does too (`accepted-set`).
    /// @param acceptedCount how many updates the list names, at least 1. The contract does not hold it to the
    ///        round's submissions (members and the audit hold the published list to them, `accepted-list`).
    function proposeAggregate(uint256 round, bytes calldata globalCid, bytes32 acceptedRoot, uint32 acceptedCount)
        external
    {
        Round storage r = _rounds[round];
        uint256 rank = _requireProposerTurn(round, r);
        _requireCidLength(globalCid.length);
        if (acceptedCount == 0) revert CoordinatorEmptyAcceptedSet(round);

        r.status = RoundStatus.Proposed;
        r.proposerRank = uint8(rank);
        r.proposalHash = keccak256(abi.encode(globalCid, acceptedRoot, acceptedCount));
        _proposedCid = globalCid;
        emit AggregateProposed(round, msg.sender, globalCid, acceptedRoot, acceptedCount, rank);
    }

    /// @notice Vote on the round's current proposal with the caller's seat weight (committee members,
    ///         once per proposal, until the vote deadline). The vote that reaches the approval
    ///         threshold commits the round; the one that makes it unreachable rejects the proposal:
    ///         the round falls back to the next rank (`ProposalRejected`) or, with no rank left,
    ///         fails (`Rejected`).
    /// @param round the round whose proposal is judged.
    /// @param attempt the proposal judged: how many of the round's proposals had been rejected before it
    ///        (`roundInfo(round).rejectedProposals`), so a vote delayed past a rejection never counts
    ///        on the next rank's proposal.
    /// @param approve true to approve, false to reject.
    function vote(uint256 round, uint256 attempt, bool approve) external {
        if (!_isCommitteeMember(round, msg.sender)) revert CoordinatorNotCommitteeMember(round, msg.sender);
        Round storage r = _rounds[round];
        if (attempt != r.rejectedProposals) revert CoordinatorVoteOnOtherProposal(round, attempt, r.rejectedProposals);
        if (r.status != RoundStatus.Proposed) revert CoordinatorNoProposal(round, r.status);
        if (block.number > r.voteDeadline) revert CoordinatorVoteClosed(round, r.voteDeadline);
        mapping(address => VoteChoice) storage votes = _votes[round][attempt];
        if (votes[msg.sender] != VoteChoice.None) revert CoordinatorDuplicateVote(round, msg.sender);

        votes[msg.sender] = approve ? VoteChoice.Approve : VoteChoice.Reject;
        uint32 weight = _seatWeight(round, msg.sender);
        uint32 approvals = r.approvals;
        uint32 rejections = r.rejections;
        // the weights voted never exceed the committee's total, a uint32
        if (approve) {
            approvals += weight;
            r.approvals = approvals;
        } else {
            rejections += weight;
            r.rejections = rejections;
        }
        emit VoteCast(round, msg.sender, approve, weight);

        uint32 committeeWeight = _committeeWeight(round);
        uint256 needed = uint256(_approvalThresholdBps) * committeeWeight;
        if (_quorumReached(approvals, needed)) {
            bytes memory cid = _proposedCid;
            r.status = RoundStatus.Committed;
            _globalAdapterCid = cid;
            delete _proposedCid;
            emit RoundCommitted(round, cid, approvals, committeeWeight);
        } else if (rejections >= committeeWeight || uint256(committeeWeight - rejections) * _BPS < needed) {
            _reject(round, r);
        }
    }

    /// @notice Close a round that cannot go on (anyone may call): a committee weighing less than
    ///         `minCommitteeSize` at the claim deadline, no proposal by the proposal deadline, or no commit by the
    ///         vote deadline. The previous global adapter stays.
    /// @param round the round to finalize.
    function finalizeRound(uint256 round) external {
        Round storage r = _rounds[round];
        RoundStatus status = r.status;
        if (status == RoundStatus.Open && block.number > r.claimDeadline && _committeeWeight(round) < _minCommitteeSize)
        {
            _fail(round, r, FailureReason.CommitteeTooSmall);
        } else if (status == RoundStatus.Open && block.number > r.proposalDeadline) {
            _fail(round, r, FailureReason.NoProposal);
        } else if (status == RoundStatus.Proposed && block.number > r.voteDeadline) {
            _fail(round, r, FailureReason.VoteTimeout);
        } else {
            uint256 after_;
            if (status == RoundStatus.Open) {
                after_ = block.number > r.claimDeadline ? r.proposalDeadline : r.claimDeadline;
            } else if (status == RoundStatus.Proposed) {
                after_ = r.voteDeadline;
            }
            revert CoordinatorNothingToFinalize(round, status, after_);
        }
    }

    // ------------------------------------------------------------------ views

    /// @notice The federation spec's binary CID; empty until the owner sets it.
    function federationSpecCid() external view returns (bytes memory) {
        return _federationSpecCid;
    }

    /// @notice Id of the latest opened round (0 before the first).
    function currentRound() external view returns (uint256) {
        return _currentRound;
    }

    /// @notice Binary CID of the current global adapter (empty before initialisation).
    function globalAdapterCid() external view returns (bytes memory) {
        return _globalAdapterCid;
    }

    /// @notice State, seed, deadlines and counters of `round` (all zero for a round never opened);
    ///         `committeeSize` is the number of members seated so far, `committeeWeight` their weight.
    function roundInfo(uint256 round) external view returns (RoundInfo memory info) {
        Round storage r = _rounds[round];
        info = RoundInfo({
            status: r.status,
            seed: r.seed,
            submissionDeadline: r.submissionDeadline,
            claimDeadline: r.claimDeadline,
            proposalDeadline: r.proposalDeadline,
            voteDeadline: r.voteDeadline,
            committeeSize: _committeeSize(round),
            committeeWeight: _committeeWeight(round),
            submissionCount: r.submissionCount,
            approvals: r.approvals,
            rejections: r.rejections,
            proposalHash: r.proposalHash,
            turnsStart: r.turnsStart,
            firstRank: r.firstRank,
            rejectedProposals: r.rejectedProposals
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

    /// @notice The hash stored for a proposal: keccak256(abi.encode(globalCid, acceptedRoot, acceptedCount)).
    function proposalRecord(bytes calldata globalCid, bytes32 acceptedRoot, uint32 acceptedCount)
        external
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(globalCid, acceptedRoot, acceptedCount));
    }

    /// @notice The accepted root of a list of submitters: keccak256(abi.encode(accepted)), the list sorted
    ///         ascending without duplicates (`flare_chain.protocol.accepted_root`); a view for clients.
    function acceptedListHash(address[] calldata accepted) external pure returns (bytes32) {
        return keccak256(abi.encode(accepted));
    }

    /// @notice Whether `account` sits on the committee of `round`.
    function isCommitteeMember(uint256 round, address account) external view returns (bool) {
        return _isCommitteeMember(round, account);
    }

    /// @notice What `voter` voted on the current (or last) proposal of `round`.
    function voteOf(uint256 round, address voter) external view returns (VoteChoice) {
        return _votes[round][_rounds[round].rejectedProposals][voter];
    }

    /// @notice Approval share (basis points of the committee's weight) needed to commit a proposal.
    function approvalThresholdBps() external view returns (uint16) {
        return _approvalThresholdBps;
    }

    /// @notice Least weight a round's committee may have; a lighter one fails the round.
    function minCommitteeSize() external view returns (uint16) {
        return _minCommitteeSize;
    }

    /// @notice Blocks each proposer in rank order has before the next-ranked member may propose.
    function leaderBlocks() external view returns (uint64) {
        return _leaderBlocks;
    }

    /// @notice The most samples one submission may claim: the cap on one update's aggregation weight.
    function maxSampleCount() external view returns (uint64) {
        return _maxSampleCount;
    }

    /// @notice Bounds `openRound` enforces: the least claim window, the longest phase, the largest `k`
    ///         and the longest claim window.
    function phaseBounds()
        external
        pure
        returns (uint64 minClaimBlocks, uint64 maxPhaseBlocks, uint16 maxExpectedCommitteeSize, uint64 maxClaimBlocks)
    {
        return (_MIN_CLAIM_BLOCKS, _MAX_PHASE_BLOCKS, _MAX_EXPECTED_COMMITTEE_SIZE, _MAX_CLAIM_BLOCKS);
    }

    /// @notice The seed `round`'s seats are drawn on:
    ///         `keccak256(abi.encode(seed, blockhash(submissionDeadline)))`, readable from the block after
    ///         the submission deadline for 256 blocks (the whole claim window); reverts
    ///         `CoordinatorClaimSeedUnavailable` outside them.
    function claimSeed(uint256 round) public view returns (bytes32) {
        Round storage r = _rounds[round];
        if (r.status == RoundStatus.None) revert CoordinatorRoundNotOpen(round, RoundStatus.None);
        uint256 submissionDeadline = r.submissionDeadline;
        if (block.number <= submissionDeadline || block.number > submissionDeadline + _MAX_CLAIM_BLOCKS) {
            revert CoordinatorClaimSeedUnavailable(round, submissionDeadline + 1, submissionDeadline + _MAX_CLAIM_BLOCKS);
        }
        return _claimSeed(r);
    }

    // ------------------------------------------------------------------ seam

    function _latestRound() internal view override returns (uint256) {
        return _currentRound;
    }

    function _roundSeed(uint256 round) internal view override returns (bytes32) {
        return claimSeed(round);
    }

    function _requireClaimWindow(uint256 round) internal view override returns (bytes32 seed) {
        Round storage r = _rounds[round];
        RoundStatus status = r.status;
        if (status == RoundStatus.None) revert CoordinatorRoundNotOpen(round, status);
        uint256 submissionDeadline = r.submissionDeadline;
        uint256 claimDeadline = r.claimDeadline;
        // Within the window the round is Open: nothing can propose or finalize it before its end.
        if (block.number <= submissionDeadline || block.number > claimDeadline) {
            revert CoordinatorOutsideClaimWindow(round, submissionDeadline + 1, claimDeadline);
        }
        return _claimSeed(r);
    }

    function _roundEnded(uint256 round) internal view override returns (bool) {
        RoundStatus status = _rounds[round].status;
        return round == 0 || status == RoundStatus.Committed || status == RoundStatus.Failed;
    }

    // ------------------------------------------------------------------ internals

    /// @dev Revert unless the sender is a member of `round` whose turn to propose has come; its rank.
    function _requireProposerTurn(uint256 round, Round storage r) private view returns (uint256 rank) {
        if (!_isCommitteeMember(round, msg.sender)) revert CoordinatorNotCommitteeMember(round, msg.sender);
        if (r.status != RoundStatus.Open) revert CoordinatorRoundNotOpen(round, r.status);
        uint256 claimDeadline = r.claimDeadline;
        if (block.number <= claimDeadline) revert CoordinatorClaimsStillOpen(round, claimDeadline);
        if (block.number > r.proposalDeadline) revert CoordinatorProposalClosed(round, r.proposalDeadline);
        uint32 weight = _committeeWeight(round);
        if (weight < _minCommitteeSize) revert CoordinatorCommitteeTooSmall(round, weight, _minCommitteeSize);
        rank = _proposerRank(round, msg.sender);
        uint256 firstRank = r.firstRank;
        if (rank < firstRank || rank >= PROPOSER_RANKS) {
            revert CoordinatorRankHasNoTurn(round, msg.sender, rank, firstRank, PROPOSER_RANKS - 1);
        }
        uint256 turnsStart = r.turnsStart; // ≤ block.number: the claim deadline or a rejecting vote is behind
        if (rank - firstRank > (block.number - turnsStart) / _leaderBlocks) {
            revert CoordinatorNotLeader(round, msg.sender, rank, turnsStart + (rank - firstRank) * _leaderBlocks);
        }
    }

    /// @dev Whether `approvals` reach `needed` (the threshold in basis points × committee weight). Virtual only so
    ///      the audit tests can deploy a deliberately weakened coordinator; nothing else overrides it.
    function _quorumReached(uint32 approvals, uint256 needed) internal view virtual returns (bool) {
        return uint256(approvals) * _BPS >= needed;
    }

    function _emitRoundOpened(uint256 round, Round storage r) private {
        (uint256 roundTotalStake, uint16 expectedSize, uint32 eligibleNodes,,) = sortitionInfo(round);
        emit RoundOpened(
            round,
            r.seed,
            _globalAdapterCid,
            r.submissionDeadline,
            r.claimDeadline,
            r.proposalDeadline,
            r.voteDeadline,
            expectedSize,
            eligibleNodes,
            roundTotalStake
        );
    }

    /// @dev The claim seed of `r`; only called within 256 blocks after its submission deadline, where
    ///      `blockhash` still reaches it (the claim window never extends further).
    function _claimSeed(Round storage r) private view returns (bytes32) {
        return keccak256(abi.encode(r.seed, blockhash(r.submissionDeadline)));
    }

    /// @dev The proposal of `round` can no longer reach the threshold: hand the round to the next rank
    ///      with fresh windows as long as the first ones, or fail it when no rank is left (the last
    ///      rank has proposed, or the committee has no more members).
    function _reject(uint256 round, Round storage r) private {
        uint256 nextRank = uint256(r.proposerRank) + 1;
        if (nextRank >= PROPOSER_RANKS || nextRank >= _committeeSize(round)) {
            _fail(round, r, FailureReason.Rejected);
            return;
        }
        uint64 proposalBlocks = r.proposalDeadline + 1 - r.turnsStart;
        uint64 votingBlocks = r.voteDeadline - r.proposalDeadline;
        uint64 turnsStart = uint64(block.number) + 1;
        uint64 proposalDeadline = turnsStart + proposalBlocks - 1;
        uint64 voteDeadline = proposalDeadline + votingBlocks;
        r.status = RoundStatus.Open;
        r.proposalDeadline = proposalDeadline;
        r.voteDeadline = voteDeadline;
        r.approvals = 0;
        r.rejections = 0;
        r.turnsStart = turnsStart;
        r.firstRank = uint8(nextRank);
        r.rejectedProposals += 1;
        r.proposalHash = 0;
        delete _proposedCid;
        emit ProposalRejected(round, nextRank - 1, nextRank, turnsStart, proposalDeadline, voteDeadline);
    }

    function _fail(uint256 round, Round storage r, FailureReason reason) private {
        r.status = RoundStatus.Failed;
        delete _proposedCid;
        emit RoundFailed(round, reason);
    }

    function _requirePhase(uint8 phase, uint64 blocks, uint64 minBlocks, uint64 maxBlocks) private pure {
        if (blocks < minBlocks || blocks > maxBlocks) {
            revert CoordinatorPhaseOutOfBounds(phase, blocks, minBlocks, maxBlocks);
        }
    }

    function _requireCidLength(uint256 length) private pure {
        if (length < _MIN_CID_LENGTH || length > _MAX_CID_LENGTH) {
            revert CoordinatorInvalidCidLength(length, _MIN_CID_LENGTH, _MAX_CID_LENGTH);
        }
    }
}
