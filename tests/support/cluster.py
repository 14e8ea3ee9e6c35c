"""Test helpers for the kubelet / API server / agent sources: a stub scenario runtime, the three
simulator fakes on free ports with real TLS, and an exporter config pointing at them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.app import build_registry
from cilium_node_exporter.config import Config, parse_args
from cilium_node_simulator.agent_metrics_fake import AgentMetricsFake
from cilium_node_simulator.k8s import AgentPodModel, Tokens, make_tls, write_client_config
from cilium_node_simulator.kubeapi_fake import KubeApiFake
from cilium_node_simulator.kubelet_fake import KubeletFake

MiB = 2**20


@dataclasses.dataclass(frozen=True)
class AgentState:
    working_set: int = 300 * MiB
    rss: int = 250 * MiB
    limit: int | None = 1024 * MiB
    restart_count: int = 0
    last_terminated_reason: str | None = None
    running: bool = True


class StubRuntime:
    """Stands in for the scenario runtime: tests set ``state`` directly."""

    def __init__(self, **kw: Any) -> None:
        self.state = AgentState(**kw)

    def agent_state(self) -> AgentState:
        return self.state

    def set(self, **kw: Any) -> None:
        self.state = dataclasses.replace(self.state, **kw)


class Cluster:
    """The fakes of one simulated node, plus the files the exporter uses to reach them."""

    def __init__(self, tmp: Path, *, kubelet: bool = True, kubeapi: bool = False, agent: bool = False,
                 annotation: str = "", host: str = "127.0.0.1", **state: Any) -> None:
        self.dir = tmp
        self.runtime = StubRuntime(**state)
        self.model = AgentPodModel(self.runtime, "node-a", poll=0.02)
        self.model.start()
        self.tokens = Tokens(("token-1",))
        self.tls = make_tls(tmp / "tls")
        self.servers: list[Any] = []
        urls: dict[str, str] = {}
        self.kubelet = self.kubeapi = self.agent = None
        if kubelet:
            self.kubelet = KubeletFake(0, self.model, self.tokens, self.tls, host=host).start()
            urls["kubelet"] = self.kubelet.url
        if kubeapi:
            self.kubeapi = KubeApiFake(0, self.model, self.tokens, self.tls, envelope_annotation=annotation,
                                       host=host).start()
            urls["kubeapi"] = self.kubeapi.url
        if agent:
            self.agent = AgentMetricsFake(0, self.model, host=host).start()
            urls["agent-metrics"] = self.agent.url + "/metrics"
        self.servers = [s for s in (self.kubelet, self.kubeapi, self.agent) if s is not None]
        write_client_config(tmp / "client", self.tokens, self.tls, urls, "node-a", "kube-system")
        self.flags = (tmp / "client" / "exporter.flags").read_text().split()

    def config(self, *extra: str, **overrides: Any) -> Config:
        sources = ",".join(s for s, on in (("kubelet", self.kubelet), ("apiserver", self.kubeapi),
                                            ("agent", self.agent)) if on)
        cfg = parse_args([*self.flags, f"--sources={sources}", *extra], environ={})
        return dataclasses.replace(cfg, **overrides)

    def state(self, cfg: Config) -> ExporterState:
        return ExporterState(sources=cfg.sources, envelope=cfg.memory_envelope)

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        self.model.stop()


def scrape_state(state: ExporterState) -> dict[str, float]:
    """The exporter's ``cilium_node_*`` samples for ``state``, keyed by their exposition line prefix."""
    text = generate_latest(build_registry(state)).decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("cilium_node_")}
