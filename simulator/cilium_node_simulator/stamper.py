"""Stamping pre-serialized flows with time and uuid, and writing them into the ring (the hot path).

A :class:`~.flows.FlowTemplate` holds a flow serialized once without ``time`` and ``uuid``; protobuf
accepts fields in any order, so an event's ``GetFlowsResponse`` is the template's bytes with the two
fields spliced in: producing an event costs one ``bytes % int``, not a protobuf round trip. Ring
entries are plain tuples ``(time_ns, template, ts_bytes, wire_bytes)`` indexed with the constants of
:mod:`.ring`.
"""

from __future__ import annotations

import uuid

from cilium_node_simulator.events import CompiledSpec
from cilium_node_simulator.fieldmask import FlowMask
from cilium_node_simulator.flows import FlowTemplate
from cilium_node_simulator.grpc_wire import fast_varint, frame_header, len_field, tag, timestamp
from cilium_node_simulator.ring import Ring

_UUID_KEY = tag(34, 2) + b"\x24"
_FLOW_KEY = b"\x0a"
_TIME_KEY = tag(1001, 2)


class Stamper:
    """Stamps time and uuid into templates and writes the events into a ring (the hot path)."""

    def __init__(self, node: str) -> None:
        self.node_field = len_field(1000, node.encode())
        self.uuid_prefix = str(uuid.uuid4())[:24].encode()
        self.counter = 0

    def head(self, t: FlowTemplate, ts_len: int) -> bytes:
        flow_len = 1 + len(fast_varint(ts_len)) + ts_len + 39 + len(t.rest)
        resp_len = (1 + len(fast_varint(flow_len)) + flow_len + len(self.node_field)
                    + len(_TIME_KEY) + len(fast_varint(ts_len)) + ts_len)
        h = frame_header(resp_len) + _FLOW_KEY + fast_varint(flow_len)
        t.heads[ts_len] = h
        return h

    def _format(self, t: FlowTemplate, ts: bytes) -> bytes:
        """The event bytes for timestamp ``ts`` as a ``%``-format taking the uuid counter."""
        ts_len = len(ts)
        head = t.heads.get(ts_len) or self.head(t, ts_len)
        flow_ts = b"\x0a" + fast_varint(ts_len) + ts
        tail = t.rest + self.node_field + _TIME_KEY + fast_varint(ts_len) + ts
        pre = head + flow_ts + _UUID_KEY + self.uuid_prefix
        fmt = pre.replace(b"%", b"%%") + b"%012x" + tail.replace(b"%", b"%%")
        t.fmt_ts, t.fmt = ts, fmt
        return fmt

    def produce(self, ring: Ring, compiled: CompiledSpec, count: int, now_ns: int, ts: bytes | None = None) -> int:
        """Write ``count`` occurrences of ``compiled`` into ``ring``; return the number of flows.

        Per event this is one ``bytes % int`` (the uuid counter) on a format prepared per template
        and timestamp; pass the same ``ts`` object again to reuse the formats across calls.
        """
        if ts is None:
            ts = timestamp(now_ns)
        occurrences = compiled.occurrences
        n_occ = len(occurrences)
        k = compiled.next_index
        data, mask, w = ring.data, ring.mask, ring.write
        c = self.counter
        flows = 0
        for _ in range(count):
            for t in occurrences[k % n_occ]:
                fmt = t.fmt if t.fmt_ts is ts else self._format(t, ts)
                data[w & mask] = (now_ns, t, ts, fmt % c)
                c += 1
                w += 1
                flows += 1
            k += 1
        compiled.next_index = k % n_occ
        ring.write = w
        self.counter = c
        return flows

    def masked_parts(self, t: FlowTemplate, ts: bytes, mask: FlowMask) -> tuple[bytes, bytes, int]:
        """(prefix, suffix, uuid offset or -1) so that the masked message of an event of ``t`` stamped
        ``ts`` is ``prefix + wire[offset:offset + 36] + suffix``, for a mask whose output depends on
        the flow only (``mask.history_free`` with ``time``/``uuid`` absent or leaves); cached per mask."""
        base = t.masked.get(mask.paths)
        if base is None:
            assert t.flow is not None
            out = mask.fresh(t.flow)
            base = (out.SerializeToString(deterministic=True), "time" in mask.tree, "uuid" in mask.tree)
            t.masked[mask.paths] = base
        rest, with_time, with_uuid = base
        ts_len = len(ts)
        ts_len_b = fast_varint(ts_len)
        flow_ts = b"\x0a" + ts_len_b + ts if with_time else b""
        flow_len = len(flow_ts) + (39 if with_uuid else 0) + len(rest)
        resp_len = (1 + len(fast_varint(flow_len)) + flow_len + len(self.node_field)
                    + len(_TIME_KEY) + len(ts_len_b) + ts_len)
        head = frame_header(resp_len) + _FLOW_KEY + fast_varint(flow_len) + flow_ts
        tail = rest + self.node_field + _TIME_KEY + ts_len_b + ts
        if not with_uuid:
            return head + tail, b"", -1
        full_head = t.heads.get(ts_len) or self.head(t, ts_len)
        offset = len(full_head) + 1 + len(ts_len_b) + ts_len + 3
        return head + _UUID_KEY, tail, offset

    @staticmethod
    def splices(mask: FlowMask) -> bool:
        """True when :meth:`masked_parts` can serve ``mask`` (else the call copies event by event)."""
        return mask.history_free and mask.tree.get("time", None) is None and mask.tree.get("uuid", None) is None
