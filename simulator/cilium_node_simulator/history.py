"""A month (or more) of exporter history for a simulated fleet, with its ground truth.

Each node follows a small model (traffic, drop incidents, memory leak, OOM kills, blind windows, exporter
gaps, an upgrade); :meth:`Fleet.samples` renders what Prometheus would have scraped from its exporter
(the metric contract's names, one sample every ``step`` seconds), and the ``truth_*`` methods compute
what a review of that period must find, from the model's own tables and the same sampling times, never
from the report's queries. ``cilium_node_simulator.backfill`` turns the samples into TSDB blocks.

Semantics the truth follows (what Prometheus sees at the scrape times):
- counters are exact integrals of the model's rates at each scrape time;
- a gauge scraped at ``t`` shows the state at ``t``; an hour ``(h - 1h, h]`` is blind when any scrape
  in it saw drop notifications off;
- the exporter exposes nothing during a gap (no series at all).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

MI = 2**20
HOUR = 3600
DAY = 86400
UNEXPECTED_BG = "INVALID_PACKET_DROPPED"  # background unexpected drops (Cilium's DropReason name)
POLICY = "POLICY_DENIED"  # drops the contract classes as policy (expected)


@dataclass(frozen=True)
class Window:
    start: int
    end: int

    def has(self, t: float) -> bool:
        return self.start <= t < self.end

    def overlap(self, a: float, b: float) -> float:
        return max(0.0, min(b, self.end) - max(a, self.start))


@dataclass(frozen=True)
class Incident:
    """Unexpected drops of ``share`` of the node's packets for ``reason`` during ``window``."""

    window: Window
    reason: str
    share: float


@dataclass(frozen=True)
class AlertEpisode:
    """An alert as Prometheus's rule manager would have recorded it (ALERTS, ALERTS_FOR_STATE)."""

    name: str
    severity: str
    node: str
    active_at: int
    firing_at: int
    resolved_at: int


