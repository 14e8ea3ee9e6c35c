"""Throughput of the simulator's Hubble server alone: one GetFlows follow stream to a fast raw reader.

The server runs in a child process (``cilium-node-exporter simulate --bench N``); this process
reads with a minimal HTTP/2 client (h2, 16 MiB windows) that only splits gRPC messages and
counts them, so the figure is the server's ceiling, not a client's. Usage::

    .venv/bin/python bench/simulator_throughput.py [--events 500000] [--version 1.19.4] [--decode]

``--decode`` also parses every GetFlowsResponse with the generated class (a heavier reader).
Prints events/s and MB/s for the stream, from the first to the last matching event.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.settings

from cilium_node_exporter.api.flow import flow_pb2
from cilium_node_exporter.api.observer import observer_pb2
from cilium_node_simulator.grpc_wire import frame, iter_messages

WINDOW = 16 * 1024 * 1024 - 1
FRAME = 1 << 16
unpack = struct.Struct(">I").unpack_from


def read_stream(path: str, n: int, decode: bool, timeout: float = 120.0,
                field_mask: list[str] | None = None) -> dict[str, float]:
    """Open a follow GetFlows (whitelist drops/verdicts/L7) and read until ``n`` flows arrived."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + 30
    while True:
        try:
            sock.connect(path)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.local_settings = h2.settings.Settings(client=True, initial_values={
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW, h2.settings.SettingCodes.MAX_FRAME_SIZE: FRAME})
    conn.initiate_connection()
    conn.max_inbound_frame_size = FRAME  # initial_values count as acknowledged already
    conn.increment_flow_control_window(WINDOW - 65535)
    req = observer_pb2.GetFlowsRequest(follow=True, whitelist=[
        flow_pb2.FlowFilter(event_type=[flow_pb2.EventTypeFilter(type=t)]) for t in (1, 5, 129)])
    if field_mask:
        req.field_mask.paths.extend(field_mask)
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", "/observer.Observer/GetFlows"),
                            (":authority", "localhost"), ("content-type", "application/grpc"), ("te", "trailers")])
    conn.send_data(sid, frame(req.SerializeToString()), end_stream=True)
    sock.sendall(conn.data_to_send())
    buf = bytearray()
    flows = lost = nbytes = 0
    first = last = 0.0
    decode_cls = observer_pb2.GetFlowsResponse.FromString
    deadline = time.monotonic() + timeout
    while flows < n and time.monotonic() < deadline:
        data = sock.recv(1 << 20)
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                buf += ev.data
                nbytes += len(ev.data)
                if not first:
                    first = time.monotonic()
                if decode:
                    msgs, used = iter_messages(buf)
                    for m in msgs:
                        if decode_cls(m).HasField("lost_events"):
                            lost += 1
                        else:
                            flows += 1
                else:  # only walk the length prefixes
                    used, size = 0, len(buf)
                    while size - used >= 5:
                        stop = used + 5 + unpack(buf, used + 1)[0]
                        if stop > size:
                            break
                        used = stop
                        flows += 1
                del buf[:used]
                last = time.monotonic()
            elif isinstance(ev, h2.events.StreamEnded | h2.events.StreamReset):
                deadline = 0
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
    sock.close()
    secs = max(last - first, 1e-9)
    return {"flows": flows, "lost_msgs": lost, "seconds": secs, "events_per_s": flows / secs,
            "mb_per_s": nbytes / secs / 1e6, "bytes_per_event": nbytes / max(flows, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--version", default="1.19.4")
    ap.add_argument("--decode", action="store_true", help="decode every message in the reader")
    ap.add_argument("--field-mask", default="", help="comma list of Flow paths to request (server-side masking)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "hubble.sock")
        cmd = [sys.executable, "-m", "cilium_node_exporter", "simulate", "--bench", str(args.events),
               "--hubble-socket", path, "--version", args.version, "--log-level", "warning"]
        proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parent.parent)
        try:
            res = read_stream(path, args.events, args.decode,
                              field_mask=[p for p in args.field_mask.split(",") if p] or None)
        finally:
            proc.terminate()
            proc.wait(10)
    mask = f", field mask {args.field_mask}" if args.field_mask else ""
    print(f"simulator throughput (version {args.version}{mask}, one stream, "
          f"{'decoding' if args.decode else 'raw'} "
          f"reader): {res['flows']:.0f} flows in {res['seconds']:.2f} s = {res['events_per_s']:,.0f} events/s, "
          f"{res['mb_per_s']:.1f} MB/s, {res['bytes_per_event']:.0f} bytes/event")
    return 0 if res["flows"] >= args.events else 1


if __name__ == "__main__":
    sys.exit(main())
