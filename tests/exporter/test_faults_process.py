"""Process-level faults of the real exporter: signals, in-flight scrapes, a taken port, nothing reachable."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.exporter.test_faults_hubble import Node, exact
from tests.support.cluster import Cluster, MiB
from tests.support.procs import FAST_HUBBLE, Exporter, free_port


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "cluster", working_set=310 * MiB, limit=1024 * MiB)
    yield c
    c.close()


def test_sigterm_finishes_in_flight_scrapes_and_exits_0_within_5s(tmp_path: Path, cluster: Cluster) -> None:
    cluster.kubelet.fault = "slow"  # each scrape spends 1.5 s reading the kubelet
    cluster.kubelet.slow_seconds = 1.5
    exp = Exporter(tmp_path, *cluster.flags, "--sources=kubelet", "--kubelet-timeout=4s")
    results: list[tuple[int, str]] = []
    scraper = threading.Thread(target=lambda: results.append(exp.get("/metrics")))
    scraper.start()
    time.sleep(0.4)  # the scrape is waiting for the kubelet
    start = time.monotonic()
    exp.signal(signal.SIGTERM)
    code = exp.proc.wait(5)
    took = time.monotonic() - start
    scraper.join(5)
    assert code == 0 and took < 5
    assert results and results[0][0] == 200  # the in-flight scrape got its whole answer
    body = results[0][1]
    assert "cilium_node_agent_memory_working_set_bytes 3.2505856e+08" in body
    assert "# TYPE cilium_node_exporter_label_overflow_total counter" in body  # the last family: complete
    assert exp.log_count("shutting down") == 1
    exp.stop()


def test_sigterm_while_streaming_from_hubble(tmp_path: Path) -> None:
    node = Node(tmp_path).start()
    try:
        with Exporter(tmp_path, *node.flags()) as exp:
            exp.wait_metrics(lambda m: m.value("cilium_node_exporter_source_up", source="hubble") == 1,
                             what="stream up")
            stop = threading.Event()

            def produce() -> None:
                while not stop.wait(0.01):
                    node.emit(50)

            producer = threading.Thread(target=produce)
            producer.start()
            try:
                time.sleep(0.5)
                start = time.monotonic()
                assert exp.stop() == 0
                assert time.monotonic() - start < 5
            finally:
                stop.set()
                producer.join()
    finally:
        node.server.stop()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stop_signals_exit_0(tmp_path: Path, sig: int) -> None:
    exp = Exporter(tmp_path, "--sources=hubble", f"--hubble-address=unix://{tmp_path}/absent.sock", *FAST_HUBBLE)
    exp.scrape()
    exp.signal(sig)
    assert exp.proc.wait(5) == 0
    exp.stop()


def test_sighup_is_logged_as_unsupported_and_changes_nothing(tmp_path: Path) -> None:
    """The configuration is read at start only (flags and environment, no config file): SIGHUP is
    logged and ignored, the process keeps serving with the same counters."""
    node = Node(tmp_path).start()
    try:
        with Exporter(tmp_path, *node.flags()) as exp:
            exp.wait_metrics(lambda m: m.value("cilium_node_exporter_source_up", source="hubble") == 1, what="up")
            node.emit(10)
            produced = node.server.truth.total("drops")
            before = exp.wait_metrics(lambda m: m.sum("cilium_node_drops_total") == produced, what="all drops")
            for _ in range(3):
                exp.signal(signal.SIGHUP)
                time.sleep(0.3)  # signals sent back to back may be delivered as one
            assert exp.alive()
            lines = exp.log_lines("SIGHUP")
            assert len(lines) == 3 and "restart" in lines[0]
            after = exp.scrape()
            assert after.sum("cilium_node_drops_total") == before.sum("cilium_node_drops_total")
            assert after.value("cilium_node_exporter_hubble_reconnects_total") == 0
    finally:
        node.server.stop()


def test_listen_port_taken_is_one_error_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = subprocess.run([sys.executable, "-m", "cilium_node_exporter", f"--listen-address=127.0.0.1:{port}",
                              "--sources=hubble", f"--hubble-address=unix://{tmp_path}/h.sock"],
                             capture_output=True, text=True, timeout=20)
    assert res.returncode == 1
    errors = [line for line in res.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "cannot listen" in errors[0] and str(port) in errors[0]


def test_nothing_reachable_at_start_serves_and_reports_every_source_down(tmp_path: Path) -> None:
    dead = free_port()
    flags = ["--sources=hubble,kubelet,apiserver,agent", f"--hubble-address=unix://{tmp_path}/absent.sock",
             f"--kubelet-address=https://127.0.0.1:{dead}", f"--kubelet-token-file={tmp_path}/no-token",
             f"--agent-metrics-address=http://127.0.0.1:{dead}/metrics", "--kubelet-timeout=1s",
             "--agent-timeout=1s", f"--apiserver-address=https://127.0.0.1:{dead}",
             f"--apiserver-token-file={tmp_path}/no-token", f"--apiserver-ca={tmp_path}/no-ca.crt", *FAST_HUBBLE]
    with Exporter(tmp_path, *flags) as exp:
        m = exp.wait_metrics(lambda m: m.sum("cilium_node_exporter_source_errors_total", source="apiserver") >= 1,
                             what="apiserver error")
        assert m.series("cilium_node_exporter_source_up") and m.sum("cilium_node_exporter_source_up") == 0
        assert {dict(k)["source"] for k in m.series("cilium_node_exporter_source_up")} == {
            "hubble", "kubelet", "apiserver", "agent"}
        assert exp.get("/readyz")[0] == 200 and exp.get("/healthz")[0] == 200
        time.sleep(1.5)
        exp.scrape()
        assert exp.alive() and exp.log_count("Traceback") == 0


def test_stopped_and_continued_process_catches_up_without_false_stall(tmp_path: Path) -> None:
    """A frozen exporter (SIGSTOP, e.g. CPU throttled or a debugger) resumes the same stream."""
    node = Node(tmp_path).start()
    try:
        with Exporter(tmp_path, *node.flags()) as exp:
            exp.wait_metrics(lambda m: m.value("cilium_node_exporter_source_up", source="hubble") == 1, what="up")
            exp.signal(signal.SIGSTOP)
            try:
                for _ in range(10):
                    node.emit(2)
                    time.sleep(0.3)  # 3 s frozen: longer than --hubble-stall-timeout=2s
            finally:
                exp.signal(signal.SIGCONT)
            exact(exp, node)
            time.sleep(1.0)
            m = exp.scrape()
            assert m.value("cilium_node_exporter_hubble_reconnects_total") == 0
            assert m.value("cilium_node_exporter_source_errors_total", source="hubble", reason="timeout") == 0
    finally:
        node.server.stop()

