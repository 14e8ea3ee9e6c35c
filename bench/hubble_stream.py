"""Benchmark: stream N events from the simulator into the exporter, and into a default grpcio client.

Usage: ``python bench/hubble_stream.py [--events N] [--version X.Y.Z]``

For each client, a fresh simulator (h2 server, in this process) produces exactly N matching events
(drops, policy verdicts, L7; plus one trace per four that the server-side whitelist filters out)
as fast as the client takes them, never lapping it (no ring loss). Printed per client: events/s,
CPU µs per event, peak RSS, and whether the counts equal the simulator's ground truth; then the
ratios. Both clients run as separate processes so that their CPU and RSS are their own.

- ``exporter``: the real ``cilium-node-exporter`` process (``--sources hubble``); its counters are
  read from ``/metrics`` and compared with the simulator's ground truth.
- ``grpcio-default``: ``bench/grpcio_default_client.py``, a straightforward default-options grpcio
  client (generated-class deserializer, one thread hand-off per message) counting the same keys.

Figures vary 20-30 % between runs on shared machines: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from cilium_node_simulator.hubble_server import HubbleServer

HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
MATCHING_KINDS = ("drop", "policy_verdict", "l7")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def scrape(port: int) -> dict[str, list]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def matching_events(metrics: dict[str, list]) -> int:
    return int(sum(s.value for s in metrics.get("cilium_node_exporter_events", [])
                   if s.name.endswith("_total") and s.labels.get("kind") in MATCHING_KINDS))


def exporter_counts(metrics: dict[str, list]) -> dict[str, dict]:
    def table(family: str, labels: tuple[str, ...]) -> dict:
        return {tuple(s.labels.get(k, "") for k in labels): int(s.value)
                for s in metrics.get(family, []) if s.name.endswith("_total")}

    return {"drops": table("cilium_node_drops", ("reason", "direction")),
            "verdicts": table("cilium_node_policy_verdicts", ("direction", "match", "action")),
            "l7_requests": table("cilium_node_l7_requests", ("protocol", "method", "direction", "action"))}


def truth_counts(server: HubbleServer) -> dict[str, dict]:
    snap = server.truth.snapshot()
    return {"drops": dict(snap.drops), "verdicts": dict(snap.verdicts), "l7_requests": dict(snap.l7_requests)}


def bench_exporter(n: int, version: str, tmp: Path) -> dict:
    sock = tmp / "exporter" / "hubble.sock"
    server = HubbleServer(socket_path=str(sock), version=version).start()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cilium_node_exporter", "--sources", "hubble", "--listen-address", f"127.0.0.1:{port}",
         "--hubble-address", f"unix://{sock}", "--log-level", "warning"], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                up = scrape(port)["cilium_node_exporter_source_up"]
                if any(s.value == 1 for s in up):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("exporter did not connect to the simulator")
            time.sleep(0.1)
        cpu0 = cpu_seconds(proc.pid)
        done = server.bench(n)
        done.wait(600)
        while matching_events(scrape(port)) < n:
            time.sleep(0.1)
        end = time.monotonic()
        cpu1 = cpu_seconds(proc.pid)
        stats = server.bench_stats()
        elapsed = end - stats["started"]
        metrics = scrape(port)
        exact = exporter_counts(metrics) == truth_counts(server)
        lost = sum(s.value for s in metrics.get("cilium_node_hubble_lost_events", []) if s.name.endswith("_total"))
        return {"client": "exporter", "events": matching_events(metrics), "elapsed_s": elapsed,
                "events_per_s": n / elapsed, "cpu_us_per_event": (cpu1 - cpu0) / n * 1e6,
                "peak_rss_mib": peak_rss_mib(proc.pid), "exact": exact, "lost": lost}
    finally:
        proc.terminate()
        proc.wait(10)
        server.stop()


def bench_default_client(n: int, version: str, tmp: Path) -> dict:
    sock = tmp / "default" / "hubble.sock"
    server = HubbleServer(socket_path=str(sock), version=version).start()
    proc = subprocess.Popen([sys.executable, str(HERE / "grpcio_default_client.py"), str(sock), str(n), version],
                            stdout=subprocess.PIPE, text=True)
    try:
        server.bench(n).wait(600)
        out, _ = proc.communicate(timeout=600)
        result = json.loads(out)
        counts = {k: {tuple(json.loads(key)): v for key, v in table.items()}
                  for k, table in result.pop("counts").items()}
        result["exact"] = counts == truth_counts(server)
        result["client"] = "grpcio-default"
        return result
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000, help="matching events per client")
    parser.add_argument("--version", default="1.19.4", help="emulated Cilium version")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench_exporter(args.events, args.version, Path(tmp)),
                bench_default_client(args.events, args.version, Path(tmp))]
    print(f"{args.events:,} matching events per client, simulated Cilium {args.version}, "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"{'client':<16}{'events/s':>12}{'CPU µs/event':>15}{'peak RSS MiB':>15}{'exact counts':>14}")
    for r in rows:
        print(f"{r['client']:<16}{r['events_per_s']:>12,.0f}{r['cpu_us_per_event']:>15.2f}"
              f"{r['peak_rss_mib']:>15.1f}{'yes' if r['exact'] else 'NO':>14}")
    exp, default = rows
    print(f"ratio exporter/default: throughput x{exp['events_per_s'] / default['events_per_s']:.2f}, "
          f"CPU per event x{default['cpu_us_per_event'] / exp['cpu_us_per_event']:.2f} less")
    if exp.get("lost"):
        print(f"note: the exporter was sent {exp['lost']:.0f} lost events")
    return 0 if all(r["exact"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
