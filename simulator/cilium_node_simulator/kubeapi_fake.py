"""A minimal Kubernetes API for the simulator: the agent pod's list and watch, and the node.

Faithful to what the exporter's API server source relies on: ``GET /api/v1/namespaces/NS/pods``
with ``labelSelector`` / ``fieldSelector`` (equality forms; ``spec.nodeName``, ``metadata.name``,
``metadata.namespace``) over the node's Cilium pods (cilium-agent, cilium-envoy with external Envoy),
``watch=true`` streams of JSON lines over chunked HTTP/1.1 from a ``resourceVersion`` with
``timeoutSeconds``, an ``ERROR`` event with a 410 ``Status`` for a version older than the kept history
(what a real API server sends after compaction), BOOKMARK events when asked for,
``GET /api/v1/nodes/NAME`` with the envelope annotation, and
``GET /api/v1/namespaces/NS/configmaps/cilium-config`` as the scenario's release renders it.
Actions (``POST /-/action?name=...``): ``recreate-pod`` (new uid; ``&component=envoy`` for the
cilium-envoy pod), ``expire`` (forget history:
resumed watches get 410), ``close-watches`` (the server ends every open watch).
"""

from __future__ import annotations

import collections
import json
import ssl
import threading
import time
from typing import Any

from cilium_node_simulator.k8s import (
    FakeHandler,
    FakeServer,
    NodeModel,
    TlsFiles,
    Tokens,
    rfc3339,
    server_tls_context,
)

ENVELOPE_ANNOTATION = "cilium-node-exporter.io/memory-envelope"
CILIUM_CONFIG = "cilium-config"
BOOKMARK_EVERY = 5.0


def _selector(text: str) -> list[tuple[str, str, str]] | None:
    """``a=b,c!=d,e`` into (key, op, value) terms; None when a form is not supported here."""
    terms = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "!=" in part:
            k, v = part.split("!=", 1)
            terms.append((k.strip(), "!=", v.strip()))
        elif "=" in part:
            k, v = part.replace("==", "=").split("=", 1)
            terms.append((k.strip(), "=", v.strip()))
        elif part.replace("-", "").replace(".", "").replace("/", "").replace("_", "").isalnum():
            terms.append((part, "exists", ""))
        else:
            return None
    return terms


def _matches(terms: list[tuple[str, str, str]], values: dict[str, str]) -> bool:
    for key, op, value in terms:
        if op == "exists" and key not in values:
            return False
        if op == "=" and values.get(key) != value:
            return False
        if op == "!=" and values.get(key) == value:
            return False
    return True


