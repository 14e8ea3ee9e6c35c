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
from cilium_node_exporter.exposition.http import MetricsServer
from cilium_node_exporter.exposition.web_auth import BasicAuth, TlsConfig, WebConfigError
from cilium_node_exporter.sources import build_sources

log = logging.getLogger("cilium_node_exporter")


def build_registry(state: ExporterState) -> CollectorRegistry:
    """Registry with the exporter's collector and the standard process/python collectors."""
    from cilium_node_exporter.exposition.agent import agent_families
    from cilium_node_exporter.exposition.envelope import envelope_families
    from cilium_node_exporter.exposition.settings import settings_families

    registry = CollectorRegistry(auto_describe=False, support_collectors_without_names=True)  # for name[]
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(ExporterCollector(state, builders=[agent_families, envelope_families, settings_families]))
    return registry


def run(config: Config, stop_event: threading.Event | None = None) -> int:
    """Serve until SIGTERM/SIGINT (or ``stop_event``); return the process exit code."""
    stop = stop_event or threading.Event()
    state = ExporterState(sources=config.sources.names, envelope=config.memory_envelope,
                          optional=config.sources.optional, envelope_mode=config.memory_envelope_mode)
    registry = build_registry(state)
    host, port = parse_listen(config.listen_address)
    try:
        tls = TlsConfig(config.web_tls_cert_file, config.web_tls_key_file, config.web_tls_client_ca_file) \
            if config.web_tls_cert_file else None
        auth = BasicAuth(config.web_basic_auth_users_file) if config.web_basic_auth_users_file else None
    except WebConfigError as exc:
        log.error("%s", exc)
        return 1
    try:
        server = MetricsServer(host, port, registry, tls=tls, auth=auth)
    except OSError as exc:
        log.error("cannot listen on %s: %s", config.listen_address, exc.strerror or exc)
        return 1
    sources = build_sources(config, state)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        signal.signal(signal.SIGHUP, lambda *_: log.warning(
            "SIGHUP ignored: configuration is read at start only; restart the pod to change it"))
    for source in sources:  # before serving: the first scrape must find every scrape-time source registered
        source.start()
    server.serve()
    bound_host, bound_port = server.address
    scheme = ("https" + (" with client certificates" if config.web_tls_client_ca_file else "")) if tls else "http"
    log.info("cilium-node-exporter %s listening on %s (%s%s, node %r, sources %s)", __version__,
             f"[{bound_host}]:{bound_port}" if ":" in bound_host else f"{bound_host}:{bound_port}",
             scheme, ", basic auth" if auth else "", config.node_name,
             ",".join(f"{s} (if available)" if s in config.sources.optional else s for s in config.sources))
    stop.wait()
    log.info("shutting down")
    server.stop()
    for source in sources:
        source.stop()
    return 0
