"""Restarts and last termination of the Cilium containers (cilium-agent, cilium-envoy) from the API server:
list, then watch, one watch per component (:mod:`.components`) in its own thread.

Only the components' namespaces are read (a namespaced ``pods list/watch`` permission), with
``labelSelector=<--cilium-pod-selector>`` (``--envoy-pod-selector``) and
``fieldSelector=spec.nodeName=<node>``. A watch that expires (410 Gone, as an HTTP status or an ERROR
event) is answered by a fresh list; a watch the server ends normally is resumed from the last
resourceVersion. The source is up when every component's watch delivered its list.

Memory: the generated ``kubernetes`` client costs 25-45 MiB of RSS on import (every ``kubernetes.*``
import runs ``kubernetes/__init__``, which loads the client, config, dynamic, watch and stream
packages; ``CoreV1Api`` adds ~250 pydantic model modules). In the cluster — where the exporter runs
— this source needs none of it: the in-cluster configuration is three files and two environment
variables, and the two calls it makes are plain JSON over HTTPS (``k8s_http``). The ``kubernetes``
package is imported only to load a ``--kubeconfig`` (outside the cluster: exec plugins, OIDC, client
certificates), via ``kubernetes.config.load_kube_config`` into a ``Configuration``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from cilium_node_exporter.aggregation.containers import AGENT, ContainerPod
from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.config import Config
from cilium_node_exporter.contract import ENVELOPE_ANNOTATION
from cilium_node_exporter.sources import k8s_http
from cilium_node_exporter.sources.components import Component, components
from cilium_node_exporter.sources.k8s_http import Endpoint, SourceError, parse_time
from cilium_node_exporter.units import UnitError, parse_envelope

log = logging.getLogger(__name__)

NAME = "apiserver"
REQUEST_TIMEOUT = 10.0
WATCH_TIMEOUT = 300  # server-side timeoutSeconds of one watch
# One or two pods per list (field and label selectors) and one node object: ~10-200 KB and a few
# thousand JSON values each. The caps bound a decoded document to a few MiB whatever is sent.
MAX_BYTES = 2 * 2**20
MAX_VALUES = 50_000
BACKOFF_MAX = 30.0
# A node runs one pod of each component, two or three during a rollout; a watch that announces more (a broken or
# hostile server) keeps the likeliest ones: the table and each event's cost stay bounded.
MAX_PODS = 16
MAX_LABEL = 128  # pod names are at most 253 characters, reasons a word: longer values are cut


class WatchExpired(Exception):
    """The resourceVersion is too old (410 Gone): re-list."""


def config_endpoint(config: Config) -> Endpoint:
    """The API server from ``--apiserver-address`` and its token and CA files (in a pod: the defaults are
    what ``kubernetes.config.load_incluster_config`` reads)."""
    if not config.apiserver_address:
        raise SourceError("connect", "no API server address: outside a cluster pass --kubeconfig or "
                                     "--apiserver-address (KUBERNETES_SERVICE_HOST/PORT are unset)")
    ctx = k8s_http.tls_context(config.apiserver_ca) if config.apiserver_address.startswith("https://") else None
    auth = k8s_http.bearer_from_file(config.apiserver_token_file) if config.apiserver_token_file else None
    endpoint = Endpoint(config.apiserver_address, ctx, authorization=auth)
    k8s_http.refuse_cleartext_token(endpoint, "--apiserver-address", "--apiserver-token-file")
    return endpoint


def kubeconfig_endpoint(path: str) -> Endpoint:
    """The API server of a kubeconfig's current context, loaded by the ``kubernetes`` package."""
    try:
        from kubernetes.client.configuration import Configuration
        from kubernetes.config.kube_config import load_kube_config
    except ImportError:
        raise SourceError("auth", "--kubeconfig needs the kubernetes client: pip install "
                                  "'cilium-node-exporter[kubeconfig]'") from None

    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh.read(4 * 2**20))
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError("auth", f"cannot read kubeconfig {path}: {getattr(exc, 'strerror', None) or 'not UTF-8'}",
                          absent=isinstance(exc, FileNotFoundError)) from None
    except yaml.YAMLError:
        raise SourceError("auth", f"kubeconfig {path} is not YAML") from None
    if not isinstance(doc, dict):
        raise SourceError("auth", f"kubeconfig {path} is not a kubeconfig (a YAML mapping with clusters, users, "
                                  "contexts)")
    cfg = Configuration()
    try:
        load_kube_config(config_file=path, client_configuration=cfg, persist_config=False)
    except Exception as exc:  # ConfigException, OSError, YAML errors
        raise SourceError("auth", f"cannot load kubeconfig {path}: {exc}") from None
    ctx = None
    if cfg.host.startswith("https://"):
        ctx = k8s_http.tls_context(cfg.ssl_ca_cert or "", insecure=not cfg.verify_ssl,
                                   cert_file=cfg.cert_file or "", key_file=cfg.key_file or "")

    def authorization() -> str | None:
        return cfg.get_api_key_with_prefix("BearerToken", alias="authorization")

    return Endpoint(cfg.host.rstrip("/"), ctx, authorization=authorization)


