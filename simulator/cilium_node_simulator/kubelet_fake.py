"""A kubelet Summary API for the simulator: ``GET /stats/summary`` over HTTPS with a bearer token.

The payload has the real shape (``k8s.io/kubelet/pkg/apis/stats/v1alpha1``, as in a 1.35 kubelet):
node block, other pods with and without a memory limit, and the Cilium pods (cilium-agent, and
cilium-envoy with external Envoy) whose memory follows the scenario. ``availableBytes`` is present
only under a limit; while a container is not running (between an OOM kill and its restart) its pod
is absent, as a real kubelet does. The node block's ``availableBytes + workingSetBytes`` is the node's
memory (the root cgroup's limit, which cAdvisor sets to MemTotal: the runtime's ``host``, 8 GiB without one).
"""

from __future__ import annotations

import json
import ssl
import time
from typing import Any

from cilium_node_simulator.k8s import (
    FakeHandler,
    FakeServer,
    MiB,
    NodeModel,
    TlsFiles,
    Tokens,
    rfc3339,
    server_tls_context,
)


def _memory(now: float, working_set: int, rss: int, usage: int, limit: int | None,
            omit: tuple[str, ...] = ()) -> dict[str, Any]:
    memory: dict[str, Any] = {"time": rfc3339(now), "usageBytes": usage, "workingSetBytes": working_set,
                              "rssBytes": rss, "pageFaults": 120_411, "majorPageFaults": 12,
                              "psi": {"full": {"total": 0, "avg10": 0, "avg60": 0, "avg300": 0},
                                      "some": {"total": 0, "avg10": 0, "avg60": 0, "avg300": 0}}}
    if limit is not None:
        memory["availableBytes"] = max(0, limit - working_set)
    for key in omit:
        memory.pop(key, None)
    return memory


def _cpu(now: float) -> dict[str, Any]:
    return {"time": rfc3339(now), "usageNanoCores": 31_000_000, "usageCoreNanoSeconds": int(now * 1e6) % 10**13}


def _pod(name: str, namespace: str, uid: str, started: float, containers: list[dict[str, Any]], now: float,
         working_set: int) -> dict[str, Any]:
    return {"podRef": {"name": name, "namespace": namespace, "uid": uid}, "startTime": rfc3339(started),
            "containers": containers, "cpu": _cpu(now),
            "memory": {"time": rfc3339(now), "usageBytes": working_set + 4 * MiB, "workingSetBytes": working_set,
                       "rssBytes": working_set // 2, "pageFaults": 0, "majorPageFaults": 0},
            "swap": {"time": rfc3339(now), "swapUsageBytes": 0}}


def summary(model: NodeModel, fault: str = "none", now: float | None = None) -> Any:
    """The Summary document at ``now`` (``only_cpu_and_memory`` shape)."""
    now = time.time() if now is None else now
    boot = now - 86_400
    pods = [
        _pod("coredns-7d764666f9-x2xbx", "kube-system", "5f1bb5a5-6a36-4f35-a3b2-9c0d6c0d8b11", boot,
             [{"name": "coredns", "startTime": rfc3339(boot), "cpu": _cpu(now),
               "memory": _memory(now, 16_232_448, 12_001_280, 25_321_472, 178_257_920),
               "swap": {"time": rfc3339(now), "swapAvailableBytes": 0, "swapUsageBytes": 0}}], now, 16_232_448),
        _pod("kube-proxy-8xw2k", "kube-system", "0b6f0f5e-2f77-4b9a-9d55-2f0d3c6b7a22", boot,
             [{"name": "kube-proxy", "startTime": rfc3339(boot), "cpu": _cpu(now),
               "memory": _memory(now, 21_000_000, 15_000_000, 30_000_000, None)}], now, 21_000_000),
    ]
    for component, pod in model.pods.items():
        s = pod.sample
        if not s.running or pod.deleted or (fault == "no-agent" and component == "agent"):
            continue
        omit = ("rssBytes", "usageBytes") if fault == "missing-fields" else ()
        container = {"name": pod.kind.container, "startTime": rfc3339(pod.container_started), "cpu": _cpu(now),
                     "memory": _memory(now, s.working_set, s.rss, s.usage, s.limit, omit),
                     "swap": {"time": rfc3339(now), "swapUsageBytes": 0}}
        pods.append(_pod(pod.name, pod.namespace, pod.uid, pod.created, [container], now, s.working_set))
    if fault == "wrong-shape":
        return pods
    total = getattr(getattr(model.runtime, "host", None), "memory", 8 * 2**30)
    return {"node": {"nodeName": model.node, "startTime": rfc3339(boot), "cpu": _cpu(now),
                     "memory": _memory(now, 1_500_000_000, 900_000_000, 2_100_000_000, total),
                     "systemContainers": [
                         {"name": "kubelet", "startTime": rfc3339(boot), "cpu": _cpu(now),
                          "memory": _memory(now, 60_000_000, 40_000_000, 80_000_000, None)},
                         {"name": "pods", "startTime": rfc3339(boot), "cpu": _cpu(now),
                          "memory": _memory(now, 700_000_000, 500_000_000, 900_000_000, total - 2**30)}]},
            "pods": pods}


class _Handler(FakeHandler):
    server: KubeletFake

    def do_GET(self) -> None:
        server = self.server
        server.requests += 1
        if not server.tokens.valid(self.headers.get("Authorization")):
            self.send_body(401, b"Unauthorized", "text/plain; charset=utf-8")  # the kubelet's own 401 body
            return
        if self.common_fault():
            return
        if self.route == "/stats/summary":
            self.send_body(200, json.dumps(summary(server.model, server.fault), indent=2).encode(),
                           "application/json")
        elif self.route == "/healthz":
            self.send_body(200, b"ok", "text/plain; charset=utf-8")
        else:
            self.send_body(404, b"404 page not found\n", "text/plain; charset=utf-8")


class KubeletFake(FakeServer):
    """The simulated node's kubelet (``--kubelet-port``)."""

    def __init__(self, port: int, model: NodeModel, tokens: Tokens, tls: TlsFiles | ssl.SSLContext,
                 fault: str = "none", host: str = "127.0.0.1") -> None:
        ctx = tls if isinstance(tls, ssl.SSLContext) else server_tls_context(tls)
        super().__init__(port, _Handler, ctx, fault, host)
        self.model = model
        self.tokens = tokens
