"""The running agent's settings from its REST API on ``cilium.sock`` (GET only).

``GET /v1/healthz`` with the header ``brief: true`` (the version in ``cilium.msg``; the brief answer is
the cheapest status call: 1.16b ``daemon/cmd/status.go`` lines 674-698) and ``GET /v1/config``
(``DaemonConfiguration``, same handler logic 1.14-1.19: 1.14b/1.16b ``daemon/cmd/config.go``, 1.17b+
``daemon/restapi/config.go``). Both are on the agent's API allow-list by default and Cilium's docs warn
against disabling them; a disabled endpoint answers 403 ("administratively disabled",
``pkg/api/apidisable.go``), reported here as ``rejected``.

Where each setting comes from (``OPT`` = ``spec.options``, the effective runtime values, changeable with
``cilium-dbg config``; ``DCM`` = ``status.daemonConfigurationMap``, the startup flags by Go field name):

- drop / policy-verdict / trace notifications: OPT ``DropNotification``, ``PolicyVerdictNotification``,
  ``TraceNotification`` (``Enabled``/``Disabled``), 1.14-1.19; DCM ``BPFEvents*Enabled`` (1.16+) only if an
  option is missing;
- monitor aggregation: OPT ``MonitorAggregationLevel``, else DCM ``MonitorAggregation``, 1.14-1.19;
- hubble-monitor-events: DCM ``HubbleMonitorEvents``, 1.14-1.16 only;
- events rate and burst limit: DCM ``BPFEventsDefaultRateLimit`` / ``BPFEventsDefaultBurstLimit``, 1.17+;
- kube-proxy-replacement: DCM ``KubeProxyReplacement``, 1.14-1.17 only;
- Envoy mode: DCM ``EnableL7Proxy`` (false: no Envoy) and ``ExternalEnvoyProxy``, 1.14-1.19;
- version: healthz ``cilium.msg``, 1.14-1.19;
- BPF map sizing: DCM, see :mod:`.map_sizing`.

Field presence per release: ``pkg/option/config.go`` ``DaemonConfig`` of the 1.14.2-1.19.4 tags
(``HubbleMonitorEvents`` and ``EnableHubble`` moved to ``pkg/hubble/cell`` in 1.17, ``KubeProxyReplacement``
to ``pkg/kpr`` in 1.18). What is missing here is unknown, or read from the ConfigMap.
"""

from __future__ import annotations

from typing import Any

from cilium_node_exporter.aggregation.settings import CiliumSettings
from cilium_node_exporter.sources import k8s_http
from cilium_node_exporter.sources.k8s_http import Endpoint, SourceError
from cilium_node_exporter.sources.settings import map_sizing
from cilium_node_exporter.sources.settings import values as v

ORIGIN = "agent-api"
CONFIG_PATH = "/v1/config"
HEALTHZ_PATH = "/v1/healthz"
# A real /v1/config is ~30-60 KB (~330 DaemonConfig fields); the brief healthz well under 1 KB.
# Values: ~330 fields plus their arrays and maps (~2-3k JSON values); the brief healthz a few dozen.
CONFIG_MAX_BYTES = 2 * 2**20
CONFIG_MAX_VALUES = 50_000
HEALTHZ_MAX_BYTES = 64 * 2**10
HEALTHZ_MAX_VALUES = 2_000
_NOTIFICATIONS = (("drop", "DropNotification", "BPFEventsDropEnabled"),
                  ("policy_verdict", "PolicyVerdictNotification", "BPFEventsPolicyVerdictEnabled"),
                  ("trace", "TraceNotification", "BPFEventsTraceEnabled"))
_OPTION_VALUES = {"Enabled": True, "Disabled": False}


def read(socket_path: str, timeout: float) -> CiliumSettings:
    """Both GETs on ``socket_path``; raises :class:`SourceError` (``absent`` when no agent listens)."""
    endpoint = Endpoint(f"unix://{socket_path}")
    what = f"agent API {socket_path}"
    health = _get(endpoint, HEALTHZ_PATH, what, HEALTHZ_MAX_BYTES, HEALTHZ_MAX_VALUES, timeout, {"brief": "true"})
    config = _get(endpoint, CONFIG_PATH, what, CONFIG_MAX_BYTES, CONFIG_MAX_VALUES, timeout, None)
    return parse(config, health)