@dataclass(frozen=True)
class _Candidate:
    pod: ContainerPod
    deleting: bool
    created: float


def parse_pod(obj: Any, container: str) -> _Candidate | None:
    """A container's status from a pod object; None when the pod has no such container."""
    if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
        raise SourceError("protocol", "apiserver: pod object without metadata")
    meta = obj["metadata"]
    spec = obj.get("spec") or {}
    names = {c.get("name") for c in spec.get("containers") or [] if isinstance(c, dict)}
    statuses = [s for s in (obj.get("status") or {}).get("containerStatuses") or []
                if isinstance(s, dict) and s.get("name") == container]
    if container not in names and not statuses:
        return None
    restart_count = reason = finished = None
    if statuses:
        status = statuses[0]
        restart_count = k8s_http.count(status.get("restartCount"), f"apiserver pod: {container} restartCount")
        terminated = (status.get("lastState") or {}).get("terminated") or {}
        if isinstance(terminated, dict):
            reason = terminated.get("reason") if isinstance(terminated.get("reason"), str) else None
            finished = parse_time(terminated.get("finishedAt"))
    pod = ContainerPod(namespace=_label(meta.get("namespace")), name=_label(meta.get("name")),
                       uid=_label(meta.get("uid")), restart_count=restart_count,
                       last_terminated_reason=_label(reason) or None, last_terminated_at=finished)
    return _Candidate(pod, bool(meta.get("deletionTimestamp")), parse_time(meta.get("creationTimestamp")) or 0.0)


def _label(value: Any) -> str:
    """A value for a label: a string, cut at :data:`MAX_LABEL` characters."""
    return "" if value is None else str(value)[:MAX_LABEL]


def _rank(candidate: _Candidate) -> tuple[bool, float]:
    return not candidate.deleting, candidate.created


def keep(pods: dict[str, _Candidate], uid: str, candidate: _Candidate) -> None:
    """Add ``candidate``; beyond :data:`MAX_PODS` the least likely to be chosen goes."""
    pods[uid] = candidate
    if len(pods) > MAX_PODS:
        del pods[min(pods, key=lambda k: _rank(pods[k]))]


def choose(candidates: Mapping[str, _Candidate]) -> ContainerPod | None:
    """The pod to report: not being deleted first, then the newest."""
    if not candidates:
        return None
    return max(candidates.values(), key=_rank).pod


def envelope_from_annotation(node: Any) -> tuple[int, int] | None:
    """The per-node envelope override; None when absent. Raises UnitError when invalid."""
    annotations = ((node or {}).get("metadata") or {}).get("annotations") or {}
    value = annotations.get(ENVELOPE_ANNOTATION)
    if not value:
        return None
    return parse_envelope(str(value))


