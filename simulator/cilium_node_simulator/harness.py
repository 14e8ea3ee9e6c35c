"""The fakes of one simulated node started together, and what the exporter needs to reach them.

:class:`NodeFakes` runs the kubelet Summary API, the Kubernetes API and the agent-metrics endpoint of
one node over real TLS (a throw-away CA, :func:`~cilium_node_simulator.k8s.make_tls`) with bearer
tokens, and the agent REST API on a unix socket (``cilium.sock``), all following one model of the
node's Cilium pods, and writes the client files: ``token``, ``ca.crt``, ``kubeconfig`` and
``exporter.flags`` (the exporter's flags for these fakes, one per line).

``simulate`` starts them from its flags (:func:`start`; the flags are declared by
:func:`cilium_node_simulator.k8s.add_arguments`) with the scenario runtime; tests and benchmarks start
them in-process with :class:`FixedAgent`, an agent (and optionally a cilium-envoy pod) that stays in the
state it was last given, with an agent configuration of a chosen release.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cilium_node_simulator.agent_api_fake import AgentApiFake
from cilium_node_simulator.agent_metrics_fake import AgentMetricsFake, NoAgentMetrics
from cilium_node_simulator.cilium_settings import AgentConfig, CiliumSpec
from cilium_node_simulator.k8s import NAMESPACE, NodeModel, TlsFiles, Tokens, make_tls
from cilium_node_simulator.kubeapi_fake import KubeApiFake
from cilium_node_simulator.kubelet_fake import KubeletFake
from cilium_node_simulator.memory_model import Cluster, Host, MemoryModel, MemorySample

log = logging.getLogger(__name__)

MiB = 2**20


@dataclasses.dataclass(frozen=True)
class AgentState:
    """A Cilium container (cilium-agent, cilium-envoy) as :class:`FixedAgent` reports it."""

    working_set: int = 300 * MiB
    rss: int = 250 * MiB
    limit: int | None = 1024 * MiB
    restart_count: int = 0
    last_terminated_reason: str | None = None
    running: bool = True


class FixedAgent:
    """An agent runtime without a timeline: its state is whatever :meth:`set` last made it; ``envoy`` is the
    cilium-envoy pod's (None: no such pod, Envoy embedded), ``cilium`` the agent's configuration
    (:class:`~cilium_node_simulator.cilium_settings.AgentConfig` of ``version``). Its memory by part follows
    :mod:`.memory_model` on ``host`` for ``cluster``: with ``process`` set (the process's RSS), the working set is
    that plus the maps charged to the container (``owns_maps``: the container created them)."""

    def __init__(self, version: str = "1.19.4", cilium: CiliumSpec | None = None, envoy: AgentState | None = None,
                 host: Host | None = None, cluster: Cluster | None = None, process: int | None = None,
                 **state: Any) -> None:
        self.state = AgentState(**state)
        self.envoy = envoy
        self.version = version
        self.process = process
        self.owns_maps = True
        self.leaked = 0
        self.move(host or Host(), cluster or Cluster(), cilium or CiliumSpec())

    def move(self, host: Host, cluster: Cluster, cilium: CiliumSpec | None = None) -> None:
        """The agent as it would start on ``host`` in ``cluster`` (its configuration and map sizes with them)."""
        spec = cilium or self.cilium.spec
        self.host = host
        self.cilium = AgentConfig(spec, self.version, host_memory=host.memory)
        self.memory = MemoryModel(self.cilium.release, host, cluster, spec.sizing())

    def agent_memory(self) -> MemorySample:
        return self.memory.sample(self.process if self.process is not None else self.state.rss, self.owns_maps,
                                  self.leaked)

    def agent_state(self) -> AgentState:
        if self.process is None:
            return self.state
        sample = self.agent_memory()
        return dataclasses.replace(self.state, working_set=sample.working_set, rss=sample.anon)

    def envoy_state(self) -> AgentState | None:
        return self.envoy

    def set(self, **changes: Any) -> None:
        """Change the state; ``process``, ``owns_maps`` and ``leaked`` change the memory model's inputs."""
        for key in ("process", "owns_maps", "leaked"):
            if key in changes:
                setattr(self, key, changes.pop(key))
        self.state = dataclasses.replace(self.state, **changes)

    def set_envoy(self, **changes: Any) -> None:
        assert self.envoy is not None, "no cilium-envoy pod"
        self.envoy = dataclasses.replace(self.envoy, **changes)


class NodeFakes:
    """The kubelet, Kubernetes API, agent-metrics and agent API fakes of one node on ``host`` (127.0.0.1, or
    ::1 for IPv6 runs); a port (socket) of None leaves one out. Without Cilium's metrics (the runtime's
    ``cilium.prometheus`` false) the agent-metrics port is one nothing listens on.

    ``client_dir`` receives the client files (none when it is None); ``flags`` holds the exporter's
    flags written to ``exporter.flags``. ``servers`` lists the running fakes; :meth:`stop` ends them
    and the pod model.
    """

    def __init__(self, runtime: Any, *, node: str, tls_dir: Path, client_dir: Path | None,
                 namespace: str = NAMESPACE, kubelet_port: int | None = None, kubeapi_port: int | None = None,
                 agent_metrics_port: int | None = None, agent_api_socket: str | None = None,
                 tokens: Tokens | None = None, faults: Mapping[str, str] | None = None,
                 envelope_annotation: str = "", configmap_fault: str = "", hubble_address: str | None = None,
                 poll: float = 0.1, host: str = "127.0.0.1") -> None:
        faults = faults or {}
        self.runtime = runtime
        self.model = NodeModel(runtime, node, namespace, poll=poll)
        self.model.start()
        self.tokens = tokens if tokens is not None else Tokens((uuid.uuid4().hex,))
        self.tls: TlsFiles | None = None
        if kubelet_port is not None or kubeapi_port is not None:
            self.tls = make_tls(tls_dir)
        self.kubelet: KubeletFake | None = None
        self.kubeapi: KubeApiFake | None = None
        self.agent: AgentMetricsFake | NoAgentMetrics | None = None
        self.agent_api: AgentApiFake | None = None
        self.servers: list[Any] = []
        urls: dict[str, str] = {}
        try:
            if kubelet_port is not None:
                assert self.tls is not None
                self.kubelet = KubeletFake(kubelet_port, self.model, self.tokens, self.tls,
                                           fault=faults.get("kubelet", "none"), host=host).start()
                self.servers.append(self.kubelet)
                urls["kubelet"] = self.kubelet.url
            if kubeapi_port is not None:
                assert self.tls is not None
                self.kubeapi = KubeApiFake(kubeapi_port, self.model, self.tokens, self.tls,
                                           fault=faults.get("kubeapi", "none"),
                                           envelope_annotation=envelope_annotation,
                                           configmap_fault=configmap_fault, host=host).start()
                self.servers.append(self.kubeapi)
                urls["kubeapi"] = self.kubeapi.url
            if agent_metrics_port is not None:
                cilium = getattr(runtime, "cilium", None)
                if cilium is not None and not cilium.prometheus:
                    self.agent = NoAgentMetrics().start()
                    log.info("simulator: the agent serves no metrics (cilium: {prometheus: false})")
                else:
                    self.agent = AgentMetricsFake(agent_metrics_port, self.model,
                                                  fault=faults.get("agent-metrics", "none"), host=host).start()
                self.servers.append(self.agent)
                urls["agent-metrics"] = self.agent.url + "/metrics"
            if agent_api_socket:
                self.agent_api = AgentApiFake(os.path.abspath(agent_api_socket), self.model,
                                              fault=faults.get("agent-api", "none"), poll=poll).start()
                self.servers.append(self.agent_api)
                urls["agent-api"] = self.agent_api.url
        except BaseException:
            self.stop()
            raise
        for name, url in urls.items():
            log.info("simulator %s endpoint at %s", name, url)
        self.flags: list[str] = []
        if client_dir is not None:
            self.flags = write_client_config(client_dir, self.tokens, self.tls, urls, node, namespace, hubble_address)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.model.stop()


def start(args: argparse.Namespace, runtime: Any) -> list[Any]:
    """``simulate``'s hook: the endpoints its flags select; handles with ``stop()``."""
    node = args.sim_node_name or getattr(getattr(runtime, "scenario", None), "node", "") or "sim-1"
    out = Path(args.write_client_config) if args.write_client_config else None
    hubble = _hubble_address(args, runtime)
    ports = {"kubelet_port": args.kubelet_port, "kubeapi_port": args.kubeapi_port,
             "agent_metrics_port": args.agent_metrics_port}
    if all(port is None for port in ports.values()) and not args.agent_api_socket:
        if out is not None:
            write_client_config(out, Tokens(), None, {}, node, args.sim_cilium_namespace, hubble)
        return []
    tokens = Tokens(tuple(args.kubelet_token) or (uuid.uuid4().hex,), args.kubelet_token_file)
    tls_dir = out or Path(os.environ.get("TMPDIR", "/tmp")) / f"cne-sim-tls-{os.getpid()}"
    faults = {"kubelet": args.kubelet_fault, "kubeapi": args.kubeapi_fault, "agent-metrics": args.agent_metrics_fault,
              "agent-api": args.agent_api_fault}
    return [NodeFakes(runtime, node=node, tls_dir=tls_dir, client_dir=out, namespace=args.sim_cilium_namespace,
                      tokens=tokens, faults=faults, envelope_annotation=args.node_envelope_annotation,
                      configmap_fault=args.kubeapi_configmap_fault, hubble_address=hubble,
                      agent_api_socket=args.agent_api_socket or None, host=args.bind_address, **ports)]


def _hubble_address(args: argparse.Namespace, runtime: Any) -> str | None:
    """The exporter's ``--hubble-address`` for the simulator's Hubble server (unix socket first)."""
    if getattr(args, "hubble_socket", ""):
        return f"unix://{os.path.abspath(args.hubble_socket)}"
    server = getattr(runtime, "server", None)
    if getattr(args, "hubble_tcp", "") and server is not None and not getattr(server, "tls", None):
        host = server.tcp[0]
        return f"[{host}]:{server.tcp_port}" if ":" in host else f"{host}:{server.tcp_port}"
    return None


def write_client_config(out: Path, tokens: Tokens, tls: TlsFiles | None, urls: dict[str, str], node: str,
                        namespace: str, hubble_address: str | None = None) -> list[str]:
    """Files the exporter needs to talk to the fakes: token, ca.crt, kubeconfig, exporter.flags; the flags."""
    out.mkdir(parents=True, exist_ok=True)
    token = ""
    if "kubelet" in urls or "kubeapi" in urls:
        token = sorted(tokens.tokens)[0] if tokens.tokens else Path(tokens.token_file).read_text().strip()
        (out / "token").write_text(token + "\n")
    flags = [f"--node-name={node}", f"--cilium-namespace={namespace}"]
    if hubble_address:
        flags.append(f"--hubble-address={hubble_address}")
    if tls is not None and tls.ca != out / "ca.crt":
        (out / "ca.crt").write_bytes(tls.ca.read_bytes())
    if "kubelet" in urls:
        flags += [f"--kubelet-address={urls['kubelet']}", f"--kubelet-token-file={out / 'token'}",
                  f"--kubelet-ca={out / 'ca.crt'}"]
    if "kubeapi" in urls:
        kubeconfig = {
            "apiVersion": "v1", "kind": "Config", "current-context": "sim",
            "clusters": [{"name": "sim", "cluster": {"server": urls["kubeapi"],
                                                     "certificate-authority": str(out / "ca.crt")}}],
            "users": [{"name": "sim", "user": {"token": token}}],
            "contexts": [{"name": "sim", "context": {"cluster": "sim", "user": "sim", "namespace": namespace}}],
        }
        (out / "kubeconfig").write_text(json.dumps(kubeconfig, indent=2) + "\n")
        # The exporter's in-cluster path (what runs in a pod), pointed at the fake; `kubeconfig` is for --kubeconfig.
        flags += [f"--apiserver-address={urls['kubeapi']}", f"--apiserver-token-file={out / 'token'}",
                  f"--apiserver-ca={out / 'ca.crt'}"]
    if "agent-metrics" in urls:
        flags.append(f"--agent-metrics-address={urls['agent-metrics']}")
    # Never the host's real /var/run/cilium/cilium.sock: without the fake, a path where nothing is.
    agent_api = urls["agent-api"].removeprefix("unix://") if "agent-api" in urls else str(out / "no-agent-api.sock")
    flags.append(f"--agent-api-socket={agent_api}")
    (out / "exporter.flags").write_text("\n".join(flags) + "\n")
    return flags
