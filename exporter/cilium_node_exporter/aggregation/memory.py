"""What the agent-metrics source publishes about the agent's memory and the cluster it holds state for.

Like the datapath snapshot (:mod:`.agent`), the source replaces it as a whole and sets it to ``None``
when the endpoint has nothing current to say. A part or object kind missing from a mapping is unknown
(the release does not export it, or this scrape did not carry it): it is never read as 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class AgentMemory:
    """The agent's memory by part and its cluster objects, from its own metrics endpoint."""

    parts: Mapping[str, float] = field(default_factory=dict)  # contract.MEMORY_PARTS -> bytes
    objects: Mapping[str, float] = field(default_factory=dict)  # contract.CLUSTER_OBJECT_KINDS -> count
