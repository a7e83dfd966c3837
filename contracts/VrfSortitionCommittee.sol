// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {CommitteeSource} from "./CommitteeSource.sol";
import {VRFVerifier} from "./VRFVerifier.sol";

/// @title VrfSortitionCommittee
/// @notice Stake-weighted cryptographic sortition: a node sits on the committee of a round only if
///         its VRF output on the round's seed falls under its stake-weighted threshold, and this
///         contract verifies the VRF proof before it records the seat. No oracle, no trusted party.
/// @dev The rule, for a node with stake `w` in a round with expected committee size `k` whose
///      eligible nodes stake `W` in total:
///
///      * `alpha = abi.encodePacked(uint256 chainid, address coordinator, uint256 round, bytes32 seed)`,
///        116 bytes (`vrfInput`; `flare_chain.committee.sortition.vrf_alpha` builds the same), where
///        `seed` is the round's claim seed (`FlareCoordinator.claimSeed`), unknown until the
///        submission deadline has passed;
///      * `beta` = the ECVRF output (SECP256K1_SHA256_TAI, see `VRFVerifier`) of `alpha` under the
///        node's registered key, which is its Ethereum key;
///      * its seat weight (number of sub-seats, its voting weight) is `seatWeight(beta, k, w, W)`, a draw
///        of Poisson(`k·w/W`) by inverse CDF on hashes of `beta`; weight 0 means no seat. Poisson
///        makes the weight exactly proportional to stake in expectation with no cap, and splitting
///        a stake over nodes leaves the distribution of the owner's total weight unchanged (a sum
///        of independent Poissons is Poisson). The maths is integer fixed point, written once in
///        Python too (`flare_chain.committee.sortition.seat_weight`, pinned to this contract):
///        `lambda = floor(k·w·2^64 / W)` and probabilities both in 2^-64 units, lambda drawn in
///        chunks of at most 16 so e^-lambda keeps 2^-40 relative resolution; chunk `c` uses the
///        uniform `keccak256(abi.encode(WEIGHT_DOMAIN, beta, c)) >> 192`. Flooring lambda and each
///        probability term moves a node's expected weight by less than 2^-50 from `k·w/W`.
///      * The committee's weight `K` is the sum of its members' weights, about `k`. Votes count by
///        weight: `approvalThresholdBps` of `K` commits; `K < minCommitteeSize` fails the round.
///
///      A node registers with a stake (at least `minStake`, at most `_MAX_NODE_STAKE`) and its
///      secp256k1 public key, which must hash to the sender's address. `W` of a round is the total
///      stake of active nodes when the round opens, so a node registered after a round opened is not
///      eligible for it (its stake is not in that `W`).
///
///      Stake lifecycle: `requestUnbond` takes the node's stake out of `W` for every round opened
///      after the call; the node stays eligible for the rounds whose `W` counted it (up to the
///      current one, its `exitRound − 1`), so leaving cannot change a committee already being
///      drawn. `withdrawStake` pays the stake back once `UNBONDING_BLOCKS` have passed since the
///      request and the last round it was eligible for has ended: never while it may still hold a
///      seat in an open round. The contract's balance is exactly the stakes not yet withdrawn.
///
///      Slashing: nothing a node can do wrong is provable from on-chain data alone without being
///      prevented outright. Double submissions, double votes, claims without a valid proof, out of
///      turn proposals are all refused by the contract; a bad aggregate or a wrong vote can only be
///      judged against IPFS bytes and the model, which the chain cannot read. So nothing is slashed;
///      the unbonding delay keeps the stake reachable for a slashing rule should one be added.
///
///      Seats are claimed in the window between the submission deadline and the claim deadline
///      (the round logic enforces it through `_requireClaimWindow`). Members propose in the order of
///      their leader score, lowest first (`leaderScore`): the least of one 64-bit hash per unit of
///      weight, `min_{j < weight} keccak256(abi.encode(LEADER_DOMAIN, beta, j)) >> 192`. Each unit
///      of seated weight is then an independent uniform draw, so every unit is equally likely to
///      lead and a member leads with probability weight/K whatever its stake or how it was split.
///      Only the `PROPOSER_RANKS` lowest scores can ever propose (the leader and its fallbacks), so
///      each claim keeps them in one sorted slot per round (`proposerScores`) and a proposer's
///      rank is read from that slot: no committee list, no per-member loop, so a proposal costs the
///      same whatever the committee's size. Two members sharing a 64-bit score (odds about
///      seats^2 / 2^65) share a rank, and the first of them to propose is the proposer.
abstract contract VrfSortitionCommittee is CommitteeSource {
    /// @dev A registered node; `firstEligibleRound != 0` means registered. `exitRound != 0` means it
    ///      asked to unbond: it is eligible for rounds `firstEligibleRound ≤ r < exitRound`, and
    ///      `unbondedAtBlock` is the block of that request. One storage slot.
    struct Node {
        uint96 stake;
        uint64 firstEligibleRound;
        uint64 exitRound;
        uint32 unbondedAtBlock;
    }

    /// @notice Blocks between `requestUnbond` and the first block `withdrawStake` may pay out.
    uint256 public constant UNBONDING_BLOCKS = 64;
    /// @dev The largest stake one node may hold: 2^80 wei (about 1.2 million ether), so a single
    ///      registration cannot fill the 96-bit total and lock every later node out.
    uint256 private constant _MAX_NODE_STAKE = 2 ** 80;

    /// @dev The sortition of one round: fixed at open except `seats` (members seated) and `weight`
    ///      (their total weight `K`), which count claims.
    struct Sortition {
        uint96 totalStake;
        uint16 expectedSize;
        uint32 eligibleNodes;
        uint32 seats;
        uint32 weight;
    }

    /// @dev Domain tags keeping the weight draws and the leader draws of one output independent.
    bytes32 private constant _WEIGHT_DOMAIN = keccak256("flare-chain seat weight");
    bytes32 private constant _LEADER_DOMAIN = keccak256("flare-chain leader score");
    /// @dev Fixed point of lambda and of probabilities: 2^-64 units.
    uint256 private constant _ONE = 2 ** 64;
    /// @dev The largest lambda drawn from one uniform; e^-16 is still 2^40.9 units.
    uint256 private constant _LAMBDA_CHUNK = 16 * _ONE;
    /// @dev floor(e^-1 · 2^64).
    uint256 private constant _EXP_MINUS_ONE = 0x5e2d58d8b3bcdf1a;
    /// @dev A seat packs the leader score (64 bits) over the weight (32 bits); nonzero iff seated.
    uint256 private constant _WEIGHT_MASK = type(uint32).max;
    /// @notice How many members of a round's committee may ever propose: the leader (rank 0) and
    ///         the next-ranked members it falls back to after a silent turn or a rejected proposal.
    uint256 public constant PROPOSER_RANKS = 4;
    /// @dev An empty entry of the proposer-score slot, above every score but one: a real score of
    ///      2^64 − 1 (odds 2^-64 per unit of weight) reads as empty and still ranks (`_proposerRank`).
    uint256 private constant _EMPTY_SCORE = type(uint64).max;

    uint96 private immutable _minStake;

    uint96 private _totalStake;
    uint32 private _nodeCount;
    mapping(address node => Node) private _nodes;
    mapping(address node => uint256[2]) private _publicKeys;
    mapping(uint256 round => Sortition) private _sortitions;
    /// @dev round => member => `leaderScore << 32 | weight`; zero means "no seat".
    mapping(uint256 round => mapping(address member => uint256)) private _seats;
    /// @dev round => the `PROPOSER_RANKS` lowest leader scores seated so far, ascending, 64 bits each
    ///      (entry `i` in bits `64·i ..`); `_EMPTY_SCORE` marks an empty entry. Filled with empties
    ///      when the round opens, so a claim only ever rewrites a nonzero slot.
    mapping(uint256 round => uint256) private _proposerScores;

    /// @notice The minimum stake set at deployment is zero or does not fit 96 bits.
    error CoordinatorInvalidMinStake(uint256 minStake);
    /// @notice `node` registered before; registration happens once.
    error CoordinatorAlreadyRegistered(address node);
    /// @notice `node` never registered.
    error CoordinatorNotRegistered(address node);
    /// @notice The deposited `stake` is below `minStake`.
    error CoordinatorStakeTooLow(uint256 stake, uint256 minStake);
    /// @notice The deposited `stake` is above the per-node maximum `maxStake`.
    error CoordinatorStakeTooHigh(uint256 stake, uint256 maxStake);
    /// @notice `node` already asked to unbond; it leaves after round `exitRound − 1`.
    error CoordinatorAlreadyUnbonding(address node, uint256 exitRound);
    /// @notice `node` never asked to unbond, so there is nothing to withdraw.
    error CoordinatorNotUnbonding(address node);
    /// @notice The stake of `node` is withdrawable from block `withdrawableAtBlock` on.
    error CoordinatorUnbondingNotOver(address node, uint256 withdrawableAtBlock);
    /// @notice `node` may still sit on the committee of `round`, which has not ended.
    error CoordinatorStillEligible(address node, uint256 round);
    /// @notice Paying `stake` back to `node` failed.
    error CoordinatorWithdrawFailed(address node, uint256 stake);
    /// @notice Adding `stake` would overflow the 96-bit total stake `totalStake`.
    error CoordinatorStakeOverflow(uint256 totalStake, uint256 stake);
    /// @notice The public key hashes to `keyAddress`, not to the sender `sender`.
    error CoordinatorKeyNotSender(address keyAddress, address sender);
    /// @notice `node` is not eligible for `round`: it sits on committees of rounds
    ///         `firstEligibleRound ≤ round < exitRound` (`exitRound` 0: no end).
    error CoordinatorNotEligible(uint256 round, address node, uint256 firstEligibleRound, uint256 exitRound);
    /// @notice `node` already holds a seat on the committee of `round`.
    error CoordinatorAlreadySeated(uint256 round, address node);
    /// @notice The verified VRF `output` draws seat weight 0 for the sender's stake: no seat this round.
    error CoordinatorNotSelected(uint256 round, bytes32 output);
    /// @notice `account` does not sit on the committee of `round`.
    error CoordinatorNotCommitteeMember(uint256 round, address account);

    /// @notice `node` registered with `stake` wei and VRF public key `(publicKeyX, publicKeyY)`; it
    ///         is eligible for committees from `firstEligibleRound` on.
    event NodeRegistered(
        address indexed node, uint256 stake, uint256 publicKeyX, uint256 publicKeyY, uint256 firstEligibleRound
    );
    /// @notice `node` asked to unbond its `stake`: it is out of `W` from round `exitRound` on and may
    ///         withdraw from block `withdrawableAtBlock` once round `exitRound − 1` has ended.
    event NodeUnbonding(address indexed node, uint256 stake, uint256 exitRound, uint256 withdrawableAtBlock);
    /// @notice `node` withdrew its `stake`; it is no longer registered (and may register again).
    event StakeWithdrawn(address indexed node, uint256 stake);
    /// @notice `node` proved a VRF `output` that draws seat weight `weight` on `round`'s committee;
    ///         `leaderScore` ranks it among the proposers (lowest leads).
    /// @dev The proof is in the transaction's calldata; weight and score follow from the output and
    ///      the round's sortition (`seatWeight`, `leaderScore`), which auditors recompute.
    event SeatClaimed(uint256 indexed round, address indexed node, bytes32 output, uint256 weight, uint256 leaderScore);

    /// @param minStake_ the smallest stake (wei) a node may register with, in [1, 2^96).
    constructor(uint256 minStake_) {
        if (minStake_ == 0 || minStake_ > type(uint96).max) revert CoordinatorInvalidMinStake(minStake_);
        _minStake = uint96(minStake_);
    }

    // ------------------------------------------------------------------ registration

    /// @notice Register the caller, once, with the stake sent along (at least `minStake`) and its
    ///         secp256k1 public key, which is also its VRF key.
    /// @dev The key must be the sender's: the last 20 bytes of keccak256(x ‖ y) equal `msg.sender`,
    ///      which also makes it a key nobody else can prove with. The stake stays locked until
    ///      `requestUnbond` and `withdrawStake`. The node is eligible for every round opened after
    ///      this call.
    /// @param publicKey `[x, y]`, the uncompressed public key without its 0x04 prefix.
    function registerNode(uint256[2] calldata publicKey) external payable {
        if (_nodes[msg.sender].firstEligibleRound != 0) revert CoordinatorAlreadyRegistered(msg.sender);
        if (msg.value < _minStake) revert CoordinatorStakeTooLow(msg.value, _minStake);
        if (msg.value > _MAX_NODE_STAKE) revert CoordinatorStakeTooHigh(msg.value, _MAX_NODE_STAKE);
        uint256 total = uint256(_totalStake) + msg.value;
        if (total > type(uint96).max) revert CoordinatorStakeOverflow(_totalStake, msg.value);
        address keyAddress = address(uint160(uint256(keccak256(abi.encodePacked(publicKey[0], publicKey[1])))));
        if (keyAddress != msg.sender) revert CoordinatorKeyNotSender(keyAddress, msg.sender);

        uint256 firstEligibleRound = _latestRound() + 1;
        _nodes[msg.sender] = Node({
            stake: uint96(msg.value), firstEligibleRound: uint64(firstEligibleRound), exitRound: 0, unbondedAtBlock: 0
        });
        _publicKeys[msg.sender] = publicKey;
        _totalStake = uint96(total);
        _nodeCount += 1;
        emit NodeRegistered(msg.sender, msg.value, publicKey[0], publicKey[1], firstEligibleRound);
    }

    /// @notice Start leaving: the caller's stake is out of `W` for every round opened from now on, and
    ///         withdrawable after `UNBONDING_BLOCKS` once the current round has ended.
    /// @dev The node stays eligible for the rounds already opened (their `W` counted its stake) and
    ///      may claim a seat and vote in them; it submits no more updates.
    function requestUnbond() external {
        Node memory node = _nodes[msg.sender];
        if (node.firstEligibleRound == 0) revert CoordinatorNotRegistered(msg.sender);
        if (node.exitRound != 0) revert CoordinatorAlreadyUnbonding(msg.sender, node.exitRound);
        uint256 exitRound = _latestRound() + 1;
        _nodes[msg.sender].exitRound = uint64(exitRound);
        _nodes[msg.sender].unbondedAtBlock = uint32(block.number);
        _totalStake -= node.stake;
        _nodeCount -= 1;
        emit NodeUnbonding(msg.sender, node.stake, exitRound, block.number + UNBONDING_BLOCKS);
    }

    /// @notice Pay the caller's stake back after its unbonding: `UNBONDING_BLOCKS` after
    ///         `requestUnbond`, and once the last round it was eligible for has ended.
    /// @dev The record is deleted before the transfer, so a reentrant call finds nothing to withdraw.
    function withdrawStake() external {
        Node memory node = _nodes[msg.sender];
        if (node.exitRound == 0) revert CoordinatorNotUnbonding(msg.sender);
        uint256 withdrawableAt = uint256(node.unbondedAtBlock) + UNBONDING_BLOCKS;
        if (block.number < withdrawableAt) revert CoordinatorUnbondingNotOver(msg.sender, withdrawableAt);
        uint256 lastRound = node.exitRound - 1;
        if (!_roundEnded(lastRound)) revert CoordinatorStillEligible(msg.sender, lastRound);
        delete _nodes[msg.sender];
        delete _publicKeys[msg.sender];
        (bool paid,) = msg.sender.call{value: node.stake}("");
        if (!paid) revert CoordinatorWithdrawFailed(msg.sender, node.stake);
        emit StakeWithdrawn(msg.sender, node.stake);
    }

    // ------------------------------------------------------------------ seats

    /// @notice Claim a seat on the committee of `round` with a VRF proof on the round's input
    ///         (`vrfInput(round)`), in the claim window (after the submission deadline, until the
    ///         claim deadline).
    /// @dev Arguments are those of `VRFVerifier.verifyWithHashRoots` less the key (the registered
    ///      one) and the message (`vrfInput`); `flare_chain.committee.vrf.compute_fast_verify_params`
    ///      makes them.
    ///      Reverts with `VRFVerifier*` errors for a proof that does not verify: one made for another
    ///      round, seed or key fails the challenge (`VRFVerifierChallengeMismatch`) or a witness check.
    /// @param round the round whose committee to join.
    /// @param proof `[Gamma-x, Gamma-y, c, s]`, the decoded 81-byte proof.
    /// @param uPoint the witness `U = s·B − c·Y`.
    /// @param vComponents the witnesses `[sH-x, sH-y, cGamma-x, cGamma-y]`.
    /// @param hashRoots one square root per hash-to-curve try (see `VRFVerifier.verifyWithHashRoots`).
    /// @return weight the seat weight won (at least 1).
    function claimSeat(
        uint256 round,
        uint256[4] calldata proof,
        uint256[2] calldata uPoint,
        uint256[4] calldata vComponents,
        uint256[] calldata hashRoots
    ) external returns (uint256 weight) {
        Node memory node = _nodes[msg.sender];
        if (node.firstEligibleRound == 0) revert CoordinatorNotRegistered(msg.sender);
        bytes32 seed = _requireClaimWindow(round);
        if (node.firstEligibleRound > round || (node.exitRound != 0 && round >= node.exitRound)) {
            revert CoordinatorNotEligible(round, msg.sender, node.firstEligibleRound, node.exitRound);
        }
        mapping(address => uint256) storage seats = _seats[round];
        if (seats[msg.sender] != 0) revert CoordinatorAlreadySeated(round, msg.sender);

        bytes32 output = VRFVerifier.verifyWithHashRoots(
            _publicKeys[msg.sender], proof, _vrfInput(round, seed), uPoint, vComponents, hashRoots
        );
        Sortition storage s = _sortitions[round];
        weight = seatWeight(output, s.expectedSize, node.stake, s.totalStake);
        if (weight == 0) revert CoordinatorNotSelected(round, output);
        uint256 score = leaderScore(output, weight);

        seats[msg.sender] = (score << 32) | weight;
        _recordProposerScore(round, score);
        unchecked {
            // at most one seat per eligible node (fewer than 2^32); the weights sum to about
            // k ≤ 65535, and passing 2^32 would take a Poisson tail below 2^-1000
            s.seats += 1;
            s.weight += uint32(weight);
        }
        emit SeatClaimed(round, msg.sender, output, weight, score);
    }

    // ------------------------------------------------------------------ views

    /// @notice The smallest stake a node may register with (wei).
    function minStake() external view returns (uint256) {
        return _minStake;
    }

    /// @notice Total stake of all registered nodes (wei): the `W` of the next round to open.
    function totalStake() external view returns (uint256) {
        return _totalStake;
    }

    /// @notice Number of registered nodes.
    function nodeCount() external view returns (uint32) {
        return _nodeCount;
    }

    /// @notice Whether `account` is registered and active (it has not asked to unbond).
    function isRegistered(address account) external view returns (bool) {
        return _isRegistered(account);
    }

    /// @notice The unbonding of `node`: the first round it is not eligible for (0: not unbonding) and
    ///         the first block its stake may be withdrawn in (0: not unbonding).
    function unbondingInfo(address node) external view returns (uint256 exitRound, uint256 withdrawableAtBlock) {
        Node memory n = _nodes[node];
        if (n.exitRound == 0) return (0, 0);
        return (n.exitRound, uint256(n.unbondedAtBlock) + UNBONDING_BLOCKS);
    }

    /// @notice The stake, first eligible round and public key `[x, y]` of `node` (zeros if unregistered).
    function nodeInfo(address node)
        external
        view
        returns (uint256 stake, uint256 firstEligibleRound, uint256[2] memory publicKey)
    {
        Node memory n = _nodes[node];
        return (n.stake, n.firstEligibleRound, _publicKeys[node]);
    }

    /// @notice The sortition of `round`: total eligible stake `W`, expected committee size `k`,
    ///         eligible nodes, members seated so far and their total weight `K` (all zero for a
    ///         round never opened).
    function sortitionInfo(uint256 round)
        public
        view
        returns (uint256 roundTotalStake, uint16 expectedSize, uint32 eligibleNodes, uint32 seats, uint32 weight)
    {
        Sortition memory s = _sortitions[round];
        return (s.totalStake, s.expectedSize, s.eligibleNodes, s.seats, s.weight);
    }

    /// @notice The seat of `node` on `round`'s committee: its weight (0: no seat) and leader score.
    function seatOf(uint256 round, address node) external view returns (uint256 weight, uint256 score) {
        uint256 seat = _seats[round][node];
        return (seat & _WEIGHT_MASK, seat >> 32);
    }

    /// @notice The `PROPOSER_RANKS` lowest leader scores seated on `round` so far, ascending; an
    ///         entry of 2^64 − 1 is empty. A member's proposer rank is the number of entries below its
    ///         own score; a member whose score is not among them never proposes.
    function proposerScores(uint256 round) external view returns (uint256[PROPOSER_RANKS] memory scores) {
        uint256 packed = _proposerScores[round];
        for (uint256 i; i < PROPOSER_RANKS; ++i) {
            scores[i] = (packed >> (64 * i)) & _EMPTY_SCORE;
        }
    }

    /// @notice The VRF input `alpha` of `round`:
    ///         `abi.encodePacked(uint256 chainid, address this, uint256 round, bytes32 seed)`, 116 bytes,
    ///         with the round's claim seed.
    /// @dev Readable only while the claim seed is (from the block after the submission deadline, for
    ///      256 blocks); reverts otherwise.
    function vrfInput(uint256 round) public view returns (bytes memory) {
        return _vrfInput(round, _roundSeed(round));
    }

    /// @notice The seat weight VRF output `output` would win for `node` in `round` (0: not eligible
    ///         or no seat), so a node can check before it claims.
    function seatWeightOf(uint256 round, address node, bytes32 output) external view returns (uint256) {
        Node memory n = _nodes[node];
        Sortition memory s = _sortitions[round];
        if (n.firstEligibleRound == 0 || n.firstEligibleRound > round || s.totalStake == 0) return 0;
        if (n.exitRound != 0 && round >= n.exitRound) return 0;
        return seatWeight(output, s.expectedSize, n.stake, s.totalStake);
    }

    /// @notice The seat weight of VRF output `output` for stake `stake` of `totalStake` with expected
    ///         committee size `k`: a Poisson(`k·stake/totalStake`) draw by inverse CDF (see the notes).
    /// @dev Loops once per chunk of 16 of lambda and once per unit of weight drawn; at most 63 chunks
    ///      since k ≤ 1000. `totalStake` must be positive and at least `stake`, both below 2^96.
    function seatWeight(bytes32 output, uint256 k, uint256 stake, uint256 totalStake)
        public
        pure
        returns (uint256 weight)
    {
        uint256 lambda = (k * stake * _ONE) / totalStake;
        for (uint256 chunk; lambda != 0; ++chunk) {
            uint256 part = lambda < _LAMBDA_CHUNK ? lambda : _LAMBDA_CHUNK;
            lambda -= part;
            uint256 u = uint256(keccak256(abi.encode(_WEIGHT_DOMAIN, output, chunk))) >> 192;
            weight += _poissonInverse(u, part);
        }
    }

    /// @notice The score that orders a round's proposers (lowest leads): the least of `weight`
    ///         draws `keccak256(abi.encode(LEADER_DOMAIN, output, j)) >> 192`, `j < weight`.
    /// @dev One hash per unit of weight: each unit is a uniform 64-bit draw, so each is equally
    ///      likely to be the committee's lowest.
    /// @param output a seat's VRF output.
    /// @param weight the seat's weight (≥ 1).
    function leaderScore(bytes32 output, uint256 weight) public pure returns (uint256 score) {
        score = type(uint256).max;
        for (uint256 j; j < weight; ++j) {
            uint256 draw = uint256(keccak256(abi.encode(_LEADER_DOMAIN, output, j))) >> 192;
            if (draw < score) score = draw;
        }
    }

    // ------------------------------------------------------------------ seam

    function _isRegistered(address node) internal view override returns (bool) {
        Node memory n = _nodes[node];
        return n.firstEligibleRound != 0 && n.exitRound == 0;
    }

    function _onRoundOpened(uint256 round, uint16 expectedCommitteeSize)
        internal
        override
        returns (uint32 eligibleNodes, uint96 roundTotalStake)
    {
        eligibleNodes = _nodeCount;
        roundTotalStake = _totalStake;
        _sortitions[round] = Sortition({
            totalStake: roundTotalStake,
            expectedSize: expectedCommitteeSize,
            eligibleNodes: eligibleNodes,
            seats: 0,
            weight: 0
        });
        _proposerScores[round] = type(uint256).max;
    }

    function _isCommitteeMember(uint256 round, address account) internal view override returns (bool) {
        return _seats[round][account] != 0;
    }

    function _seatWeight(uint256 round, address account) internal view override returns (uint32) {
        return uint32(_seats[round][account] & _WEIGHT_MASK);
    }

    function _committeeSize(uint256 round) internal view override returns (uint32) {
        return _sortitions[round].seats;
    }

    function _committeeWeight(uint256 round) internal view override returns (uint32) {
        return _sortitions[round].weight;
    }

    function _proposerRank(uint256 round, address proposer) internal view override returns (uint256 rank) {
        uint256 own = _seats[round][proposer] >> 32;
        uint256 packed = _proposerScores[round];
        for (; rank < PROPOSER_RANKS; ++rank) {
            if ((packed >> (64 * rank)) & _EMPTY_SCORE >= own) break;
        }
    }

    // ------------------------------------------------------------------ internals

    /// @dev Insert `score` into the round's sorted proposer-score slot if it is among the
    ///      `PROPOSER_RANKS` lowest so far (the highest entry drops out): one read and at most one
    ///      write of a slot that is already nonzero.
    function _recordProposerScore(uint256 round, uint256 score) private {
        uint256 packed = _proposerScores[round];
        if (score >= (packed >> (64 * (PROPOSER_RANKS - 1))) & _EMPTY_SCORE) return;
        uint256 at;
        while ((packed >> (64 * at)) & _EMPTY_SCORE <= score) ++at; // stops by entry 3, above `score`
        unchecked {
            // at ≤ 3: the masks are 2^(64·at) − 1 and 2^(64·(at+1)) − 1, the latter 2^256 − 1 at at = 3
            uint256 below = packed & ((uint256(1) << (64 * at)) - 1);
            uint256 above = (packed << 64) & ~((uint256(1) << (64 * (at + 1))) - 1);
            _proposerScores[round] = below | (score << (64 * at)) | above;
        }
    }

    function _vrfInput(uint256 round, bytes32 seed) private view returns (bytes memory) {
        return abi.encodePacked(block.chainid, address(this), round, seed);
    }

    /// @dev The least `j` with `u < P(X ≤ j)` for X ~ Poisson(`lambda`) (`lambda` and the uniform
    ///      `u` in 2^-64 units, lambda ≤ 16). Terms are floored, so the loop also stops when the
    ///      next probability term is 0 (a tail below 2^-64).
    function _poissonInverse(uint256 u, uint256 lambda) private pure returns (uint256 j) {
        uint256 p = _expNeg(lambda);
        uint256 cdf = p;
        unchecked {
            // p ≤ 2^64 and lambda ≤ 2^68, so no product overflows; cdf ≤ 2^65
            while (u >= cdf && p != 0) {
                ++j;
                p = (p * lambda) / (j * _ONE);
                cdf += p;
            }
        }
    }

    /// @dev e^-x in 2^-64 units for `x` in 2^-64 units, x ≤ 16: the Taylor series of e^-f on the
    ///      fraction (summed until a term floors to 0, at most 21 terms), times e^-1 per whole unit.
    function _expNeg(uint256 x) private pure returns (uint256 result) {
        unchecked {
            // every factor is below 2^65, so no product overflows; positive ≥ negative because the
            // series alternates with falling terms
            uint256 f = x % _ONE;
            uint256 term = _ONE;
            uint256 positive = _ONE;
            uint256 negative;
            for (uint256 i = 1; term != 0; ++i) {
                term = (term * f) / (i * _ONE);
                if (i & 1 == 1) negative += term;
                else positive += term;
            }
            result = positive - negative;
            for (uint256 n = x / _ONE; n != 0; --n) {
                result = (result * _EXP_MINUS_ONE) / _ONE;
            }
        }
    }
}
