"""``Observer.GetFlows``: the ring reader, filters, field masks and lost events, per emulated release.

Order of checks as in ``GetFlows`` [v1.16.15 pkg/hubble/observer/local_observer.go:240-306] (1.14 and main
alike: [v1.14.16 pkg/hubble/observer/local_observer.go:232-293] [main pkg/hubble/observer/local_observer.go:260-324]):
``first`` with ``follow`` is the only explicit ``InvalidArgument``
[v1.16.15 pkg/hubble/observer/local_observer.go:653-658]; an invalid field mask is a plain Go error, so gRPC
status UNKNOWN ``invalid fieldmask``, before any message. The mask is read where the release reads it and
applied with its copy semantics (:mod:`.fieldmask`): masks whose output depends on the flow only are spliced
from per-template caches; the others are copied event by event into the call's one destination ``Flow``, like
the real server. A 1.14 copy that panics kills the emulated agent (:meth:`.hubble_server.HubbleServer.crash`).

Ring semantics: ``follow`` without ``number``/``since`` starts at the newest ``follow_backlog`` events
(``LastWriteParallel`` [v1.16.15 pkg/hubble/observer/local_observer.go:671-674]); ``since`` rewinds; a reader
the writer laps gets ``HUBBLE_RING_BUFFER`` lost events, one per overwritten slot up to 1.18
[v1.18.3 pkg/hubble/container/ring.go:219-232] and, in 1.19, one batch per interval with ``first``/``last``,
flushed only when the loop runs again [main pkg/hubble/observer/local_observer.go:332-358].
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError

from cilium_node_exporter.api.observer import observer_pb2
from cilium_node_simulator import cilium_enums as ce
from cilium_node_simulator.faults import send_with_faults
from cilium_node_simulator.fieldmask import AgentPanic, FlowMask, InvalidFieldMask
from cilium_node_simulator.filters import compile_filters
from cilium_node_simulator.flows import LOST_TEMPLATE, FlowTemplate
from cilium_node_simulator.grpc_h2 import H2Stream, StreamGone
from cilium_node_simulator.grpc_wire import Status, frame
from cilium_node_simulator.ring import TEMPLATE, TIME, TS, WIRE, Entry
from cilium_node_simulator.stamper import Stamper

if TYPE_CHECKING:
    from cilium_node_simulator.hubble_server import HubbleServer

BATCH_MAX_BYTES = 1 << 20
BATCH_MAX_EVENTS = 8192
HUBBLE_RING_BUFFER = ce.LOST_EVENT_SOURCES["HUBBLE_RING_BUFFER"]


class GetFlowsCall:
    """One GetFlows RPC: its reader position and, when masked, its mask and destination Flow."""

    def __init__(self, server: HubbleServer, stream: H2Stream, mask: FlowMask | None) -> None:
        self.server = server
        self.stream = stream
        self.mask = mask
        self.splice = mask is not None and Stamper.splices(mask)
        self.pos = 0
        self.follow = False
        self.messages_sent = 0
        self.lost_sent = 0

    def masked_wire(self, entry: Entry) -> bytes:
        """The framed GetFlowsResponse the release sends for a flow event under this call's mask."""
        mask = self.mask
        assert mask is not None
        template: FlowTemplate = entry[TEMPLATE]
        if self.splice:
            ts = entry[TS]
            assert ts is not None
            pre, post, off = self.server.stamper.masked_parts(template, ts, mask)
            return pre + entry[WIRE][off:off + 36] + post if off >= 0 else pre
        resp = observer_pb2.GetFlowsResponse.FromString(entry[WIRE][5:])
        resp.flow.CopyFrom(mask.copy(resp.flow))  # raises AgentPanic where 1.14 dies
        return frame(resp.SerializeToString())


