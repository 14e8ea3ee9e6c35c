"""What the simulator's kubelet, Kubernetes API, agent-metrics and agent API (cilium.sock) endpoints share.

The ``simulate`` command calls :func:`add_arguments` while building its parser, and
:func:`cilium_node_simulator.harness.start` once the scenario runtime is running.

:class:`NodeModel` turns the runtime's ``agent_state()`` and ``envoy_state()`` (working set, RSS, limit,
restarts, last termination, running) into what a cluster would show: the cilium-agent pod and, with
external Envoy, the cilium-envoy pod, with uids and resourceVersions, container start and termination
times, watch events. The fakes read it; the agent API fake (``cilium.sock``) and the ConfigMap read
the runtime's agent configuration (``runtime.cilium``, :mod:`.cilium_settings`). Each HTTP fake has a
fault knob (``--kubelet-fault`` etc., or ``POST /-/fault?kind=NAME`` at run time, ``kind=none``
clears it) for fault tests and fire drills.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import socket
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

NAMESPACE = "kube-system"
CONTAINER = "cilium-agent"
POD_LABELS = {"k8s-app": "cilium", "app.kubernetes.io/name": "cilium-agent", "app.kubernetes.io/part-of": "cilium"}
HISTORY = 200  # watch events kept for resuming; older resourceVersions get 410 Gone
MiB = 2**20


def rfc3339(ts: float) -> str:
    """Unix seconds to the API's second-resolution RFC 3339 form."""
    return dt.datetime.fromtimestamp(int(ts), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class PodKind:
    """A Cilium DaemonSet's pod as the Cilium chart renders it."""

    component: str
    container: str
    labels: Mapping[str, str]
    daemonset: str
    image: str  # {version}: the Cilium version


AGENT = PodKind("agent", CONTAINER, POD_LABELS, "cilium", "quay.io/cilium/cilium:v{version}")
# templates/cilium-envoy/daemonset.yaml (1.16b-main): DaemonSet cilium-envoy in Cilium's namespace, pod labels
# k8s-app/name/app.kubernetes.io/name cilium-envoy, part-of cilium; container cilium-envoy.
ENVOY = PodKind("envoy", "cilium-envoy",
                {"k8s-app": "cilium-envoy", "name": "cilium-envoy", "app.kubernetes.io/name": "cilium-envoy",
                 "app.kubernetes.io/part-of": "cilium"}, "cilium-envoy",
                "quay.io/cilium/cilium-envoy:v1.32.6-{version}")


@dataclass(frozen=True)
class AgentSample:
    """What the fakes need from the runtime about one container at one instant."""

    working_set: int
    rss: int
    usage: int
    limit: int | None
    restart_count: int
    last_terminated_reason: str | None
    running: bool


def sample_of(state: Any) -> AgentSample:
    """Normalise the runtime's ``agent_state()`` / ``envoy_state()`` (duck-typed: ints or None, see scenario.py)."""
    working_set = int(getattr(state, "working_set", 0) or 0)
    rss = int(getattr(state, "rss", None) or working_set * 0.8)
    usage = int(getattr(state, "usage", None) or working_set + 24 * MiB)
    limit = getattr(state, "limit", None)
    return AgentSample(working_set, rss, max(usage, working_set), int(limit) if limit else None,
                       int(getattr(state, "restart_count", 0) or 0),
                       getattr(state, "last_terminated_reason", None) or None,
                       bool(getattr(state, "running", True)))


class PodModel:
    """One Cilium pod on the node (agent or Envoy): identity, container start and termination times."""

    def __init__(self, kind: PodKind, sample: AgentSample, node: str, namespace: str, version: str,
                 now: float) -> None:
        self.kind = kind
        self.node = node
        self.namespace = namespace
        self.version = version
        self.sample = sample
        self.deleted = False
        self.new_pod(now)

    def new_pod(self, now: float) -> None:
        self.uid = str(uuid.uuid4())
        self.name = f"{self.kind.daemonset}-{self.uid[:5]}"
        self.created = now
        self.restart_base = self.sample.restart_count
        self.container_started = now
        self.terminated_at: float | None = None
        self.terminated_reason: str | None = None
        self._down = not self.sample.running

    def update(self, new: AgentSample, now: float) -> bool:
        """Follow a new sample; True when the pod status changed."""
        old = self.sample
        self.sample = new
        changed = new.last_terminated_reason != old.last_terminated_reason
        if old.running and not new.running:
            self.terminated_at, self._down, changed = now, True, True
        if new.restart_count > old.restart_count:
            if not self._down:  # restarted between two polls: it terminated just now
                self.terminated_at = now
            self._down, self.container_started, changed = False, now, True
        elif new.running and not old.running:
            self._down, self.container_started, changed = False, now, True
        if new.last_terminated_reason and self.terminated_at is None:
            self.terminated_at = now
        self.terminated_reason = new.last_terminated_reason
        return changed

    @property
    def restart_count(self) -> int:
        return max(0, self.sample.restart_count - self.restart_base)

    def pod(self, resource_version: int) -> dict[str, Any]:
        """The pod as the API server returns it (the fields a client reads, real shapes)."""
        s, container = self.sample, self.kind.container
        status: dict[str, Any] = {"name": container, "restartCount": self.restart_count, "ready": s.running,
                                  "image": self.kind.image.format(version=self.version), "started": s.running,
                                  "lastState": {}, "state": {}}
        if s.running:
            status["state"] = {"running": {"startedAt": rfc3339(self.container_started)}}
        else:
            status["state"] = {"waiting": {"reason": "CrashLoopBackOff",
                                           "message": f"back-off restarting failed container {container}"}}
        if self.terminated_reason and self.terminated_at is not None and (self.restart_count or not s.running):
            status["lastState"] = {"terminated": {
                "exitCode": 137 if self.terminated_reason == "OOMKilled" else 1, "reason": self.terminated_reason,
                "startedAt": rfc3339(self.created), "finishedAt": rfc3339(self.terminated_at),
                "containerID": "containerd://" + self.uid.replace("-", "")}}
        resources: dict[str, Any] = {"requests": {"cpu": "100m", "memory": "10Mi"}}
        if s.limit:
            resources["limits"] = {"memory": str(s.limit)}
        return {
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid,
                         "resourceVersion": str(resource_version),
                         "creationTimestamp": rfc3339(self.created), "labels": dict(self.kind.labels),
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet",
                                              "name": self.kind.daemonset, "uid": _owner_uid(self.kind),
                                              "controller": True}]},
            "spec": {"nodeName": self.node, "containers": [{"name": container, "resources": resources}],
                     "hostNetwork": True, "serviceAccountName": self.kind.daemonset},
            "status": {"phase": "Running", "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
                       "startTime": rfc3339(self.created), "containerStatuses": [status]},
        }


