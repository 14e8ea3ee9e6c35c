"""``cilium-node-exporter simulate``: a Hubble server (plus kubelet / API fakes) playing a scenario."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from cilium_node_simulator import harness, k8s
from cilium_node_simulator.events import SpecError
from cilium_node_simulator.scenario import (
    FORMAT_HELP,
    ScenarioRuntime,
    list_scenarios,
    load_scenario,
    with_version,
)
from cilium_node_simulator.usage import Parser

DEFAULT_SOCKET = "/tmp/cilium-node-exporter-sim/hubble.sock"
log = logging.getLogger("cilium_node_simulator")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="cilium-node-exporter simulate",
        description="Run a simulated Cilium node: a Hubble Observer gRPC server (unix socket, optional "
                    "TCP+TLS) whose flows, losses and agent state follow a scenario. Use it for demos, "
                    "fire drills of alerts and dashboards, and benchmarks.",
        epilog=FORMAT_HELP + "\nexample: cilium-node-exporter simulate --scenario policy-storm --speed 10",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--scenario", default="steady", help="built-in scenario name or YAML file (default: steady)")
    add("--list-scenarios", action="store_true", help="list the built-in scenarios and exit")
    add("--hubble-socket", default=DEFAULT_SOCKET, help=f"unix socket to serve Hubble on (default {DEFAULT_SOCKET})")
    add("--hubble-tcp", default="", metavar="HOST:PORT", help="also serve Hubble on TCP (port 0: any free port)")
    add("--tls-cert", default="", help="server certificate (PEM) for --hubble-tcp; enables TLS")
    add("--tls-key", default="", help="server key (PEM) for --tls-cert")
    add("--tls-client-ca", default="", help="CA bundle for client certificates: enables mTLS")
    add("--version", default="", dest="hubble_version", metavar="X.Y.Z",
        help="emulated Cilium release, 1.14.x to 1.19.x (overrides the scenario's)")
    add("--speed", type=float, default=1.0, help="time compression factor (10: a 5m phase takes 30s)")
    add("--bench", type=int, default=0, metavar="N",
        help="benchmark mode: once a follow GetFlows stream is open, send exactly N matching flows "
             "(drops, verdicts, L7, plus traces a whitelist filters out) as fast as the reader takes "
             "them, then idle; the scenario's rates are not played")
    add("--ring-capacity", type=int, default=0, help="override the scenario's ring buffer capacity")
    add("--keepalive-min-time", type=float, default=300.0,
        help="seconds between client pings before the server counts a strike (grpc-go default 300)")
    add("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    add("--fleet", type=int, metavar="N", help="play N nodes' exporters in one process for one Prometheus (a "
        "different set of flags: simulate --fleet 1 --help)")
    k8s.add_arguments(parser)
    return parser


def _fail(message: str) -> int:
    print(f"cilium-node-exporter simulate: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run until Ctrl-C / SIGTERM; 0 on a clean stop, 2 on bad flags or a bad scenario file."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a == "--fleet" or a.startswith("--fleet=") for a in argv):
        from cilium_node_simulator.fleet import main as fleet_main

        return fleet_main(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.list_scenarios:
        for name, desc in list_scenarios():
            print(f"{name:18} {desc}")
        return 0
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        scenario = with_version(load_scenario(args.scenario), args.hubble_version or None)
    except SpecError as exc:  # ScenarioError included
        return _fail(str(exc))
    if args.speed <= 0:
        return _fail("--speed must be positive")
    if bool(args.tls_cert) != bool(args.tls_key):
        return _fail("--tls-cert and --tls-key must be given together")
    if (args.tls_cert or args.tls_client_ca) and not args.hubble_tcp:
        return _fail("--tls-cert/--tls-client-ca need --hubble-tcp")

    from cilium_node_simulator.hubble_server import HubbleServer, TLSConfig

    tls = TLSConfig(args.tls_cert, args.tls_key, args.tls_client_ca or None) if args.tls_cert else None
    try:
        server = HubbleServer(
            socket_path=args.hubble_socket or None, tcp=args.hubble_tcp or None, tls=tls,
            version=scenario.version, ring_capacity=args.ring_capacity or scenario.ring_capacity,
            node=scenario.node, seed=scenario.seed, keepalive_min_time=args.keepalive_min_time)
        server.start()
    except (OSError, ValueError) as exc:
        return _fail(f"cannot start the Hubble server: {exc}")
    runtime = ScenarioRuntime(scenario, server, speed=args.speed, emit_events=not args.bench).start()
    handles: list[Any] = []
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        handles = harness.start(args, runtime)
        log.info("simulator: scenario %r (%s), Hubble %s on %s, speed %g", scenario.name, scenario.source,
                 server.version.text, ", ".join(server.addresses()), args.speed)
        if args.bench:
            done = server.bench(args.bench)
            log.info("simulator: benchmark of %d flows waits for a follow GetFlows stream", args.bench)
            while not stop.is_set() and not done.wait(0.2):
                pass
            if done.is_set():
                st = server.bench_stats()
                secs = (st["finished"] or 0) - (st["started"] or 0)
                log.info("simulator: benchmark produced %d flows in %.2f s", st["produced"], secs)
        stop.wait()
    except (OSError, ValueError) as exc:
        return _fail(str(exc))
    finally:
        for handle in handles:
            try:
                handle.stop()
            except Exception as exc:  # pragma: no cover - best effort on shutdown
                log.warning("simulator: error stopping %r: %s", handle, exc)
        runtime.stop()
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
