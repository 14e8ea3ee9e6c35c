"""Cardinality abuse: 100,000 distinct namespaces and policy names with every optional dimension on.

Each name is one policy-denied packet (a type-5 verdict naming ``ns-i/deny-i`` and a type-1 drop in
``ns-i``) streamed by the simulator into the real exporter process with
``--extra-labels protocol,endpoint_namespace,policy``. Prints, per label cap, the exported series
(``cilium_node_*`` and everything), the distinct values per optional label, the overflow counters and
the exporter's RSS before and after (VmRSS) and its peak (VmHWM)::

    .venv/bin/python bench/cardinality.py [--names 100000] [--caps 50,10000]

``tests/exporter/test_cardinality_abuse.py`` runs :func:`drive_abuse` with 20,000 names and checks the caps.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cilium_node_simulator.events import EventSpec
from cilium_node_simulator.exporter_process import FAST_HUBBLE, Exporter, Metrics
from cilium_node_simulator.hubble_server import HubbleServer

MiB = 2**20
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", type=int, default=100_000, help="distinct namespaces and policies")
    parser.add_argument("--caps", default="50,10000", help="comma list of --label-cap values to run")
    args = parser.parse_args(argv)
    print(f"{args.names} distinct namespaces and policy names, --extra-labels protocol,endpoint_namespace,policy")
    header = (f"{'cap':>6} {'cilium_node_* series':>21} {'all series':>10} {'ns values':>9} {'policy values':>13} "
              f"{'overflow ns/policy':>19} {'drops':>7} {'verdicts':>8} {'RSS before':>10} {'RSS after':>9} "
              f"{'peak RSS':>8} {'events/s (paced)':>16}")
    print(header)
    for cap in (int(c) for c in args.caps.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            r = drive_abuse(Path(tmp), args.names, cap)
        m = r.metrics
        ns = r.values(DROPS, "endpoint_namespace") | r.values(VERDICTS, "endpoint_namespace")
        overflow = f"{m.value(OVERFLOW, label='endpoint_namespace', default=0):.0f}/" \
                   f"{m.value(OVERFLOW, label='policy', default=0):.0f}"
        print(f"{cap:>6} {r.series():>21} {len(m.samples):>10} {len(ns):>9} {len(r.values(VERDICTS, 'policy')):>13} "
              f"{overflow:>19} {m.sum(DROPS):>7.0f} {m.sum(VERDICTS):>8.0f} {r.rss_before / MiB:>8.1f}Mi "
              f"{r.rss_after / MiB:>7.1f}Mi {r.peak_rss / MiB:>6.1f}Mi {2 * r.names / r.seconds:>16.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
