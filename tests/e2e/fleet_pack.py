"""The rule pack's numbers the fleet tests reason with: the accelerated preset's time compression and the
shipped Alertmanager routes' timers (alerts/alertmanager/alertmanager.yaml, which the run loads through
:func:`cilium_node_simulator.stack.alertmanager_config` with only the receivers' URLs replaced).
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from alerts.alerting import CLUSTER, NODE, all_alerts
from cilium_node_exporter.mixin.config import ACCELERATED, DEFAULTS, Values, duration_seconds, merge
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


def alert_labels(groups: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Each alert's static labels (severity included) as Prometheus loaded them (/api/v1/rules), by name."""
    return {r["name"]: {**r.get("labels", {}), "alertname": r["name"]}
            for g in groups for r in g["rules"] if r.get("type") == "alerting"}


def scopes(preset: str = "accelerated") -> dict[str, str]:
    """Each alert's scope in the pack's definitions (alerts.alerting): node, cluster or global."""
    return {a.name: a.scope for a in all_alerts(Values(merge(None, preset)))}


def receivers(config: dict[str, Any], labels_by_alert: dict[str, dict[str, str]]) -> dict[str, str]:
    """The receiver Alertmanager routes each alert to, as Debian's ``amtool config routes test`` resolves
    ``config`` for the alert's static labels (plus a cluster, and a node for node-scoped alerts)."""
    amtool = shutil.which("amtool")
    assert amtool, "amtool missing: install Debian's prometheus-alertmanager (make system-deps)"
    scope = scopes()
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alertmanager.yaml"
        path.write_text(yaml.safe_dump(config))
        for name, labels in labels_by_alert.items():
            extra = {"cluster": "c"} | ({"node": "n"} if scope.get(name, NODE) == NODE else {})
            res = subprocess.run([amtool, "config", "routes", "test", f"--config.file={path}",
                                  *(f"{k}={v}" for k, v in {**labels, **extra}.items())],
                                 capture_output=True, text=True, timeout=30)
            assert res.returncode == 0, f"amtool routes test {name}: {res.stderr}"
            out[name] = res.stdout.strip()
    return out


def cluster_alerts(receivers_by_alert: dict[str, str], receiver: str) -> set[str]:
    """The pack's cluster-scoped alerts that Alertmanager sends to ``receiver``."""
    scope = scopes()
    return {name for name, r in receivers_by_alert.items() if r == receiver and scope.get(name) == CLUSTER}
