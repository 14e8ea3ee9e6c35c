"""Wiring: configuration → sources → aggregation → exposition, and the process lifecycle."""

from __future__ import annotations

import logging
import signal
import threading

from prometheus_client import CollectorRegistry
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from cilium_node_exporter import __version__
from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.config import Config, parse_listen
from cilium_node_exporter.exposition.collector import ExporterCollector
from cilium_node_exporter.exposition.http import make_server, serve_in_thread
from cilium_node_exporter.sources import build_sources

log = logging.getLogger("cilium_node_exporter")


def build_registry(state: ExporterState) -> CollectorRegistry:
    """Registry with the exporter's collector and the standard process/python collectors."""
    from cilium_node_exporter.exposition.agent import agent_families
    from cilium_node_exporter.exposition.settings import settings_families

    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(ExporterCollector(state, builders=[agent_families, settings_families]))
    return registry


def run(config: Config, stop_event: threading.Event | None = None) -> int:
    """Serve until SIGTERM/SIGINT (or ``stop_event``); return the process exit code."""
    stop = stop_event or threading.Event()
    state = ExporterState(sources=config.sources.names, envelope=config.memory_envelope,
                          optional=config.sources.optional)
    registry = build_registry(state)
    host, port = parse_listen(config.listen_address)
    try:
        server = make_server(host, port, registry)
    except OSError as exc:
        log.error("cannot listen on %s: %s", config.listen_address, exc)
        return 1
    sources = build_sources(config, state)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        signal.signal(signal.SIGHUP, lambda *_: log.warning(
            "SIGHUP ignored: configuration is read at start only; restart the pod to change it"))
    serve_in_thread(server)
    log.info("cilium-node-exporter %s listening on %s (node %r, sources %s)", __version__,
             config.listen_address, config.node_name,
             ",".join(f"{s} (if available)" if s in config.sources.optional else s for s in config.sources))
    for source in sources:
        source.start()
    stop.wait()
    log.info("shutting down")
    server.shutdown()
    for source in sources:
        source.stop()
    server.server_close()
    return 0
