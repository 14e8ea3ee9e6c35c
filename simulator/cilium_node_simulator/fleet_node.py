"""One node of a simulated fleet: its scenario played by the simulator's runtime, read by the real exporter's
state, sources' parsers and registry, without a Hubble socket, HTTP fakes or an exporter process.

Per node (200 in one process):

- the scenario runs in :class:`~cilium_node_simulator.scenario.ScenarioRuntime` (phases, memory ramps,
  restarts and OOM kills, the agent's datapath counters) against :class:`NodeHubble`, which stands in for
  both the node's Hubble server and the exporter's Hubble source: instead of writing flows into a ring it
  counts them with the exporter's own :class:`~cilium_node_exporter.sources.hubble.decode.FlowCounter`,
  applied once per event kind and Cilium release to a real serialized flow of that kind
  (:func:`counted_spec`), and adds ``count x`` that result to the node's :class:`ExporterState`;
- the agent pod follows the runtime in :class:`~cilium_node_simulator.k8s.AgentPodModel` (pod uid, restart
  count, last termination), read through the exporter's own parsers: the kubelet fake's Summary document
  into ``parse_summary``, the pod object into the API server source's ``parse_pod``, the agent's counters
  through the agent source's reason and direction mapping;
- the exposition is the exporter's: :func:`cilium_node_exporter.app.build_registry` on the node's state,
  refreshed at scrape time like the real scrape-time sources (1 s cache), so each node's ``/metrics`` is
  the real exporter's exposition of that node.

What differs from a real exporter process is transport only (no gRPC, no HTTP to the fakes): the exporter's
Hubble stream, reconnect and resume logic is exercised by the single-node tests, not here.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import defaultdict
from dataclasses import replace
from typing import Any

from prometheus_client import CollectorRegistry

from cilium_node_exporter.aggregation.agent import AgentDatapath
from cilium_node_exporter.aggregation.datapath import DatapathCounters
from cilium_node_exporter.aggregation.hubble_status import HubbleStatus
from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.api.observer import observer_pb2
from cilium_node_exporter.app import build_registry
from cilium_node_exporter.config import Config, parse_args
from cilium_node_exporter.sources.agent import AgentMetricsSource, direction_label, reason_name
from cilium_node_exporter.sources.apiserver import parse_pod
from cilium_node_exporter.sources.hubble.decode import FlowCounter
from cilium_node_exporter.sources.hubble.stream import Backoff
from cilium_node_exporter.sources.k8s_http import SourceError
from cilium_node_exporter.sources.kubelet import KubeletSource, parse_summary
from cilium_node_simulator import kubelet_fake
from cilium_node_simulator.events import LOST_SOURCES, EventSpec
from cilium_node_simulator.fleet_scenario import NodePlan, PhaseExtras
from cilium_node_simulator.flows import FlowFactory
from cilium_node_simulator.k8s import AgentPodModel
from cilium_node_simulator.releases import parse_version
from cilium_node_simulator.scenario import ScenarioRuntime
from cilium_node_simulator.truth import GroundTruth

HUBBLE_SOCKET = "/var/run/cilium/hubble.sock"
# Hubble's ring of a default install (hubble-event-buffer-capacity 4095).
RING_CAPACITY = 4095
# The runtime's tick: how often a node's counters advance (Prometheus scrapes every 1-2 s).
TICK = 1.0
_TABLES = ("drops", "verdicts", "l7", "lost", "events", "label_overflow")


def server_version(version: str) -> str:
    """``ServerStatus.version`` as a real Hubble of that release reports it (``cilium v1.16.5+g<sha>``,
    ``pkg/hubble/build/version.go``: :class:`~cilium_node_simulator.releases.ServerVersion`), the same on
    every node running that release."""
    return parse_version(version).text


class CountedSpec:
    """One event kind of a scenario, counted: what the runtime needs (``spec``) and what one occurrence adds
    to the exporter's counters (``delta``) and to the simulator's ground truth (``truth``, ``flow_types``)."""

    __slots__ = ("delta", "flow_types", "spec", "truth")

    def __init__(self, spec: EventSpec, delta: tuple[tuple[str, Any, int], ...], truth: list[Any],
                 flow_types: list[int]) -> None:
        self.spec = spec
        self.delta = delta
        self.truth = truth
        self.flow_types = flow_types


@functools.lru_cache(maxsize=4096)
def _count_kind(spec: EventSpec, version: str) -> tuple[tuple[tuple[str, Any, int], ...], list[Any], list[int]]:
    factory = FlowFactory(node="fleet", version=version)
    compiled = factory.compile(replace(spec, pool=1, rate=0.0))
    scratch = DatapathCounters()
    counter = FlowCounter(scratch)
    for template in compiled.occurrences[0]:
        counter.handle(observer_pb2.GetFlowsResponse(flow=template.flow, node_name="fleet").SerializeToString())
    delta = tuple((table, key, n) for table in _TABLES for key, n in getattr(scratch, table).items())
    return delta, compiled.truths[0], [t.event_type for t in compiled.occurrences[0]]


def counted_spec(spec: EventSpec, version: str) -> CountedSpec:
    """``spec`` counted by the exporter's rules for a flow of Cilium ``version`` (cached per kind and release)."""
    delta, truth, flow_types = _count_kind(replace(spec, rate=0.0), version)
    return CountedSpec(spec, delta, truth, flow_types)


