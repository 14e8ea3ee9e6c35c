"""The simulated cilium-agent's configuration, per release: what its REST API on ``cilium.sock``
(``GET /v1/config``, ``GET /v1/healthz``) and the ``cilium-config`` ConfigMap show, and what it does to
the events Hubble receives.

Everything here comes from this module's own tables, read from Cilium's sources per release (1.14-1.19;
citations ``[LABEL path:lines]``, :mod:`.sources`): the ``DaemonConfig`` fields (``pkg/option/config.go``: which
keys ``status.daemonConfigurationMap`` has), the runtime options (``pkg/option/daemon.go``: ``spec.options``),
the Helm chart's ``install/kubernetes/cilium/templates/cilium-configmap.yaml`` (which ConfigMap keys exist) and the
datapath and Hubble behaviour (notifications switched off, the 1.17+ BPF events rate limiter,
``hubble-monitor-events`` with its quirks). It never reads the exporter's parsing code.

The scenario's ``cilium:`` block holds the *startup* configuration (the ConfigMap: flags); a phase's
``cilium:`` block holds *runtime* option changes, as ``cilium-dbg config DropNotification=false`` makes
them (``PATCH /v1/config``: ``spec.options`` changes, ``daemonConfigurationMap`` and the ConfigMap do not;
an agent restart resets them from the flags [v1.16.15 daemon/cmd/daemon_main.go:1332-1348]).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cilium_node_simulator.releases import parse_version

Release = tuple[int, int]
ALL: tuple[Release, Release] = ((1, 14), (1, 99))

# Monitor event types of the events the simulator produces [v1.16.15 pkg/monitor/api/types.go:21-54].
DROP, TRACE, POLICY_VERDICT, ACCESS_LOG = 1, 4, 5, 129
# Events that go through the BPF events map and its 1.17+ rate limiter [v1.17.8 bpf/lib/drop.h:79-83]
# [v1.17.8 bpf/lib/policy_log.h:88-92] [v1.17.8 bpf/lib/trace.h:244-248]; L7 access logs come from the proxy through
# the monitor agent and are not limited [v1.16.15 pkg/proxy/logger/monitoragent_lognotifier.go:22].
PERF_EVENT_TYPES = frozenset({DROP, TRACE, POLICY_VERDICT})

# Monitor message type names (MessageTypeNames) Hubble's monitor filter knows; each entry cites the first and the last
# release that has it (the 1.19 tree as vendored by cilium/hubble v1.19.4).
MONITOR_TYPE_NAMES: dict[str, tuple[Release, Release]] = {
    "drop": ALL,  # [v1.14.16 pkg/monitor/api/types.go:77] to [hubble-v1.19.4 pkg/monitor/api/types.go:73]
    "debug": ALL,  # [v1.14.16 pkg/monitor/api/types.go:78] to [hubble-v1.19.4 pkg/monitor/api/types.go:74]
    "capture": ALL,  # [v1.14.16 pkg/monitor/api/types.go:79] to [hubble-v1.19.4 pkg/monitor/api/types.go:75]
    "trace": ALL,  # [v1.14.16 pkg/monitor/api/types.go:80] to [hubble-v1.19.4 pkg/monitor/api/types.go:76]
    "l7": ALL,  # [v1.14.16 pkg/monitor/api/types.go:81] to [hubble-v1.19.4 pkg/monitor/api/types.go:77]
    "agent": ALL,  # [v1.14.16 pkg/monitor/api/types.go:82] to [hubble-v1.19.4 pkg/monitor/api/types.go:78]
    "policy-verdict": ALL,  # [v1.14.16 pkg/monitor/api/types.go:83] to [hubble-v1.19.4 pkg/monitor/api/types.go:79]
    "recorder": ((1, 14), (1, 18)),  # [v1.14.16 pkg/monitor/api/types.go:84] to [v1.18.3 pkg/monitor/api/types.go:85]
    "trace-sock": ALL,  # [v1.14.16 pkg/monitor/api/types.go:85] to [hubble-v1.19.4 pkg/monitor/api/types.go:80]
}

# status.daemonConfigurationMap: DaemonConfig fields (Go names, the map's keys) and the releases whose DaemonConfig
# has them, cited in the first and the last release that has each. A real map has ~330 keys; these are the ones
# that matter plus some context.
DCM_FIELDS: dict[str, tuple[Release, Release]] = {
    # [v1.16.15 pkg/option/config.go:2387] to [hubble-v1.19.4 pkg/option/config.go:1770]
    "BPFEventsDropEnabled": ((1, 16), (1, 99)),
    # [v1.16.15 pkg/option/config.go:2390] to [hubble-v1.19.4 pkg/option/config.go:1773]
    "BPFEventsPolicyVerdictEnabled": ((1, 16), (1, 99)),
    # [v1.16.15 pkg/option/config.go:2393] to [hubble-v1.19.4 pkg/option/config.go:1776]
    "BPFEventsTraceEnabled": ((1, 16), (1, 99)),
    # [v1.17.8 pkg/option/config.go:1461] to [hubble-v1.19.4 pkg/option/config.go:1270]
    "BPFEventsDefaultRateLimit": ((1, 17), (1, 99)),
    # [v1.17.8 pkg/option/config.go:1469] to [hubble-v1.19.4 pkg/option/config.go:1278]
    "BPFEventsDefaultBurstLimit": ((1, 17), (1, 99)),
    "EnableHubble": ((1, 14), (1, 16)),  # [v1.14.16 pkg/option/config.go:2214] to [v1.16.15 pkg/option/config.go:2100]
    # [v1.14.16 pkg/option/config.go:2287] to [v1.16.15 pkg/option/config.go:2203]
    "HubbleMonitorEvents": ((1, 14), (1, 16)),
    # [v1.14.16 pkg/option/config.go:2085] to [v1.17.8 pkg/option/config.go:1923]
    "KubeProxyReplacement": ((1, 14), (1, 17)),
    "EnableNodePort": ((1, 14), (1, 17)),  # [v1.14.16 pkg/option/config.go:2019] to [v1.17.8 pkg/option/config.go:1853]
    "Version": ((1, 14), (1, 18)),  # [v1.14.16 pkg/option/config.go:1837] to [v1.18.3 pkg/option/config.go:1542]
    "EnableEnvoyConfig": ALL,  # [v1.14.16 pkg/option/config.go:1824] to [hubble-v1.19.4 pkg/option/config.go:1423]
    "EnableL7Proxy": ALL,  # [v1.14.16 pkg/option/config.go:1730] to [hubble-v1.19.4 pkg/option/config.go:1347]
    "ExternalEnvoyProxy": ALL,  # [v1.14.16 pkg/option/config.go:1439] to [hubble-v1.19.4 pkg/option/config.go:1167]
    "MonitorAggregation": ALL,  # [v1.14.16 pkg/option/config.go:1830] to [hubble-v1.19.4 pkg/option/config.go:1425]
    # [v1.14.16 pkg/option/config.go:1563] to [hubble-v1.19.4 pkg/option/config.go:1255]
    "MonitorAggregationInterval": ALL,
    "EnableIPv4": ALL,  # [v1.14.16 pkg/option/config.go:1700] to [hubble-v1.19.4 pkg/option/config.go:1323]
    "EnableIPv6": ALL,  # [v1.14.16 pkg/option/config.go:1703] to [hubble-v1.19.4 pkg/option/config.go:1326]
    "ClusterName": ALL,  # [v1.14.16 pkg/option/config.go:1539] to [hubble-v1.19.4 pkg/option/config.go:1231]
    "ClusterID": ALL,  # [v1.14.16 pkg/option/config.go:1542] to [hubble-v1.19.4 pkg/option/config.go:1234]
    "RunDir": ALL,  # [v1.14.16 pkg/option/config.go:1438] to [hubble-v1.19.4 pkg/option/config.go:1166]
    "StateDir": ALL,  # [v1.14.16 pkg/option/config.go:1478] to [hubble-v1.19.4 pkg/option/config.go:1188]
    "EnableHealthChecking": ALL,  # [v1.14.16 pkg/option/config.go:1933] to [hubble-v1.19.4 pkg/option/config.go:1509]
    "EnableBPFMasquerade": ALL,  # [v1.14.16 pkg/option/config.go:1819] to [hubble-v1.19.4 pkg/option/config.go:1417]
    # moved to the agent-health cell's own config before 1.19 (1ebbc9d2ae, 2025-12-11): not in 1.19.4's DaemonConfig
    # [v1.14.16 pkg/option/config.go:1490] to [v1.18.3 pkg/option/config.go:1257]
    "AgentHealthPort": ((1, 14), (1, 18)),
    "EnablePolicy": ALL,  # [v1.14.16 pkg/option/config.go:1792] to [hubble-v1.19.4 pkg/option/config.go:1391]
    "IPAM": ALL,  # [v1.14.16 pkg/option/config.go:2163] to [hubble-v1.19.4 pkg/option/config.go:1634]
}
# spec.options: the daemon's option library (the runtime options; daemon_main sets the notification ones at start:
# [v1.14.16 daemon/cmd/daemon_main.go:1323-1338] [v1.16.15 daemon/cmd/daemon_main.go:1332-1348]
# [v1.18.3 daemon/cmd/daemon_main.go:1144-1159]), cited in the first and the last release that has each.
OPTION_KEYS: dict[str, tuple[Release, Release]] = {
    "ConntrackAccounting": ALL,  # [v1.14.16 pkg/option/daemon.go:18] to [hubble-v1.19.4 pkg/option/daemon.go:20]
    "ConntrackLocal": ((1, 14), (1, 17)),  # [v1.14.16 pkg/option/daemon.go:19] to [v1.17.8 pkg/option/daemon.go:20]
    "Debug": ALL,  # [v1.14.16 pkg/option/daemon.go:20] to [hubble-v1.19.4 pkg/option/daemon.go:22]
    "DebugLB": ALL,  # [v1.14.16 pkg/option/daemon.go:21] to [hubble-v1.19.4 pkg/option/daemon.go:23]
    "DropNotification": ALL,  # [v1.14.16 pkg/option/daemon.go:23] to [hubble-v1.19.4 pkg/option/daemon.go:26]
    "MonitorAggregationLevel": ALL,  # [v1.14.16 pkg/option/daemon.go:27] to [hubble-v1.19.4 pkg/option/daemon.go:30]
    # [v1.16.15 pkg/option/daemon.go:19] to [hubble-v1.19.4 pkg/option/daemon.go:21]
    "PolicyAccounting": ((1, 16), (1, 99)),
    "PolicyAuditMode": ALL,  # [v1.14.16 pkg/option/daemon.go:26] to [hubble-v1.19.4 pkg/option/daemon.go:29]
    "PolicyTracing": ALL,  # [v1.14.16 pkg/option/daemon.go:14] to [hubble-v1.19.4 pkg/option/daemon.go:16]
    "PolicyVerdictNotification": ALL,  # [v1.14.16 pkg/option/daemon.go:25] to [hubble-v1.19.4 pkg/option/daemon.go:28]
    "SourceIPVerification": ALL,  # [v1.14.16 pkg/option/daemon.go:28] to [hubble-v1.19.4 pkg/option/daemon.go:31]
    "TraceNotification": ALL,  # [v1.14.16 pkg/option/daemon.go:24] to [hubble-v1.19.4 pkg/option/daemon.go:27]
    "DebugTagged": ((1, 19), (1, 99)),  # [hubble-v1.19.4 pkg/option/daemon.go:25]
}
# GET /v1/healthz top-level keys (StatusResponse's JSON names), cited in the first and the last release that has each.
HEALTHZ_KEYS: dict[str, tuple[Release, Release]] = {
    # [v1.14.16 api/v1/models/status_response.go:28] to [hubble-v1.19.4 api/v1/models/status_response.go:29]
    "auth-certificate-provider": ALL,
    # [v1.14.16 api/v1/models/status_response.go:31] to [hubble-v1.19.4 api/v1/models/status_response.go:32]
    "bandwidth-manager": ALL,
    # [v1.14.16 api/v1/models/status_response.go:34] to [hubble-v1.19.4 api/v1/models/status_response.go:35]
    "bpf-maps": ALL,
    # [v1.14.16 api/v1/models/status_response.go:37] to [hubble-v1.19.4 api/v1/models/status_response.go:38]
    "cilium": ALL,
    # [v1.14.16 api/v1/models/status_response.go:43] to [hubble-v1.19.4 api/v1/models/status_response.go:44]
    "client-id": ALL,
    # [v1.14.16 api/v1/models/status_response.go:46] to [hubble-v1.19.4 api/v1/models/status_response.go:47]
    "clock-source": ALL,
    # [v1.14.16 api/v1/models/status_response.go:49] to [hubble-v1.19.4 api/v1/models/status_response.go:50]
    "cluster": ALL,
    # [v1.14.16 api/v1/models/status_response.go:52] to [hubble-v1.19.4 api/v1/models/status_response.go:53]
    "cluster-mesh": ALL,
    # [v1.14.16 api/v1/models/status_response.go:55] to [hubble-v1.19.4 api/v1/models/status_response.go:56]
    "cni-chaining": ALL,
    # [v1.14.16 api/v1/models/status_response.go:58] to [hubble-v1.19.4 api/v1/models/status_response.go:59]
    "cni-file": ALL,
    # [v1.14.16 api/v1/models/status_response.go:61] to [hubble-v1.19.4 api/v1/models/status_response.go:62]
    "container-runtime": ALL,
    # [v1.14.16 api/v1/models/status_response.go:64] to [hubble-v1.19.4 api/v1/models/status_response.go:65]
    "controllers": ALL,
    # [v1.14.16 api/v1/models/status_response.go:67] to [hubble-v1.19.4 api/v1/models/status_response.go:71]
    "encryption": ALL,
    # [v1.14.16 api/v1/models/status_response.go:70] to [hubble-v1.19.4 api/v1/models/status_response.go:74]
    "host-firewall": ALL,
    # [v1.14.16 api/v1/models/status_response.go:73] to [v1.15.7 api/v1/models/status_response.go:73]
    "host-routing": ((1, 14), (1, 15)),
    # [v1.14.16 api/v1/models/status_response.go:76] to [hubble-v1.19.4 api/v1/models/status_response.go:77]
    "hubble": ALL,
    # [v1.14.16 api/v1/models/status_response.go:79] to [hubble-v1.19.4 api/v1/models/status_response.go:83]
    "identity-range": ALL,
    # [v1.14.16 api/v1/models/status_response.go:82] to [hubble-v1.19.4 api/v1/models/status_response.go:86]
    "ipam": ALL,
    # [v1.14.16 api/v1/models/status_response.go:85] to [hubble-v1.19.4 api/v1/models/status_response.go:89]
    "ipv4-big-tcp": ALL,
    # [v1.14.16 api/v1/models/status_response.go:88] to [hubble-v1.19.4 api/v1/models/status_response.go:92]
    "ipv6-big-tcp": ALL,
    # [v1.14.16 api/v1/models/status_response.go:91] to [hubble-v1.19.4 api/v1/models/status_response.go:95]
    "kube-proxy-replacement": ALL,
    # [v1.14.16 api/v1/models/status_response.go:94] to [hubble-v1.19.4 api/v1/models/status_response.go:98]
    "kubernetes": ALL,
    # [v1.14.16 api/v1/models/status_response.go:97] to [hubble-v1.19.4 api/v1/models/status_response.go:101]
    "kvstore": ALL,
    # [v1.14.16 api/v1/models/status_response.go:100] to [hubble-v1.19.4 api/v1/models/status_response.go:104]
    "masquerading": ALL,
    # [v1.14.16 api/v1/models/status_response.go:103] to [hubble-v1.19.4 api/v1/models/status_response.go:107]
    "nodeMonitor": ALL,
    # [v1.14.16 api/v1/models/status_response.go:106] to [hubble-v1.19.4 api/v1/models/status_response.go:110]
    "proxy": ALL,
    # [v1.14.16 api/v1/models/status_response.go:109] to [hubble-v1.19.4 api/v1/models/status_response.go:119]
    "stale": ALL,
    # [v1.15.7 api/v1/models/status_response.go:109] to [hubble-v1.19.4 api/v1/models/status_response.go:116]
    "srv6": ((1, 15), (1, 99)),
    # [v1.16.15 api/v1/models/status_response.go:28] to [hubble-v1.19.4 api/v1/models/status_response.go:26]
    "attach-mode": ((1, 16), (1, 99)),
    # [v1.16.15 api/v1/models/status_response.go:70] to [hubble-v1.19.4 api/v1/models/status_response.go:68]
    "datapath-mode": ((1, 16), (1, 99)),
    # [v1.16.15 api/v1/models/status_response.go:112] to [hubble-v1.19.4 api/v1/models/status_response.go:113]
    "routing": ((1, 16), (1, 99)),
    # [v1.18.3 api/v1/models/status_response.go:82] to [hubble-v1.19.4 api/v1/models/status_response.go:80]
    "hubble-metrics": ((1, 18), (1, 99)),
}
# kube-proxy-replacement values the chart accepts: 1.14/1.15 true, false and the deprecated disabled, partial, strict
# [v1.14.16 install/kubernetes/cilium/templates/cilium-configmap.yaml:69-70]
# [v1.15.7 install/kubernetes/cilium/templates/cilium-configmap.yaml:69-70]; 1.16+ true or false only
# [v1.16.15 install/kubernetes/cilium/templates/cilium-configmap.yaml:70-71]. The healthz mode the agent reports:
# [v1.14.16 daemon/cmd/status.go:217-231] [v1.16.15 daemon/cmd/status.go:259-266].
KPR_VALUES: dict[str, tuple[Release, Release]] = {
    "true": ALL,  # [v1.14.16 install/kubernetes/cilium/templates/cilium-configmap.yaml:69] to 1.18.3's :81
    "false": ALL,  # [v1.14.16 install/kubernetes/cilium/templates/cilium-configmap.yaml:69] to 1.18.3's :81
    "strict": ((1, 14), (1, 15)),  # [v1.15.7 install/kubernetes/cilium/templates/cilium-configmap.yaml:69]
    "partial": ((1, 14), (1, 15)),  # [v1.15.7 install/kubernetes/cilium/templates/cilium-configmap.yaml:69]
    "disabled": ((1, 14), (1, 15)),  # [v1.15.7 install/kubernetes/cilium/templates/cilium-configmap.yaml:69]
}
_AGGREGATION = {"none": "None", "lowest": "Lowest", "low": "Low", "medium": "Medium", "max": "Max"}
ENVOY_MODES = ("external", "embedded", "none")


def has(table: Mapping[str, tuple[Release, Release]], key: str, release: Release) -> bool:
    first, last = table[key]
    return first <= release <= last


class SettingsError(ValueError):
    """A ``cilium:`` block asks for something this release does not have; the message says which."""


@dataclass(frozen=True)
class CiliumSpec:
    """The agent's startup configuration (the scenario's top-level ``cilium:`` block; its ConfigMap)."""

    envoy: str | None = None  # external | embedded | none (l7Proxy off); None: the chart's default
    prometheus: bool = True  # the agent metrics endpoint (Cilium Helm prometheus.enabled)
    drop_events: bool = True  # bpf-events-drop-enabled (1.16+)
    policy_verdict_events: bool = True  # bpf-events-policy-verdict-enabled (1.16+)
    trace_events: bool = True  # bpf-events-trace-enabled (1.16+)
    monitor_aggregation: str = "medium"  # the chart's bpf.monitorAggregation default
    hubble_monitor_events: tuple[str, ...] = ()  # empty: every event
    rate_limit: int = 0  # bpf-events-default-rate-limit, events/s for the node (1.17+; 0 = off)
    burst_limit: int = 0  # bpf-events-default-burst-limit (1.17+)
    kube_proxy_replacement: str = "false"

    def check(self, release: Release) -> None:
        """Raise :class:`SettingsError` for a setting this release does not have or refuses."""
        version = f"{release[0]}.{release[1]}"
        if self.envoy is not None and self.envoy not in ENVOY_MODES:
            raise SettingsError(f"envoy: {self.envoy!r} is not one of {', '.join(ENVOY_MODES)}")
        for key in ("drop_events", "policy_verdict_events", "trace_events"):
            if not getattr(self, key) and release < (1, 16):
                flag = "bpf-events-" + key.removesuffix("_events").replace("_", "-") + "-enabled"
                raise SettingsError(f"{key}: {flag} exists from Cilium 1.16 (this scenario is {version}); switch "
                                    f"the notification off at run time instead, in a phase: cilium: "
                                    f"{{{key.removesuffix('_events')}_notification: false}}")
        if (self.rate_limit or self.burst_limit) and release < (1, 17):
            raise SettingsError(f"rate_limit: the BPF events rate limiter exists from Cilium 1.17 (this scenario "
                                f"is {version})")
        if bool(self.rate_limit) != bool(self.burst_limit):
            # log.Fatalf for one without the other [v1.17.8 pkg/option/config.go:3228-3231]
            raise SettingsError("rate_limit and burst_limit: give both or neither (the agent refuses to start "
                                "with only one)")
        if self.monitor_aggregation not in _AGGREGATION:
            raise SettingsError(f"monitor_aggregation: {self.monitor_aggregation!r} is not one of "
                                f"{', '.join(_AGGREGATION)}")
        if self.kube_proxy_replacement not in KPR_VALUES or not has(KPR_VALUES, self.kube_proxy_replacement,
                                                                    release):
            allowed = [k for k in KPR_VALUES if has(KPR_VALUES, k, release)]
            raise SettingsError(f"kube_proxy_replacement: {self.kube_proxy_replacement!r} is not accepted by "
                                f"{version}'s chart ({', '.join(allowed)})")
        for name in self.hubble_monitor_events:
            if not isinstance(name, str):
                raise SettingsError(f"hubble_monitor_events: {name!r} is not a string")

    def envoy_mode(self, release: Release) -> str:
        """The chart's choice: ``envoyDaemonSetEnabled``
        [v1.16.15 install/kubernetes/cilium/templates/_helpers.tpl:147-159] - a DaemonSet for new 1.16+ installs,
        embedded before."""
        if self.envoy is not None:
            return self.envoy
        return "external" if release >= (1, 16) else "embedded"


@dataclass(frozen=True)
class RuntimeOptions:
    """A phase's ``cilium:`` block: runtime option changes (``PATCH /v1/config``); None keeps the value."""

    drop_notification: bool | None = None
    policy_verdict_notification: bool | None = None
    trace_notification: bool | None = None
    monitor_aggregation: str | None = None

    def check(self) -> None:
        if self.monitor_aggregation is not None and self.monitor_aggregation not in _AGGREGATION:
            raise SettingsError(f"monitor_aggregation: {self.monitor_aggregation!r} is not one of "
                                f"{', '.join(_AGGREGATION)}")


