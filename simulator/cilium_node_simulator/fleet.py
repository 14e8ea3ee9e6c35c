"""``cilium-node-exporter simulate --fleet N``: N nodes' exporters in one process, scraped by one Prometheus.

Each node is a :class:`~cilium_node_simulator.fleet_node.FleetNode` (its scenario, agent pod and the real
exporter's state and registry). One HTTP server serves them all, one path per node::

    /nodes/<cluster>/<node>/metrics          the node's exporter (the exporter's exposition, its encoders)
    /kube-state-metrics/<cluster>/metrics    the cluster's kube-state-metrics series (ksm_fake)
    /targets                                 Prometheus file_sd / http_sd targets (also --targets-file)
    /-/fleet                                 every node's cluster, phase, version and exporter state (JSON)

One port with a path per node rather than a port per node: Prometheus identifies a target by its whole label
set, and a file_sd target may set ``__metrics_path__`` (and ``job``, ``instance``) itself, so 200 targets on one
address need no relabelling; the process keeps one listening socket and one accept loop instead of 200. A node
whose exporter is ``down`` gets its connection closed without a response (Prometheus records ``up 0``, as for a
crash-looping exporter); an ``absent`` node also leaves the target list (its DaemonSet pod is gone).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client.exposition import choose_encoder

from cilium_node_exporter.config import parse_listen
from cilium_node_simulator import fleet_scenario, ksm_fake
from cilium_node_simulator.clock import REAL, Clock
from cilium_node_simulator.events import SpecError
from cilium_node_simulator.fleet_node import TICK, FleetNode
from cilium_node_simulator.fleet_scenario import FleetScenario, assign, builtin_fleets, load_fleet
from cilium_node_simulator.quantities import seconds_of
from cilium_node_simulator.usage import Parser

log = logging.getLogger("cilium_node_simulator.fleet")

JOB = "cilium-node-exporter"
KSM_JOB = "kube-state-metrics"
EXPORTER_NAMESPACE = "monitoring"
EXPORTER_PORT = 9969
# The rule pack's accelerated preset runs its SLO windows 30 times faster (28d period -> 1344m).
DEFAULT_SPEED = 30.0


@dataclass(frozen=True)
class ClusterSpec:
    """A cluster of the fleet: its name, the fleet scenario it plays and its size."""

    name: str
    scenario: FleetScenario
    nodes: int


class Fleet:
    """Every node of every cluster, and the target list Prometheus scrapes them by."""

    def __init__(self, clusters: Sequence[ClusterSpec], speed: float = DEFAULT_SPEED, seed: int = 1,
                 scrape_interval: str = "", clock: Clock = REAL, tick: float = TICK) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        names = [c.name for c in clusters]
        if len(set(names)) != len(names):
            raise ValueError(f"cluster names must differ: {names}")
        self.clusters = list(clusters)
        self.speed = speed
        self.nodes: dict[tuple[str, str], FleetNode] = {}
        for c in clusters:
            for name, a in assign(c.scenario, c.nodes, speed, seed=seed):
                self.nodes[(c.name, name)] = FleetNode(name, c.name, a.plan, c.scenario.sources,
                                                       c.scenario.memory_envelope, speed,
                                                       memory_envelope_mode=c.scenario.memory_envelope_mode,
                                                       clock=clock, tick=tick)
        self.address = ""
        # Prometheus (2.30+) takes a target's scrape interval and timeout from these labels, SD-provided ones too.
        self.scrape_labels = {"__scrape_interval__": scrape_interval, "__scrape_timeout__": scrape_interval} \
            if scrape_interval else {}

    def __len__(self) -> int:
        return len(self.nodes)

    def start(self) -> Fleet:
        for node in self.nodes.values():
            node.start()
        return self

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()

    def targets(self) -> list[dict[str, Any]]:
        """file_sd targets: every present node's exporter, and each cluster's kube-state-metrics."""
        out: list[dict[str, Any]] = []
        for index, ((cluster, name), node) in enumerate(self.nodes.items()):
            if node.exporter == "absent":
                continue
            out.append({"targets": [self.address], "labels": {
                "__metrics_path__": f"/nodes/{cluster}/{name}/metrics", "job": JOB, "cluster": cluster,
                "node": name, "namespace": EXPORTER_NAMESPACE,
                "instance": f"10.0.{(index >> 8) % 256}.{index % 256}:{EXPORTER_PORT}", **self.scrape_labels}})
        for c in self.clusters:
            out.append({"targets": [self.address], "labels": {
                "__metrics_path__": f"/kube-state-metrics/{c.name}/metrics", "job": KSM_JOB, "cluster": c.name,
                "instance": f"kube-state-metrics.{c.name}:8080", **self.scrape_labels}})
        return out

    def ksm(self, cluster: str) -> str | None:
        nodes = [ksm_fake.NodeView(n.name, i, n.exporter) for i, ((c, _), n) in enumerate(sorted(self.nodes.items()))
                 if c == cluster]
        return ksm_fake.render(nodes) if nodes else None

    def status(self) -> list[dict[str, Any]]:
        """Where every node is in its scenario (for tests and people watching a drill)."""
        out = []
        for (cluster, name), node in sorted(self.nodes.items()):
            extras = node.extras()
            out.append({"cluster": cluster, "node": name, "phase": node.runtime.phase.name,
                        "elapsed": round(node.runtime.elapsed(), 1), "version": extras.version,
                        "hubble": extras.hubble, "exporter": extras.exporter})
        return out


class _Handler(BaseHTTPRequestHandler):
    server: FleetServer
    protocol_version = "HTTP/1.1"  # Prometheus keeps its connections: no new thread per scrape

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http: " + format, *args)

    def do_GET(self) -> None:
        fleet = self.server.fleet
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        if len(parts) == 4 and parts[0] == "nodes" and parts[3] == "metrics":
            node = fleet.nodes.get((parts[1], parts[2]))
            if node is None:
                self._send(404, b"no such node\n", "text/plain; charset=utf-8")
            elif node.exporter != "up":
                self.close_connection = True  # like a dead exporter: the scrape gets no answer
            else:
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, encoder(node.registry), content_type)
        elif len(parts) == 3 and parts[0] == "kube-state-metrics" and parts[2] == "metrics":
            text = fleet.ksm(parts[1])
            if text is None:
                self._send(404, b"no such cluster\n", "text/plain; charset=utf-8")
            else:
                self._send(200, text.encode(), "text/plain; version=0.0.4; charset=utf-8")
        elif parts == ["targets"]:
            self._send(200, json.dumps(fleet.targets()).encode(), "application/json")
        elif parts == ["-", "fleet"]:
            self._send(200, json.dumps(fleet.status()).encode(), "application/json")
        elif parts == ["-", "ready"]:
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
        else:
            self._send(404, b"not found\n", "text/plain; charset=utf-8")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FleetServer(ThreadingHTTPServer):
    """The fleet's HTTP server; keeps ``--targets-file`` in step with the nodes' exporters."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # Prometheus opens a connection per target at once: 5 would drop SYNs

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A scraper closing its connection is routine; log anything else once per request at debug."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            log.debug("fleet: error serving %s", client_address, exc_info=True)

    def __init__(self, fleet: Fleet, host: str, port: int, targets_file: Path | None = None) -> None:
        super().__init__((host, port), _Handler)
        self.fleet = fleet
        fleet.address = f"{host}:{self.server_address[1]}" if ":" not in host else f"[{host}]:{self.server_address[1]}"
        self.targets_file = targets_file
        self._written = ""
        self._stop = threading.Event()
        self._loops: list[threading.Thread] = []

    def start(self) -> FleetServer:
        self.write_targets()
        for target, name in ((self.serve_forever, "fleet-http"), (self._watch_targets, "fleet-targets")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._loops.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        self.shutdown()
        self.server_close()

    def write_targets(self) -> None:
        """Write the target list when it changed (atomically: Prometheus may read it at any time)."""
        if self.targets_file is None:
            return
        text = json.dumps(self.fleet.targets(), indent=1)
        if text != self._written:
            tmp = self.targets_file.with_name(f".{self.targets_file.name}.tmp")
            tmp.write_text(text)
            os.replace(tmp, self.targets_file)
            self._written = text

    def _watch_targets(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.write_targets()
            except OSError as exc:
                log.warning("fleet: cannot write %s: %s", self.targets_file, exc)


# --- command line ------------------------------------------------------------------------------

FORMAT_HELP = (fleet_scenario.__doc__ or "").split("\n\n", 1)[-1]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        command="cilium-node-exporter simulate --fleet",
        prog="cilium-node-exporter simulate",
        description="Play a fleet of simulated nodes in one process: every node's scenario drives the real "
                    "exporter's state and exposition, served on one port with a path per node, plus each "
                    "cluster's kube-state-metrics series. Point Prometheus at the --targets-file (file_sd).",
        epilog=FORMAT_HELP + "\nexample: cilium-node-exporter simulate --fleet 200 --scenario bad-rollout "
                             "--targets-file /tmp/fleet.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--fleet", type=int, required=True, metavar="N",
        help="nodes per cluster (0: each fleet scenario's own size; a --cluster NAME=SCENARIO:N wins)")
    add("--scenario", default="healthy-day", help="built-in fleet scenario or YAML file of the single cluster")
    add("--cluster-name", default="sim", help="name (label cluster) of the single cluster (default sim)")
    add("--cluster", action="append", default=[], metavar="NAME=SCENARIO[:N]",
        help="a cluster playing a fleet scenario (repeat for several; replaces --scenario/--cluster-name)")
    add("--speed", type=float, default=DEFAULT_SPEED,
        help=f"time compression of the timelines, not of the rates (default {DEFAULT_SPEED:g}: the rule pack's "
             "accelerated preset)")
    add("--listen", default="127.0.0.1:0", metavar="HOST:PORT", help="where to serve (port 0: any free port)")
    add("--targets-file", default="", metavar="FILE", help="keep Prometheus file_sd targets in this JSON file")
    add("--seed", type=int, default=1, help="seed of the per-node jitter")
    add("--scrape-interval", default="", metavar="DURATION",
        help="scrape interval (and timeout) to put in the targets' __scrape_interval__ labels (default: the job's)")
    add("--list-scenarios", action="store_true", help="list the built-in fleet scenarios and exit")
    add("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return parser


def _clusters(args: argparse.Namespace) -> list[ClusterSpec]:
    entries = args.cluster or [f"{args.cluster_name}={args.scenario}"]
    out = []
    for entry in entries:
        name, sep, rest = entry.partition("=")
        if not sep or not name or not rest:
            raise SpecError(f"--cluster {entry!r}: use NAME=SCENARIO or NAME=SCENARIO:N")
        scenario_name, colon, count = rest.rpartition(":") if rest.rpartition(":")[2].isdigit() else (rest, "", "")
        scenario = load_fleet(scenario_name)
        nodes = int(count) if colon else (args.fleet or scenario.nodes)
        if nodes < 1:
            raise SpecError(f"--cluster {entry!r}: at least one node")
        out.append(ClusterSpec(name, scenario, nodes))
    return out


def main(argv: Sequence[str]) -> int:
    """Run until SIGTERM/SIGINT; 0 on a clean stop, 2 on bad flags or a bad scenario."""
    try:
        args = build_parser().parse_args(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.list_scenarios:
        for name, path in sorted(builtin_fleets().items()):
            desc = load_fleet(str(path)).description.splitlines()
            print(f"{name:18} {desc[0] if desc else ''}")
        return 0
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        clusters = _clusters(args)
        host, port = parse_listen(args.listen)
        if args.scrape_interval:
            seconds_of(args.scrape_interval)
        fleet = Fleet(clusters, speed=args.speed, seed=args.seed, scrape_interval=args.scrape_interval)
    except (SpecError, ValueError) as exc:
        print(f"cilium-node-exporter simulate --fleet: error: {exc}", file=sys.stderr)
        return 2
    try:
        server = FleetServer(fleet, host or "127.0.0.1", port, Path(args.targets_file) if args.targets_file else None)
    except OSError as exc:
        print(f"cilium-node-exporter simulate --fleet: error: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    # one line per node and phase or source problem is noise at 200 nodes (levels restored on the way out)
    quiet = {"cilium_node_simulator.scenario": logging.WARNING, "cilium_node_exporter": logging.ERROR}
    levels = {name: logging.getLogger(name).level for name in quiet}
    if args.log_level != "debug":
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
    try:
        fleet.start()
        server.start()
        log.info("fleet: %d nodes in %s on http://%s (speed %g)", len(fleet),
                 ", ".join(f"{c.name}={c.scenario.name}:{c.nodes}" for c in clusters), fleet.address, args.speed)
        stop.wait()
    finally:
        server.stop()
        fleet.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    return 0
