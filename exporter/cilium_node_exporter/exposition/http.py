"""HTTP endpoints: /metrics, /healthz (process alive), /readyz (serving HTTP), / (landing page).

Readiness deliberately ignores source health: a Hubble or kubelet outage must not make the
DaemonSet pod NotReady and stall a rollout; ``cilium_node_exporter_source_up`` reports it.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from cilium_node_exporter import __version__

log = logging.getLogger(__name__)

LANDING = """<!doctype html>
<html><head><title>cilium-node-exporter</title></head>
<body><h1>cilium-node-exporter {version}</h1>
<p>Per-node Cilium drops, policy verdicts, Hubble loss and cilium-agent memory.</p>
<ul><li><a href="/metrics">/metrics</a></li><li><a href="/healthz">/healthz</a></li>
<li><a href="/readyz">/readyz</a></li></ul></body></html>
"""


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # finish in-flight scrapes on shutdown
    block_on_close = True
    allow_reuse_address = True


def make_server(host: str, port: int, registry: CollectorRegistry) -> ThreadingHTTPServer:
    """A threaded HTTP server bound to (host, port) serving ``registry``."""

    class Handler(BaseHTTPRequestHandler):
        server_version = f"cilium-node-exporter/{__version__}"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                try:
                    body = encoder(registry)
                except Exception:
                    log.exception("scrape failed")
                    self._send(500, b"scrape failed\n", "text/plain; charset=utf-8")
                    return
                self._send(200, body, content_type)
            elif path in ("/healthz", "/readyz"):
                self._send(200, b"ok\n", "text/plain; charset=utf-8")
            elif path == "/":
                self._send(200, LANDING.format(version=__version__).encode(), "text/html; charset=utf-8")
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8")

        def do_HEAD(self) -> None:
            self.do_GET()

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("http: " + format, *args)

    return _Server((host or "", port), Handler)


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    """Start ``server.serve_forever`` in a daemon thread."""
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return thread
