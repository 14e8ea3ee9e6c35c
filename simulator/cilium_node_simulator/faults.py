"""Fault injection for GetFlows: what a broken agent, proxy or network does to the stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cilium_node_simulator.grpc_h2 import StreamGone
from cilium_node_simulator.grpc_wire import Status, frame, varint

if TYPE_CHECKING:
    from cilium_node_simulator.getflows import GetFlowsCall


@dataclass
class Faults:
    """Fault injection for GetFlows (tests of the exporter's failure handling). Change at any time.

    - ``getflows_status``: answer every GetFlows with this status (e.g. 12 UNIMPLEMENTED,
      14 UNAVAILABLE, 8 RESOURCE_EXHAUSTED) and ``getflows_message``.
    - ``stall_after``: after this many messages the stream goes silent (0: nothing at all, not even
      headers) while the connection stays up.
    - ``corrupt_after`` + ``corrupt_kind``: after this many messages send one bad message:
      ``"protobuf"`` (valid length prefix, garbage payload; the stream continues), ``"length"``
      (a length prefix announcing 2 GiB, then OK trailers: grpcio fails with RESOURCE_EXHAUSTED)
      or ``"truncated"`` (half a message, then OK trailers: grpcio silently drops it).
    - ``close_after``: after this many messages drop the connection (no GOAWAY, no trailers).
    """

    getflows_status: int | None = None
    getflows_message: str = ""
    stall_after: int | None = None
    corrupt_after: int | None = None
    corrupt_kind: str = "protobuf"
    close_after: int | None = None


async def send_with_faults(call: GetFlowsCall, out: list[bytes]) -> bool:
    """Send a batch of framed messages applying fault injection; True when the RPC is over."""
    stream, faults = call.stream, call.server.faults
    conn = stream.conn
    limits = [x for x in (faults.stall_after, faults.corrupt_after, faults.close_after) if x is not None]
    if not limits:
        call.messages_sent += len(out)
        await conn.send(stream, b"".join(out))
        return False
    room = max(0, min(limits) - call.messages_sent)
    head, tail = out[:room], out[room:]
    if head:
        call.messages_sent += len(head)
        await conn.send(stream, b"".join(head))
    if not tail:
        return False
    sent = call.messages_sent
    if faults.close_after is not None and sent >= faults.close_after:
        conn.abort()
        raise StreamGone
    if faults.stall_after is not None and sent >= faults.stall_after:
        while not stream.closed:
            stream.window.clear()
            await stream.window.wait()
        raise StreamGone
    if faults.corrupt_after is not None and sent >= faults.corrupt_after:
        faults.corrupt_after = None  # one bad message per injection
        if faults.corrupt_kind == "length":  # a prefix announcing 2 GiB, a few bytes, OK trailers
            await conn.send(stream, b"\x00\x7f\xff\xff\xff" + tail[0][5:64])
            conn.send_trailers(stream, Status.OK)
            return True
        if faults.corrupt_kind == "truncated":  # half a message, then OK trailers
            bad = tail[0]
            await conn.send(stream, bad[:5] + bad[5:5 + max(1, (len(bad) - 5) // 2)])
            conn.send_trailers(stream, Status.OK)
            return True
        garbage = b"\x0a\xff\xff\xff\xff\x0f" + varint(12345) + b"\xff" * 7
        call.messages_sent += 1
        await conn.send(stream, frame(garbage))
        call.messages_sent += len(tail)
        await conn.send(stream, b"".join(tail))
    return False
