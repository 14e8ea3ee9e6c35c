"""Snapshots of the cilium-agent that the kubelet, API server and agent-metrics sources publish.

Each source replaces its snapshot as a whole (one attribute assignment, atomic under the GIL) and
sets it to ``None`` when it has nothing current to say: no agent pod, or the source failed (values
are dropped rather than served stale). ``None`` inside a snapshot means "the source omitted this
field": the exposition leaves the series out, it never invents a zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AgentMemory:
    """The agent container's memory, from the kubelet Summary API (``containers[].memory``)."""

    pod_namespace: str
    pod_name: str
    pod_uid: str
    working_set: int | None = None
    rss: int | None = None
    usage: int | None = None
    limit: int | None = None  # availableBytes + workingSetBytes; None without a limit
    start_time: float | None = None  # containers[].startTime, Unix seconds


@dataclass(frozen=True)
class AgentPod:
    """The agent pod's identity and container status, from the API server."""

    namespace: str
    name: str
    uid: str
    restart_count: int | None = None
    last_terminated_reason: str | None = None
    last_terminated_at: float | None = None  # lastState.terminated.finishedAt, Unix seconds


@dataclass(frozen=True)
class AgentDatapath:
    """Packet counters and map pressure re-exported from the agent's own metrics endpoint."""

    dropped: dict[tuple[str, str], float] = field(default_factory=dict)  # (reason enum name, direction)
    forwarded: dict[str, float] = field(default_factory=dict)  # direction
    map_pressure: dict[str, float] = field(default_factory=dict)  # map_name
