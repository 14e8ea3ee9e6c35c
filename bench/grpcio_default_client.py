"""The comparison client of ``bench/hubble_stream.py``: grpcio with default options.

Usage: ``python bench/grpcio_default_client.py SOCKET N VERSION``; prints one JSON object.
It is what a straightforward Python Hubble consumer looks like: a default channel, the generated
class as response deserializer (grpcio hands each message to the caller through its thread pool),
and the same counting keys as the exporter, read from the decoded message.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections import Counter

import grpc

from cilium_node_exporter import contract as c
from cilium_node_exporter.api.observer import observer_pb2
from cilium_node_exporter.sources.hubble.request import build_request, mask_plan


def main(sock: str, n: int, version: str) -> dict:
    channel = grpc.insecure_channel("unix:" + sock)
    rpc = channel.unary_stream("/observer.Observer/GetFlows",
                               request_serializer=observer_pb2.GetFlowsRequest.SerializeToString,
                               response_deserializer=observer_pb2.GetFlowsResponse.FromString)
    drops: Counter = Counter()
    verdicts: Counter = Counter()
    l7: Counter = Counter()
    seen = 0
    start = cpu0 = None
    for resp in rpc(build_request(plan=mask_plan(version))):
        if start is None:
            start, cpu0 = time.monotonic(), time.process_time()
        if resp.WhichOneof("response_types") != "flow":
            continue
        f = resp.flow
        direction = c.DIRECTION_BY_ENUM.get(f.traffic_direction, "unknown")
        action = c.ACTION_BY_VERDICT.get(f.verdict, "unknown")
        etype = f.event_type.type
        if etype == 1:
            drops[(c.drop_reason_name(f.drop_reason_desc), direction)] += 1
        elif etype == 5:
            if f.source.identity != 1 and 4 not in (f.source.identity, f.destination.identity):
                verdicts[(direction, c.MATCH_BY_TYPE.get(f.policy_match_type, "unknown"), action)] += 1
        elif etype == 129:
            if f.l7.type == 1:
                proto = f.l7.WhichOneof("record") or "unknown"
                method = f.l7.http.method.upper() if proto == "http" else ""
                method = method if not method or method in c.HTTP_METHODS else "other"
                l7[(proto, method, direction, action)] += 1
                verdicts[(direction, "l7/" + proto, action)] += 1
        else:
            continue
        seen += 1
        if seen >= n:
            break
    elapsed = time.monotonic() - start
    cpu = time.process_time() - cpu0
    channel.close()
    return {"events": seen, "elapsed_s": elapsed, "events_per_s": seen / elapsed, "cpu_us_per_event": cpu / seen * 1e6,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "counts": {name: {json.dumps(list(k)): v for k, v in table.items()}
                       for name, table in (("drops", drops), ("verdicts", verdicts), ("l7_requests", l7))}}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), sys.argv[3])))
