"""Wiring: configuration → sources → aggregation → exposition, and the process lifecycle."""

from __future__ import annotations

import logging
import signal
import threading

from prometheus_client import CollectorRegistry
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from cilium_node_exporter import __version__, liveness
from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.config import Config
from cilium_node_exporter.exposition.collector import ExporterCollector, WebAuthCollector
from cilium_node_exporter.exposition.http import MetricsServer, Serving
from cilium_node_exporter.exposition.web_config import WebConfigError, WebConfigFile
from cilium_node_exporter.sources import build_sources

log = logging.getLogger("cilium_node_exporter")

EXIT_CONFIG = 2  # bad configuration, as for bad flags (README "Configuration")


def build_registry(state: ExporterState, serving: Serving | None = None) -> CollectorRegistry:
    """Registry with the exporter's collector and the standard process/python collectors (and the basic auth
    failures when ``serving`` has basic auth)."""
    from cilium_node_exporter.exposition.agent import agent_families
    from cilium_node_exporter.exposition.envelope import envelope_families
    from cilium_node_exporter.exposition.settings import settings_families

    registry = CollectorRegistry(auto_describe=False, support_collectors_without_names=True)  # for name[]
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(ExporterCollector(state, builders=[agent_families, envelope_families, settings_families]))
    if serving is not None and serving.auth is not None:
        auth = serving.auth
        registry.register(WebAuthCollector(lambda: dict(auth.failures), lambda: serving.users))
    return registry


def unix_sockets(config: Config) -> list[str]:
    """The host sockets the enabled sources connect to (mounted one file each by the chart)."""
    paths = []
    if "hubble" in config.sources and config.hubble_address.startswith("unix://"):
        paths.append(config.hubble_address.removeprefix("unix://"))
    if "settings" in config.sources and "agent-api" in config.settings_from:
        paths.append(config.agent_api_socket)
    return paths


def _where(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run(config: Config, stop_event: threading.Event | None = None) -> int:
    """Serve until SIGTERM/SIGINT (or ``stop_event``); return the process exit code."""
    stop = stop_event or threading.Event()
    state = ExporterState(sources=config.sources.names, envelope=config.memory_envelope,
                          optional=config.sources.optional, envelope_mode=config.memory_envelope_mode)
    try:
        web = WebConfigFile(config.web_config_file) if config.web_config_file else None
    except WebConfigError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    sockets = unix_sockets(config)
    serving = Serving(web, config.scrape_timeout, config.scrape_timeout_offset,
                      liveness=lambda: liveness.problem(sockets))
    registry = build_registry(state, serving)
    try:
        server = MetricsServer(config.listen_addresses, registry, serving, health=config.health_listen_addresses)
    except OSError as exc:
        log.error("cannot listen on %s: %s", config.listen_address, exc.strerror or exc)
        return 1
    sources = build_sources(config, state)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        signal.signal(signal.SIGHUP, lambda *_: log.warning(
            "SIGHUP ignored: configuration is read at start only (the web configuration file is re-read when "
            "it changes); restart the pod to change it"))
    for source in sources:  # before serving: the first scrape must find every scrape-time source registered
        source.start()
    tls = web is not None and web.tls
    protection = ", ".join(p for p, on in (("https", tls), ("basic auth", serving.users)) if on) or "http"
    health = f", probes on {', '.join(map(_where, server.health_addresses))}" if server.health_addresses else ""
    # The sockets listen since MetricsServer bound them; logged before the first answer, not after it.
    log.info("cilium-node-exporter %s listening on %s (%s%s, node %r, sources %s)", __version__,
             ", ".join(map(_where, server.addresses)), protection, health, config.node_name,
             ",".join(f"{s} (if available)" if s in config.sources.optional else s for s in config.sources))
    server.serve()
    stop.wait()
    log.info("shutting down")
    server.stop()
    for source in sources:
        source.stop()
    return 0
