"""Cardinality abuse: 100,000 distinct namespaces and policy names with every optional dimension on.

Each name is one policy-denied packet (a type-5 verdict naming ``ns-i/deny-i`` and a type-1 drop in
``ns-i``) streamed by the simulator into the real exporter process with
``--extra-labels protocol,endpoint_namespace,policy``. Prints, per label cap, the exported series
(``cilium_node_*`` and everything), the distinct values per optional label, the overflow counters and
the exporter's RSS before and after (VmRSS) and its peak (VmHWM)::

    .venv/bin/python bench/cardinality.py [--names 100000] [--caps 50,10000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.exporter.test_cardinality_abuse import DROPS, OVERFLOW, VERDICTS, drive_abuse  # noqa: E402

MiB = 2**20


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