@dataclass
class Node:
    """One node's behaviour over the period."""

    name: str
    start: int
    end: int
    agent_source: bool = True  # the agent's datapath counters (packet-exact SLI)
    packets: float = 2000.0  # per second
    flows: float = 300.0  # flows Hubble sees per second
    background_share: float = 0.0001  # unexpected drops, share of packets (agent nodes)
    hubble_errors: float = 0.0  # unexpected drop events per second (Hubble-only nodes)
    policy_share: float = 0.002  # policy-denied drops, share of packets
    l7_denied: float = 0.2  # per second
    l7_surges: list[tuple[Window, float]] = field(default_factory=list)  # (window, factor)
    lost: float = 0.0  # Hubble lost events per second
    incidents: list[Incident] = field(default_factory=list)
    base_ws: float = 300 * MI
    leak_per_day: float = 0.0  # working set growth since the agent started
    ooms: list[int] = field(default_factory=list)  # OOM kill times (the agent restarts at once)
    oom_ramp: int = 2 * HOUR  # the working set climbs to the limit over this long before each OOM kill
    blind: list[Window] = field(default_factory=list)  # drop notifications off
    hubble_down: list[Window] = field(default_factory=list)
    gaps: list[Window] = field(default_factory=list)  # exporter not scraped
    envoy_high: list[Window] = field(default_factory=list)  # cilium-envoy at 95 % of its limit
    upgrade_at: int | None = None  # a new agent pod with the new version

    def alive(self, t: float) -> bool:
        return self.start <= t <= self.end and not any(g.has(t) for g in self.gaps)

    # --- model ---------------------------------------------------------------------------------
    def pod_start(self, t: float) -> float:
        """When the agent container that runs at ``t`` started (node start, an OOM restart, or the upgrade)."""
        starts = [self.start] + [o for o in self.ooms if o <= t]
        if self.upgrade_at is not None and self.upgrade_at <= t:
            starts.append(self.upgrade_at)
        return max(starts)

    def restarts(self, t: float) -> int:
        """The agent container's restart count at ``t`` (a new pod at the upgrade starts again at 0)."""
        since = self.upgrade_at if self.upgrade_at is not None and self.upgrade_at <= t else self.start
        return sum(1 for o in self.ooms if since <= o <= t)

    def last_oom(self, t: float) -> int | None:
        """The last OOM kill of the current pod at ``t`` (None: no termination in this pod)."""
        since = self.upgrade_at if self.upgrade_at is not None and self.upgrade_at <= t else self.start
        done = [o for o in self.ooms if since <= o <= t]
        return max(done) if done else None

    def working_set(self, t: float) -> float:
        ws = self.base_ws + self.leak_per_day * (t - self.pod_start(t)) / DAY
        for o in self.ooms:
            if o - self.oom_ramp <= t < o:
                ramp_start = self.base_ws + self.leak_per_day * (o - self.oom_ramp - self.pod_start(t)) / DAY
                ws = ramp_start + (LIMIT - ramp_start) * (t - (o - self.oom_ramp)) / self.oom_ramp
        return ws

    def envoy_working_set(self, t: float) -> float:
        return 0.95 * ENVOY_LIMIT if any(w.has(t) for w in self.envoy_high) else 80 * MI

    def version(self, t: float) -> str:
        return NEW_VERSION if self.upgrade_at is not None and t >= self.upgrade_at else OLD_VERSION

    def _integral(self, rate: float, windows: list[tuple[Window, float]], a: float, b: float) -> float:
        """∫ rate x (1 + extra factors of windows) over [a, b] clipped to the node's life."""
        a, b = max(a, self.start), min(b, self.end)
        if b <= a:
            return 0.0
        total = rate * (b - a)
        for w, extra in windows:
            total += rate * extra * w.overlap(a, b)
        return total

    def unexpected(self, a: float, b: float) -> dict[str, float]:
        """Unexpected drops (packets, or Hubble events on Hubble-only nodes) by reason in [a, b]."""
        out: dict[str, float] = {}
        if self.agent_source:
            out[UNEXPECTED_BG] = self._integral(self.packets * self.background_share, [], a, b)
        else:
            out[UNEXPECTED_BG] = self._integral(self.hubble_errors, [], a, b)
        for inc in self.incidents:
            out[inc.reason] = out.get(inc.reason, 0.0) + self.packets * inc.share * inc.window.overlap(
                max(a, self.start), min(b, self.end))
        return out

    def drops(self, a: float, b: float) -> dict[str, float]:
        """Every drop by reason in [a, b] (policy + unexpected)."""
        out = {POLICY: self._integral(self.packets * self.policy_share, [], a, b)}
        out.update(self.unexpected(a, b))
        return out

    def packets_in(self, a: float, b: float) -> float:
        return self._integral(self.packets, [], a, b)

    def flows_in(self, a: float, b: float) -> float:
        return self._integral(self.flows, [], a, b)

    def hubble_drop_events(self, a: float, b: float) -> dict[str, float]:
        """Drop events Hubble delivered in [a, b]: none while notifications are off or Hubble is down."""
        cuts = sorted({a, b, *[x for w in self.blind + self.hubble_down for x in (w.start, w.end) if a < x < b]})
        out: dict[str, float] = {}
        for lo, hi in itertools.pairwise(cuts):
            mid = (lo + hi) / 2
            if any(w.has(mid) for w in self.blind + self.hubble_down):
                continue
            for reason, n in (self.drops(lo, hi) if self.agent_source else
                              {POLICY: self._integral(self.packets * self.policy_share, [], lo, hi),
                               **self.unexpected(lo, hi)}).items():
                out[reason] = out.get(reason, 0.0) + n
        return out


LIMIT = 1024 * MI
ENVOY_LIMIT = 256 * MI
ENVELOPE = (200 * MI, 500 * MI)
OLD_VERSION, NEW_VERSION = "1.16.5", "1.17.2"


