"""Snapshots of the Cilium containers on this node: memory (kubelet) and pod status (API server).

One snapshot per *component*: ``agent`` (the cilium-agent container) and ``envoy`` (the cilium-envoy
container of the separate DaemonSet, Cilium 1.16+ default; absent when Envoy runs inside the agent).
Each source replaces a component's snapshot as a whole (one dict item assignment, atomic under the
GIL) and removes it when it has nothing current to say: no such pod, or the source failed (values
are dropped rather than served stale). ``None`` inside a snapshot means "the source omitted this
field": the exposition leaves the series out, it never invents a zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

AGENT: Final = "agent"
ENVOY: Final = "envoy"
COMPONENTS: Final = (AGENT, ENVOY)


@dataclass(frozen=True)
class ContainerMemory:
    """One container's memory, from the kubelet Summary API (``containers[].memory``)."""

    pod_namespace: str
    pod_name: str
    pod_uid: str
    working_set: int | None = None
    rss: int | None = None
    usage: int | None = None
    limit: int | None = None  # availableBytes + workingSetBytes; None without a limit
    start_time: float | None = None  # containers[].startTime, Unix seconds


@dataclass(frozen=True)
class ContainerPod:
    """A pod's identity and one container's status, from the API server."""

    namespace: str
    name: str
    uid: str
    restart_count: int | None = None
    last_terminated_reason: str | None = None
    last_terminated_at: float | None = None  # lastState.terminated.finishedAt, Unix seconds
