"""The memory of the Cilium containers (cilium-agent, cilium-envoy) from the node's kubelet Summary API,
read at scrape time.

``GET /stats/summary?only_cpu_and_memory=true`` (RBAC ``nodes/stats`` ``get``) with the pod's
service-account token, re-read from its file on every request so that rotation works. One request
serves every component (:mod:`.components`). Results are cached for one second (:mod:`.scrape_time`)
so that two scrapes within a second cost one call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from cilium_node_exporter.aggregation.containers import ContainerMemory
from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.config import Config
from cilium_node_exporter.sources import k8s_http
from cilium_node_exporter.sources.components import components
from cilium_node_exporter.sources.k8s_http import Endpoint, SourceError, parse_time
from cilium_node_exporter.sources.scrape_time import ScrapeTimeSource

log = logging.getLogger(__name__)

NAME = "kubelet"
SUMMARY_PATH = "/stats/summary"
# A Summary with only_cpu_and_memory is ~1-2 KB and ~30-80 JSON values per pod: 250 pods (the most a
# kubelet runs) stay under 1 MiB and 20,000 values. The caps leave 4-10x headroom and bound the decoded
# document to a few tens of MiB whatever the kubelet (or a host answering in its place) sends.
MAX_BYTES = 4 * 2**20
MAX_VALUES = 200_000
TLS_HINT = ("set --kubelet-ca to the CA that signs the kubelet serving certificate, or, for self-signed "
            "kubelet certificates (kubeadm, kind, minikube), --kubelet-insecure-skip-verify "
            "(chart value kubelet.insecureSkipVerify)")


def _uint(memory: dict[str, Any], key: str) -> int | None:
    return k8s_http.count(memory.get(key), f"kubelet summary: memory.{key}")


def check_node(doc: Any, node_name: str) -> None:
    """Raise :class:`SourceError` (``protocol``) unless the Summary is this node's: a kubelet address that
    reaches another node must not export that node's containers as ours."""
    if not isinstance(doc, dict) or not isinstance(doc.get("pods", []), list | type(None)):
        raise SourceError("protocol", "kubelet summary: not a Summary object (no pods list)")
    node = doc.get("node")
    reported = node.get("nodeName") if isinstance(node, dict) else None
    if reported != node_name:
        raise SourceError("protocol", f"kubelet summary: node.nodeName is {str(reported)[:100]!r}, not this "
                                      f"node {node_name!r} (check --kubelet-address / kubelet.address)")


def machine_memory(doc: Any) -> int | None:
    """The node's total memory from the Summary's node block: ``availableBytes + workingSetBytes``, the root
    cgroup's limit, which cAdvisor sets to the machine's memory (``/proc/meminfo`` MemTotal, what Cilium sizes
    its maps by; equal to ``machine_memory_bytes`` in a real 1.35 scrape). None when either is absent."""
    node = doc.get("node") if isinstance(doc, dict) else None
    memory = node.get("memory") if isinstance(node, dict) else None
    if not isinstance(memory, dict):
        return None
    available, working_set = _uint(memory, "availableBytes"), _uint(memory, "workingSetBytes")
    return available + working_set if available is not None and working_set is not None else None