@dataclass
class EventsRateLimiter:
    """The node's BPF events token bucket (``ratelimit_check_and_take`` [v1.17.8 bpf/lib/ratelimit.h:61], 1.17+): one
    bucket (key = usage only), topped up by ``rate`` tokens every full second, capped at ``burst``; a new
    bucket starts with ``rate`` tokens. ``dropped`` lives in a pinned BPF map: it survives agent restarts.
    ``checked`` is when the metrics map entry exists (created, with 0, at the first check)."""

    rate: int
    burst: int
    tokens: int | None = None
    last_topup: float = 0.0
    dropped: int = 0
    checked: bool = False

    def admit(self, events: int, now: float) -> int:
        """How many of ``events`` notifications (checked together at ``now``, seconds) pass."""
        if events <= 0:
            return 0
        self.checked = True
        if self.tokens is None:
            self.tokens, self.last_topup = self.rate, now
        elif now - self.last_topup > 1.0:
            intervals = int(now - self.last_topup)
            self.tokens = min(self.tokens + intervals * self.rate, self.burst)
            self.last_topup += intervals
        admitted = min(events, self.tokens)
        self.tokens -= admitted
        self.dropped += events - admitted
        return admitted

    def give_back(self, tokens: int) -> None:
        """Admitted events that are not produced after all (whole occurrences only): their tokens return to
        the bucket and they count as discarded (they never reach Hubble)."""
        if self.tokens is not None:
            self.tokens += tokens
            self.dropped += tokens