def _get(endpoint: Endpoint, path: str, what: str, max_bytes: int, max_values: int, timeout: float,
         headers: dict[str, str] | None) -> Any:
    try:
        return k8s_http.get_json(endpoint, path, timeout=timeout, max_bytes=max_bytes, max_values=max_values,
                                 what=f"{what} GET {path}", headers=headers)
    except SourceError as exc:
        if exc.status == 403:  # the API allow-list (enable-cilium-api-server-access) excludes this endpoint
            raise SourceError("rejected", f"{exc.message} (administratively disabled: the agent's "
                                          "enable-cilium-api-server-access must allow GetConfig and GetHealthz)",
                              403) from None
        raise


def parse(config: Any, health: Any) -> CiliumSettings:
    """Settings from the ``/v1/config`` and brief ``/v1/healthz`` documents; SourceError when they do not
    have the DaemonConfiguration / StatusResponse shape."""
    if not isinstance(config, dict) or not isinstance(config.get("spec"), dict) \
            or not isinstance(config.get("status"), dict):
        raise SourceError("protocol", "agent API /v1/config: not a DaemonConfiguration (no spec and status)")
    if not isinstance(health, dict):
        raise SourceError("protocol", "agent API /v1/healthz: not a StatusResponse object")
    options = v.mapping(config["spec"].get("options")) or {}
    dcm = v.mapping(config["status"].get("daemonConfigurationMap")) or {}

    version = v.version_of((v.mapping(health.get("cilium")) or {}).get("msg"))
    release = version[1] if version else None

    notifications: dict[str, bool] = {}
    for event, option, flag in _NOTIFICATIONS:
        value = _OPTION_VALUES.get(options.get(option)) if isinstance(options.get(option), str) else None
        if value is None and isinstance(dcm.get(flag), bool):
            value = dcm[flag]
        if value is not None:
            notifications[event] = value

    aggregation = v.monitor_aggregation(options.get("MonitorAggregationLevel"))
    if aggregation is None:
        aggregation = v.monitor_aggregation(dcm.get("MonitorAggregation"))

    monitor_events: dict[str, bool] = {}
    if "HubbleMonitorEvents" in dcm:  # 1.14-1.16 (JSON [] or null: no filter)
        monitor_events = v.hubble_monitor_events(dcm["HubbleMonitorEvents"], release) or {}

    rate_limit: dict[str, int] = {}
    rate, burst = v.uint(dcm.get("BPFEventsDefaultRateLimit")), v.uint(dcm.get("BPFEventsDefaultBurstLimit"))
    # present but no uint32 (a string, -1, a 401-digit number): no agent writes that; unknown, and counted
    limits = (("BPFEventsDefaultRateLimit", rate), ("BPFEventsDefaultBurstLimit", burst))
    unreadable = tuple(key for key, value in limits if value is None and dcm.get(key) is not None)
    if rate is not None and burst is not None:  # 1.17+; the agent refuses one without the other
        rate_limit = {"rate": rate, "burst": burst}

    envoy_mode = None
    if dcm.get("EnableL7Proxy") is False:
        envoy_mode = "none"  # no proxy, no Envoy (the healthz "proxy" object is absent too)
    elif isinstance(dcm.get("ExternalEnvoyProxy"), bool):
        envoy_mode = "external" if dcm["ExternalEnvoyProxy"] else "embedded"

    return CiliumSettings(
        origin=ORIGIN, version=version[0] if version else None, envoy_mode=envoy_mode,
        kube_proxy_replacement=v.kube_proxy_replacement(dcm.get("KubeProxyReplacement")),
        monitor_aggregation=aggregation, notifications=notifications, hubble_monitor_events=monitor_events,
        rate_limit=rate_limit, unreadable=unreadable, map_sizing=map_sizing.from_daemon_config(dcm))
