"""Hubble faults, driving the real exporter process against the simulator's real unix socket.

Every test ends with the same check: what the exporter exports equals the simulator's ground truth,
and whatever is missing shows in ``cilium_node_hubble_lost_events_total`` or in the disconnected time.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cilium_node_simulator.events import CompiledSpec, EventSpec
from cilium_node_simulator.hubble_server import HubbleServer
from tests.support.procs import FAST_HUBBLE, Exporter, Metrics

UP = "cilium_node_exporter_source_up"
ERRORS = "cilium_node_exporter_source_errors_total"
RECONNECTS = "cilium_node_exporter_hubble_reconnects_total"
DISCONNECTED = "cilium_node_exporter_hubble_disconnected_seconds_total"
LOST = "cilium_node_hubble_lost_events_total"

MIX = (EventSpec("drop", reason=155, direction=2, pool=4),  # CT_MAP_INSERTION_FAILED
       EventSpec("policy_denied", direction=1, pool=4),  # a verdict (type 5) and a drop (type 1)
       EventSpec("verdict", direction=2, pool=4),
       EventSpec("http", method="POST", action=2, direction=1, pool=4),
       EventSpec("dns", pool=4),
       EventSpec("trace", pool=4))  # filtered out by the whitelist


class Node:
    """A simulated node: the Hubble server and the event mix compiled for it."""

    def __init__(self, tmp: Path, **kw: object) -> None:
        self.sock = tmp / "run" / "hubble.sock"
        self.server = HubbleServer(socket_path=str(self.sock), **kw)  # type: ignore[arg-type]
        self.mix: list[CompiledSpec] | None = None

    def start(self) -> Node:
        self.server.start()
        if self.mix is None:
            self.mix = [self.server.compile(spec, i) for i, spec in enumerate(MIX)]
        return self

    def emit(self, n: int = 10) -> bool:
        """``n`` occurrences of every event of the mix; False while the server is down."""
        ok = self.server.emit([(c, n) for c in self.mix or ()])
        if ok:
            self.server.sync()
        return ok

    def flags(self, *extra: str) -> list[str]:
        return ["--sources=hubble", f"--hubble-address=unix://{self.sock}", *FAST_HUBBLE, *extra]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path)
    yield n
    n.server.stop()


def exported(m: Metrics) -> dict[str, dict[tuple[str, ...], float]]:
    return {"drops": m.table("cilium_node_drops_total", "reason", "direction"),
            "verdicts": m.table("cilium_node_policy_verdicts_total", "direction", "match", "action"),
            "l7_requests": m.table("cilium_node_l7_requests_total", "protocol", "method", "direction", "action"),
            "lost": {k[0]: v for k, v in m.table(LOST, "source").items()}}


def truth(server: HubbleServer) -> dict[str, dict[tuple[str, ...], float]]:
    t = server.truth.snapshot()
    out = {name: {k: float(v) for k, v in getattr(t, name).items() if v}
           for name in ("drops", "verdicts", "l7_requests")}
    out["lost"] = {k: float(v) for k, v in t.lost.items() if v}
    return out


def exact(exp: Exporter, node: Node, timeout: float = 15.0) -> Metrics:
    """Wait until the exporter's counts equal the simulator's ground truth (else fail with the difference)."""
    deadline = time.monotonic() + timeout
    while True:
        m = exp.scrape()
        want, got = truth(node.server), exported(m)
        if got == want:
            return m
        if time.monotonic() > deadline:
            diff = {k: (want[k], got[k]) for k in want if want[k] != got[k]}
            raise AssertionError(f"counts differ from the ground truth (truth, exported): {diff}\n{exp.log()[-3000:]}")
        time.sleep(0.1)


def up(m: Metrics) -> float:
    return m.value(UP, source="hubble")


def err(m: Metrics, reason: str) -> float:
    return m.value(ERRORS, source="hubble", reason=reason)


def test_socket_absent_at_start_then_appearing(node: Node, tmp_path: Path) -> None:
    with Exporter(tmp_path, *node.flags()) as exp:
        m = exp.wait_metrics(lambda m: err(m, "connect") >= 3, what="connect errors")
        assert up(m) == 0 and m.value(DISCONNECTED) > 0
        assert not m.has("cilium_node_hubble_info")  # no stale status while down
        node.start()
        exp.wait_metrics(lambda m: up(m) == 1, what="source up")
        node.emit(20)
        m = exact(exp, node)
        assert m.value(RECONNECTS) == 0  # the first stream is not a reconnect
        assert exp.log_count("does not exist") == 1  # one line for the problem, however many retries
        assert exp.log_count("recovered") == 1


def test_server_killed_mid_stream_and_restarted(node: Node, tmp_path: Path) -> None:
    node.start()
    with Exporter(tmp_path, *node.flags()) as exp:
        exp.wait_metrics(lambda m: up(m) == 1, what="source up")
        node.emit(30)
        before = exact(exp, node)
        node.server.kill()  # the agent dies: no trailers, no GOAWAY, a stale socket file
        m = exp.wait_metrics(lambda m: up(m) == 0, what="source down")
        assert not node.emit(5)  # a dead agent produces nothing
        time.sleep(1.0)
        gap = exp.scrape().value(DISCONNECTED)
        assert gap >= 0.9
        node.server.reset()  # it comes back as a fresh agent: empty ring, seen_flows 0
        node.start()
        exp.wait_metrics(lambda m: up(m) == 1 and m.value(RECONNECTS) == 1, what="reconnected once")
        node.emit(30)
        m = exact(exp, node)  # counts continue from where they were, nothing counted twice
        assert m.sum("cilium_node_drops_total") == 2 * before.sum("cilium_node_drops_total")
        assert m.value(RECONNECTS) == 1 and m.value(DISCONNECTED) >= gap
        assert err(m, "connect") >= 1
        seen = node.server.status()["seen_flows"]  # the restarted agent's own count, polled
        exp.wait_metrics(lambda m: m.value("cilium_node_hubble_flows_seen_total", -1) == seen, what="seen flows")


def test_connection_dropped_mid_batch_replay_is_not_counted_twice(node: Node, tmp_path: Path) -> None:
    """The connection breaks while the ring still holds what was sent: the resumed stream replays
    (since = last counted event - margin) and the exporter skips what it already counted."""
    node.start()
    with Exporter(tmp_path, *node.flags()) as exp:
        exp.wait_metrics(lambda m: up(m) == 1, what="source up")
        node.server.faults.close_after = 40  # drop the connection after 40 messages of a stream
        node.emit(20)  # 140 flows pass the whitelist: the first stream dies after 40 of them
        exp.wait_metrics(lambda m: m.value(RECONNECTS) >= 1, what="a reconnect")
        node.server.faults.close_after = None
        m = exact(exp, node)
        node.emit(5)
        m = exact(exp, node)
        assert m.value(DISCONNECTED) > 0
        assert exp.alive()


def test_stalled_stream_with_the_connection_open_is_detected(node: Node, tmp_path: Path) -> None:
    node.start()
    with Exporter(tmp_path, *node.flags()) as exp:
        exp.wait_metrics(lambda m: up(m) == 1, what="source up")
        node.server.faults.stall_after = 20  # the stream goes silent, the connection stays up
        stop = threading.Event()

        def produce() -> None:  # the node keeps seeing flows while the stream delivers nothing
            while not stop.wait(0.1):
                node.emit(1)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        try:
            exp.wait_metrics(lambda m: err(m, "timeout") >= 1, timeout=20, what="stall detected")
            node.server.faults.stall_after = None
            exp.wait_metrics(lambda m: m.value(RECONNECTS) >= 1 and up(m) == 1, what="reconnected")
        finally:
            stop.set()
            producer.join()
        exact(exp, node)  # the resumed stream delivered what the stalled one held back
        assert exp.log_count("stalled") >= 1
        assert exp.log_count("too_many_pings") == 0  # detected by the application, not by pings


@pytest.mark.parametrize(("code", "name", "reason"), [(12, "UNIMPLEMENTED", "protocol"),
                                                      (14, "UNAVAILABLE", "connect"),
                                                      (8, "RESOURCE_EXHAUSTED", "protocol")])
def test_getflows_answered_with_an_error_status(node: Node, tmp_path: Path, code: int, name: str,
                                                reason: str) -> None:
    node.start()
    node.server.faults.getflows_status = code
    node.server.faults.getflows_message = f"simulated {name}"
    with Exporter(tmp_path, *node.flags()) as exp:
        m = exp.wait_metrics(lambda m: err(m, reason) >= 3, what=f"{reason} errors")
        time.sleep(1.0)  # several retries more
        m = exp.scrape()
        assert up(m) == 0
        assert m.value(RECONNECTS) == 0  # a stream that never delivered is not a reconnect
        assert exp.log_count("recovered") == 0  # no flapping source_up, no log line per retry
        assert exp.log_count(f"simulated {name}") == 1
        node.server.faults.getflows_status = None
        exp.wait_metrics(lambda m: up(m) == 1, what="recovered")
        node.emit(10)
        exact(exp, node)
        assert exp.log_count("recovered") == 1


@pytest.mark.parametrize("version", ["1.18.2", "1.19.4"])  # per-event lost messages, and 1.19's batched form
def test_slow_exporter_against_a_fast_server_counts_ring_buffer_loss(tmp_path: Path, version: str) -> None:
    node = Node(tmp_path, version=version, ring_capacity=1023, lost_event_interval=0.2)
    node.mix = []  # drops only: every ring slot the exporter misses is a counted drop
    node.start()
    drops = node.server.compile(EventSpec("drop", reason=155, direction=2, pool=8), 99)
    try:
        with Exporter(tmp_path, *node.flags()) as exp:
            exp.wait_metrics(lambda m: up(m) == 1, what="source up")
            node.server.emit([(drops, 200)])
            exact(exp, node)
            exp.signal(signal.SIGSTOP)  # the exporter falls behind (a real way: CPU throttling)
            try:
                for _ in range(20):
                    node.server.emit([(drops, 5000)])  # 100,000 drops into a 1023-flow ring
                    node.server.sync()
            finally:
                exp.signal(signal.SIGCONT)
            emitted = 200 + 100_000
            m = exp.wait_metrics(lambda m: m.sum("cilium_node_drops_total") + m.sum(LOST) == emitted, timeout=30,
                                 what="every drop counted or reported lost")
            counted = m.sum("cilium_node_drops_total")
            lost = m.value(LOST, source="hubble_ring_buffer")
            assert lost > 50_000  # most of the burst was overwritten before the exporter read it
            assert counted + lost == emitted  # gap left unreported: zero
            assert exported(m)["lost"] == truth(node.server)["lost"]  # exactly the losses the server reported
            assert m.value(RECONNECTS) == 0  # falling behind is not a disconnection
    finally:
        node.server.stop()


@pytest.mark.parametrize("version", ["1.14.0", "1.15.3"])
def test_old_version_servers(tmp_path: Path, version: str) -> None:
    """1.14: field mask in ``experimental``, no ``*_allowed_by``; 1.15: no ``*_denied_by`` yet."""
    node = Node(tmp_path, version=version)
    node.start()
    assert node.mix is not None
    node.mix.append(node.server.compile(EventSpec("policy_deny", direction=1, pool=4), 50))
    try:
        with Exporter(tmp_path, *node.flags("--extra-labels=policy,endpoint_namespace")) as exp:
            exp.wait_metrics(lambda m: up(m) == 1, what="source up")
            node.emit(10)
            node.server.faults.close_after = 30  # and a resume against the old server
            node.emit(10)
            exp.wait_metrics(lambda m: m.value(RECONNECTS) >= 1, what="reconnect")
            node.server.faults.close_after = None
            m = exact(exp, node)
            assert m.value("cilium_node_hubble_info", version=node.server.version.text) == 1  # cilium v1.x.y+g<sha>
            policies = {dict(k).get("policy", "") for k in m.series("cilium_node_policy_verdicts_total")}
            if version.startswith("1.14"):
                assert policies == {""}  # no policy names before 1.15
            else:
                assert any(p.startswith(("default/allow-", "shop/allow-", "payments/allow-")) or "/allow-" in p
                           for p in policies)
                assert not any("/deny-" in p for p in policies)  # *_denied_by appears in 1.16
            assert exp.log_count("Traceback") == 0
    finally:
        node.server.stop()


@pytest.mark.parametrize(("kind", "reason"), [("protobuf", "decode"), ("length", "protocol"),
                                              ("truncated", "connect")])
def test_corrupted_and_truncated_messages(node: Node, tmp_path: Path, kind: str, reason: str) -> None:
    node.start()
    with Exporter(tmp_path, *node.flags()) as exp:
        exp.wait_metrics(lambda m: up(m) == 1, what="source up")
        node.emit(5)
        exact(exp, node)
        node.server.faults.corrupt_kind = kind
        node.server.faults.corrupt_after = 45  # 35 flows into the next batch
        node.emit(10)
        m = exact(exp, node)  # the stream recovered (resumed where needed) and nothing was lost
        assert err(m, reason) >= 1
        if kind == "protobuf":  # skipped in place, the stream continues
            assert err(m, "decode") == 1 and m.value(RECONNECTS) == 0
            assert exp.log_count("undecodable message") == 1
        else:  # the stream ends; the resumed stream delivers the rest
            assert m.value(RECONNECTS) >= 1
        node.emit(5)
        exact(exp, node)
        assert exp.log_count("Traceback") == 0
