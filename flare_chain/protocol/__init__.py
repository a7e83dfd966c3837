"""The round protocol's rules in one place, for the node, the owner, the demo and the auditor alike.

``schedule`` holds the timing rules (phases, proposer turns, stuck rounds); ``accepted``
what the chain keeps of a proposal's accepted list and how a reader checks the list.
Importing this package does not import torch.
"""

from flare_chain.protocol.accepted import accepted_root, canonical_accepted, check_accepted_list
from flare_chain.protocol.schedule import Deadlines, Phase, RoundSchedule, ScheduleSource, TimingParams

__all__ = ["Deadlines", "Phase", "RoundSchedule", "ScheduleSource", "TimingParams", "accepted_root",
           "canonical_accepted", "check_accepted_list"]
