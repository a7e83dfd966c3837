// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title Ownable
/// @notice Single-owner access control, in the shape of OpenZeppelin's `access/Ownable.sol`.
/// @dev Kept minimal on purpose: the coordinator needs one privileged operator (who opens rounds)
///      and no ownership transfer yet. The owner is fixed at deployment.
abstract contract Ownable {
    address private immutable _owner;

    /// @notice `account` called a function only the owner may call.
    error OwnableUnauthorizedAccount(address account);

    /// @notice Emitted once, at deployment, when the owner is set.
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    constructor(address initialOwner) {
        _owner = initialOwner;
        emit OwnershipTransferred(address(0), initialOwner);
    }

    modifier onlyOwner() {
        if (msg.sender != _owner) revert OwnableUnauthorizedAccount(msg.sender);
        _;
    }

    /// @notice The account allowed to initialise the global adapter and open rounds.
    function owner() public view returns (address) {
        return _owner;
    }
}