class NodeHubble:
    """The node's Hubble server as the scenario runtime drives it, and the exporter's Hubble source reading it.

    The runtime calls ``compile``/``emit``/``emit_lost`` and the lifecycle methods (``kill`` when the agent
    goes down, ``reset``/``start`` when it comes back, ``restart`` on an agent restart). The exporter side,
    :meth:`refresh`, runs at scrape time: a stream breaks when the agent restarts or Hubble goes away
    (``source_errors_total{reason="connect"}``, disconnected time), and reconnect attempts follow the
    exporter's own backoff (``sources.hubble.stream.Backoff``); while the stream is up the state carries
    the server's status (``seen_flows`` since the server started, ring fill, the release's version string).
    """

    def __init__(self, node: FleetNode) -> None:
        self.node = node
        self.truth = GroundTruth()
        self.running = True
        self.seen_flows = 0
        self._lock = threading.Lock()
        self._counter = FlowCounter(node.state.datapath)
        self._factory = FlowFactory(node=node.name, version=node.plan.extras[0].version)
        self._hubble_on = True
        self._rollout = False
        self._live = False
        self._ever_live = False
        self._backoff = Backoff(node.config.hubble_backoff_max)
        self._next_attempt = time.monotonic()

    # --- the server side, driven by the runtime ---------------------------------------------------
    def compile(self, spec: EventSpec, index: int = 0) -> CountedSpec:
        return counted_spec(spec, self.node.plan.extras[index // 100].version)

    def emit(self, items: Any) -> bool:
        if not self.running:
            return False
        counters = self.node.state.datapath
        with self._lock:
            on = self._follow_phase()
            for compiled, n in items:
                if n <= 0:
                    continue
                self.truth.add(compiled.truth, n, compiled.flow_types)  # the datapath saw them
                if on:
                    for table, key, k in compiled.delta:
                        getattr(counters, table)[key] += k * n
                    self.seen_flows += n * len(compiled.flow_types)
        return True

    def emit_lost(self, source: str, count: int, cpu: int | None = None) -> bool:
        if source not in LOST_SOURCES or count <= 0 or not self.running:
            return False
        with self._lock:
            if not self._follow_phase():
                return False
            self.truth.add_lost(LOST_SOURCES[source], count)
            now = time.time_ns()
            framed = self._factory.lost_message(LOST_SOURCES[source], count, now, cpu=cpu if cpu is not None else 0,
                                                first_ns=now, last_ns=now)
            self._counter.handle(framed[5:])  # the gRPC frame's 5-byte prefix off
        return True

    def sync(self, timeout: float = 5.0) -> None:
        """Nothing is queued: events are counted when emitted."""

    def kill(self) -> None:
        with self._lock:
            self.running = False
            self._break("Hubble closed the GetFlows stream")

    def reset(self) -> None:
        with self._lock:
            self.seen_flows = 0

    def start(self) -> None:
        with self._lock:
            self.running = True

    def restart(self) -> None:
        with self._lock:
            self.seen_flows = 0
            self._break("GetFlows stream ended: UNAVAILABLE: agent restarting")
            if self.node.extras().rollout:
                self._rollout = True

    def take_rollout(self) -> bool:
        """True once after the runtime entered a phase that rolls the agent (a new pod)."""
        with self._lock:
            rollout, self._rollout = self._rollout, False
        return rollout

    # --- the exporter's side ------------------------------------------------------------------------
    def _follow_phase(self) -> bool:
        """Apply the phase's ``hubble`` switch (called with the lock held); True while Hubble is on."""
        on = self.node.extras().hubble
        if on != self._hubble_on:
            self._hubble_on = on
            if on:
                self.seen_flows = 0  # a new Hubble server
            else:
                self._break("Hubble closed the GetFlows stream")
        return on

    def _break(self, message: str) -> None:
        if not self._live:
            return
        self._live = False
        state = self.node.state
        state.hubble_gap.stream_down()
        state.health["hubble"].fail("connect", message)
        self._backoff.reset()
        self._next_attempt = time.monotonic() + self._backoff.next()

    def refresh(self) -> None:
        """Scrape time: reconnect attempts due by now, then the status the exporter last polled."""
        state = self.node.state
        now = time.monotonic()
        with self._lock:
            available = self._follow_phase() and self.running
            while not self._live and now >= self._next_attempt:
                if available:
                    self._live = True
                    state.hubble_gap.stream_up(reconnect=self._ever_live)
                    self._ever_live = True
                    self._backoff.reset()
                    state.health["hubble"].ok()
                    break
                state.health["hubble"].fail("connect", f"Hubble socket {HUBBLE_SOCKET} does not exist (is the "
                                            "Cilium agent running with Hubble enabled, and /var/run/cilium mounted?)")
                self._next_attempt += self._backoff.next()
            seen = self.seen_flows
        state.hubble_status = (HubbleStatus(seen_flows=seen, num_flows=min(seen, RING_CAPACITY),
                                            max_flows=RING_CAPACITY,
                                            version=server_version(self.node.extras().version))
                               if self._live else None)


class NodeKubelet(KubeletSource):
    """The exporter's kubelet source reading the kubelet fake's Summary document without HTTPS."""

    def __init__(self, config: Config, state: ExporterState, model: AgentPodModel) -> None:
        super().__init__(config, state)
        self.model = model

    def read(self) -> None:
        pod = self.state.agent_pod
        self.state.agent_memory = parse_summary(kubelet_fake.summary(self.model), self.config.cilium_namespace,
                                                self.config.cilium_container,
                                                prefer_uid=pod.uid if pod is not None else None)


class NodeAgentMetrics(AgentMetricsSource):
    """The exporter's agent-metrics source reading the runtime's agent counters without HTTP.

    Like the agent-metrics fake, the endpoint refuses connections while the agent container is not running;
    otherwise Cilium's reason strings and directions go through the source's own mapping.
    """

    def __init__(self, config: Config, state: ExporterState, model: AgentPodModel, runtime: ScenarioRuntime) -> None:
        super().__init__(config, state)
        self.model = model
        self.runtime = runtime

    def read(self) -> None:
        if not self.model.sample.running:
            raise SourceError("connect", f"agent metrics {self.config.agent_metrics_address}: connection refused")
        totals = self.runtime.agent_datapath()
        dropped: defaultdict[tuple[str, str], float] = defaultdict(float)
        for (text, direction), n in totals["dropped"].items():
            dropped[(reason_name(text), direction_label(direction))] += n
        forwarded: defaultdict[str, float] = defaultdict(float)
        for direction, n in totals["forwarded"].items():
            forwarded[direction_label(direction)] += n
        self.state.agent_datapath = AgentDatapath(dict(dropped), dict(forwarded), dict(totals["map_pressure"]))


class FleetNode:
    """One node: its runtime, agent pod, exporter state and registry (see the module docstring)."""

    def __init__(self, name: str, cluster: str, plan: NodePlan, sources: tuple[str, ...], memory_envelope: str,
                 speed: float) -> None:
        self.name = name
        self.cluster = cluster
        self.plan = plan
        self.config = parse_args([f"--node-name={name}", f"--sources={','.join(sources)}",
                                  f"--memory-envelope={memory_envelope}"], environ={})
        self.state = ExporterState(sources=self.config.sources, envelope=self.config.memory_envelope)
        self.hubble = NodeHubble(self)
        self.runtime = ScenarioRuntime(plan.scenario, self.hubble, speed=speed, tick=TICK)
        self.model = AgentPodModel(self.runtime, name, namespace=self.config.cilium_namespace)
        self.registry: CollectorRegistry = build_registry(self.state)
        self.state.refreshers.append(self._refresh_pod)
        if "hubble" in self.config.sources:
            self.state.refreshers.append(self.hubble.refresh)
        if "kubelet" in self.config.sources:
            NodeKubelet(self.config, self.state, self.model).start()
        if "agent" in self.config.sources:
            NodeAgentMetrics(self.config, self.state, self.model, self.runtime).start()

    def extras(self) -> PhaseExtras:
        """The fleet's part of the phase the node is in."""
        return self.plan.extras[self.runtime.phase_index]

    @property
    def exporter(self) -> str:
        """``up``, ``down`` (scrapes fail) or ``absent`` (no pod, no scrape target)."""
        return self.extras().exporter

    def start(self) -> FleetNode:
        self.runtime.start()
        return self

    def stop(self) -> None:
        self.runtime.stop()

    def _refresh_pod(self) -> None:
        """The API server source: the agent pod as the pod model shows it now (a rollout makes a new pod)."""
        self.model.update()
        if self.hubble.take_rollout():
            self.model.recreate()
        if "apiserver" in self.config.sources:
            candidate = parse_pod(self.model.pod(), self.config.cilium_container)
            self.state.agent_pod = candidate.pod if candidate is not None else None
            self.state.health["apiserver"].ok()
