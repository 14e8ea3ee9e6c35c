"""One real-time fleet run: clusters of simulated nodes in one simulator process, one Prometheus, one Alertmanager.

Each cluster plays one fleet scenario (``simulator/cilium_node_simulator/scenarios/fleet``) at the accelerated
preset's compression, all at once. :data:`CLUSTERS` (six clusters, 310 nodes, every cluster with a ``node-001``)
are decided in virtual time by :mod:`tests.e2e.fleet_replay`; the real-time smoke (test_fleet.py) plays
:data:`SMOKE`, a size a loaded 2-core machine can scrape, and says "TOO SLOW" (:meth:`FleetRun.too_slow`) when it
could not.
Alertmanager runs the shipped configuration (receiver URLs pointed at the test's webhook, one path per receiver).

Time. The scenarios run ``speed`` (30) times faster than real time, as the preset's SLO windows do; Alertmanager's
timers (group_wait, group_interval, repeat_interval) are real time and are not changed. Everything the first 15
scenario minutes of an incident produce reaches Alertmanager within 30 real seconds, where in production it
trickles in over 15 minutes. The number of notifications is a function of the number of groups: Alertmanager
sends a group's first notification group_wait after its first alert and then at most one per group_interval,
whatever arrives meanwhile. So the run records every group key that held a notifiable (not inhibited, not
silenced) alert, per receiver and cluster, and the tests bound the notifications of the first 15 minutes by
keys x (1 + (15m - group_wait) // group_interval) from the shipped timers; the smoke also checks that a page key's
first notification really arrives at the webhook (it lasts beyond the page route's group_wait).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cilium_node_simulator.fleet_scenario import load_fleet
from cilium_node_simulator.webhook import WebhookReceiver
from tests.e2e import fleet_pack
from tests.e2e.stack import JOB, Stack, http_get, wait_until


@dataclass(frozen=True)
class ClusterRun:
    """A cluster of the run: the fleet scenario it plays, its size, and when its incident starts (scenario s)."""

    name: str
    scenario: str
    nodes: int
    incident_at: float


# The incidents start 10 scenario minutes in (20 s at speed 30), after the first scrapes and evaluations. The
# fleet-scale verdicts on these clusters are decided in virtual time (fleet_replay.py); the real-time smoke
# (test_fleet.py) plays SMOKE.
CLUSTERS: tuple[ClusterRun, ...] = (
    ClusterRun("rollout", "bad-rollout", 200, 600),
    ClusterRun("healthy", "healthy-day", 50, 600),
    ClusterRun("one-bad", "one-bad-node", 20, 600),
    ClusterRun("hubble-down", "hubble-down", 20, 600),
    ClusterRun("exporters-gone", "exporters-gone", 10, 600),
    ClusterRun("exporters-absent", "exporters-absent", 10, 600),
)
SMOKE: tuple[ClusterRun, ...] = tuple(c for c in CLUSTERS if c.name in ("healthy", "one-bad", "exporters-gone"))
INCIDENT_WINDOW = 15 * 60.0  # scenario seconds: "the first 15 minutes"
# The fleet's targets are scraped every 2 s (rules still evaluate every second): one process serving 310 scrapes
# a second needs most of a core, which a loaded 2-core CI machine does not guarantee. The pack's shortest rate
# window in the accelerated preset is 10 s, so every rate still has five samples.
SCRAPE_INTERVAL = "2s"
RESEND_DELAY = "5s"
KSM_JOB = "kube-state-metrics"
PROCESSES = ("fleet", "prometheus", "alertmanager")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def answering_clusters(clusters: tuple[ClusterRun, ...]) -> list[str]:
    """The clusters whose fleet scenario keeps every exporter answering (no ``exporter: down`` phase)."""
    return [c.name for c in clusters
            if all(e.exporter == "up" for g in load_fleet(c.scenario).groups for e in g.plan.extras)]


@dataclass
class GroupSeen:
    """One Alertmanager group key as the run saw it."""

    receiver: str
    labels: dict[str, str]
    alerts: set[tuple[tuple[str, str], ...]] = field(default_factory=set)  # notifiable alerts' label sets
    first_seen: float = 0.0


class FleetRun:
    """The stack, the fleet process, the webhook, and what Alertmanager held over the run."""

    def __init__(self, workdir: Path, clusters: tuple[ClusterRun, ...] = CLUSTERS) -> None:
        self.clusters = clusters
        self.stack = Stack(workdir)
        self.webhook = WebhookReceiver().start()
        self.speed = fleet_pack.compression()
        self.am_config = fleet_pack.alertmanager_config(self.webhook.url.rsplit("/", 1)[0])
        self.t0 = 0.0  # when the fleet's timelines started (time.time())
        self.groups: dict[str, GroupSeen] = {}  # by Alertmanager group key
        # fingerprint of an inhibited alert -> (its labels, its inhibitors' labels)
        self.inhibitions: dict[str, tuple[dict[str, str], list[dict[str, str]]]] = {}
        self.labels_by_fingerprint: dict[str, dict[str, str]] = {}  # every alert Alertmanager held
        self.last_alerts: list[dict[str, Any]] = []  # Alertmanager's alerts at the last poll
        self.notifiable: list[tuple[str, dict[str, str]]] = []  # (receiver, alert labels) at the last poll
        self.am_states: dict[tuple[str, str, str], set[str]] = defaultdict(set)  # (cluster, alert, node) -> states
        self.failures: list[str] = []
        self.pack_alerts: set[str] = set()
        self.receivers: dict[str, str] = {}  # alert name -> receiver, as Alertmanager routes the loaded pack
        self.rules: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.timings: dict[str, float] = {}

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> FleetRun:
        began = time.time()
        # No dashboard recording rules: the run is about alerts, and they cost Prometheus CPU at 300 nodes. Alerts
        # stay valid in Alertmanager for 20 s between resends (4 x 5 s), not 4 s: an evaluation of the pack at 300
        # nodes can take seconds on a loaded machine, and an alert that expires at a group's flush is not sent
        # then, but a group_interval (5 min) later.
        self.stack.start_monitoring(self.webhook.url, alertmanager=self.am_config, dashboard_rules=False,
                                    resend_delay=RESEND_DELAY)
        self.rules = self.stack.api("/api/v1/rules")["groups"]
        self.pack_alerts = fleet_pack.pack_alerts(self.rules)
        self.receivers = fleet_pack.receivers(self.am_config, fleet_pack.alert_labels(self.rules))
        targets = self.stack.sd_dir / "fleet.json"
        argv = [sys.executable, "-m", "cilium_node_exporter", "simulate", "--fleet", "0",
                *(a for c in self.clusters for a in ("--cluster", f"{c.name}={c.scenario}:{c.nodes}")),
                "--speed", f"{self.speed:g}", "--targets-file", str(targets), "--scrape-interval", SCRAPE_INTERVAL]
        self.stack.procs.start("fleet", argv)
        wait_until(targets.exists, 60, lambda: f"the fleet's targets; log:\n{self.stack.procs.log('fleet')}")
        self.t0 = time.time()
        self.timings["setup"] = self.t0 - began
        want = sum(c.nodes for c in self.clusters)
        up = f'up{{job="{JOB}"}} == 1'
        wait_until(lambda: self._count(up) >= want, 40,
                   lambda: f"{want} exporters scraped, have {self._count(up)}; fleet log:\n"
                           f"{self.stack.procs.log('fleet')}\nprometheus log:\n{self.stack.procs.log('prometheus')}")
        self.timings["scraped"] = time.time() - self.t0
        self._cpu0 = {name: cpu_seconds(self.stack.procs.procs[name].pid) for name in PROCESSES}
        self._thread = threading.Thread(target=self._watch, name="am-watch", daemon=True)
        self._thread.start()
        return self

    def cpu_shares(self) -> dict[str, float]:
        """Share of one core each process used since every node was first scraped (for the report)."""
        elapsed = time.time() - self.t0 - self.timings["scraped"]
        return {name: round((cpu_seconds(self.stack.procs.procs[name].pid) - self._cpu0[name]) / elapsed, 3)
                for name in PROCESSES}

    def scrape_health(self, cluster: str) -> str:
        """Failed scrapes and the slowest scrape of ``cluster``'s present exporters (load shows here first)."""
        window = max(1, int(time.time() - self.t0) + 1)
        sel = f'job="{JOB}", cluster="{cluster}"'
        up = f"up{{{sel}}}[{window}s]"
        failed = self.stack.query(f"sum(count_over_time({up}) - sum_over_time({up}))")
        slowest = self.stack.query(f"max(max_over_time(scrape_duration_seconds{{{sel}}}[{window}s]))")

        def value(result: list[dict[str, Any]]) -> float:
            return float(result[0]["value"][1]) if result else 0.0

        return (f"{value(failed):.0f} failed scrapes, slowest {value(slowest):.2f} s, load average "
                f"{os.getloadavg()[0]:.1f}, CPU shares {self.cpu_shares()}")

    def failed_scrapes(self) -> int:
        """Failed scrapes since the fleet started of the clusters whose exporters all keep answering (a scenario
        with an ``exporter: down`` phase fails scrapes by design)."""
        answering = answering_clusters(self.clusters)
        if not answering:
            return 0
        window = max(1, int(time.time() - self.t0) + 1)
        up = f'up{{job="{JOB}", cluster=~"{"|".join(answering)}"}}[{window}s]'
        result = self.stack.query(f"sum(count_over_time({up}) - sum_over_time({up}))")
        return int(float(result[0]["value"][1])) if result else 0

    def too_slow(self) -> str:
        """A verdict for failure messages: when scrapes failed, the machine was too slow for a real-time run
        (a healthy exporter reads as down) and the run says nothing about the alert pack."""
        failed = self.failed_scrapes()
        if not failed:
            return ""
        return (f"TOO SLOW: {failed} scrapes of the fleet failed (load average {os.getloadavg()[0]:.1f}, CPU shares "
                f"{self.cpu_shares()}): this real-time run could not keep up, so what fired is not the pack's "
                "verdict; the pack's verdict on these scenarios is tests/e2e/test_fleet_replay.py\n")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.stack.procs.stop_all()
        self.webhook.stop()

    # --- time --------------------------------------------------------------------------------------
    def real(self, scenario_seconds: float) -> float:
        """The wall-clock time (time.time()) at ``scenario_seconds`` into the fleet's timelines."""
        return self.t0 + scenario_seconds / self.speed

    def wait_until_scenario(self, scenario_seconds: float) -> None:
        time.sleep(max(0.0, self.real(scenario_seconds) - time.time()))

    def end_of_window(self, cluster: ClusterRun) -> float:
        """Wall-clock end of the first 15 scenario minutes of ``cluster``'s incident."""
        return self.real(cluster.incident_at + INCIDENT_WINDOW)

    # --- Prometheus --------------------------------------------------------------------------------
    def _count(self, expr: str) -> int:
        result = self.stack.query(f"count({expr})")
        return int(float(result[0]["value"][1])) if result else 0

    def prometheus_alerts(self, cluster: str) -> dict[str, set[str]]:
        """alertname -> states ('pending', 'firing') Prometheus had in ``cluster`` since the fleet started."""
        window = max(1, int(time.time() - self.t0) + 1)
        out: dict[str, set[str]] = defaultdict(set)
        for s in self.stack.query(f'max_over_time(ALERTS{{cluster="{cluster}"}}[{window}s])'):
            out[s["metric"]["alertname"]].add(s["metric"]["alertstate"])
        return dict(out)

    # --- Alertmanager --------------------------------------------------------------------------------
    def _am(self, path: str, params: list[tuple[str, str]] | None = None) -> Any:
        url = self.stack.am_url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        status, body = http_get(url, timeout=10)
        assert status == 200, f"GET {url}: {status} {body[:300]!r}"
        return json.loads(body)

    def _watch(self) -> None:
        """Every second: the groups with a notifiable alert, and who inhibits whom."""
        while not self._stop.wait(1.0):
            try:
                self.poll_alertmanager()
            except Exception as exc:  # reported by the tests
                self.failures.append(f"alertmanager watch: {type(exc).__name__}: {exc}")

    def poll_alertmanager(self) -> None:
        now = time.time()
        alerts = self._am("/api/v2/alerts")
        self.last_alerts = alerts
        by_fingerprint = self.labels_by_fingerprint
        by_fingerprint.update((a["fingerprint"], a["labels"]) for a in alerts)
        for a in alerts:
            labels, status = a["labels"], a["status"]
            state = status["state"] + ("-inhibited" if status["inhibitedBy"] else "")
            self.am_states[(labels.get("cluster", ""), labels["alertname"], labels.get("node", ""))].add(state)
            known = [by_fingerprint[f] for f in status["inhibitedBy"] if f in by_fingerprint]
            if known and a["fingerprint"] not in self.inhibitions:
                self.inhibitions[a["fingerprint"]] = (labels, known)
        notifiable = []
        for g in self._am("/api/v2/alerts/groups", [("inhibited", "false"), ("silenced", "false")]):
            active = [a for a in g["alerts"] if a["status"]["state"] == "active"]
            if not active:
                continue
            receiver = g["receiver"]["name"]
            notifiable += [(receiver, a["labels"]) for a in active]
            key = receiver + json.dumps(g["labels"], sort_keys=True)
            seen = self.groups.setdefault(key, GroupSeen(receiver, dict(g["labels"]), first_seen=now))
            seen.alerts.update(tuple(sorted(a["labels"].items())) for a in active)
        self.notifiable = notifiable

    def held(self, cluster: str) -> list[tuple[str, dict[str, str]]]:
        """(receiver, labels) of ``cluster``'s alerts that were notifiable at the last poll: what a group's flush
        would send then (an alert notifiable for a moment before its inhibitor arrived is not)."""
        return [(r, labels) for r, labels in self.notifiable if labels.get("cluster") == cluster]

    def groups_of(self, receiver: str, cluster: str, before: float | None = None) -> list[GroupSeen]:
        """Group keys of ``receiver`` whose alerts are in ``cluster`` (first seen before ``before``)."""
        return [g for g in self.groups.values()
                if g.receiver == receiver and any(dict(a).get("cluster") == cluster for a in g.alerts)
                and (before is None or g.first_seen <= before)]

    def notifications(self, receiver: str, cluster: str) -> list[dict[str, Any]]:
        """Webhook payloads (one per notification) of ``receiver`` carrying an alert of ``cluster``."""
        return [p for p in list(self.webhook.payloads)
                if p.get("receiver") == receiver and any(a["labels"].get("cluster") == cluster for a in p["alerts"])]

    def summary(self, cluster: str) -> str:
        """What the run saw for ``cluster``: for failure messages and the report."""
        lines = [f"{self.too_slow()}cluster {cluster}:", f"  Prometheus alerts: {self.prometheus_alerts(cluster)}",
                 f"  scrapes: {self.scrape_health(cluster)}"]
        for g in self.groups.values():
            if any(dict(a).get("cluster") == cluster for a in g.alerts):
                names = sorted({dict(a)["alertname"] + ("/" + dict(a)["node"] if "node" in dict(a) else "")
                                for a in g.alerts})
                lines.append(f"  group {g.receiver} {g.labels} at +{g.first_seen - self.t0:.0f}s: "
                             f"{len(g.alerts)} alerts {names[:8]}{' ...' if len(names) > 8 else ''}")
        for p in self.webhook.payloads:
            if any(a["labels"].get("cluster") == cluster for a in p["alerts"]):
                lines.append(f"  notification {p['receiver']} {p['status']} {p['groupLabels']}: "
                             f"{sorted({a['labels']['alertname'] for a in p['alerts']})} x{len(p['alerts'])}")
        lines.append(f"  failures: {self.failures or 'none'}")
        return "\n".join(lines)
