"""HTTP endpoints of a real exporter process, and its shutdown on SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.procs import free_port, wait_until


@pytest.fixture
def exporter(tmp_path: Path):
    port = free_port()
    env = {**os.environ, "CNE_HUBBLE_BACKOFF_MAX": "0.5"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cilium_node_exporter", "--listen-address", f"127.0.0.1:{port}", "--sources", "hubble",
         "--hubble-address", f"unix://{tmp_path}/absent.sock", "--node-name", "test-node"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    yield proc, base
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def test_endpoints_with_hubble_down(exporter) -> None:
    _, base = exporter
    assert get(base + "/healthz")[0] == 200
    assert get(base + "/readyz")[0] == 200  # a source being down never makes the pod NotReady
    status, ctype, body = get(base + "/")
    assert status == 200 and "/metrics" in body and ctype.startswith("text/html")
    assert get(base + "/nope")[0] == 404
    status, ctype, body = get(base + "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    fams = {f.name: f for f in text_string_to_metric_families(body)}
    up = {s.labels["source"]: s.value for s in fams["cilium_node_exporter_source_up"].samples}
    assert up == {"hubble": 0}
    assert "cilium_node_exporter_build_info" in fams and "process_resident_memory_bytes" in fams
    assert fams["cilium_node_agent_memory_envelope_upper_bytes"].samples[0].value == 500 * 2**20
    # no label may clash with the target labels a Prometheus Operator adds
    reserved = {"namespace", "pod", "container", "service", "endpoint", "instance", "job", "node"}
    for fam in fams.values():
        for s in fam.samples:
            assert not reserved & set(s.labels), (s.name, s.labels)


def test_promtool_accepts_exposition(exporter) -> None:
    _, base = exporter
    body = get(base + "/metrics")[2]
    res = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr


def test_sigterm_exits_zero_quickly(exporter) -> None:
    proc, base = exporter
    get(base + "/metrics")
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
    assert time.monotonic() - start < 5
    assert "shutting down" in proc.stderr.read()


def _unix_listener(path: Path) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.listen(4)
    return sock


def test_a_socket_file_mount_replaced_by_an_agent_restart_fails_liveness(tmp_path: Path) -> None:
    """The chart mounts hubble.sock as one file; an agent restart removes it and listens on a new one. The
    exporter's container keeps the deleted file (link count 0) and only a new container mounts the new one:
    /healthz says so (503), /readyz stays 200. The mount is made the way the runtime makes it: a bind mount of the
    file, in the exporter's own mount namespace."""
    host = tmp_path / "host"
    host.mkdir()
    seen = tmp_path / "ctr" / "hubble.sock"
    seen.parent.mkdir()
    seen.touch()
    first = _unix_listener(host / "hubble.sock")
    port = free_port()
    script = (f"mount --bind {host / 'hubble.sock'} {seen} && exec {sys.executable} -m cilium_node_exporter "
              f"--listen-address=127.0.0.1:{port} --sources=hubble --hubble-address=unix://{seen} "
              "--settings-from=agent-api")
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _status(base + "/healthz") == 200, 20, "the exporter")
        first.close()
        second = _unix_listener(host / "hubble.sock")  # the restarted agent: a new file at the same path
        try:
            status, body = get(base + "/healthz")[0], get(base + "/healthz")[2]
            assert status == 503 and f"{seen} was replaced on the host" in body, body
            assert get(base + "/readyz")[0] == 200
        finally:
            second.close()
    finally:
        proc.terminate()
        proc.wait(10)


def _status(url: str) -> int:
    try:
        return get(url)[0]
    except OSError:
        return 0