@dataclass
class AgentConfig:
    """The agent's configuration now: the startup spec, the runtime options, and what they imply."""

    spec: CiliumSpec
    version: str
    options: dict[str, str] = field(default_factory=dict)
    limiter: EventsRateLimiter | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.build = parse_version(self.version)  # the same build Hubble reports (releases.ServerVersion)
        self.release: Release = (self.build.numbers[0], self.build.numbers[1])
        self.spec.check(self.release)
        if self.spec.rate_limit:
            self.limiter = EventsRateLimiter(self.spec.rate_limit, self.spec.burst_limit)
        self.restart()

    # --- state ----------------------------------------------------------------------------------
    def restart(self) -> None:
        """Runtime options as the agent sets them at start: notifications Enabled up to 1.15, from the
        bpf-events-* flags from 1.16; the aggregation level from monitor-aggregation."""
        spec, newer = self.spec, self.release >= (1, 16)

        def flag(on: bool) -> str:
            return "Enabled" if on or not newer else "Disabled"

        options = {k: "Disabled" for k in OPTION_KEYS if has(OPTION_KEYS, k, self.release)}
        options.update({"ConntrackAccounting": "Enabled", "SourceIPVerification": "Enabled",
                        "DropNotification": flag(spec.drop_events),
                        "PolicyVerdictNotification": flag(spec.policy_verdict_events),
                        "TraceNotification": flag(spec.trace_events),
                        "MonitorAggregationLevel": _AGGREGATION[spec.monitor_aggregation]})
        if "PolicyAccounting" in options:
            options["PolicyAccounting"] = "Enabled"
        with self._lock:
            self.options = options

    def apply(self, change: RuntimeOptions) -> None:
        """``cilium-dbg config``: change runtime options (``spec.options`` only)."""
        with self._lock:
            for key, value in (("DropNotification", change.drop_notification),
                               ("PolicyVerdictNotification", change.policy_verdict_notification),
                               ("TraceNotification", change.trace_notification)):
                if value is not None:
                    self.options[key] = "Enabled" if value else "Disabled"
            if change.monitor_aggregation is not None:
                self.options["MonitorAggregationLevel"] = _AGGREGATION[change.monitor_aggregation]

    @property
    def envoy_mode(self) -> str:
        return self.spec.envoy_mode(self.release)

    @property
    def prometheus(self) -> bool:
        return self.spec.prometheus

    def silenced_types(self) -> frozenset[int]:
        """Event types the datapath does not notify (their runtime option is Disabled)."""
        with self._lock:
            options = dict(self.options)
        off = {DROP: "DropNotification", POLICY_VERDICT: "PolicyVerdictNotification", TRACE: "TraceNotification"}
        return frozenset(t for t, key in off.items() if options.get(key) == "Disabled")

    def hubble_filtered_types(self) -> frozenset[int]:
        """Event types Hubble's monitor filter drops [v1.16.15 pkg/hubble/monitor/filter.go:34-100]: none without a list
        or when a name is unknown (the filter then fails and is not installed); L7 access logs arrive as
        agent events (``SendEvent`` -> ``notifyAgentEvent``) and pass only when ``agent`` is listed."""
        names = self.spec.hubble_monitor_events
        if not names or any(n not in MONITOR_TYPE_NAMES or not has(MONITOR_TYPE_NAMES, n, self.release)
                            for n in names):
            return frozenset()
        passes = {DROP: "drop", POLICY_VERDICT: "policy-verdict", TRACE: "trace", ACCESS_LOG: "agent"}
        return frozenset(t for t, name in passes.items() if name not in names)

    # --- GET /v1/config -------------------------------------------------------------------------
    def config_doc(self) -> dict[str, Any]:
        """``DaemonConfiguration`` [v1.14.16 daemon/cmd/config.go:194-231] [v1.16.15 daemon/cmd/config.go:179-216]
        [v1.17.8 daemon/restapi/config.go:364] [v1.18.3 daemon/restapi/config.go:387]."""
        spec, release = self.spec, self.release
        mode = self.envoy_mode
        values: dict[str, Any] = {
            "BPFEventsDropEnabled": spec.drop_events, "BPFEventsPolicyVerdictEnabled": spec.policy_verdict_events,
            "BPFEventsTraceEnabled": spec.trace_events, "BPFEventsDefaultRateLimit": spec.rate_limit,
            "BPFEventsDefaultBurstLimit": spec.burst_limit, "EnableHubble": True,
            "HubbleMonitorEvents": list(spec.hubble_monitor_events),
            "KubeProxyReplacement": spec.kube_proxy_replacement,
            "EnableNodePort": spec.kube_proxy_replacement in ("true", "strict"),
            "Version": "false",  # the --version bool flag read with GetString, not the Cilium version
            "EnableEnvoyConfig": False, "EnableL7Proxy": mode != "none", "ExternalEnvoyProxy": mode == "external",
            "MonitorAggregation": spec.monitor_aggregation, "MonitorAggregationInterval": 5_000_000_000,
            "EnableIPv4": True, "EnableIPv6": False, "ClusterName": "default", "ClusterID": 0,
            "RunDir": "/var/run/cilium", "StateDir": "/var/run/cilium/state", "EnableHealthChecking": True,
            "EnableBPFMasquerade": False, "AgentHealthPort": 9879, "EnablePolicy": "default", "IPAM": "cluster-pool",
        }
        dcm = {k: v for k, v in values.items() if has(DCM_FIELDS, k, release)}
        dcm["Devices"] = ["eth0"]  # added by hand by the handler
        with self._lock:
            options = dict(sorted(self.options.items()))
        spec_doc = {"options": options, "policy-enforcement": "default"}
        return {"spec": spec_doc, "status": {
            "addressing": {"ipv4": {"alloc-range": "10.0.1.0/24", "enabled": True, "ip": "10.0.1.233"}},
            "daemonConfigurationMap": dict(sorted(dcm.items())), "datapathMode": "veth", "deviceMTU": 1500,
            "ipam-mode": "cluster-pool", "kvstoreConfiguration": {}, "masquerade": True,
            "masqueradeProtocols": {"ipv4": True}, "nodeMonitor": {"cpus": 4, "npages": 64, "pagesize": 4096},
            "realized": {"options": dict(options), "policy-enforcement": "default"}, "routeMTU": 1450}}

    # --- GET /v1/healthz ------------------------------------------------------------------------
    def version_message(self) -> str:
        """``cilium.msg``: ``"<version> (v<version>-<short git hash>)"`` [v1.16.15 daemon/cmd/status.go:710] (
        the hash as in ``Makefile.defs`` ``GIT_VERSION``, the one Hubble's version string carries too)."""
        core = self.build.core
        return f"{core} (v{core}-{self.build.revision})"

    def healthz(self, brief: bool, hubble_flows: tuple[int, int, int] = (0, 4095, 0)) -> dict[str, Any]:
        """``StatusResponse``; ``brief`` returns cluster.ciliumHealth and cilium only
        [v1.16.15 daemon/cmd/status.go:674-700]."""
        cilium = {"state": "Ok", "msg": self.version_message()}
        if brief:
            return {"cilium": cilium, "cluster": {"ciliumHealth": {"state": "Ok"}}}
        release, mode, kpr = self.release, self.envoy_mode, self.spec.kube_proxy_replacement
        # 1.16+ report only True/False [v1.16.15 daemon/cmd/status.go:259-266]; before, the flag value capitalised
        kpr_mode = ("True" if kpr == "true" else "False") if release >= (1, 16) else kpr.capitalize()
        current, capacity, seen = hubble_flows
        doc: dict[str, Any] = {key: {"state": "Disabled"} for key in HEALTHZ_KEYS if has(HEALTHZ_KEYS, key, release)}
        doc.update({
            "cilium": cilium, "cluster": {"ciliumHealth": {"state": "Ok"}},
            "controllers": [{"name": "sync-host-ips", "uuid": "3a2c9b0e-7f4e-4c1c-9d1e-6a0f4b2d8e11",
                             "configuration": {"error-retry": True, "interval": "15m0s"},
                             "status": {"success-count": 42, "last-failure-timestamp": "0001-01-01T00:00:00.000Z",
                                        "last-success-timestamp": "2025-02-03T10:15:02.412Z"}}],
            "hubble": {"state": "Ok", "observer": {"current-flows": current, "max-flows": capacity,
                                                   "seen-flows": seen, "uptime": "1h0m0s"}},
            "kube-proxy-replacement": {"mode": kpr_mode, "devices": ["eth0"]},
            "kubernetes": {"state": "Ok", "msg": "1.35 (v1.35.0) [linux/amd64]"},
            "nodeMonitor": {"cpus": 4, "npages": 64, "pagesize": 4096},
            "proxy": {"envoy-deployment-mode": mode, "ip": "10.0.1.233", "port-range": "10000-20000",
                      "redirects": None},
        })
        if release < (1, 18):
            doc["hubble"]["metrics"] = {"state": "Disabled"}
        if mode == "none":  # the proxy cell returns nil without the L7 proxy [v1.16.15 pkg/proxy/cell.go:59-66]
            del doc["proxy"]
        for key in ("stale", "client-id"):
            doc.pop(key, None)
        return doc

    # --- the cilium-config ConfigMap ------------------------------------------------------------
    def configmap_data(self) -> dict[str, str]:
        """``data`` of cilium-config as the release's chart renders it
        ([v1.16.15 install/kubernetes/cilium/templates/cilium-configmap.yaml], per release)."""
        spec, release, mode = self.spec, self.release, self.envoy_mode
        data = {
            "cluster-name": "default", "cluster-id": "0", "ipam": "cluster-pool", "routing-mode": "tunnel",
            "tunnel-protocol": "vxlan", "enable-ipv4": "true", "enable-ipv6": "false", "debug": "false",
            "enable-hubble": "true", "hubble-socket-path": "/var/run/cilium/hubble.sock",
            "monitor-aggregation": spec.monitor_aggregation, "monitor-aggregation-interval": "5s",
            "monitor-aggregation-flags": "all", "kube-proxy-replacement": spec.kube_proxy_replacement,
            "enable-l7-proxy": "true" if mode != "none" else "false",
            "external-envoy-proxy": "true" if mode == "external" else "false",
        }
        if mode == "embedded":
            data["proxy-prometheus-port"] = "9964"
        if spec.prometheus:
            data["prometheus-serve-addr"] = ":9962"
        if release >= (1, 16):
            for key, on in (("drop", spec.drop_events), ("policy-verdict", spec.policy_verdict_events),
                            ("trace", spec.trace_events)):
                data[f"bpf-events-{key}-enabled"] = "true" if on else "false"
        if release >= (1, 17) and spec.rate_limit:
            data["bpf-events-default-rate-limit"] = str(spec.rate_limit)
            data["bpf-events-default-burst-limit"] = str(spec.burst_limit)
        if spec.hubble_monitor_events:  # no Helm value: extraConfig, a whitespace-separated list
            data["hubble-monitor-events"] = " ".join(spec.hubble_monitor_events)
        return dict(sorted(data.items()))

    def ratelimited(self) -> int | None:
        """``cilium_bpf_ratelimit_dropped_total{usage="events"}``: None until the limiter checked an event."""
        limiter = self.limiter
        return limiter.dropped if limiter is not None and limiter.checked else None
