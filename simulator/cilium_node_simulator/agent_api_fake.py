"""The cilium-agent REST API on a unix socket (``cilium.sock``) for the simulator.

HTTP/1.1 over a unix stream socket, base path ``/v1`` (``api/v1/openapi.yaml``: ``x-schemes: [unix]``,
``basePath: /v1``): ``GET /v1/config`` (``DaemonConfiguration``), ``GET /v1/healthz`` (``StatusResponse``;
the ``brief: true`` header returns the short form), and ``PATCH /v1/config`` with ``{"options": {...}}``
(what ``cilium-dbg config DropNotification=false`` sends: it changes ``spec.options`` only). The documents
are the runtime's agent configuration (``runtime.cilium``, :mod:`.cilium_settings`), shaped per release.

Like the real socket: while the agent container is not running, the socket file stays but nothing listens
(connections are refused); when it runs again the socket is re-created. There is no authentication: any
client that can connect may call every endpoint, writes included (``pkg/api``; the socket's 0660
root:cilium mode is the only guard). ``requests`` records ``(method, path, brief header)`` of every
request, so tests can check that a client only reads, and how. Faults (``fault``): ``disabled`` (403
"administratively disabled", as with ``enable-cilium-api-server-access`` excluding the endpoint,
[v1.16.15 pkg/api/apidisable.go:30]), ``500``, ``garbage``, ``slow``, ``huge``, ``reset``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socketserver
import threading
from typing import Any

from cilium_node_simulator.cilium_settings import RuntimeOptions
from cilium_node_simulator.k8s import FakeHandler, NodeModel

log = logging.getLogger(__name__)

DISABLED = b"This API is administratively disabled. Contact your administrator for more details."
_OPTION_FIELDS = {"DropNotification": "drop_notification", "PolicyVerdictNotification": "policy_verdict_notification",
                  "TraceNotification": "trace_notification"}


class _Handler(FakeHandler):
    server: _UnixServer  # type: ignore[assignment]

    def setup(self) -> None:
        super().setup()
        self.client_address = ("cilium.sock", 0)  # unix peers have no address; the base handler logs one

    def _record(self) -> bool:
        """Count the request; True when a fault answered it."""
        fake = self.server.fake
        fake.requests.append((self.command, self.route, self.headers.get("brief")))
        if fake.fault == "disabled":
            self.send_body(403, DISABLED, "text/plain; charset=utf-8")
            return True
        self.server.fault = fake.fault
        self.server.slow_seconds = fake.slow_seconds
        return self.common_fault()

    def do_GET(self) -> None:
        if self._record():
            return
        cilium = self.server.fake.cilium
        if self.route == "/v1/config":
            self.send_json(200, cilium.config_doc())
        elif self.route == "/v1/healthz":
            brief = self.headers.get("brief", "").lower() == "true"
            self.send_json(200, cilium.healthz(brief))
        else:
            self.send_body(404, b'"path not found"', "application/json")

    def do_PATCH(self) -> None:
        if self._record():
            return
        if self.route != "/v1/config":
            self.send_body(405, b'"method not allowed"', "application/json")
            return
        length = int(self.headers.get("Content-Length", "0") or 0)
        try:
            body = json.loads(self.rfile.read(min(length, 65536)) or b"{}")
            options = body.get("options") or {}
            change = {_OPTION_FIELDS[k]: v == "Enabled" for k, v in options.items() if k in _OPTION_FIELDS}
            if "MonitorAggregationLevel" in options:
                change["monitor_aggregation"] = str(options["MonitorAggregationLevel"]).lower()
            runtime = RuntimeOptions(**change)
            runtime.check()
        except (ValueError, AttributeError, TypeError) as exc:
            self.send_json(400, f"invalid configuration: {exc}")
            return
        self.server.fake.cilium.apply(runtime)
        self.send_body(200, b"", "application/json")

    def do_POST(self) -> None:
        if self.route == "/-/fault":
            self.server.fake.fault = self.query.get("kind", "none")
            self.send_body(200, b"fault set\n", "text/plain")
            return
        self._record()
        self.send_body(405, b'"method not allowed"', "application/json")

    do_PUT = do_DELETE = do_POST


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, fake: AgentApiFake) -> None:
        self.fake = fake
        self.fault = "none"
        self.slow_seconds = 30.0
        super().__init__(path, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("simulator agent API: a connection ended with an error", exc_info=True)


class AgentApiFake:
    """``cilium.sock`` at ``path``, following the agent container's running state."""

    def __init__(self, path: str, model: NodeModel, fault: str = "none", poll: float = 0.1) -> None:
        self.path = path
        self.model = model
        self.fault = fault
        self.slow_seconds = 30.0
        self.requests: list[tuple[str, str, str | None]] = []
        self._poll = poll
        self._server: _UnixServer | None = None
        self._thread: threading.Thread | None = None
        self._follow: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    @property
    def cilium(self) -> Any:
        return self.model.runtime.cilium

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def start(self) -> AgentApiFake:
        if self.model.agent.sample.running:
            self._listen()
        self._follow = threading.Thread(target=self._follow_agent, name="sim-agent-api-follow", daemon=True)
        self._follow.start()
        return self

    def _listen(self) -> None:
        with self._lock:
            if self._server is not None:
                return
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)  # the agent removes a stale socket before listening
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            server = _UnixServer(self.path, self)
            os.chmod(self.path, 0o660)  # SocketFileMode [v1.16.15 pkg/api/const.go:15]
            self._server = server
            self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="sim-agent-api",
                                            daemon=True)
            self._thread.start()

    def _close(self) -> None:
        """Stop listening; the socket file stays (a client now gets ECONNREFUSED)."""
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def _follow_agent(self) -> None:
        while not self._stop.wait(self._poll):
            running = self.model.agent.sample.running
            if running and self._server is None:
                self._listen()
            elif not running and self._server is not None:
                self._close()

    def stop(self) -> None:
        self._stop.set()
        if self._follow is not None:
            self._follow.join(1.0)
        self._close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
