"""The node's Cilium settings that change what the exporter can measure (published by source ``settings``).

Every field is "unknown" when absent (``None``, or a key missing from a mapping): the exposition then
leaves the series out rather than guessing. Values are already normalised to the contract's bounded
label sets (``contract.ENVOY_MODES`` etc.) by the source.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class MapSizing:
    """How the agent sizes its large BPF maps (``pkg/option/config.go`` ``calculateBPFMapSizes``).

    ``entries`` (by ``contract.DYNAMIC_MAPS``) are the agent's own values when ``effective`` (the agent API
    reports what it computed at start), else only the sizes set explicitly (ConfigMap keys), which win over
    dynamic sizing. The booleans say which maps exist (IPv4/IPv6, NAT and neighbour maps with NodePort,
    the socket reverse-NAT map with socket LB); None is unknown.
    """

    ratio: float | None = None  # bpf-map-dynamic-size-ratio; 0 = dynamic sizing off
    entries: Mapping[str, int] = field(default_factory=dict)
    effective: bool = False
    ipv4: bool | None = None
    ipv6: bool | None = None
    nodeport: bool | None = None
    socket_lb: bool | None = None


@dataclass(frozen=True)
class CiliumSettings:
    """One reading of the settings; ``origin`` says where they came from (agent-api, configmap or both), and
    :meth:`origin_of` where one family's values came from."""

    origin: str
    version: str | None = None
    envoy_mode: str | None = None
    kube_proxy_replacement: str | None = None
    monitor_aggregation: str | None = None
    notifications: Mapping[str, bool] = field(default_factory=dict)  # contract.NOTIFICATION_EVENTS
    hubble_monitor_events: Mapping[str, bool] = field(default_factory=dict)  # contract.MONITOR_EVENTS
    rate_limit: Mapping[str, int] = field(default_factory=dict)  # contract.RATE_LIMIT_KINDS; 0 = no limit
    # where each known family came from (agent-api or configmap): the series' origin label
    origins: Mapping[str, str] = field(default_factory=dict)
    unreadable: tuple[str, ...] = ()  # fields the source had but no agent would write (left unknown, counted)
    map_sizing: MapSizing | None = None

    def origin_of(self, family: str) -> str:
        """``agent-api`` or ``configmap``: where ``family`` (info, notifications, hubble_monitor_events,
        rate_limit) was read."""
        return self.origins.get(family, self.origin.split("+")[0])

    @property
    def has_rate_limiter(self) -> bool:
        """The agent has the BPF events rate limiter (Cilium 1.17+: its settings were reported)."""
        return bool(self.rate_limit)
