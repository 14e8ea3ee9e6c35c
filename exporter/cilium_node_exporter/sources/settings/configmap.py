"""The node's Cilium settings from the ``cilium-config`` ConfigMap, through the API server (GET only).

``GET /api/v1/namespaces/<--cilium-namespace>/configmaps/<--settings-configmap>?resourceVersion=0``
(served from the API server's watch cache; RBAC: ``get`` on that one ConfigMap, ``resourceNames``).
The ConfigMap holds what the agents were *started* with (the Cilium chart's
``templates/cilium-configmap.yaml``); a runtime change (``cilium-dbg config DropNotification=false``)
is visible only through the agent API. A key the chart does not write means the agent's own default,
which Cilium's sources define per release:

- ``bpf-events-{drop,policy-verdict,trace}-enabled``: written by the chart from 1.16; the agent default
  is ``true`` (``pkg/defaults/defaults.go`` 1.16.6-1.19.4), and before 1.16 the notifications are always
  enabled at start (1.14b ``daemon/cmd/daemon_main.go`` lines 1325-1327) - absent therefore means on;
- ``monitor-aggregation``: absent means the agent default ``None`` (daemon_main, every release);
- ``hubble-monitor-events``: no Helm value (``extraConfig`` only); absent or empty means every event; a comma
  list is two names to 1.17+ and one unknown name (no filter at all) to 1.14-1.16 (:func:`values.string_slice`):
  unknown unless the agent API told the release;
- ``kube-proxy-replacement``: always written by the chart; absent is unknown;
- ``external-envoy-proxy`` (1.14+; agent default false = embedded) and ``enable-l7-proxy`` (default true);
- the events rate limit is not taken from here: its keys are honoured only from 1.17 and the ConfigMap
  does not say which release reads it; the version is not in the ConfigMap either;
- BPF map sizing: see :mod:`.map_sizing`.
"""

from __future__ import annotations

from typing import Any

from cilium_node_exporter.aggregation.settings import CiliumSettings
from cilium_node_exporter.contract import MONITOR_EVENTS
from cilium_node_exporter.sources import k8s_http
from cilium_node_exporter.sources.k8s_http import Endpoint, SourceError
from cilium_node_exporter.sources.settings import map_sizing
from cilium_node_exporter.sources.settings import values as v

ORIGIN = "configmap"
MAX_BYTES = 1 * 2**20  # a cilium-config ConfigMap is ~5-15 KB; the API server caps objects at ~1.5 MiB
MAX_VALUES = 20_000  # ~300 keys
_NOTIFICATIONS = (("drop", "bpf-events-drop-enabled"), ("policy_verdict", "bpf-events-policy-verdict-enabled"),
                  ("trace", "bpf-events-trace-enabled"))


def read(endpoint: Endpoint, namespace: str, name: str, timeout: float,
         version: v.Version | None = None) -> CiliumSettings:
    """GET the ConfigMap; ``absent`` errors when it does not exist or may not be read (403, 404). ``version``
    is the agent's release when the agent API told it (it decides how a list value is split)."""
    what = f"ConfigMap {namespace}/{name}"
    try:
        doc = k8s_http.get_json(endpoint, f"/api/v1/namespaces/{namespace}/configmaps/{name}",
                                query={"resourceVersion": "0"}, timeout=timeout, max_bytes=MAX_BYTES,
                                max_values=MAX_VALUES, what=what)
    except SourceError as exc:
        if exc.status == 403:
            raise SourceError("auth", f"{exc.message} (the service account needs get on configmaps/{name} in "
                                      f"namespace {namespace})", 403, absent=True) from None
        if exc.status == 404:
            raise SourceError("http", f"{what} does not exist", 404, absent=True) from None
        raise
    return parse(doc, version)


def parse(doc: Any, version: v.Version | None = None) -> CiliumSettings:
    """Settings from a ConfigMap object; SourceError when it is not one. ``hubble-monitor-events`` with a comma
    is unknown unless ``version`` says how the agent splits it (:func:`values.string_slice`)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("data", {}), dict | type(None)):
        raise SourceError("protocol", "cilium ConfigMap: not a ConfigMap (data is not a map)")
    data: dict[str, Any] = doc.get("data") or {}

    notifications: dict[str, bool] = {}
    for event, key in _NOTIFICATIONS:
        value = v.go_bool(data[key]) if key in data else True
        if value is not None:
            notifications[event] = value

    raw_events = data.get("hubble-monitor-events")
    if raw_events is None or (isinstance(raw_events, str) and not raw_events.strip()):
        monitor_events: dict[str, bool] = dict.fromkeys(MONITOR_EVENTS, True)
    elif isinstance(raw_events, str):
        names = v.string_slice(raw_events, version)
        monitor_events = (v.hubble_monitor_events(names, version) or {}) if names is not None else {}
    else:
        monitor_events = {}

    l7_proxy = v.go_bool(data["enable-l7-proxy"]) if "enable-l7-proxy" in data else True
    external = v.go_bool(data["external-envoy-proxy"]) if "external-envoy-proxy" in data else False
    envoy_mode = None
    if l7_proxy is False:
        envoy_mode = "none"
    elif l7_proxy is True and external is not None:
        envoy_mode = "external" if external else "embedded"

    return CiliumSettings(
        origin=ORIGIN, envoy_mode=envoy_mode,
        kube_proxy_replacement=v.kube_proxy_replacement(data.get("kube-proxy-replacement")),
        monitor_aggregation=v.monitor_aggregation(data.get("monitor-aggregation", "")),
        notifications=notifications, hubble_monitor_events=monitor_events,
        map_sizing=map_sizing.from_configmap(data))