@dataclass
class Fleet:
    """Nodes of one cluster over ``[start, end)``, scraped every ``step`` seconds."""

    cluster: str
    start: int
    end: int
    step: int
    nodes: list[Node]
    alerts: list[AlertEpisode] = field(default_factory=list)
    job: str = "cilium-node-exporter"

    def times(self) -> range:
        return range(self.start, self.end + 1, self.step)

    # --- what Prometheus scraped ---------------------------------------------------------------
    def samples(self, t0: int, t1: int) -> Iterator[tuple[str, dict[str, str], list[tuple[int, float]]]]:
        """Every series with its samples in ``[t0, t1)``: (name, labels, [(t, value)])."""
        times = [t for t in self.times() if t0 <= t < t1]
        for node in self.nodes:
            yield from self._node_samples(node, [t for t in times if node.alive(t)])
        yield from self._alert_samples(times)

    def _node_samples(self, n: Node, ts: list[int]) -> Iterator[tuple[str, dict[str, str], list[tuple[int, float]]]]:
        if not ts:
            return
        base = {"job": self.job, "cluster": self.cluster, "node": n.name}

        def series(name: str, values: list[float | None], **labels: str) -> tuple[str, dict[str, str],
                                                                                   list[tuple[int, float]]]:
            return name, {**base, **labels}, [(t, v) for t, v in zip(ts, values, strict=True) if v is not None]

        hubble_up = [0.0 if any(w.has(t) for w in n.hubble_down) else 1.0 for t in ts]
        yield series("cilium_node_exporter_build_info", [1.0] * len(ts), version="0.1.0")
        for source in ("hubble", "kubelet", "apiserver", "settings") + (("agent",) if n.agent_source else ()):
            yield series("cilium_node_exporter_source_up", hubble_up if source == "hubble" else [1.0] * len(ts),
                         source=source)
        if n.agent_source:
            reasons = sorted(n.drops(n.start, n.end))
            dropped = {r: [n.drops(n.start, t)[r] for t in ts] for r in reasons}
            total_dropped = [sum(dropped[r][i] for r in reasons) for i in range(len(ts))]
            yield series("cilium_node_datapath_forwarded_packets_total",
                         [n.packets_in(n.start, t) - d for t, d in zip(ts, total_dropped, strict=True)],
                         direction="egress")
            for r in reasons:
                yield series("cilium_node_datapath_dropped_packets_total", dropped[r], reason=r, direction="ingress")
        yield series("cilium_node_hubble_flows_seen_total", [n.flows_in(n.start, t) for t in ts])
        events = [n.hubble_drop_events(n.start, t) for t in ts]
        for r in sorted({r for e in events for r in e}):
            yield series("cilium_node_drops_total", [e.get(r, 0.0) for e in events], reason=r, direction="ingress")
        yield series("cilium_node_policy_verdicts_total",
                     [e.get(POLICY, 0.0) for e in events], direction="ingress", match="l3-l4", action="dropped")
        yield series("cilium_node_l7_requests_total",
                     [n._integral(n.l7_denied, n.l7_surges, n.start, t) for t in ts],
                     protocol="http", method="GET", direction="ingress", action="dropped")
        if n.lost:
            yield series("cilium_node_hubble_lost_events_total", [n._integral(n.lost, [], n.start, t) for t in ts],
                         source="perf_event_ring_buffer")
        yield series("cilium_node_agent_memory_working_set_bytes", [n.working_set(t) for t in ts])
        yield series("cilium_node_agent_memory_envelope_lower_bytes", [float(ENVELOPE[0])] * len(ts))
        yield series("cilium_node_agent_memory_envelope_upper_bytes", [float(ENVELOPE[1])] * len(ts))
        yield series("cilium_node_agent_memory_limit_bytes", [float(LIMIT)] * len(ts))
        yield series("cilium_node_agent_container_start_time_seconds", [float(n.pod_start(t)) for t in ts])
        yield series("cilium_node_agent_restarts_total", [float(n.restarts(t)) for t in ts])
        last = [n.last_oom(t) for t in ts]
        yield series("cilium_node_agent_last_terminated_timestamp_seconds",
                     [float(x) if x is not None else None for x in last])
        yield series("cilium_node_agent_last_terminated_reason", [1.0 if x is not None else None for x in last],
                     reason="OOMKilled")
        for version in (OLD_VERSION, NEW_VERSION):
            yield series("cilium_node_cilium_info", [1.0 if n.version(t) == version else None for t in ts],
                         version=version, envoy_mode="external", kube_proxy_replacement="true",
                         monitor_aggregation="medium")
        yield series("cilium_node_agent_notifications_enabled",
                     [0.0 if any(w.has(t) for w in n.blind) else 1.0 for t in ts], event="drop")
        yield series("cilium_node_envoy_memory_working_set_bytes", [n.envoy_working_set(t) for t in ts])
        yield series("cilium_node_envoy_memory_limit_bytes", [float(ENVOY_LIMIT)] * len(ts))
        yield series("cilium_node_envoy_restarts_total", [0.0] * len(ts))

    def _alert_samples(self, ts: list[int]) -> Iterator[tuple[str, dict[str, str], list[tuple[int, float]]]]:
        nodes = {n.name: n for n in self.nodes}
        for ep in self.alerts:
            labels = {"alertname": ep.name, "severity": ep.severity, "cluster": self.cluster, "node": ep.node}
            live = [t for t in ts if ep.active_at <= t < ep.resolved_at and nodes[ep.node].alive(t)]
            if not live:
                continue
            pending = [(t, 1.0) for t in live if t < ep.firing_at]
            firing = [(t, 1.0) for t in live if t >= ep.firing_at]
            if pending:
                yield "ALERTS", {**labels, "alertstate": "pending"}, pending
            if firing:
                yield "ALERTS", {**labels, "alertstate": "firing"}, firing
            yield "ALERTS_FOR_STATE", labels, [(t, float(ep.active_at)) for t in live]

    # --- ground truth ------------------------------------------------------------------------------
    def hour_ends(self, start: int, end: int) -> list[int]:
        return list(range(start + HOUR, end + 1, HOUR))

    def scrapes(self, node: Node, a: float, b: float) -> list[int]:
        """Scrape times in (a, b] at which the node's exporter was scraped."""
        first = self.start + math.ceil((a - self.start) / self.step + 1e-9) * self.step
        return [t for t in range(int(first), int(b) + 1, self.step) if node.alive(t) and t > a]

    def present_hours(self, node: Node, start: int, end: int) -> list[int]:
        return [h for h in self.hour_ends(start, end) if self.scrapes(node, h - HOUR, h)]

    def blind_hours(self, node: Node, start: int, end: int) -> list[int]:
        """Hours in which a scrape saw the node's drop notifications off (Hubble-only nodes: not measured)."""
        return [h for h in self.hour_ends(start, end)
                if any(any(w.has(t) for w in node.blind) for t in self.scrapes(node, h - HOUR, h))]

    def memory_bad_hours(self, node: Node, start: int, end: int, interval: int) -> float:
        """Hours above the envelope as a rule evaluated every ``interval`` sees it (share of its evaluations)."""
        total = 0.0
        for h in self.hour_ends(start, end):
            evals = [t for t in range(h - HOUR + interval, h + 1, interval) if self._latest(node, t) is not None]
            if evals:
                bad = sum(node.working_set(self._latest(node, t)) > ENVELOPE[1] for t in evals)  # type: ignore[arg-type]
                total += bad / len(evals) * min(1.0, len(evals) / (HOUR / interval))
        return total

    def envoy_bad_hours(self, node: Node, start: int, end: int, ratio: float) -> float:
        total = 0.0
        for h in self.hour_ends(start, end):
            evals = [t for t in range(h - HOUR + 60, h + 1, 60) if self._latest(node, t) is not None]
            if evals:
                bad = sum(node.envoy_working_set(self._latest(node, t)) / ENVOY_LIMIT > ratio  # type: ignore[arg-type]
                          for t in evals)
                total += bad / 60
        return total

    def _latest(self, node: Node, t: int) -> int | None:
        """The newest scrape at or before ``t`` within Prometheus's 5m lookback."""
        s = self.start + ((t - self.start) // self.step) * self.step
        while s > t - 300:
            if node.alive(s):
                return s
            s -= self.step
        return None


def review_fleet(start: int, days: int = 28, step: int = 150, cluster: str = "review") -> Fleet:
    """The fleet of the report's test: six nodes with known behaviour over ``days`` from ``start``.

    - node-a healthy, but its exporter was not scraped for 6 hours and Hubble was down for 3 hours;
    - node-b leaks 30 MiB/day of agent memory (above the 500Mi envelope twice: before and after the upgrade);
    - node-c is OOM-killed twice, and its cilium-envoy ran at 95 % of its limit for 2 hours;
    - node-d has no agent counters (Hubble approximation) and had drop notifications off for a day;
    - node-e had an unexpected-drop incident (CT map insertion failures, 5 % of packets for 6 hours);
    - node-f lived 3 hours with 10 % unexpected drops (too short to be ranked);
    every node is upgraded from 1.16.5 to 1.17.2 on day 14, one an hour.
    """
    end = start + days * DAY
    d = lambda day, hour=0, minute=0: start + day * DAY + hour * HOUR + minute * 60  # noqa: E731
    up = lambda i: d(14, i)  # noqa: E731
    nodes = [
        Node("node-a", start, end, gaps=[Window(d(22, 6), d(22, 12))], hubble_down=[Window(d(12, 3) + 1, d(12, 6) + 1)],
             lost=0.01, l7_surges=[(Window(d(7, 10), d(7, 12)), 20.0)], upgrade_at=up(0)),
        Node("node-b", start, end, leak_per_day=30 * MI, base_ws=250 * MI, upgrade_at=up(1)),
        Node("node-c", start, end, ooms=[d(5, 10), d(20, 14)], envoy_high=[Window(d(3, 8), d(3, 10))],
             upgrade_at=up(2)),
        Node("node-d", start, end, agent_source=False, flows=200.0, hubble_errors=0.05,
             blind=[Window(d(10) + 1, d(11) + 1)], upgrade_at=up(3)),
        Node("node-e", start, end, incidents=[Incident(Window(d(18, 9), d(18, 15)), "CT_MAP_INSERTION_FAILED", 0.05)],
             upgrade_at=up(4)),
        Node("node-f", d(2, 6), d(2, 9), packets=100.0, incidents=[
            Incident(Window(d(2, 6), d(2, 9)), "CT_MAP_INSERTION_FAILED", 0.1)]),
    ]
    alerts = [
        AlertEpisode("CiliumAgentOOMKilled", "critical", "node-c", d(5, 10), d(5, 10), d(5, 10, 15)),
        AlertEpisode("CiliumAgentOOMKilled", "critical", "node-c", d(20, 14), d(20, 14), d(20, 14, 15)),
        AlertEpisode("CiliumNodeUnexpectedDrops", "warning", "node-e", d(18, 9, 5), d(18, 9, 15), d(18, 15, 5)),
        AlertEpisode("CiliumNodeDropErrorBudgetBurn", "critical", "node-e", d(18, 9, 5), d(18, 9, 10), d(18, 10, 30)),
    ] + [AlertEpisode("CiliumAgentMemoryAboveEnvelope", "warning", "node-b", d(day, 1), d(day, 1, 15), d(day, 2))
         for day in (9, 10, 11)]
    return Fleet(cluster, start, end, step, nodes, alerts)


def large_fleet(start: int, nodes: int = 200, days: int = 28, step: int = 300, cluster: str = "bench",
                seed: int = 1) -> Fleet:
    """A fleet for benchmarks: mostly healthy nodes; a few incidents, leaks, OOM kills, blind and Hubble-only
    nodes, an exporter gap or two; a rolling upgrade on day 14 (a node every 10 minutes); alert episodes."""
    import random

    rng = random.Random(seed)
    end = start + days * DAY
    out: list[Node] = []
    alerts: list[AlertEpisode] = []
    on_grid = lambda t: start + (t - start) // step * step  # noqa: E731
    for i in range(nodes):
        name = f"node-{i:03d}"
        n = Node(name, start, end, packets=rng.uniform(500, 5000), flows=rng.uniform(100, 600),
                 base_ws=rng.uniform(250, 380) * MI, upgrade_at=start + 14 * DAY + i * 600,
                 lost=rng.uniform(0.001, 0.05) if rng.random() < 0.2 else 0.0)
        kind = rng.random()
        if kind < 0.05:
            t0 = on_grid(start + rng.randrange(days * DAY - DAY))
            n.incidents.append(Incident(Window(t0, t0 + rng.randrange(1, 8) * HOUR), "CT_MAP_INSERTION_FAILED",
                                        rng.uniform(0.005, 0.05)))
            alerts.append(AlertEpisode("CiliumNodeUnexpectedDrops", "warning", name, t0, t0 + 600, t0 + 2 * HOUR))
        elif kind < 0.08:
            n.leak_per_day = rng.uniform(10, 40) * MI
        elif kind < 0.10:
            t0 = on_grid(start + rng.randrange(DAY, days * DAY - DAY))
            n.ooms.append(t0)
            alerts.append(AlertEpisode("CiliumAgentOOMKilled", "critical", name, t0, t0, t0 + 900))
        elif kind < 0.12:
            n.agent_source, n.hubble_errors = False, rng.uniform(0.001, 0.1)
            t0 = start + rng.randrange(days * DAY - DAY)
            n.blind.append(Window(t0, t0 + rng.randrange(1, 24) * HOUR))
        elif kind < 0.13:
            t0 = on_grid(start + rng.randrange(days * DAY - DAY))
            n.gaps.append(Window(t0, t0 + rng.randrange(1, 12) * HOUR))
        out.append(n)
    return Fleet(cluster, start, end, step, out, alerts)
