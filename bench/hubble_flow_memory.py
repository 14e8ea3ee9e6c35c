"""Benchmark: how many bytes of Go heap one flow holds in Hubble's ring buffer (the envelope's Hubble term).

Usage: ``python bench/hubble_flow_memory.py [SAMPLE.json ...]``

Hubble's ring (``pkg/hubble/container/ring.go``) keeps one ``*v1.Event`` per slot, whose ``Event`` is the
decoded ``*flowpb.Flow`` (``pkg/hubble/parser``), until the slot is overwritten: a full ring holds
``max_flows`` decoded flows. Cilium publishes no per-flow byte figure (cilium/cilium#47128 only says DNS
enriched flows hold large strings), so this computes one from the Go memory layout of the generated code
(``api/v1/flow/flow.pb.go``, protobuf-go ``protoimpl``), applied to real flows:

- every message is a struct of 40 bytes of ``protoimpl`` state (``MessageState`` 8, ``SizeCache`` 4 + 4
  padding, ``unknownFields`` 24) plus its fields in declaration order with Go's alignment: 8-byte scalars,
  4-byte scalars and enums, ``bool`` 1, ``string`` 16, ``bytes`` and repeated fields 24, message pointers 8,
  one 16-byte interface per ``oneof`` (whose set member is an 8-byte wrapper struct of its own);
- every allocation is rounded up to Go's size classes (``runtime/sizeclasses.go``);
- a slot adds the ``v1.Event`` wrapper (24 bytes: a ``*timestamppb.Timestamp`` and an interface), its
  ``Timestamp`` (56 -> 64 bytes) and the ring's 8-byte pointer.

Two figures per flow: **structs** (the lower figure: string data shared with Cilium's caches - labels,
pod and node names - not counted) and **with strings** (every string and repeated string allocated per
flow). Inputs: the real flow samples under ``../shared/samples/hubble`` (``hubble observe -o jsonpb``
lines) when that directory exists, else (and also) flows of each kind the simulator builds.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from cilium_node_exporter.api.observer import observer_pb2

SIZE_CLASSES = (8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256, 288, 320, 352,
                384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792, 2048, 2304,
                2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472, 9728, 10240, 10880,
                12288, 13568, 14336, 16384, 18432, 19072, 20480, 21760, 24576, 27264, 28672, 32768)
HEADER = 40
SLOT = 24 + 64 + 8  # v1.Event, its Timestamp, the ring's pointer
_EIGHT = {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64,
          FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64}
SAMPLES = Path(__file__).resolve().parents[1] / ".." / "shared" / "samples" / "hubble"


def size_class(n: int) -> int:
    """The bytes Go's allocator hands out for an ``n``-byte object (large objects: whole 8 KiB pages)."""
    if n <= 0:
        return 0
    for c in SIZE_CLASSES:
        if n <= c:
            return c
    return -(-n // 8192) * 8192


def _slot(fd: FieldDescriptor) -> tuple[int, int]:
    """(size, alignment) of a field in the generated Go struct."""
    if fd.is_repeated:
        return 24, 8
    if fd.type in _EIGHT:
        return 8, 8
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return 1, 1
    if fd.type == FieldDescriptor.TYPE_STRING:
        return 16, 8
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return 24, 8
    if fd.type in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP):
        return 8, 8
    return 4, 4  # 32-bit scalars and enums


def struct_size(desc: object) -> int:
    """The Go struct size of a message type (fields in declaration order, one interface per oneof)."""
    offset = HEADER
    seen_oneofs: set[str] = set()
    for fd in desc.fields:  # type: ignore[attr-defined]
        oneof = fd.containing_oneof
        if oneof is not None and oneof.name not in seen_oneofs:
            seen_oneofs.add(oneof.name)
            size, align = 16, 8
        elif oneof is not None and oneof.name in seen_oneofs:
            continue
        else:
            size, align = _slot(fd)
        offset = -(-offset // align) * align + size
    return -(-offset // 8) * 8


def heap_bytes(msg: Message, strings: bool) -> int:
    """Bytes allocated for ``msg`` and what it points to."""
    total = size_class(struct_size(msg.DESCRIPTOR))
    for fd, value in msg.ListFields():
        if fd.containing_oneof is not None and fd.message_type is not None:
            total += size_class(8)  # the oneof wrapper struct
        if fd.is_repeated:
            items = list(value)
            total += size_class(_slot(fd)[0] * len(items) if fd.message_type is None and
                                fd.type != FieldDescriptor.TYPE_STRING else (8 if fd.message_type else 16) * len(items))
            for item in items:
                if fd.message_type is not None:
                    total += heap_bytes(item, strings)
                elif fd.type == FieldDescriptor.TYPE_STRING and strings:
                    total += size_class(len(item.encode()))
        elif fd.message_type is not None:
            total += heap_bytes(value, strings)
        elif fd.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES) and strings:
            total += size_class(len(value.encode() if isinstance(value, str) else value))
    return total


def per_flow(flows: list[Message]) -> tuple[list[int], list[int]]:
    """(structs only, with strings) bytes per ring slot for each flow."""
    return ([SLOT + heap_bytes(f, False) for f in flows], [SLOT + heap_bytes(f, True) for f in flows])


def sample_flows(path: Path) -> list[Message]:
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            resp = observer_pb2.GetFlowsResponse()
            json_format.Parse(line, resp, ignore_unknown_fields=True)
            if resp.HasField("flow"):
                out.append(resp.flow)
    return out


def simulator_flows() -> list[Message]:
    """A flow of each kind the simulator builds (1.19 shapes: uuid, policies, DNS names)."""
    import random

    from cilium_node_simulator.events import EventSpec
    from cilium_node_simulator.flows import FlowFactory

    factory = FlowFactory(node="node-1", version="1.19.4")
    rng = random.Random(1)
    kinds = [{"type": "trace", "rate": 1}, {"type": "drop", "reason": "POLICY_DENIED", "rate": 1},
             {"type": "policy_denied", "direction": "ingress", "source": "default/xwing", "rate": 1},
             {"type": "verdict", "action": "forwarded", "direction": "egress", "match": "l3-l4", "rate": 1},
             {"type": "http", "method": "POST", "action": "dropped", "direction": "ingress", "rate": 1},
             {"type": "dns", "action": "forwarded", "query": "api.shop.svc.cluster.local.", "rate": 1}]
    return [f for kind in kinds for f in factory.flows(EventSpec.from_mapping(kind), rng)]


def describe(name: str, flows: list[Message]) -> None:
    lower, upper = per_flow(flows)
    q = statistics.quantiles(upper, n=20, method="inclusive") if len(upper) > 1 else upper * 19
    print(f"{name:58s} n={len(flows):4d}  structs p50={statistics.median(lower):6.0f} max={max(lower):5d}  "
          f"with strings p50={statistics.median(upper):6.0f} p95={q[-1]:6.0f} max={max(upper):5d} bytes")


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or (sorted(SAMPLES.glob("*.json")) if SAMPLES.is_dir() else [])
    everything: list[Message] = []
    for path in paths:
        flows = sample_flows(path)
        if flows:
            describe(path.name, flows)
            everything += flows
    sim = simulator_flows()
    describe("simulator (one flow of each kind, 1.19 shapes)", sim)
    describe("all", everything + sim)
    print("ring of 4095 (the default hubble-event-buffer-capacity), all flows at the max above: "
          f"{4095 * max(per_flow(everything + sim)[1]) / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
