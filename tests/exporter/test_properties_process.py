"""Random byte streams through the real exporter process never crash it.

Two levels, each against one long-lived exporter process per test:
- gRPC messages with random payloads (a grpcio server passing bytes through, no serializer): every
  message is counted as an event of some kind or as a decode error, and the process keeps streaming;
- random bytes instead of HTTP/2 on the Hubble socket (a plain unix socket server): connection errors,
  retries, no crash, no thread or memory growth.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cilium_node_exporter.api.observer import observer_pb2
from tests.support.procs import FAST_HUBBLE, Exporter, Metrics, wait_until

ERRORS = "cilium_node_exporter_source_errors_total"
EVENTS = "cilium_node_exporter_events_total"


class RawHubble:
    """GetFlows streams whatever bytes are queued, as gRPC messages; ServerStatus answers normally."""

    def __init__(self, socket_path: str) -> None:
        self.queue: queue.Queue[bytes] = queue.Queue()
        self.sent = 0
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers = {
            "GetFlows": grpc.unary_stream_rpc_method_handler(self._get_flows, request_deserializer=None,
                                                             response_serializer=None),
            "ServerStatus": grpc.unary_unary_rpc_method_handler(
                lambda req, ctx: observer_pb2.ServerStatusResponse(version="1.19.4", max_flows=4095),
                request_deserializer=observer_pb2.ServerStatusRequest.FromString,
                response_serializer=observer_pb2.ServerStatusResponse.SerializeToString),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("observer.Observer", handlers),))
        server.add_insecure_port("unix:" + socket_path)
        self.server = server

    def _get_flows(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        while context.is_active():
            try:
                data = self.queue.get(timeout=0.05)
            except queue.Empty:
                continue
            self.sent += 1
            yield data


def received(m: Metrics) -> float:
    """Every message the exporter took off the stream: counted events plus decode errors."""
    return m.sum(EVENTS) + m.value(ERRORS, source="hubble", reason="decode")


@pytest.fixture(scope="module")
def raw_hubble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RawHubble, Exporter]]:
    tmp = tmp_path_factory.mktemp("raw")
    sock = str(tmp / "hubble.sock")
    hub = RawHubble(sock)
    hub.server.start()
    exp = Exporter(tmp, "--sources=hubble", f"--hubble-address=unix://{sock}", *FAST_HUBBLE,
                   "--extra-labels=protocol,endpoint_namespace,policy", "--label-cap=5")
    try:
        exp.wait_metrics(lambda m: m.value("cilium_node_exporter_source_up", source="hubble") == 1, what="up")
        yield hub, exp
    finally:
        exp.stop()
        hub.server.stop(None)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(st.binary(max_size=300), st.binary(min_size=1, max_size=8).map(lambda b: b"\x0a" + b)),
                min_size=1, max_size=20))
def test_random_grpc_messages_never_crash_the_process(raw_hubble: tuple[RawHubble, Exporter],
                                                      payloads: list[bytes]) -> None:
    hub, exp = raw_hubble
    before = received(exp.scrape())
    for p in payloads:
        hub.queue.put(p)
    exp.wait_metrics(lambda m: received(m) == before + len(payloads), timeout=10, interval=0.02,
                     what=f"{len(payloads)} messages accounted")
    assert exp.alive()
    assert exp.log_count("Traceback|unexpected error") == 0, exp.log()[-2000:]


class GarbageSocket:
    """A unix socket that answers every connection with the next queued bytes, then closes it."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)
        self.next: bytes = b""
        self.served = 0
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.settimeout(0.5)
                    conn.sendall(self.next)
                    time.sleep(0.05)
                except OSError:
                    pass
            self.served += 1

    def close(self) -> None:
        self._stop = True
        self.sock.close()


# A server's HTTP/2 SETTINGS frame (empty): garbage after it gets further into grpcio's parser.
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def test_random_bytes_instead_of_http2_never_crash_the_process(tmp_path: Path) -> None:
    path = str(tmp_path / "hubble.sock")
    garbage = GarbageSocket(path)
    exp = Exporter(tmp_path, "--sources=hubble", f"--hubble-address=unix://{path}", *FAST_HUBBLE)
    try:
        wait_until(lambda: garbage.served >= 2, timeout=10, what="first connections")  # grpc's threads started
        threads = exp.threads()
        rss = exp.rss_bytes()

        @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(st.one_of(st.binary(max_size=2048), st.binary(max_size=512).map(lambda b: SETTINGS + b)))
        def one(data: bytes) -> None:
            garbage.next = data
            served = garbage.served
            wait_until(lambda: garbage.served > served, timeout=10, what="the exporter to connect again")
            assert exp.alive()

        one()
        m = exp.scrape()
        assert m.value("cilium_node_exporter_source_up", source="hubble") == 0
        assert m.sum(ERRORS, source="hubble") >= 1
        assert exp.log_count("Traceback") == 0
        assert exp.threads() <= threads + 3  # no thread left behind per failed connection
        assert exp.rss_bytes() < rss + 32 * 2**20
    finally:
        exp.stop()
        garbage.close()
        if os.path.exists(path):
            os.unlink(path)