async def get_flows(server: HubbleServer, stream: H2Stream, payload: bytes) -> None:
    conn = stream.conn
    server.stats["getflows_calls"] += 1
    try:
        req = observer_pb2.GetFlowsRequest.FromString(payload)
    except DecodeError as exc:
        conn.send_trailers(stream, Status.INTERNAL, f"grpc: error unmarshalling request: {exc}")
        return
    faults = server.faults
    if faults.getflows_status is not None:
        conn.send_trailers(stream, faults.getflows_status, faults.getflows_message)
        return
    if req.first and req.follow:
        conn.send_trailers(stream, Status.INVALID_ARGUMENT, "first cannot be specified with follow")
        return
    mask: FlowMask | None = None
    paths = server.release.mask_paths(req)
    if paths:
        try:
            mask = FlowMask(server.release, paths, random.Random(f"{server.seed}/{server.stats['getflows_calls']}"))
        except InvalidFieldMask as exc:
            conn.send_trailers(stream, Status.UNKNOWN, str(exc))
            return
    if mask is not None and mask.active:
        server.stats["masked_getflows"] += 1
    call = stream.call = GetFlowsCall(server, stream, mask)
    predicate = compile_filters(req.whitelist, req.blacklist)
    since_ns = req.since.ToNanoseconds() if req.HasField("since") else None
    until_ns = req.until.ToNanoseconds() if req.HasField("until") else None
    ring = server.ring
    number = req.number
    cache: dict[FlowTemplate, bool] = {LOST_TEMPLATE: True}  # lost events are never filtered

    def matches(t: FlowTemplate) -> bool:
        ok = cache.get(t)
        if ok is None:
            assert t.flow is not None
            ok = cache[t] = predicate(t.flow)
        return ok

    if req.first and since_ns is None:
        pos = ring.oldest
    elif req.follow and number == 0 and since_ns is None:
        pos = max(ring.oldest, ring.write - server.follow_backlog)
    elif since_ns is not None:
        pos = ring.position_since(since_ns)
    elif req.first:
        pos = ring.oldest
    else:  # the last `number` matching flows (0: the whole buffer)
        pos, found = ring.write, 0
        while pos > ring.oldest and (number == 0 or found < number):
            t = ring.get(pos - 1)[TEMPLATE]
            if not t.is_lost and matches(t):
                found += 1
            pos -= 1
    call.pos = pos
    call.follow = req.follow
    if req.follow:
        server.followers.add(call)
    end = None if req.follow else ring.write
    try:
        await _stream_flows(call, end, number if (req.first or not req.follow) else 0, until_ns, cache, matches)
    except AgentPanic as exc:
        server.crash(f"GetFlows: panic: {exc}")
        raise StreamGone from None


async def _stream_flows(call: GetFlowsCall, end: int | None, number: int, until_ns: int | None,
                        cache: dict[FlowTemplate, bool], matches: Callable[[FlowTemplate], bool]) -> None:
    server, stream = call.server, call.stream
    conn, ring = stream.conn, server.ring
    new_style_lost = server.release.lost_batched
    interval_ns = int(server.lost_event_interval * 1e9)
    pending_lost, first_lost, last_lost, last_lost_sent = 0, 0, 0, -(1 << 62)
    flows_sent = 0
    finished = False
    masked = call.mask is not None and call.mask.active
    while not finished:
        if stream.closed:
            raise StreamGone
        limit = ring.write if end is None else min(end, ring.write)
        out: list[bytes] = []
        oldest = ring.oldest
        if call.pos < oldest:  # the writer lapped this reader
            lost = oldest - call.pos
            call.pos = oldest
            now = time.time_ns()
            if new_style_lost:
                if not pending_lost:
                    first_lost = now
                pending_lost += lost
                last_lost = now
            else:
                out.append(server.factory.lost_message(HUBBLE_RING_BUFFER, 1, now) * lost)
                _count_ring_lost(call, lost)
        if pending_lost:
            now = time.time_ns()
            if now - last_lost_sent >= interval_ns:
                out.append(server.factory.lost_message(HUBBLE_RING_BUFFER, pending_lost, now, first_ns=first_lost,
                                                       last_ns=last_lost))
                _count_ring_lost(call, pending_lost)
                pending_lost, last_lost_sent = 0, now
        if call.pos >= limit and not out:
            if end is not None and call.pos >= end:
                break
            ev = server.new_data
            assert ev is not None
            if ring.write > call.pos:
                continue
            timeout = None
            if pending_lost:
                timeout = max(0.0, (last_lost_sent + interval_ns - time.time_ns()) / 1e9)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ev.wait(), timeout)
            continue
        window = await conn.writable(stream)
        budget = min(max(window, 16384), BATCH_MAX_BYTES)
        size = sum(len(b) for b in out)
        data, m, pos = ring.data, ring.mask, call.pos
        stop = min(limit, pos + BATCH_MAX_EVENTS)
        append = out.append
        get = cache.get
        i_template, i_wire = TEMPLATE, WIRE  # locals: the loop below runs per event
        if not masked and not number and until_ns is None:  # the hot path: filter only
            while pos < stop and size < budget:
                e = data[pos & m]
                pos += 1
                ok = get(e[i_template])
                if ok is None:
                    ok = matches(e[i_template])
                if ok:
                    wire = e[i_wire]
                    append(wire)
                    size += len(wire)
        else:
            while pos < stop and size < budget:
                e = data[pos & m]
                pos += 1
                t = e[i_template]
                if t.is_lost:
                    append(e[i_wire])
                    size += len(e[i_wire])
                    continue
                if until_ns is not None and e[TIME] > until_ns:
                    finished = True
                    break
                if matches(t):
                    wire = call.masked_wire(e) if masked else e[i_wire]
                    append(wire)
                    size += len(wire)
                    flows_sent += 1
                    if number and flows_sent >= number:
                        finished = True
                        break
        call.pos = pos
        server.progressed()
        if out and await send_with_faults(call, out):
            return
    conn.send_trailers(stream, Status.OK)


def _count_ring_lost(call: GetFlowsCall, count: int) -> None:
    call.lost_sent += count
    call.server.truth.add_lost(HUBBLE_RING_BUFFER, count)
