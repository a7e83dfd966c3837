"""The round protocol's rules in one place, for the node, the owner, the demo and the auditor alike.

``schedule`` holds the timing rules (phases, proposer turns, stuck rounds).
Importing this package does not import torch.
"""

from flare_chain.protocol.schedule import Deadlines, Phase, RoundSchedule, ScheduleSource, TimingParams

__all__ = ["Deadlines", "Phase", "RoundSchedule", "ScheduleSource", "TimingParams"]
