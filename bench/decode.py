"""Benchmark: the decode-and-count ceiling of the Hubble hot path, without any transport.

Usage: ``python bench/decode.py [--messages N]``

Builds field-masked GetFlowsResponse messages like those the exporter asks Hubble for (drops,
policy verdicts, L7 requests), then runs them through ``FlowCounter.handle`` (our decode and the
counting rules) and the resume bookkeeping, in one thread. The transport's share of the exporter's
per-event cost is the difference with ``bench/hubble_stream.py``.
"""

from __future__ import annotations

import argparse
import sys
import time

from cilium_node_exporter.aggregation.datapath import DatapathCounters
from cilium_node_exporter.api.flow import flow_pb2
from cilium_node_exporter.api.observer import observer_pb2
from cilium_node_exporter.sources.hubble.decode import FlowCounter
from cilium_node_exporter.sources.hubble.request import BASE_MASK
from cilium_node_exporter.sources.hubble.stream import ResumeState


def messages(n: int = 1000) -> list[bytes]:
    """``n`` distinct masked responses: a third each drops, verdicts and L7 requests."""
    out = []
    for i in range(n):
        kind = (1, 5, 129)[i % 3]
        f = flow_pb2.Flow(time={"seconds": 1_700_000_000 + i // 1000, "nanos": i * 1000},
                          uuid=f"5b8a5d5e-1f3c-4c3e-9a2b-{i:012d}",
                          verdict=flow_pb2.DROPPED if i % 2 else flow_pb2.FORWARDED,
                          event_type={"type": kind, "sub_type": 133 if kind == 1 else 0},
                          drop_reason_desc=133 if kind == 1 else 0, traffic_direction=1 + i % 2,
                          policy_match_type=i % 4, source={"identity": 1000 + i % 7}, destination={"identity": 2000})
        if kind == 129:
            f.l7.type = flow_pb2.REQUEST
            f.l7.http.method = ("GET", "POST")[i % 2]
        masked = flow_pb2.Flow()
        mask = observer_pb2.GetFlowsRequest().field_mask
        mask.paths.extend(BASE_MASK)
        mask.MergeMessage(f, masked)
        out.append(observer_pb2.GetFlowsResponse(flow=masked, time=masked.time).SerializeToString())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=500_000)
    args = parser.parse_args(argv)
    pool = messages()
    size = sum(map(len, pool)) / len(pool)
    counter, resume = FlowCounter(DatapathCounters()), ResumeState()
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(args.messages):
        resume.counted(counter.handle(pool[i % len(pool)]))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"{args.messages:,} masked messages ({size:.0f} bytes each) through FlowCounter.handle + resume "
          f"bookkeeping: {args.messages / wall:,.0f} messages/s, {cpu / args.messages * 1e6:.2f} µs CPU each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
