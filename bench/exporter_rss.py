"""RSS of the exporter with every source on, and what imports cost.

Starts the simulator's Hubble server (fed with ~1,000 events/s of drops, verdicts and L7 requests),
kubelet (HTTPS + token), Kubernetes API (pods of the cilium-agent and cilium-envoy, the cilium-config
ConfigMap), agent metrics and agent REST API (``cilium.sock``, settings read every 5 s rather than the
default minute) endpoints, then the real exporter process
against them — once with the in-cluster API server configuration (what
runs in a pod: no ``kubernetes`` import) and once with ``--kubeconfig`` (``kubernetes.config``
loads it) — scrapes it, and prints VmRSS / VmHWM from /proc. Then prints the import-cost table
(fresh process per statement, ``ru_maxrss``).

    .venv/bin/python bench/exporter_rss.py [--scrapes 30]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cilium_node_simulator.exporter_process import Exporter, Metrics
from cilium_node_simulator.harness import AgentState, FixedAgent, MiB, NodeFakes

IMPORTS = [
    ("baseline: json, ssl, http.client", "import json, ssl, http.client"),
    ("prometheus_client", "import prometheus_client"),
    ("exporter core (app, every non-gRPC source)",
     "import cilium_node_exporter.app, cilium_node_exporter.sources.kubelet, "
     "cilium_node_exporter.sources.apiserver, cilium_node_exporter.sources.agent, "
     "cilium_node_exporter.sources.settings"),
    ("grpc + protobuf (hubble source)", "import grpc, google.protobuf"),
    ("kubernetes.config", "import kubernetes.config"),
    ("kubernetes.client (ApiClient, Configuration)", "from kubernetes.client import ApiClient, Configuration"),
    ("kubernetes.client.CoreV1Api", "from kubernetes.client import CoreV1Api"),
    ("kubernetes.watch", "from kubernetes import watch"),
    ("CoreV1Api + watch + config", "from kubernetes.client import CoreV1Api; from kubernetes import watch, config"),
]


def import_cost(stmt: str) -> tuple[float, int, float]:
    # VmHWM (not ru_maxrss, which a child inherits from its parent's peak across fork+exec).
    code = ("import re, sys, time\nt = time.perf_counter()\n" + stmt +
            "\nprint(time.perf_counter() - t, len(sys.modules), "
            "re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), int(out[1]), int(out[2]) / 1024


SOURCES = "hubble,kubelet,apiserver,agent,settings"


class HubbleFeed:
    """The simulator's Hubble server with a steady mix of counted events (about 1,000/s)."""

    def __init__(self, tmp: Path) -> None:
        from cilium_node_simulator.events import EventSpec
        from cilium_node_simulator.hubble_server import HubbleServer

        self.server = HubbleServer(socket_path=str(tmp / "hubble.sock")).start()
        specs = [EventSpec("policy_denied"), EventSpec("drop", reason=155), EventSpec("verdict", action=1, match=2),
                 EventSpec("http", method="GET"), EventSpec("http", method="POST", action=2), EventSpec("dns"),
                 EventSpec("trace")]
        self.mix = [(self.server.compile(spec, i), 15) for i, spec in enumerate(specs)]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.1):
            self.server.emit(self.mix)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.server.stop()


def sources_up(m: Metrics) -> bool:
    return all(m.value("cilium_node_exporter_source_up", source=s) == 1 for s in SOURCES.split(","))


def run_exporter(tmp: Path, name: str, flags: list[str], scrapes: int) -> tuple[float, float, str]:
    """VmRSS and VmHWM (MiB) of the exporter after ``scrapes`` scrapes, and its sources' state."""
    with Exporter(tmp, *flags, f"--sources={SOURCES}", "--log-level=warning", name=name) as exp:
        m = exp.wait_metrics(sources_up, timeout=30, what="every source up")
        for _ in range(scrapes):
            exp.scrape()
            time.sleep(1.05)  # past the 1 s cache: every scrape reads the kubelet and the agent
        up = ", ".join(f"{dict(labels)['source']}={v:g}"
                       for labels, v in sorted(m.series("cilium_node_exporter_source_up").items()))
        return exp.rss_bytes() / MiB, exp.peak_rss_bytes() / MiB, up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        agent = FixedAgent(version="1.18.6", envoy=AgentState(working_set=90 * MiB, limit=256 * MiB))
        node = NodeFakes(agent, node="node-a", tls_dir=tmp / "tls", client_dir=tmp / "client",
                         kubelet_port=0, kubeapi_port=0, agent_metrics_port=0,
                         agent_api_socket=str(tmp / "cilium.sock"))
        hubble = HubbleFeed(tmp)
        try:
            flags = [*node.flags, f"--hubble-address=unix://{tmp}/hubble.sock", "--settings-interval=5s"]
            with_kubeconfig = [f for f in flags if not f.startswith("--apiserver-")] + [
                f"--kubeconfig={tmp / 'client' / 'kubeconfig'}"]
            print(f"exporter process, sources {SOURCES}, ~1,000 Hubble events/s, {args.scrapes} scrapes "
                  "1.05 s apart")
            print(f"{'API server configuration':<40} {'VmRSS MiB':>10} {'VmHWM MiB':>10}  sources")
            for label, run, fl in (("in-cluster (production path)", "in-cluster", flags),
                                   ("--kubeconfig (kubernetes.config)", "kubeconfig", with_kubeconfig)):
                rss, hwm, up = run_exporter(tmp, run, fl, args.scrapes)
                print(f"{label:<40} {rss:>10.1f} {hwm:>10.1f}  {up}")
        finally:
            hubble.close()
            node.stop()
    print()
    print("import cost, fresh process each (python -c), peak RSS (VmHWM)")
    print(f"{'statement':<48} {'wall s':>7} {'modules':>8} {'max RSS MiB':>12}")
    for label, stmt in IMPORTS:
        wall, modules, rss = import_cost(stmt)
        print(f"{label:<48} {wall:>7.2f} {modules:>8} {rss:>12.1f}")


if __name__ == "__main__":
    main()
