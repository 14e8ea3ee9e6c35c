"""HTTP/2 and gRPC framing of the simulator with a raw h2 client: split requests, flow control,
content-type checks, trailers-only responses; plus the framing helpers and the ring."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest

from cilium_node_exporter.api.flow import flow_pb2
from cilium_node_exporter.api.observer import observer_pb2
from cilium_node_simulator.events import EventSpec
from cilium_node_simulator.grpc_wire import (
    MessageReader,
    decode_grpc_message,
    encode_grpc_message,
    frame,
    iter_messages,
)
from cilium_node_simulator.hubble_server import HubbleServer
from cilium_node_simulator.ring import Ring
from tests.support.procs import wait_until
from tests.support.simulator_grpc import running_server


class RawClient:
    """A minimal h2 client that does not acknowledge DATA unless told to."""

    def __init__(self, server: HubbleServer) -> None:
        assert server.socket_path is not None
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(server.socket_path)
        self.sock.settimeout(0.2)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.h2.initiate_connection()
        self.flush()
        self.events: list[h2.events.Event] = []
        self.data = bytearray()
        self.unacked: dict[int, int] = {}

    def flush(self) -> None:
        out = self.h2.data_to_send()
        if out:
            self.sock.sendall(out)

    def request(self, path: str, payload: bytes, content_type: str = "application/grpc",
                chunks: int = 1) -> int:
        sid = self.h2.get_next_available_stream_id()
        self.h2.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", path),
                                   (":authority", "sim"), ("content-type", content_type), ("te", "trailers")])
        self.flush()
        step = max(1, len(payload) // chunks)
        for i in range(0, len(payload), step):  # the message split across DATA frames, sent apart
            self.h2.send_data(sid, payload[i:i + step])
            self.flush()
            time.sleep(0.01)
        self.h2.end_stream(sid)
        self.flush()
        return sid

    def pump(self, seconds: float = 0.3, ack: bool = False) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                chunk = self.sock.recv(1 << 16)
            except TimeoutError:
                continue
            if not chunk:
                break
            for ev in self.h2.receive_data(chunk):
                self.events.append(ev)
                if isinstance(ev, h2.events.DataReceived):
                    self.data += ev.data
                    self.unacked[ev.stream_id] = self.unacked.get(ev.stream_id, 0) + ev.flow_controlled_length
                    if ack:
                        self.ack()
            self.flush()

    def ack(self) -> None:
        for sid, n in self.unacked.items():
            if n:
                self.h2.acknowledge_received_data(n, sid)
        self.unacked.clear()
        self.flush()

    def headers(self) -> list[dict[str, str]]:
        return [dict(ev.headers) for ev in self.events
                if isinstance(ev, h2.events.ResponseReceived | h2.events.TrailersReceived)]


def test_request_split_across_frames_and_trailers_only_response(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        server.emit([(server.compile(EventSpec("drop", reason=155)), 3)])
        server.sync()
        client = RawClient(server)
        req = observer_pb2.GetFlowsRequest(number=2, whitelist=[flow_pb2.FlowFilter(verdict=[flow_pb2.DROPPED])])
        client.request("/observer.Observer/GetFlows", frame(req.SerializeToString()), chunks=4)
        client.pump()
        msgs, used = iter_messages(client.data)
        assert len(msgs) == 2 and used == len(client.data)
        assert all(observer_pb2.GetFlowsResponse.FromString(m).flow.drop_reason_desc == 155 for m in msgs)
        head, trailers = client.headers()
        assert head == {":status": "200", "content-type": "application/grpc",
                        "hubble-server-version": server.version.semver}  # 1.18+: SemVer(), 1.19.4+g<sha>
        assert server.version.semver.startswith("1.19.4+g")
        assert trailers == {"grpc-status": "0"}
        # an error before any message: one HEADERS frame carrying status and trailers (trailers-only)
        client.request("/observer.Observer/GetNodes", frame(b""))
        client.pump()
        only = client.headers()[-1]
        assert only[":status"] == "200" and only["grpc-status"] == "12"
        assert only["grpc-message"] == "GetNodes not implemented"
        ended = [ev for ev in client.events if isinstance(ev, h2.events.StreamEnded)]
        assert len(ended) == 2


def test_non_grpc_content_type_is_rejected(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        client = RawClient(server)
        client.request("/observer.Observer/ServerStatus", frame(b""), content_type="application/json")
        client.pump()
        assert client.headers()[0][":status"] == "415"


def test_sender_respects_the_client_window(tmp_path: Path) -> None:
    with running_server(tmp_path, ring_capacity=65535) as server:
        client = RawClient(server)  # default 65535-byte windows, never acknowledged below
        client.request("/observer.Observer/GetFlows", frame(observer_pb2.GetFlowsRequest(follow=True)
                                                            .SerializeToString()))
        wait_until(lambda: server.followers, what="follow stream")
        server.emit([(server.compile(EventSpec("drop", reason=155)), 5000)])
        client.pump(0.5)
        assert 60_000 < len(client.data) <= 65535  # exactly the window, not the 5000 events
        call = next(iter(server.followers))
        assert call.pos < 200  # the reader cursor waits with the sender
        client.ack()
        client.pump(1.0, ack=True)  # window updates let the rest through
        msgs, _ = iter_messages(client.data)
        assert len(msgs) == 5000


def test_message_reader_reassembles_split_messages() -> None:
    payloads = [b"a" * 3, b"", b"b" * 70000]
    wire = b"".join(frame(p) for p in payloads)
    reader = MessageReader()
    got = []
    for i in range(0, len(wire), 7):
        got += [p for _, p in reader.feed(wire[i:i + 7])]
    assert got == payloads and reader.pending == 0
    with pytest.raises(ValueError, match="larger than max"):
        MessageReader(limit=10).feed(frame(b"x" * 11))


def test_grpc_message_percent_encoding() -> None:
    text = "100% busy: ünïcode\n"
    encoded = encode_grpc_message(text)
    assert encoded == "100%25 busy: %C3%BCn%C3%AFcode%0A" and decode_grpc_message(encoded) == text


def test_ring_capacity_and_overwrite() -> None:
    with pytest.raises(ValueError, match="one less than an integer power of two"):
        Ring(4096)
    ring = Ring(7)
    for i in range(10):
        ring.append((i, None, None, b""))
    assert (len(ring), ring.capacity, ring.oldest, ring.write) == (7, 7, 3, 10)
    assert [ring.get(p)[0] for p in range(ring.oldest, ring.write)] == list(range(3, 10))
    assert ring.position_since(6) == 6 and ring.position_since(0) == 3 and ring.position_since(99) == 10
