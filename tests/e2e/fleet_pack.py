"""The rule pack's numbers the fleet tests reason with: the accelerated preset's time compression and the
shipped Alertmanager routes' timers (alerts/alertmanager/alertmanager.yaml, which the run loads through
:func:`cilium_node_simulator.stack.alertmanager_config` with only the receivers' URLs replaced).
"""

from __future__ import annotations

import math
from typing import Any

from cilium_node_exporter.mixin.config import ACCELERATED, DEFAULTS, duration_seconds
from cilium_node_simulator import stack

PAGE, TICKET = "page", "ticket"


def compression() -> float:
    """How many times faster than production the accelerated preset runs the SLO windows (28d -> 1344m: 30)."""
    return duration_seconds(DEFAULTS["sloPeriod"]) / duration_seconds(ACCELERATED["sloPeriod"])


def alertmanager_config(webhook: str) -> dict[str, Any]:
    """The shipped configuration as is (real-time timers), every webhook at ``webhook/<receiver>``."""
    config = stack.alertmanager_config(webhook)
    assert {PAGE, TICKET} <= {r["name"] for r in config["receivers"]}, config["receivers"]
    return config


def route_timers(config: dict[str, Any], receiver: str) -> tuple[float, float]:
    """(group_wait, group_interval) in seconds of the first route (depth first) that sends to ``receiver``,
    inheriting its parents' timers (Alertmanager's defaults 30s and 5m at the root)."""
    def find(route: dict[str, Any], inherited: tuple[str, str]) -> tuple[str, str] | None:
        timers = (route.get("group_wait", inherited[0]), route.get("group_interval", inherited[1]))
        if route.get("receiver") == receiver and route is not config["route"]:
            return timers
        return next((t for child in route.get("routes", []) if (t := find(child, timers))), None)

    wait, interval = find(config["route"], ("30s", "5m")) or ("30s", "5m")
    return duration_seconds(wait), duration_seconds(interval)


def notifications_per_group(config: dict[str, Any], receiver: str, window: float) -> int:
    """The most notifications Alertmanager sends for one group of ``receiver`` within ``window`` seconds of its
    first alert: one after group_wait, then at most one per group_interval (dispatch.go aggrGroup.run)."""
    wait, interval = route_timers(config, receiver)
    return 0 if window < wait else 1 + math.floor((window - wait) / interval)


def pack_alerts(groups: list[dict[str, Any]]) -> set[str]:
    """Names of the alerts in Prometheus's loaded rule groups (/api/v1/rules)."""
    return {r["name"] for g in groups for r in g["rules"] if r.get("type") == "alerting"}
