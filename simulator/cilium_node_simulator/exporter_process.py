"""The real exporter as a subprocess: start with flags, wait for /metrics, scrape, RSS, signals, teardown.

For runs against the simulated node: the exporter's fault and abuse tests, the benchmarks under ``bench/``
and the packaging test (which runs the ``cilium-node-exporter`` of another virtualenv through
``command``). The process logs to a file (never a pipe that could fill up and block it)::

    with Exporter(tmp_path, "--sources=hubble", f"--hubble-address=unix://{sock}") as exp:
        m = exp.scrape()
        assert m.value("cilium_node_exporter_source_up", source="hubble") == 0
        assert exp.log_count("does not exist") == 1
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

# The exporter as the development install runs it.
PYTHON_MODULE = (sys.executable, "-m", "cilium_node_exporter")
# Short timeouts and backoffs so that faults show and recover within seconds.
FAST_HUBBLE = ("--hubble-backoff-max=0.5s", "--hubble-status-interval=0.2s", "--hubble-stall-timeout=2s")


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out for port-0 binds and outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


PORTS_FROM = 10000  # above the well-known ports and the demo's fixed ones (9969, 9090, 9093)
_PORT_SLICES = 8  # one slice of the range per pytest-xdist worker (gw0..gw7), so that workers never pick alike
_next_port: dict[str, int] = {}
_port_lock = threading.Lock()  # two threads of a test never walk to the same port


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host`` (127.0.0.1 or ::1), for a process started later.

    Not a port-0 bind: a port the kernel handed out once is one it hands out again, to a fake's port-0 listener or
    to an outgoing connection, before the process that was told to listen there binds it ("Address already in
    use"). So the port is taken below the kernel's ephemeral range, from this pytest-xdist worker's own slice,
    walking from an offset of this process's pid."""
    low = PORTS_FROM
    size = (_ephemeral_low() - low) // _PORT_SLICES
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if size < 100:  # an ephemeral range that starts low: the kernel's pick is all there is
        with socket.socket(family) as s:
            s.bind((host, 0))
            return int(s.getsockname()[1])
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    base = low + (int(worker) % _PORT_SLICES if worker.isdigit() else 0) * size
    with _port_lock:
        offset = _next_port.get(host, os.getpid() * 7919 % size)
        for step in range(size):
            port = base + (offset + step) % size
            with socket.socket(family) as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
            _next_port[host] = (offset + step + 1) % size
            return port
    raise OSError(f"no free port in {base}-{base + size - 1} on {host}")


class Metrics:
    """One parsed scrape: ``{(sample name, frozenset(labels)): value}`` with lookup helpers."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def value(self, name: str, default: float | None = None, **labels: str) -> float:
        """The value of the sample with exactly these labels; ``default`` (or KeyError) when absent."""
        key = (name, frozenset(labels.items()))
        if key in self.samples:
            return self.samples[key]
        if default is not None:
            return default
        raise KeyError(f"{name}{labels} not exported")

    def series(self, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
        """Every sample of ``name`` whose labels include ``labels``."""
        want = set(labels.items())
        return {lbl: v for (n, lbl), v in self.samples.items() if n == name and want <= lbl}

    def sum(self, name: str, **labels: str) -> float:
        return sum(self.series(name, **labels).values())

    def table(self, name: str, *keys: str) -> dict[tuple[str, ...], float]:
        """Samples of ``name`` keyed by the values of ``keys`` (missing labels read as ''), zeros left out."""
        out: dict[tuple[str, ...], float] = {}
        for lbl, v in self.series(name).items():
            d = dict(lbl)
            k = tuple(d.get(x, "") for x in keys)
            out[k] = out.get(k, 0.0) + v
        return {k: v for k, v in out.items() if v}

    def has(self, name: str) -> bool:
        return any(n == name for n, _ in self.samples)

    def count(self, prefix: str = "") -> int:
        """Number of exported series whose name starts with ``prefix``."""
        return sum(1 for n, _ in self.samples if n.startswith(prefix))


_STARTED: weakref.WeakSet[Exporter] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    """A run that failed before its teardown must not leave an exporter running after it exits."""
    for exp in list(_STARTED):
        if exp.alive():
            exp.proc.kill()


class Exporter:
    """``command`` (``python -m cilium_node_exporter``) with ``flags`` on a free port; a context manager."""

    def __init__(self, tmp: Path, *flags: str, env: dict[str, str] | None = None, name: str = "exporter",
                 ready_timeout: float = 20.0, command: Sequence[str] = PYTHON_MODULE, host: str = "127.0.0.1") -> None:
        self.port = free_port(host)
        self.host = f"[{host}]" if ":" in host else host
        self.base = f"http://{self.host}:{self.port}"
        self.log_path = Path(tmp) / f"{name}.log"
        self.flags = [f"--listen-address={self.host}:{self.port}", "--node-name=node-a", *flags]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("CNE_")}
        full_env.update(env or {})
        self.proc = subprocess.Popen([*command, *self.flags],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=full_env)
        _STARTED.add(self)
        self.wait_ready(ready_timeout)

    # --- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"exporter exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.ready_url(), timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"exporter not ready within {timeout}s:\n{self.log()}")

    def ready_url(self) -> str:
        """Where readiness is probed (plain HTTP)."""
        return self.base + "/healthz"

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, wait ``timeout`` s (then SIGKILL); the exit code (negative: killed by a signal)."""
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)  # in case a test left it stopped
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self._log.closed:
            self._log.close()
        return int(self.proc.returncode)

    # --- HTTP -----------------------------------------------------------------------------------
    def get(self, path: str = "/metrics", timeout: float = 10.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def scrape(self, timeout: float = 10.0) -> Metrics:
        status, body = self.get("/metrics", timeout)
        assert status == 200, f"/metrics answered {status}: {body[:500]}"
        return Metrics(body)

    def wait_metrics(self, predicate: Callable[[Metrics], Any], timeout: float = 15.0, what: str = "condition",
                     interval: float = 0.1) -> Metrics:
        """Scrape until ``predicate(metrics)`` is truthy; fail with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        m = None
        while time.monotonic() < deadline:
            assert self.alive(), f"exporter died:\n{self.log()}"
            m = self.scrape()
            try:
                if predicate(m):
                    return m
            except KeyError:  # a series not exported yet (e.g. source_up before a first attempt)
                pass
            time.sleep(interval)
        detail = "" if m is None else "\n".join(line for line in m.text.splitlines()
                                                 if line.startswith("cilium_node") and not line.endswith(" 0.0"))
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n--- metrics:\n{detail}\n"
                             f"--- log:\n{self.log()[-4000:]}")

    # --- process facts --------------------------------------------------------------------------
    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_lines(self, pattern: str) -> list[str]:
        rx = re.compile(pattern)
        return [line for line in self.log().splitlines() if rx.search(line)]

    def log_count(self, pattern: str) -> int:
        return len(self.log_lines(pattern))

    def rss_bytes(self) -> int:
        return proc_status(self.pid, "VmRSS")

    def peak_rss_bytes(self) -> int:
        return proc_status(self.pid, "VmHWM")

    def threads(self) -> int:
        return proc_status(self.pid, "Threads")


def proc_status(pid: int, field: str) -> int:
    """A field of /proc/PID/status (kB fields returned in bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            parts = line.split()
            return int(parts[1]) * (1024 if len(parts) > 2 and parts[2] == "kB" else 1)
    raise KeyError(field)