class ApiServerSource:
    """One :class:`PodWatch` per component, sharing the endpoint and the source's health."""

    name = NAME

    def __init__(self, config: Config, state: ExporterState) -> None:
        self.config = config
        self.state = state
        self.health = state.health[NAME]
        self.watch_timeout = WATCH_TIMEOUT
        self.backoff_max = BACKOFF_MAX
        self.min_interval = 1.0  # between two lists, and two watches (a server that 410s or closes at once)
        self.endpoint: Endpoint | None = None
        self.watches = {c.name: PodWatch(self, c) for c in components(config)}
        self._endpoint_lock = threading.Lock()
        self._listed: dict[str, bool] = {}
        self._annotation_problem: str | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        for watch in self.watches.values():
            watch.start()

    def stop(self) -> None:
        for watch in self.watches.values():
            watch.stop_event.set()
        for watch in self.watches.values():
            watch.stop()

    # --- shared by the watches ------------------------------------------------------------------
    def get_endpoint(self) -> Endpoint:
        with self._endpoint_lock:
            if self.endpoint is None:
                self.endpoint = (kubeconfig_endpoint(self.config.kubeconfig) if self.config.kubeconfig
                                 else config_endpoint(self.config))
            return self.endpoint

    def listed(self, component: str) -> None:
        """A component's list succeeded; the source is up once every component's has."""
        self._listed[component] = True
        if all(self._listed.get(name) for name in self.watches):
            self.health.ok()

    def failed(self, component: str, reason: str, message: str) -> None:
        self._listed[component] = False
        self.health.fail(reason, message)

    def publish(self, component: str, pod: ContainerPod | None) -> None:
        if pod is None:
            self.state.pods.pop(component, None)
        else:
            self.state.pods[component] = pod

    # --- the per-node envelope ------------------------------------------------------------------
    def read_node_envelope(self) -> None:
        if not self.config.envelope_from_node_annotation or self.endpoint is None:
            return
        try:
            node = k8s_http.get_json(self.endpoint, f"/api/v1/nodes/{self.config.node_name}", timeout=REQUEST_TIMEOUT,
                                     max_bytes=MAX_BYTES, max_values=MAX_VALUES, what="apiserver node get")
            override = envelope_from_annotation(node)
        except SourceError as exc:
            self.health.errors[exc.reason] += 1
            hint = " (the service account needs nodes get)" if exc.status == 403 else ""
            self._annotation(f"cannot read the node annotation {ENVELOPE_ANNOTATION}: {exc.message}{hint}; "
                             "keeping the previous envelope")
            return
        except UnitError as exc:
            self._annotation(f"invalid node annotation {ENVELOPE_ANNOTATION}: {exc}; using the configured "
                             "--memory-envelope")
            self.state.envelope_override = None
            return
        if self._annotation_problem is not None:
            log.info("node annotation %s readable again", ENVELOPE_ANNOTATION)
            self._annotation_problem = None
        self.state.envelope_override = override

    def _annotation(self, problem: str) -> None:
        if problem != self._annotation_problem:
            log.error("%s", problem)
            self._annotation_problem = problem


