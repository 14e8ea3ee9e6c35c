"""Test helpers for the kubelet / API server / agent / settings sources: the simulator's fakes of one node
on free ports with real TLS and ``cilium.sock`` on a real unix socket
(:class:`cilium_node_simulator.harness.NodeFakes`), an agent the test sets directly, and an exporter config
pointing at them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.app import build_registry
from cilium_node_exporter.config import Config, parse_args
from cilium_node_simulator.exporter_process import Metrics
from cilium_node_simulator.harness import AgentState, FixedAgent, MiB, NodeFakes
from cilium_node_simulator.k8s import Tokens

__all__ = ["AgentState", "Cluster", "MiB", "scrape"]


class Cluster(NodeFakes):
    """The fakes of node ``node-a`` (token ``token-1``) in ``tmp``; ``state`` sets the agent (``FixedAgent``:
    also ``version``, ``cilium`` and ``envoy``); ``agent_api`` serves cilium.sock in ``tmp/run``."""

    def __init__(self, tmp: Path, *, kubelet: bool = True, kubeapi: bool = False, agent: bool = False,
                 agent_api: bool = False, annotation: str = "", host: str = "127.0.0.1", **state: Any) -> None:
        self.dir = tmp
        super().__init__(FixedAgent(**state), node="node-a", tls_dir=tmp / "tls", client_dir=tmp / "client",
                         kubelet_port=0 if kubelet else None, kubeapi_port=0 if kubeapi else None,
                         agent_metrics_port=0 if agent else None, tokens=Tokens(("token-1",)),
                         agent_api_socket=str(tmp / "run" / "cilium.sock") if agent_api else None,
                         envelope_annotation=annotation, poll=0.02, host=host)

    def config(self, *extra: str, **overrides: Any) -> Config:
        sources = ",".join(s for s, on in (("kubelet", self.kubelet), ("apiserver", self.kubeapi),
                                            ("agent", self.agent), ("settings", self.agent_api)) if on)
        cfg = parse_args([*self.flags, f"--sources={sources}", *extra], environ={})
        return dataclasses.replace(cfg, **overrides)

    def state(self, cfg: Config) -> ExporterState:
        return ExporterState(sources=cfg.sources.names, envelope=cfg.memory_envelope, optional=cfg.sources.optional)

    def close(self) -> None:
        self.stop()


def scrape(state: ExporterState) -> Metrics:
    """What the exporter would serve for ``state``, parsed as a scrape of the real process is."""
    return Metrics(generate_latest(build_registry(state)).decode())
