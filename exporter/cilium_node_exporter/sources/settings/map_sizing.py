"""How the agent sizes its large BPF maps, from the agent API or the ConfigMap (for the derived envelope).

- Agent API ``status.daemonConfigurationMap`` (every exported ``DaemonConfig`` field, 1.14-1.19): the sizes the
  agent *computed* at start - ``CTMapEntriesGlobalTCP``, ``CTMapEntriesGlobalAny``, ``NATMapEntriesGlobal``,
  ``NeighMapEntriesGlobal`` (1.14-1.19), ``SockRevNatEntries`` (1.14-1.17; 1.18 moved it to the load-balancer
  configuration, not in this map) - and ``BPFMapsDynamicSizeRatio`` (set only when the ratio is in (0, 1]),
  ``EnableIPv4``, ``EnableIPv6``, ``EnableNodePort`` and ``EnableSocketLB`` (1.14-1.17; the latter two moved
  to ``pkg/kpr`` in 1.18).
- ConfigMap (the chart's ``templates/cilium-configmap.yaml``): ``bpf-map-dynamic-size-ratio`` (absent: the
  agent's flag default 0.0025), explicit sizes ``bpf-ct-global-{tcp,any}-max``, ``bpf-nat-global-max``,
  ``bpf-neigh-global-max``, ``bpf-sock-rev-map-max`` (written only when set; they win over dynamic sizing),
  ``enable-ipv4``/``enable-ipv6`` (absent: the agent defaults, true), and NodePort / socket LB from
  ``kube-proxy-replacement`` (``true``/``strict`` enable both) or ``enable-node-port`` / ``bpf-lb-sock``
  (absent: off, the agent flags' defaults in ``daemon/cmd/daemon_main.go``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from cilium_node_exporter.aggregation.envelope import DEFAULT_RATIO
from cilium_node_exporter.aggregation.settings import MapSizing
from cilium_node_exporter.sources.settings import values as v

_DCM_ENTRIES = {"ct_tcp": "CTMapEntriesGlobalTCP", "ct_any": "CTMapEntriesGlobalAny", "nat": "NATMapEntriesGlobal",
                "neigh": "NeighMapEntriesGlobal", "sock_rev": "SockRevNatEntries"}
_CONFIGMAP_ENTRIES = {"ct_tcp": "bpf-ct-global-tcp-max", "ct_any": "bpf-ct-global-any-max",
                      "nat": "bpf-nat-global-max", "neigh": "bpf-neigh-global-max", "sock_rev": "bpf-sock-rev-map-max"}
_KPR_ON = ("true", "strict")


def _ratio(value: Any) -> float | None:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def from_daemon_config(dcm: Mapping[str, Any]) -> MapSizing | None:
    """The agent's effective sizing; None when the map has none of the sizes (not a DaemonConfig we know)."""
    entries = {m: n for m, key in _DCM_ENTRIES.items() if (n := v.uint(dcm.get(key))) is not None and n > 0}
    if not entries:
        return None
    return MapSizing(ratio=_ratio(dcm.get("BPFMapsDynamicSizeRatio")), entries=entries, effective=True,
                     ipv4=_bool(dcm.get("EnableIPv4")), ipv6=_bool(dcm.get("EnableIPv6")),
                     nodeport=_bool(dcm.get("EnableNodePort")), socket_lb=_bool(dcm.get("EnableSocketLB")))


def _int(text: Any) -> int | None:
    if isinstance(text, str) and text.strip().isdigit():
        return int(text.strip())
    return None


def from_configmap(data: Mapping[str, Any]) -> MapSizing:
    """The sizing the agents were started with (explicit sizes only; the rest is computed per node)."""
    ratio = _ratio(data["bpf-map-dynamic-size-ratio"]) if "bpf-map-dynamic-size-ratio" in data else DEFAULT_RATIO
    entries = {m: n for m, key in _CONFIGMAP_ENTRIES.items() if (n := _int(data.get(key))) is not None and n > 0}

    def flag(key: str, default: bool) -> bool | None:
        return v.go_bool(data[key]) if key in data else default

    kpr = v.kube_proxy_replacement(data.get("kube-proxy-replacement"))
    if kpr in _KPR_ON:
        nodeport: bool | None = True
        socket_lb: bool | None = True
    elif kpr == "probe":  # 1.14/1.15: decided by the agent from the kernel's features
        nodeport = socket_lb = None
    else:
        nodeport, socket_lb = flag("enable-node-port", False), flag("bpf-lb-sock", False)
    return MapSizing(ratio=ratio, entries=entries, ipv4=flag("enable-ipv4", True), ipv6=flag("enable-ipv6", True),
                     nodeport=nodeport, socket_lb=socket_lb)


def fill(primary: MapSizing | None, secondary: MapSizing | None) -> MapSizing | None:
    """``primary`` (the agent API) with what it does not say taken from ``secondary`` (the ConfigMap)."""
    if primary is None or secondary is None:
        return primary or secondary

    def first(a: Any, b: Any) -> Any:
        return a if a is not None else b

    return replace(primary, ratio=first(primary.ratio, secondary.ratio),
                   entries={**secondary.entries, **primary.entries},
                   ipv4=first(primary.ipv4, secondary.ipv4), ipv6=first(primary.ipv6, secondary.ipv6),
                   nodeport=first(primary.nodeport, secondary.nodeport),
                   socket_lb=first(primary.socket_lb, secondary.socket_lb))
