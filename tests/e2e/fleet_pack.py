"""The rule pack as the fleet tests use it, whichever layout the checkout has (one small adapter).

- the accelerated preset and its time compression: ``cilium_node_exporter.mixin.config`` where the pack's
  configuration lives in the exporter package, else ``alerts.config``;
- the shipped Alertmanager configuration ``alerts/alertmanager/alertmanager.yaml``, used as is with only the
  receivers' URLs replaced. Until the checkout ships one, :data:`INTERIM_ROUTE` stands in (the routing the
  fleet-aware pack announced: critical -> page grouped by cluster, warning -> ticket grouped by cluster and
  alert name) with the shipped ``inhibit-rules.yaml``; tests state which expectations need the shipped one.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import yaml

from tests.support.paths import REPO

try:  # the pack's configuration in the exporter package (mixin)
    from cilium_node_exporter.mixin.config import ACCELERATED, DEFAULTS, duration_seconds
except ImportError:  # the pack's configuration beside its generator
    from alerts.config import ACCELERATED, DEFAULTS, duration_seconds  # type: ignore[no-redef]

ALERTMANAGER_FILE = REPO / "alerts" / "alertmanager" / "alertmanager.yaml"
INHIBIT_FILE = REPO / "alerts" / "alertmanager" / "inhibit-rules.yaml"
PAGE, TICKET = "page", "ticket"
INTERIM_ROUTE: dict[str, Any] = {
    "receiver": TICKET, "group_by": ["cluster", "alertname"], "group_wait": "1m", "group_interval": "10m",
    "repeat_interval": "24h",
    "routes": [
        {"receiver": PAGE, "matchers": ['severity="critical"'], "group_by": ["cluster"], "group_wait": "30s",
         "group_interval": "5m", "repeat_interval": "4h"},
        {"receiver": TICKET, "matchers": ['severity="warning"']},
        {"receiver": "none", "matchers": ['severity="info"']},
    ],
}


def compression() -> float:
    """How many times faster than production the accelerated preset runs the SLO windows (28d -> 1344m: 30)."""
    return duration_seconds(DEFAULTS["sloPeriod"]) / duration_seconds(ACCELERATED["sloPeriod"])


def shipped() -> bool:
    """True when the checkout ships a complete Alertmanager configuration."""
    return ALERTMANAGER_FILE.exists()


def alertmanager_config(base_url: str) -> dict[str, Any]:
    """The shipped configuration (else the interim one) with every webhook pointing at ``base_url/<receiver>``."""
    if shipped():
        config = yaml.safe_load(ALERTMANAGER_FILE.read_text())
    else:
        inhibit = yaml.safe_load(INHIBIT_FILE.read_text())["inhibit_rules"]
        config = {"route": copy.deepcopy(INTERIM_ROUTE), "inhibit_rules": inhibit,
                  "receivers": [{"name": PAGE, "webhook_configs": [{"url": "", "send_resolved": True}]},
                                {"name": TICKET, "webhook_configs": [{"url": "", "send_resolved": True}]},
                                {"name": "none"}]}
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = f"{base_url.rstrip('/')}/{receiver['name']}"
    assert {PAGE, TICKET} <= {r["name"] for r in config["receivers"]}, config["receivers"]
    return config


def route_timers(config: dict[str, Any], receiver: str) -> tuple[float, float]:
    """(group_wait, group_interval) in seconds of the route that sends to ``receiver`` (inheriting the root's)."""
    root = config["route"]
    route = next((r for r in root.get("routes", []) if r.get("receiver") == receiver), root)
    wait = route.get("group_wait", root.get("group_wait", "30s"))
    interval = route.get("group_interval", root.get("group_interval", "5m"))
    return duration_seconds(wait), duration_seconds(interval)


def notifications_per_group(config: dict[str, Any], receiver: str, window: float) -> int:
    """The most notifications Alertmanager sends for one group of ``receiver`` within ``window`` seconds of its
    first alert: one after group_wait, then at most one per group_interval (dispatch.go aggrGroup.run)."""
    wait, interval = route_timers(config, receiver)
    return 0 if window < wait else 1 + math.floor((window - wait) / interval)


def pack_alerts(groups: list[dict[str, Any]]) -> set[str]:
    """Names of the alerts in Prometheus's loaded rule groups (/api/v1/rules)."""
    return {r["name"] for g in groups for r in g["rules"] if r.get("type") == "alerting"}
