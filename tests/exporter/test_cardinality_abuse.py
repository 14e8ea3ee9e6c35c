"""Cardinality abuse: flows with tens of thousands of distinct namespaces and policy names, every optional
dimension on, through the real exporter process. The exported series stay under the caps, the overflow is
counted, and the totals stay exact. ``bench/cardinality.py`` runs the same driver with 100,000 names and
prints series counts and RSS.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from cilium_node_simulator.events import EventSpec
from cilium_node_simulator.hubble_server import HubbleServer
from tests.support.procs import FAST_HUBBLE, Exporter, Metrics

ALL_DIMENSIONS = "--extra-labels=protocol,endpoint_namespace,policy"
DROPS = "cilium_node_drops_total"
VERDICTS = "cilium_node_policy_verdicts_total"
OVERFLOW = "cilium_node_exporter_label_overflow_total"


@dataclass
class AbuseResult:
    names: int
    cap: int
    metrics: Metrics
    rss_before: int
    rss_after: int
    peak_rss: int
    seconds: float

    def series(self, prefix: str = "cilium_node_") -> int:
        return self.metrics.count(prefix)

    def values(self, family: str, label: str) -> set[str]:
        return {dict(k).get(label, "") for k in self.metrics.series(family)} - {""}


def drive_abuse(tmp: Path, names: int, cap: int = 50, chunk: int = 10_000) -> AbuseResult:
    """``names`` policy-denied packets, each from and to its own namespace and denied by its own policy
    (one type-5 verdict naming ``ns-i/deny-i`` and one type-1 drop each), into a real exporter process."""
    sock = tmp / "abuse" / "hubble.sock"
    server = HubbleServer(socket_path=str(sock), version="1.19.4", ring_capacity=65535).start()
    try:
        specs = [server.compile(EventSpec("policy_deny", direction=1, source=f"ns-{i}/client",
                                          destination=f"ns-{i}/api", policy=f"ns-{i}/deny-{i}", pool=1), i)
                 for i in range(names)]
        with Exporter(tmp, "--sources=hubble", f"--hubble-address=unix://{sock}", *FAST_HUBBLE, ALL_DIMENSIONS,
                      f"--label-cap={cap}", "--log-level=warning") as exp:
            exp.wait_metrics(lambda m: m.value("cilium_node_exporter_source_up", source="hubble") == 1, what="up")
            rss_before = exp.rss_bytes()
            start = time.monotonic()
            for first in range(0, names, chunk):  # paced so that the ring (65535 flows) never laps the reader
                batch = specs[first:first + chunk]
                server.emit([(c, 1) for c in batch])
                want = 2 * (first + len(batch))
                exp.wait_metrics(lambda m, w=want: m.value("cilium_node_exporter_events_total", kind="drop")
                                 + m.value("cilium_node_exporter_events_total", kind="policy_verdict") >= w,
                                 timeout=60, interval=0.05, what=f"{want} events")
            seconds = time.monotonic() - start
            m = exp.scrape()
            return AbuseResult(names, cap, m, rss_before, exp.rss_bytes(), exp.peak_rss_bytes(), seconds)
    finally:
        server.stop()


def test_twenty_thousand_namespaces_and_policies_stay_under_the_caps(tmp_path: Path) -> None:
    names, cap = 20_000, 50
    r = drive_abuse(tmp_path, names, cap)
    m = r.metrics
    # every event counted: the caps bound labels, never totals
    assert m.sum(DROPS) == names and m.sum(VERDICTS) == names
    assert m.sum("cilium_node_hubble_lost_events_total") == 0
    # each optional label holds at most `cap` real values plus "other"
    assert r.values(DROPS, "endpoint_namespace") | r.values(VERDICTS, "endpoint_namespace") <= (
        {f"ns-{i}" for i in range(cap)} | {"other"})
    assert len(r.values(VERDICTS, "policy")) == cap + 1 and "other" in r.values(VERDICTS, "policy")
    assert r.values(DROPS, "protocol") == {"tcp"}
    # series: one reason/direction/match/action here, so each family is bounded by the caps
    assert len(m.series(DROPS)) <= cap + 1
    assert len(m.series(VERDICTS)) <= (cap + 1) ** 2
    assert r.series() < 400, r.series()  # every cilium_node_* series of the exporter, all families included
    # the overflow is counted per event that did not get its own value
    assert m.value(OVERFLOW, label="policy") == names - cap
    assert m.value(OVERFLOW, label="endpoint_namespace") == 2 * (names - cap)  # the drop and the verdict
    assert m.value(OVERFLOW, label="protocol", default=0) == 0
