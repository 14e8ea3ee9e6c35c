"""What the agent-metrics source publishes: datapath packet counters re-exported from the agent.

The source replaces the snapshot as a whole and sets it to ``None`` when it has nothing current
to say (the endpoint failed or is unavailable); nothing stale is served.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AgentDatapath:
    """Packet counters and map pressure re-exported from the agent's own metrics endpoint."""

    dropped: dict[tuple[str, str], float] = field(default_factory=dict)  # (reason enum name, direction)
    forwarded: dict[str, float] = field(default_factory=dict)  # direction
    map_pressure: dict[str, float] = field(default_factory=dict)  # map_name
    # cilium_bpf_ratelimit_dropped_total{usage="events"}; None when the endpoint has no such sample
    # (before 1.17, with the limiter off, or before the limiter saw its first event).
    ratelimited_events: float | None = None