def _owner_uid(kind: PodKind) -> str:
    return "5f0c3f43-0000-4000-8000-00000000000" + ("1" if kind is AGENT else "2")


class NodeModel:
    """The Cilium pods on the simulated node, following the runtime (polled in a thread): the cilium-agent
    pod always, the cilium-envoy pod when the runtime has one (``envoy_state()`` not None: external Envoy).

    Watch events of all pods share one resourceVersion sequence, as the API server's do.
    """

    def __init__(self, runtime: Any, node: str, namespace: str = NAMESPACE, poll: float = 0.1,
                 clock: Callable[[], float] = time.time) -> None:
        self.runtime = runtime
        self.node = node
        self.namespace = namespace
        self._clock = clock
        self._poll = poll
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._events: deque[tuple[int, str, dict[str, Any]]] = deque(maxlen=HISTORY)
        self.resource_version = 1000
        version = str(getattr(getattr(runtime, "scenario", None), "version", "1.19.4")).lstrip("v")
        now = clock()
        self.pods: dict[str, PodModel] = {}
        for kind, state in self._states():
            self.pods[kind.component] = PodModel(kind, sample_of(state), node, namespace, version, now)
        self.created = now
        self._thread = threading.Thread(target=self._run, name="sim-node-pods", daemon=True)

    def _states(self) -> list[tuple[PodKind, Any]]:
        out = [(AGENT, self.runtime.agent_state())]
        envoy_state = getattr(self.runtime, "envoy_state", None)
        envoy = envoy_state() if callable(envoy_state) else None
        if envoy is not None:
            out.append((ENVOY, envoy))
        return out

    @property
    def agent(self) -> PodModel:
        return self.pods[AGENT.component]

    @property
    def envoy(self) -> PodModel | None:
        return self.pods.get(ENVOY.component)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    # --- following the runtime ------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self._poll):
            try:
                self.update()
            except Exception:
                log.exception("node pod model update failed")

    def update(self) -> None:
        """Poll the runtime once; emit MODIFIED for each pod whose status changed."""
        states = self._states()
        with self._cond:
            now = self._clock()
            for kind, state in states:
                pod = self.pods.get(kind.component)
                if pod is not None and pod.update(sample_of(state), now) and not pod.deleted:
                    self._emit("MODIFIED", pod)

    def recreate(self, component: str = "agent") -> None:
        """Delete a pod and create a new one (new uid, restart count from zero)."""
        with self._cond:
            pod = self.pods[component]
            self._emit("DELETED", pod)
            pod.new_pod(self._clock())
            self._emit("ADDED", pod)

    def touch(self, component: str = "agent") -> None:
        """A MODIFIED event without a status change (e.g. to move resourceVersions on)."""
        with self._cond:
            self._emit("MODIFIED", self.pods[component])

    def _emit(self, kind: str, pod: PodModel) -> None:
        self.resource_version += 1
        self._events.append((self.resource_version, kind, pod.pod(self.resource_version)))
        self._cond.notify_all()

    # --- views ----------------------------------------------------------------------------------
    def current(self) -> list[dict[str, Any]]:
        """Every pod as the API server lists it (call with ``_cond`` held for a consistent version)."""
        return [p.pod(self.resource_version) for p in self.pods.values() if not p.deleted]

    def events_after(self, version: int) -> list[tuple[int, str, dict[str, Any]]] | None:
        """Events newer than ``version``; None when ``version`` is older than the kept history (410)."""
        with self._cond:
            if version >= self.resource_version:
                return []
            events = list(self._events)
            if not events or events[0][0] > version + 1:
                return None
            return [e for e in events if e[0] > version]

    def wait_for_change(self, version: int, timeout: float) -> None:
        """Block until the resourceVersion moves past ``version`` (or timeout, or stop)."""
        with self._cond:
            self._cond.wait_for(lambda: self.resource_version > version or self._stop.is_set(), timeout)

    def expire_history(self) -> None:
        """Forget the kept events so that every resumed watch gets 410 Gone (compaction)."""
        with self._cond:
            self._events.clear()
            self.resource_version += 1
            self._cond.notify_all()


