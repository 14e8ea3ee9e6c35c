"""One end-to-end run: every scenario on its own node, all at once, under one Prometheus and Alertmanager.

The scenarios run concurrently (the run lasts as long as the longest one, about two and a half minutes);
the tests then read outcomes from the webhook and the APIs. Actions that need timing (killing an
exporter, stopping a node's Hubble) happen in "director" threads so that they do not depend on the
order in which the tests run. A sweep thread runs every dashboard query for every node every few
seconds and records errors and which nodes return data.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cilium_node_simulator.webhook import WebhookReceiver
from dashboards.queries import Query, all_queries
from tests.e2e.stack import SCENARIOS, Node, NodeSpec, Stack, http_get, wait_until

# name -> (scenario, speed, sources, extra exporter flags). Speed 4 turns the built-in scenarios'
# 3-minute baselines into 45 s; the e2e-specific files are written for speed 1. Two nodes run entirely over
# IPv6 loopback (Hubble over TCP, kubelet/API/agent fakes, the exporter and Prometheus' scrape on ::1).
SETTINGS_FAST = ("--settings-interval=5s",)  # the shortest allowed: a settings change shows within seconds
NODES: tuple[NodeSpec, ...] = (
    NodeSpec("sim-steady", "steady", 1, "auto", SETTINGS_FAST, ipv6=True),
    NodeSpec("sim-memory-leak", str(SCENARIOS / "memory-leak-recovery.yaml"), 1),
    NodeSpec("sim-oom-loop", "oom-loop", 4),
    NodeSpec("sim-policy-storm", "policy-storm", 4, exporter_args=("--extra-labels=endpoint_namespace,policy",
                                                                   "--label-cap=1"), ipv6=True),
    NodeSpec("sim-l7-denials", "l7-denials", 4),
    NodeSpec("sim-hubble-overload", "hubble-overload", 4),
    NodeSpec("sim-datapath-errors", "datapath-errors", 4, "hubble,kubelet,apiserver,agent"),
    NodeSpec("sim-exporter-down", "steady", 1, "hubble"),
    NodeSpec("sim-hubble-outage", str(SCENARIOS / "hubble-outage.yaml"), 1, "hubble"),
    # issue 12: nodes the exporter must not take for healthy, and Envoy apart from the agent
    NodeSpec("sim-blind-drops", "blind-drops", 4, "auto", SETTINGS_FAST),
    NodeSpec("sim-rate-limited", "rate-limited", 4, "auto", SETTINGS_FAST),
    NodeSpec("sim-envoy-oom", "envoy-oom", 2, "auto", SETTINGS_FAST),
)
SWEEP_EVERY = 20.0


@dataclass
class Sweep:
    """Dashboard queries over the run: errors, and the nodes for which each returned data."""

    errors: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (dashboard, panel, ref) -> error
    data: dict[tuple[str, str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    queries: dict[tuple[str, str, str], Query] = field(default_factory=dict)
    rounds: int = 0


class Run:
    """The stack, the webhook, the nodes and what the directors did (times are ``time.time()``)."""

    def __init__(self, workdir: Path) -> None:
        self.stack = Stack(workdir)
        self.webhook = WebhookReceiver().start()
        self.t0 = time.time()
        self.events: dict[str, float] = {}
        self.failures: list[str] = []
        self.sweep = Sweep()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.stop_codes: dict[str, int] = {}
        # (node, alertname) -> Alertmanager states seen ("active", "suppressed-inhibited", ...)
        self.am_seen: dict[tuple[str, str], set[str]] = defaultdict(set)

    def node(self, name: str) -> Node:
        return self.stack.nodes[name]

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> Run:
        self.stack.start_monitoring(self.webhook.url)
        nodes = [self.stack.start_simulator(spec) for spec in NODES]
        self.t0 = time.time()
        for node in nodes:
            self.stack.start_exporter(node)
        for node in nodes:
            self.stack.wait_scraped(node)
        for target in (self._kill_exporter, self._stop_hubble, self._sweep_loop, self._watch_alertmanager):
            thread = threading.Thread(target=self._guard, args=(target,), daemon=True, name=target.__name__)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        self.stop_codes = self.stack.procs.stop_all()
        self.webhook.stop()

    def _guard(self, target: object) -> None:
        try:
            target()  # type: ignore[operator]
        except Exception as exc:  # reported by the tests that depend on the director
            self.failures.append(f"{getattr(target, '__name__', target)}: {type(exc).__name__}: {exc}")

    def elapsed(self) -> float:
        return time.time() - self.t0

    def wait_for(self, seconds_after_start: float) -> None:
        """Sleep until the run is ``seconds_after_start`` old."""
        time.sleep(max(0.0, self.t0 + seconds_after_start - time.time()))

    # --- directors ---------------------------------------------------------------------------------
    def _kill_exporter(self) -> None:
        """sim-exporter-down: the exporter process dies (SIGKILL) a few seconds after its first scrape."""
        node = self.node("sim-exporter-down")
        time.sleep(5)
        self.stack.procs.stop(node.exporter, signal.SIGKILL)
        self.events["exporter-killed"] = time.time()

    def _stop_hubble(self) -> None:
        """sim-hubble-outage: stop the simulator (its Hubble socket goes away) early in the denial burst."""
        node = self.node("sim-hubble-outage")
        selector = f'cilium_node_policy_verdicts_total{{node="{node.name}", action="dropped"}}'
        wait_until(lambda: self.stack.query(f"count_over_time({selector}[1m]) >= 3"), 60,
                   "the trickle of denials in Prometheus", interval=0.5)
        pattern = re.compile(rb'^cilium_node_policy_verdicts_total\{[^}]*action="dropped"[^}]*\} ([0-9.e+]+)$', re.M)

        def denials() -> float:
            return sum(float(v) for v in pattern.findall(http_get(node.metrics_url)[1]))

        wait_until(lambda: denials() >= 600, 60, "the exporter counting the burst", interval=0.05)
        self.stack.procs.stop(node.sim, signal.SIGTERM)
        self.events["hubble-stopped"] = time.time()

    def _watch_alertmanager(self) -> None:
        """Record the state of every alert Alertmanager holds, twice a second (inhibitions are transient)."""
        while not self._stop.wait(0.5):
            for alert in self.stack.am_alerts():
                status = alert["status"]
                state = status["state"] + ("-inhibited" if status["inhibitedBy"] else "")
                key = (alert["labels"].get("node", ""), alert["labels"]["alertname"])
                self.am_seen[key].add(state)

    # --- dashboard sweep ---------------------------------------------------------------------------
    def _sweep_loop(self) -> None:
        while not self._stop.wait(SWEEP_EVERY if self.sweep.rounds else 10.0):
            self.sweep_once()

    def sweep_once(self) -> None:
        """Run every dashboard expression for every node once."""
        jobs = []
        for name in self.stack.nodes:
            for q in all_queries({"node": name, "__range": "10m", "__range_s": "600"}):
                key = (q.dashboard, q.panel, q.ref_id)
                self.sweep.queries[key] = q
                jobs.append((name, key, q.expr))
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda job: (job[0], job[1], self.stack.try_query(job[2])), jobs))
        for name, key, (error, result) in results:
            if error:
                self.sweep.errors[key] = error
            elif result:
                self.sweep.data[key].add(name)
        self.sweep.rounds += 1
