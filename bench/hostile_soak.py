"""Memory, threads and scrapes of the exporter when every source and every client is hostile for a while
(issue 23, row 7; default 10 minutes).

Every source is on, with the simulator's fakes of one node: Hubble fed ~1,000 events/s, and the kubelet, the
API server, the agent's metrics endpoint and its REST API (``cilium.sock``) each switching every 1-3 s to
a random fault (garbage, huge bodies, 500s, resets, slow answers past the scrape's budget) or to normal. At the
same time, over HTTP (basic auth at bcrypt cost 5): 16 keep-alive connections guessing passwords, 16 without
credentials, 4 authorised gzip scrapers, slowloris connections opened and dropped in waves, and clients that
reset mid-scrape. A measuring client scrapes every 10 s with the right password and Prometheus' timeout
header (10 s), as Prometheus would.

Prints RSS every minute, the peak (VmHWM), threads and file descriptors, the measuring client's scrapes, and
the time SIGTERM takes at the end.

    .venv/bin/python -m bench.hostile_soak [--seconds 600] [--quiet-sources] [--quiet-clients]
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import signal
import socket
import statistics
import struct
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt

from bench.exporter_rss import SOURCES, HubbleFeed
from cilium_node_simulator.exporter_process import Exporter
from cilium_node_simulator.flood import Flood
from cilium_node_simulator.harness import AgentState, FixedAgent, MiB, NodeFakes

FAULTS = ("none", "none", "garbage", "huge", "500", "reset", "slow")
PASSWORD = "soak-password"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def request(auth: str | None, gzip: bool = False) -> bytes:
    head = b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
    if auth:
        head += b"Authorization: " + auth.encode() + b"\r\n"
    if gzip:
        head += b"Accept-Encoding: gzip\r\n"
    return head + b"\r\n"


class Chaos:
    """Switch each fake to a random fault every 1-3 s."""

    def __init__(self, fakes: list[object]) -> None:
        self.fakes = fakes
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = random.Random(23)
        while not self.stop.wait(rng.uniform(1.0, 3.0)):
            for fake in self.fakes:
                fake.fault = rng.choice(FAULTS)  # type: ignore[attr-defined]
                if hasattr(fake, "slow_seconds"):
                    fake.slow_seconds = rng.uniform(2.0, 12.0)  # type: ignore[attr-defined]


class Slowloris:
    """Waves of partial requests from 127.0.0.5 (opened, left dripping, dropped), and resets mid-scrape."""

    def __init__(self, port: int, wave: int = 300) -> None:
        self.port, self.wave = port, wave
        self.stop = threading.Event()
        self.opened = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            held = []
            for _ in range(self.wave):
                try:
                    s = socket.create_connection(("127.0.0.1", self.port), timeout=2, source_address=("127.0.0.5", 0))
                    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    held.append(s)
                    self.opened += 1
                except OSError:
                    break
            for _ in range(20):  # clients that reset mid-scrape
                try:
                    s = socket.create_connection(("127.0.0.1", self.port), timeout=2, source_address=("127.0.0.6", 0))
                    s.sendall(request(None))
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.close()
                except OSError:
                    pass
            self.stop.wait(10)
            for s in held:
                s.close()


def measure(exp: Exporter, timeout: float = 10.0) -> tuple[int, float]:
    req = urllib.request.Request(exp.base + "/metrics", headers={"Authorization": basic("prometheus", PASSWORD),
                                                                 "X-Prometheus-Scrape-Timeout-Seconds": "10"})
    start = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            return r.status, time.monotonic() - start
    except urllib.error.HTTPError as exc:
        return exc.code, time.monotonic() - start
    except OSError:
        return 0, time.monotonic() - start


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--quiet-sources", action="store_true", help="control: healthy sources")
    parser.add_argument("--quiet-clients", action="store_true", help="control: no hostile clients")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        web = tmp / "web.yml"
        digest = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(5)).decode()
        web.write_text(f"basic_auth_users:\n  prometheus: {digest}\n")
        agent = FixedAgent(version="1.18.6", envoy=AgentState(working_set=90 * MiB, limit=256 * MiB))
        node = NodeFakes(agent, node="node-a", tls_dir=tmp / "tls", client_dir=tmp / "client",
                         kubelet_port=0, kubeapi_port=0, agent_metrics_port=0,
                         agent_api_socket=str(tmp / "cilium.sock"))
        hubble = HubbleFeed(tmp)
        chaos = Chaos([node.kubelet, node.kubeapi, node.agent, node.agent_api])
        flags = [*node.flags, f"--hubble-address=unix://{tmp}/hubble.sock", "--settings-interval=5s",
                 f"--sources={SOURCES}", f"--web-config-file={web}", "--log-format=json"]
        try:
            with Exporter(tmp, *flags, name="soak") as exp:
                floods = [] if args.quiet_clients else [
                    Flood(exp.port, 16, lambda n: request(basic("prometheus", f"guess-{n}")), source="127.0.0.2"),
                    Flood(exp.port, 16, lambda n: request(None), source="127.0.0.3"),
                    Flood(exp.port, 4, lambda n: request(basic("prometheus", PASSWORD), gzip=True),
                          source="127.0.0.4")]
                slowloris = Slowloris(exp.port)
                if not args.quiet_sources:
                    chaos.thread.start()
                for flood in floods:
                    flood.__enter__()
                if not args.quiet_clients:
                    slowloris.thread.start()
                start = time.monotonic()
                samples: list[tuple[float, int]] = []
                scrapes: list[tuple[int, float]] = []
                threads = descriptors = 0
                while (elapsed := time.monotonic() - start) < args.seconds:
                    scrapes.append(measure(exp))
                    samples.append((elapsed, exp.rss_bytes()))
                    threads, descriptors = max(threads, exp.threads()), max(descriptors, fds(exp.pid))
                    time.sleep(max(0.0, 10.0 - (time.monotonic() - start - elapsed)))
                peak = exp.peak_rss_bytes()
                t0 = time.monotonic()
                exp.signal(signal.SIGTERM)
                code = exp.proc.wait(15)
                stop_s = time.monotonic() - t0
                chaos.stop.set()
                slowloris.stop.set()
                for flood in floods:
                    flood.__exit__()
                log = exp.log().splitlines()
        finally:
            hubble.close()
            node.stop()
    print(f"hostile soak, {args.seconds} s, sources {'healthy' if args.quiet_sources else 'hostile'}, "
          f"clients {'none' if args.quiet_clients else 'hostile'}")
    minutes = {}
    for t, rss in samples:
        minutes[int(t // 60) + 1] = rss
    print("RSS MiB at the end of each minute: " + ", ".join(f"{m}: {v / MiB:.1f}" for m, v in sorted(minutes.items())))
    settled = [rss for t, rss in samples if t >= 120]
    if settled:
        print(f"after the first 2 minutes: min {min(settled) / MiB:.1f}, max {max(settled) / MiB:.1f} MiB; "
              f"last minute vs minute 3: {(minutes[max(minutes)] - minutes.get(3, settled[0])) / MiB:+.1f} MiB")
    print(f"VmHWM {peak / MiB:.1f} MiB, threads max {threads}, fds max {descriptors}")
    ok = [t for s, t in scrapes if s == 200]
    print(f"measuring scrapes: {len(ok)}/{len(scrapes)} answered 200; p50 {statistics.median(ok):.2f} s, "
          f"max {max(ok):.2f} s" if ok else f"measuring scrapes: 0/{len(scrapes)} answered")
    if floods:
        print("hostile answers: " + "; ".join(f"{f.source} {dict(f.statuses)}" for f in floods)
              + f"; slowloris connections opened {slowloris.opened}")
    errors = sum(1 for line in log if '"level": "error"' in line)
    print(f"SIGTERM: exit {code} in {stop_s:.2f} s; log lines {len(log)}, errors {errors}")


if __name__ == "__main__":
    main()