def parse_summary(doc: Any, namespace: str, container: str,
                  prefer_uid: str | None = None) -> ContainerMemory | None:
    """A container's memory from a Summary document; None when no pod on the node has that container.

    Raises :class:`SourceError` (``protocol``) when the document does not have the Summary shape.
    Among several candidate pods (a rollout), ``prefer_uid`` (the pod the API server reports) wins,
    else the container started last.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("pods", []), list | type(None)):
        raise SourceError("protocol", "kubelet summary: not a Summary object (no pods list)")
    candidates: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = []
    for pod in doc.get("pods") or []:
        if not isinstance(pod, dict):
            raise SourceError("protocol", "kubelet summary: a pods[] entry is not an object")
        ref = pod.get("podRef")
        if not isinstance(ref, dict):
            raise SourceError("protocol", "kubelet summary: a pods[] entry has no podRef")
        if ref.get("namespace") != namespace:
            continue
        containers = pod.get("containers") or []
        if not isinstance(containers, list):
            raise SourceError("protocol", "kubelet summary: a pod's containers is not a list")
        for ctr in containers:
            if isinstance(ctr, dict) and ctr.get("name") == container:
                candidates.append((ref, pod, ctr))
    if not candidates:
        return None
    chosen = next((c for c in candidates if prefer_uid and c[0].get("uid") == prefer_uid), None)
    if chosen is None:
        chosen = max(candidates, key=lambda c: parse_time(c[2].get("startTime")) or 0.0)
    ref, _pod, ctr = chosen
    memory = ctr.get("memory")
    if memory is None:
        memory = {}
    if not isinstance(memory, dict):
        raise SourceError("protocol", "kubelet summary: container memory is not an object")
    working_set = _uint(memory, "workingSetBytes")
    available = _uint(memory, "availableBytes")
    return ContainerMemory(
        pod_namespace=str(ref.get("namespace", "")),
        pod_name=str(ref.get("name", "")),
        pod_uid=str(ref.get("uid", "")),
        working_set=working_set,
        rss=_uint(memory, "rssBytes"),
        usage=_uint(memory, "usageBytes"),
        limit=available + working_set if available is not None and working_set is not None else None,
        start_time=parse_time(ctr.get("startTime")),
    )


class KubeletSource(ScrapeTimeSource):
    """Scrape-time reader of the kubelet Summary API (registers a refresher in ``state``)."""

    name = NAME

    def __init__(self, config: Config, state: ExporterState, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(config, state, clock)
        self.endpoint: Endpoint | None = None

    def start(self) -> None:
        if self.config.kubelet_insecure_skip_verify:
            log.warning("kubelet TLS verification is off (--kubelet-insecure-skip-verify): the kubelet's "
                        "identity is not checked")
        super().start()

    def _endpoint(self) -> Endpoint:
        if self.endpoint is None:
            cfg = self.config
            ctx = None
            if cfg.kubelet_address.startswith("https://"):
                ctx = k8s_http.tls_context(cfg.kubelet_ca, insecure=cfg.kubelet_insecure_skip_verify)
            token_file = cfg.kubelet_token_file
            endpoint = Endpoint(cfg.kubelet_address, ctx,
                                authorization=k8s_http.bearer_from_file(token_file) if token_file else None)
            k8s_http.refuse_cleartext_token(endpoint, "--kubelet-address", "--kubelet-token-file")
            self.endpoint = endpoint
        return self.endpoint

    def read(self) -> None:
        self.publish(self.fetch())

    def fetch(self) -> Any:
        """The Summary document from the kubelet."""
        return k8s_http.get_json(self._endpoint(), SUMMARY_PATH, query={"only_cpu_and_memory": "true"},
                                 timeout=self.timeout(self.config.kubelet_timeout), max_bytes=MAX_BYTES,
                                 max_values=MAX_VALUES, what=f"kubelet {self.config.kubelet_address}")

    def publish(self, doc: Any) -> None:
        """Every component's memory from a Summary document (this node's, checked by name)."""
        if self.config.node_name:
            check_node(doc, self.config.node_name)
        memory: dict[str, ContainerMemory] = {}
        for component in components(self.config):
            pod = self.state.pods.get(component.name)
            found = parse_summary(doc, component.namespace, component.container,
                                  prefer_uid=pod.uid if pod is not None else None)
            if found is not None:
                memory[component.name] = found
        self.state.memory = memory
        self.state.machine_memory = machine_memory(doc)

    def clear(self) -> None:
        self.state.memory = {}
        self.state.machine_memory = None

    def describe(self, exc: SourceError) -> str:
        if exc.reason == "tls":
            return f"{exc.message}; {TLS_HINT}"
        if exc.status == 403:
            return f"{exc.message} (the service account needs RBAC nodes/stats get)"
        return exc.message