class PodWatch:
    """List+watch of one component's pods on this node in a background thread."""

    def __init__(self, source: ApiServerSource, component: Component) -> None:
        self.source = source
        self.component = component
        self.config = source.config
        self._pods: dict[str, _Candidate] = {}
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._stream: k8s_http.Stream | None = None
        self._last: dict[str, float] = {}

    @property
    def what(self) -> str:
        # The same words for every component: a problem of the API server itself logs one line, not one per
        # watch (a component's own problem names its namespace: the 403 hint).
        return "apiserver pods"

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"apiserver-watch-{self.component.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        stream = self._stream
        if stream is not None:
            stream.close()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    # --- the loop -------------------------------------------------------------------------------
    def _run(self) -> None:
        source = self.source
        backoff = min(1.0, source.backoff_max)
        if not self.config.node_name:
            source.failed(self.component.name, "protocol",
                          "no node name: set --node-name (NODE_NAME from the downward API); without it the pods "
                          "of this node cannot be selected")
            return
        while not self.stop_event.is_set():
            try:
                endpoint = source.get_endpoint()
                self._pace("list")
                version = self._list(endpoint)
                backoff = min(1.0, source.backoff_max)
                while not self.stop_event.is_set():
                    self._pace("watch")
                    version = self._watch(endpoint, version)
                    self._after_watch()
            except WatchExpired:
                log.info("%s: %s watch expired (410 Gone), re-listing", self.what, self.component.name)
            except SourceError as exc:
                if self.stop_event.is_set():
                    return
                self._pods.clear()
                source.publish(self.component.name, None)
                message = exc.message
                if exc.status == 403:
                    message += (f" (the service account needs pods list/watch in namespace "
                                f"{self.component.namespace})")
                source.failed(self.component.name, exc.reason, message)
                self.stop_event.wait(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, source.backoff_max)
            except Exception as exc:  # a document of an unexpected shape, or a bug: never end the loop
                log.debug("%s: unexpected error (%s)", self.what, self.component.name, exc_info=True)
                self._pods.clear()
                source.publish(self.component.name, None)
                source.failed(self.component.name, "protocol", f"unexpected {type(exc).__name__} reading the API "
                                                              f"server: {k8s_http.redact(str(exc))[:200]!r}")
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, source.backoff_max)

    def _after_watch(self) -> None:
        if self.component.name == AGENT:
            self.source.read_node_envelope()

    def _pace(self, what: str) -> None:
        """Wait so that two lists (or two watches) are at least ``min_interval`` apart."""
        last = self._last.get(what)
        now = time.monotonic()
        interval = self.source.min_interval
        if last is not None and now - last < interval:
            self.stop_event.wait(interval - (now - last))
        self._last[what] = time.monotonic()

    def _query(self) -> dict[str, str]:
        query = {"fieldSelector": f"spec.nodeName={self.config.node_name}"}
        if self.component.pod_selector:
            query["labelSelector"] = self.component.pod_selector
        return query

    def _pods_path(self) -> str:
        return f"/api/v1/namespaces/{self.component.namespace}/pods"

    def _list(self, endpoint: Endpoint) -> str:
        doc = k8s_http.get_json(endpoint, self._pods_path(), query=self._query(), timeout=REQUEST_TIMEOUT,
                                max_bytes=MAX_BYTES, max_values=MAX_VALUES, what=f"{self.what} list")
        if not isinstance(doc, dict) or not isinstance(doc.get("items", []), list | type(None)):
            raise SourceError("protocol", f"{self.what} list: not a PodList")
        pods: dict[str, _Candidate] = {}
        for item in doc.get("items") or []:
            candidate = parse_pod(item, self.component.container)
            if candidate is not None:
                keep(pods, candidate.pod.uid, candidate)
        self._pods = pods
        self._publish()
        self.source.listed(self.component.name)
        self._after_watch()
        return str((doc.get("metadata") or {}).get("resourceVersion", ""))

    def _watch(self, endpoint: Endpoint, version: str) -> str:
        """One watch request; returns the last resourceVersion when the server ends it normally."""
        query = {**self._query(), "watch": "true", "allowWatchBookmarks": "true",
                 "timeoutSeconds": str(self.source.watch_timeout)}
        if version:
            query["resourceVersion"] = version
        try:
            stream = k8s_http.Stream(endpoint, self._pods_path(), query=query, connect_timeout=REQUEST_TIMEOUT,
                                     read_timeout=self.source.watch_timeout + 30, what=f"{self.what} watch",
                                     max_line=MAX_BYTES)
        except SourceError as exc:
            if exc.status == 410:
                raise WatchExpired() from None
            raise
        self._stream = stream
        try:
            if self.stop_event.is_set():
                return version
            for line in stream.lines():
                version = self._event(line, version)
        finally:
            self._stream = None
            stream.close()
        return version

    def _event(self, line: bytes, version: str) -> str:
        event = k8s_http.loads_bounded(line, MAX_VALUES, f"{self.what} watch event")
        if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
            raise SourceError("protocol", f"{self.what} watch: event without object")
        kind, obj = event.get("type"), event["object"]
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise WatchExpired()
            raise SourceError("http", f"{self.what} watch: error event {code}: {str(obj.get('message'))[:200]!r}",
                              code if isinstance(code, int) else None)
        new_version = str((obj.get("metadata") or {}).get("resourceVersion", "")) or version
        if kind == "BOOKMARK":
            return new_version
        if kind in ("ADDED", "MODIFIED"):
            candidate = parse_pod(obj, self.component.container)
            uid = _label((obj.get("metadata") or {}).get("uid", ""))
            if candidate is None:
                self._pods.pop(uid, None)
            else:
                keep(self._pods, uid, candidate)
        elif kind == "DELETED":
            self._pods.pop(_label((obj.get("metadata") or {}).get("uid", "")), None)
        else:
            raise SourceError("protocol", f"{self.what} watch: unknown event type {kind!r}")
        self._publish()
        return new_version

    def _publish(self) -> None:
        self.source.publish(self.component.name, choose(self._pods))