# --- TLS ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def make_tls(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "::1", "localhost")) -> TlsFiles:
    """A throw-away CA (trustme) and a serving certificate for ``hosts`` (IP and DNS SANs), written as PEM."""
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="cilium-node-exporter simulator")
    cert = ca.issue_cert(*hosts, common_name="sim-node@kubelet")
    files = TlsFiles(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    ca.cert_pem.write_to_path(str(files.ca))
    cert.cert_chain_pems[0].write_to_path(str(files.cert))
    cert.private_key_pem.write_to_path(str(files.key))
    os.chmod(files.key, 0o600)
    return files


def server_tls_context(files: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(files.cert), str(files.key))
    return ctx


# --- HTTP servers ------------------------------------------------------------------------------
class Tokens:
    """Accepted bearer tokens: fixed ones and/or a file re-read per request (rotation drills)."""

    def __init__(self, tokens: tuple[str, ...] = (), token_file: str = "") -> None:
        self.tokens = set(tokens)
        self.token_file = token_file

    def valid(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        token = header[len("Bearer "):].strip()
        accepted = set(self.tokens)
        if self.token_file:
            with contextlib.suppress(OSError):
                accepted.add(Path(self.token_file).read_text().strip())
        return bool(token) and token in accepted


class FakeServer(ThreadingHTTPServer):
    """A threaded HTTP(S) server on ``host`` (127.0.0.1, or ::1 for IPv6 runs) with a fault knob; TLS
    handshakes happen per thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None,
                 fault: str = "none", host: str = "127.0.0.1") -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.host = host
        super().__init__((host, port), handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self.scheme = "https" if tls is not None else "http"
        self.fault = fault
        self.slow_seconds = 30.0
        self.requests = 0
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def start(self) -> FakeServer:
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), name=type(self).__name__,
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("simulator %s: connection from %s ended with an error", type(self).__name__, client_address,
                  exc_info=True)


class FakeHandler(BaseHTTPRequestHandler):
    """Common request handling: the fault control endpoint, JSON and text answers, faults."""

    protocol_version = "HTTP/1.1"
    server: FakeServer

    def log_message(self, format: str, *args: object) -> None:
        log.debug("simulator http: " + format, *args)

    @property
    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}

    @property
    def route(self) -> str:
        return urlsplit(self.path).path

    def do_POST(self) -> None:
        if self.route == "/-/fault":
            self.server.fault = self.query.get("kind", "none")
            if "seconds" in self.query:
                self.server.slow_seconds = float(self.query["seconds"])
            self.send_body(200, b"fault set\n", "text/plain")
        elif self.route == "/-/action":
            self.action(self.query.get("name", ""))
        else:
            self.send_body(405, b"method not allowed\n", "text/plain")

    def action(self, name: str) -> None:
        self.send_body(404, f"unknown action {name!r}\n".encode(), "text/plain")

    def send_body(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, code: int, doc: Any) -> None:
        self.send_body(code, json.dumps(doc, separators=(",", ":")).encode(), "application/json")

    def send_status(self, code: int, reason: str, message: str) -> None:
        """A Kubernetes ``Status`` object, as the kubelet's and the API server's errors are."""
        self.send_json(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "message": message, "reason": reason, "code": code})

    def common_fault(self) -> bool:
        """Apply the fault shared by all fakes; True when the request has been answered."""
        fault = self.server.fault
        if fault in ("401", "403"):
            code = int(fault)
            self.send_status(code, "Unauthorized" if code == 401 else "Forbidden",
                             "Unauthorized" if code == 401 else "forbidden: simulated RBAC denial")
        elif fault == "500":
            self.send_status(500, "InternalError", "simulated internal error")
        elif fault == "garbage":
            self.send_body(200, b"<html>\x00\xffnot what you expected{{{", "application/json")
        elif fault == "reset":
            self.close_connection = True
            self.connection.close()
        elif fault == "slow":
            time.sleep(self.server.slow_seconds)
            return False
        elif fault == "huge":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            block = b"[" + b"0," * 32767 + b"0]"
            try:
                for _ in range(4096):  # 256 MiB unless the client gives up first
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
            except OSError:
                pass
            self.close_connection = True
        else:
            return False
        return True


# --- the simulate command's flags ---------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the kubelet / API server / agent-metrics flags to the ``simulate`` parser."""
    g = parser.add_argument_group("kubelet, Kubernetes API and agent metrics endpoints")
    g.add_argument("--kubelet-port", type=int, default=None,
                   help="Serve a kubelet Summary API (HTTPS, bearer token) on BIND:PORT (0 = any free port).")
    g.add_argument("--bind-address", default="127.0.0.1", metavar="BIND",
                   help="Loopback address of the kubelet, API and agent-metrics endpoints: 127.0.0.1, or ::1 to "
                        "run them over IPv6 (default 127.0.0.1).")
    g.add_argument("--kubeapi-port", type=int, default=None,
                   help="Serve a minimal Kubernetes API (pods list/watch, nodes get) on BIND:PORT.")
    g.add_argument("--agent-metrics-port", type=int, default=None,
                   help="Serve cilium-agent-like Prometheus metrics (:9962 style) on BIND:PORT (with the "
                        "scenario's cilium: {prometheus: false}, a port nothing listens on).")
    g.add_argument("--agent-api-socket", default="", metavar="PATH",
                   help="Serve the cilium-agent REST API (GET /v1/config, /v1/healthz; cilium.sock) on this unix "
                        "socket, shaped like the scenario's release.")
    g.add_argument("--kubelet-token", action="append", default=[],
                   help="Bearer token the kubelet and the Kubernetes API accept (repeatable; default: generated).")
    g.add_argument("--kubelet-token-file", default="",
                   help="File holding an accepted token, re-read per request (token rotation drills).")
    g.add_argument("--write-client-config", metavar="DIR", default="",
                   help="Write token, ca.crt, kubeconfig and exporter.flags (the exporter's flags) into DIR.")
    g.add_argument("--sim-node-name", default="",
                   help="Node name of the simulated agent pod (default: the scenario's node).")
    g.add_argument("--sim-cilium-namespace", default=NAMESPACE, help="Namespace of the simulated agent pod.")
    g.add_argument("--node-envelope-annotation", default="",
                   help="Value of the node annotation cilium-node-exporter.io/memory-envelope (e.g. 300Mi-800Mi).")
    for name in ("kubelet", "kubeapi", "agent-metrics", "agent-api"):
        g.add_argument(f"--{name}-fault", default="none",
                       help=f"Start the {name} endpoint with a fault: "
                            + ("disabled, " if name == "agent-api" else "401, 403, ")
                            + "500, garbage, slow, huge, reset"
                            + (", no-agent, missing-fields, wrong-shape" if name == "kubelet" else "")
                            + (", gone, gone-http, close-watch" if name == "kubeapi" else "")
                            + " (change at run time: POST /-/fault?kind=...).")
    g.add_argument("--kubeapi-configmap-fault", default="", choices=("", "403", "404"),
                   help="Answer GET of the cilium-config ConfigMap with 403 (no RBAC) or 404.")