class _Handler(FakeHandler):
    server: KubeApiFake

    def do_GET(self) -> None:
        server = self.server
        server.requests += 1
        if not server.tokens.valid(self.headers.get("Authorization")):
            self.send_status(401, "Unauthorized", "Unauthorized")
            return
        parts = self.route.strip("/").split("/")
        if server.fault not in ("gone", "gone-http") and self.common_fault():
            return
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 5 and parts[4] == "pods":
            self._pods(parts[3])
        elif parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 6 and parts[4] == "configmaps":
            self._configmap(parts[3], parts[5])
        elif parts[:3] == ["api", "v1", "nodes"] and len(parts) == 4:
            self._node(parts[3])
        elif parts == ["version"]:
            self.send_json(200, {"major": "1", "minor": "35", "gitVersion": "v1.35.0-sim"})
        else:
            self.send_status(404, "NotFound", "the server could not find the requested resource")

    def action(self, name: str) -> None:
        model = self.server.model
        if name == "recreate-pod":
            component = self.query.get("component", "agent")
            if component not in model.pods:
                self.send_body(404, f"no {component} pod\n".encode(), "text/plain")
                return
            model.recreate(component)
        elif name == "expire":
            model.expire_history()
        elif name == "close-watches":
            self.server.close_generation += 1
            model.touch()
        else:
            super().action(name)
            return
        self.send_body(200, f"{name} done\n".encode(), "text/plain")

    # --- pods ----------------------------------------------------------------------------------
    def _selectors(self) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]] | None:
        """The request's label and field selectors (None after answering 400)."""
        labels = _selector(self.query.get("labelSelector", ""))
        fields = _selector(self.query.get("fieldSelector", ""))
        if labels is None or fields is None:
            self.send_status(400, "BadRequest", "unable to parse requirement")
            return None
        supported = {"spec.nodeName", "metadata.name", "metadata.namespace"}
        bad = [k for k, _, _ in fields if k not in supported]
        if bad:
            self.send_status(400, "BadRequest", f'field label not supported: {bad[0]}')
            return None
        return labels, fields

    @staticmethod
    def _selects(selectors: tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]], namespace: str,
                 pod: dict[str, Any]) -> bool:
        meta = pod["metadata"]
        field_values = {"spec.nodeName": pod["spec"]["nodeName"], "metadata.name": meta["name"],
                        "metadata.namespace": meta["namespace"]}
        return (meta["namespace"] == namespace and _matches(selectors[0], meta["labels"])
                and _matches(selectors[1], field_values))

    def _pods(self, namespace: str) -> None:
        selectors = self._selectors()
        if selectors is None:
            return
        if self.query.get("watch") in ("true", "1"):
            self._watch(namespace, selectors)
            return
        self.server.pod_lists[self.query.get("labelSelector", "")] += 1
        model = self.server.model
        with model._cond:
            items = [p for p in model.current() if self._selects(selectors, namespace, p)]
            version = model.resource_version
        self.send_json(200, {"kind": "PodList", "apiVersion": "v1",
                             "metadata": {"resourceVersion": str(version)}, "items": items})

    def _chunk(self, doc: dict[str, Any]) -> None:
        line = json.dumps(doc, separators=(",", ":")).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
        self.wfile.flush()

    def _watch(self, namespace: str,
               selectors: tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]) -> None:
        server, model = self.server, self.server.model
        if server.fault == "gone-http":
            self.send_status(410, "Expired", "too old resource version")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        gone = {"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                            "status": "Failure", "reason": "Expired", "code": 410,
                                            "message": "too old resource version"}}
        try:
            timeout = min(float(self.query.get("timeoutSeconds", "1800")), 1800.0)
            deadline = time.monotonic() + timeout
            bookmarks = self.query.get("allowWatchBookmarks") == "true"
            generation = server.close_generation
            raw = self.query.get("resourceVersion", "")
            if server.fault == "gone":
                self._chunk(gone)
                return
            if raw in ("", "0"):
                with model._cond:
                    version = model.resource_version
                    for pod in model.current():
                        if self._selects(selectors, namespace, pod):
                            self._chunk({"type": "ADDED", "object": pod})
            else:
                version = int(raw)
            last_bookmark = time.monotonic()
            while time.monotonic() < deadline and generation == server.close_generation and not server.stopping:
                if server.fault == "gone-http":  # end the stream: the next watch gets HTTP 410
                    return
                events = model.events_after(version)
                if events is None or server.fault == "gone":
                    self._chunk(gone)
                    return
                for rv, kind, pod in events:
                    version = rv
                    if self._selects(selectors, namespace, pod):
                        self._chunk({"type": kind, "object": pod})
                if bookmarks and time.monotonic() - last_bookmark >= BOOKMARK_EVERY:
                    self._chunk({"type": "BOOKMARK", "object": {
                        "kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": str(version)}}})
                    last_bookmark = time.monotonic()
                model.wait_for_change(version, min(0.25, max(0.0, deadline - time.monotonic())))
        except (OSError, ValueError):
            self.close_connection = True
            return
        finally:
            try:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:
                self.close_connection = True

    # --- the cilium-config ConfigMap ------------------------------------------------------------
    def _configmap(self, namespace: str, name: str) -> None:
        model = self.server.model
        cilium = getattr(model.runtime, "cilium", None)
        if cilium is None or namespace != model.namespace or name != CILIUM_CONFIG or self.server.configmap_fault:
            if self.server.configmap_fault == "403":
                self.send_status(403, "Forbidden", f'configmaps "{name}" is forbidden: User "system:serviceaccount:'
                                                   f'monitoring:cilium-node-exporter" cannot get resource '
                                                   f'"configmaps" in API group "" in the namespace "{namespace}"')
                return
            self.send_status(404, "NotFound", f'configmaps "{name}" not found')
            return
        self.send_json(200, {"kind": "ConfigMap", "apiVersion": "v1",
                             "metadata": {"name": name, "namespace": namespace,
                                          "uid": "0b7a3c2e-0000-4000-8000-0000000000cc",
                                          "resourceVersion": "4711", "creationTimestamp": rfc3339(model.created),
                                          "labels": {"app.kubernetes.io/managed-by": "Helm"},
                                          "annotations": {"meta.helm.sh/release-name": "cilium",
                                                          "meta.helm.sh/release-namespace": namespace}},
                             "data": cilium.configmap_data()})

    # --- nodes ----------------------------------------------------------------------------------
    def _node(self, name: str) -> None:
        model = self.server.model
        if name != model.node:
            self.send_status(404, "NotFound", f'nodes "{name}" not found')
            return
        annotations = {"node.alpha.kubernetes.io/ttl": "0"}
        if self.server.envelope_annotation:
            annotations[ENVELOPE_ANNOTATION] = self.server.envelope_annotation
        self.send_json(200, {"kind": "Node", "apiVersion": "v1",
                             "metadata": {"name": name, "uid": "6c4c3a8e-0000-4000-8000-0000000000aa",
                                          "resourceVersion": str(model.resource_version),
                                          "creationTimestamp": rfc3339(model.created - 86_400),
                                          "labels": {"kubernetes.io/hostname": name}, "annotations": annotations},
                             "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}})


class KubeApiFake(FakeServer):
    """The simulated cluster's API server (``--kubeapi-port``)."""

    def __init__(self, port: int, model: NodeModel, tokens: Tokens, tls: TlsFiles | ssl.SSLContext,
                 fault: str = "none", envelope_annotation: str = "", configmap_fault: str = "",
                 host: str = "127.0.0.1") -> None:
        ctx = tls if isinstance(tls, ssl.SSLContext) else server_tls_context(tls)
        super().__init__(port, _Handler, ctx, fault, host)
        self.model = model
        # pod lists served, by label selector (what an API server's audit log would show)
        self.pod_lists: collections.Counter[str] = collections.Counter()
        self.tokens = tokens
        self.envelope_annotation = envelope_annotation
        self.configmap_fault = configmap_fault  # "403" (no RBAC) or "404" for the ConfigMap only
        self.close_generation = 0
        self.stopping = False
        self._lock = threading.Lock()

    def stop(self) -> None:
        self.stopping = True
        self.model.touch()
        super().stop()
