"""One node of a simulated fleet: its scenario played by the simulator's runtime, read by the real exporter's
state, sources' parsers and registry, without a Hubble socket, HTTP fakes or an exporter process.

Per node (200 in one process):

- the scenario runs in :class:`~cilium_node_simulator.scenario.ScenarioRuntime` (phases, memory ramps,
  restarts and OOM kills, the agent's configuration and datapath counters) against :class:`NodeHubble`, which
  stands in for both the node's Hubble server and the exporter's Hubble source: instead of writing flows into a
  ring it counts them with the exporter's own :class:`~cilium_node_exporter.sources.hubble.decode.FlowCounter`,
  applied once per event kind and Cilium release to the real flows of that kind (:func:`occurrence_delta`), and
  adds ``count x`` that result to the node's :class:`ExporterState`;
- the Cilium pods follow the runtime in :class:`~cilium_node_simulator.k8s.NodeModel` (agent and Envoy pods:
  uid, restart count, last termination), read through the exporter's own parsers: the kubelet fake's Summary
  document into ``parse_summary``, the pod objects into the API server source's ``parse_pod``, the agent's
  counters through the agent source's reason and direction mapping, the agent API's ``/v1/config`` and
  ``/v1/healthz`` documents (per release, :mod:`.cilium_settings`) into the settings source's parser;
- the exposition is the exporter's: :func:`cilium_node_exporter.app.build_registry` on the node's state,
  refreshed at scrape time like the real scrape-time sources (1 s cache), so each node's ``/metrics`` is
  the real exporter's exposition of that node.

What differs from a real exporter process is transport only (no gRPC, no HTTP to the fakes): the exporter's
Hubble stream, reconnect and resume logic is exercised by the single-node tests, not here.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections import defaultdict
from dataclasses import replace
from typing import Any

from prometheus_client import CollectorRegistry

from cilium_node_exporter.aggregation.agent import AgentDatapath
from cilium_node_exporter.aggregation.datapath import DatapathCounters
from cilium_node_exporter.aggregation.hubble_status import HubbleStatus
from cilium_node_exporter.aggregation.memory import AgentMemory
from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.api.observer import observer_pb2
from cilium_node_exporter.app import build_registry
from cilium_node_exporter.config import Config, parse_args
from cilium_node_exporter.sources.agent import AgentMetricsSource, direction_label, reason_name
from cilium_node_exporter.sources.agent_memory import memory_from_samples
from cilium_node_exporter.sources.apiserver import parse_pod
from cilium_node_exporter.sources.components import components
from cilium_node_exporter.sources.hubble.decode import FlowCounter
from cilium_node_exporter.sources.hubble.stream import Backoff
from cilium_node_exporter.sources.k8s_http import SourceError
from cilium_node_exporter.sources.kubelet import KubeletSource
from cilium_node_exporter.sources.settings import agent_api
from cilium_node_simulator import kubelet_fake
from cilium_node_simulator.agent_metrics_fake import LB_PRESSURE_INTERVAL, memory_families
from cilium_node_simulator.cilium_settings import AgentConfig
from cilium_node_simulator.clock import REAL, Clock
from cilium_node_simulator.events import LOST_SOURCES, CompiledSpec, EventSpec
from cilium_node_simulator.fleet_scenario import NodePlan, PhaseExtras
from cilium_node_simulator.flows import FlowFactory, FlowTemplate
from cilium_node_simulator.k8s import NodeModel
from cilium_node_simulator.releases import parse_version
from cilium_node_simulator.scenario import ScenarioRuntime
from cilium_node_simulator.truth import GroundTruth

HUBBLE_SOCKET = "/var/run/cilium/hubble.sock"
# Hubble's ring of a default install (hubble-event-buffer-capacity 4095).
RING_CAPACITY = 4095
# The runtime's tick: how often a node's counters advance (Prometheus scrapes every 1-2 s).
TICK = 1.0
_TABLES = ("drops", "verdicts", "l7", "lost", "events", "label_overflow")
# Flags of every node's exporter besides its name, sources and envelope: settings read every 10 s (1m in
# production) so that a compressed rollout shows in cilium_node_cilium_info within a few scenario minutes.
EXPORTER_FLAGS = ("--settings-interval=10s",)


def server_version(version: str) -> str:
    """``ServerStatus.version`` as a real Hubble of that release reports it (``cilium v1.16.5+g<sha>``,
    ``pkg/hubble/build/version.go``: :class:`~cilium_node_simulator.releases.ServerVersion`), the same on
    every node running that release."""
    return parse_version(version).text


# What one occurrence of a compiled event kind adds to the exporter's counters, by occurrence (the flows the
# exporter receives: a kind's variant without silenced or filtered flows is another occurrence). The value keeps
# the occurrence alive so that its id is never reused.
_DELTAS: dict[int, tuple[Any, tuple[tuple[str, Any, int], ...]]] = {}
_DELTAS_LOCK = threading.Lock()


def occurrence_delta(occurrence: tuple[FlowTemplate, ...]) -> tuple[tuple[str, Any, int], ...]:
    """The exporter's counting rules (FlowCounter) applied to one occurrence's real flows, as table deltas."""
    with _DELTAS_LOCK:
        known = _DELTAS.get(id(occurrence))
        if known is not None:
            return known[1]
        scratch = DatapathCounters()
        counter = FlowCounter(scratch)
        for template in occurrence:
            counter.handle(observer_pb2.GetFlowsResponse(flow=template.flow, node_name="fleet").SerializeToString())
        delta = tuple((table, key, n) for table in _TABLES for key, n in getattr(scratch, table).items())
        _DELTAS[id(occurrence)] = (occurrence, delta)
        return delta


@functools.lru_cache(maxsize=1024)
def _compiled(spec: EventSpec, version: str, index: int) -> CompiledSpec:
    return FlowFactory(node="fleet", version=version).compile(spec, index)


def compiled_kind(spec: EventSpec, version: str, index: int = 0) -> CompiledSpec:
    """``spec`` (its rate: the runtime reads it) with the flows of its kind in release ``version``, compiled once
    for every node (one occurrence: the counts do not depend on which workloads an event names)."""
    shared = _compiled(replace(spec, pool=1, rate=0.0), version, index)
    return CompiledSpec(spec, shared.occurrences, shared.truths)


class NodeHubble:
    """The node's Hubble server as the scenario runtime drives it, and the exporter's Hubble source reading it.

    The runtime calls ``compile``/``emit``/``emit_lost`` and the lifecycle methods (``kill`` when the agent
    goes down, ``reset``/``start`` when it comes back, ``restart`` on an agent restart); it keeps the
    datapath's own truth (every packet) and emits only what the agent notifies Hubble of. Each emitted
    occurrence adds the exporter's counts for its flows (:func:`occurrence_delta`) to the node's state while
    Hubble is on (``truth`` keeps what Hubble received). The exporter side, :meth:`refresh`, runs at scrape
    time: a stream breaks when the agent restarts or Hubble goes away (``source_errors_total{reason="connect"}``,
    disconnected time), reconnect attempts follow the exporter's own backoff (``sources.hubble.stream.Backoff``),
    and while the stream is up the state carries the server's status (``seen_flows`` since the server started,
    ring fill, the release's version string).
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
        self._next_attempt = node.clock.monotonic()

    # --- the server side, driven by the runtime ---------------------------------------------------
    def compile(self, spec: EventSpec, index: int = 0) -> CompiledSpec:
        return compiled_kind(spec, self.node.plan.extras[index // 100].version, index)

    def emit(self, items: Any) -> bool:
        if not self.running:
            return False
        counters = self.node.state.datapath
        with self._lock:
            if not self._follow_phase():
                return True  # the datapath counted them (runtime.datapath_truth); Hubble is off
            for compiled, n in items:
                if n <= 0:
                    continue
                occurrence = compiled.occurrences[0]
                self.truth.add(compiled.truths[0], n, [t.event_type for t in occurrence])
                for table, key, k in occurrence_delta(occurrence):
                    getattr(counters, table)[key] += k * n
                self.seen_flows += n * len(occurrence)
        return True

    def emit_lost(self, source: str, count: int, cpu: int | None = None) -> bool:
        if source not in LOST_SOURCES or count <= 0 or not self.running:
            return False
        with self._lock:
            if not self._follow_phase():
                return False
            self.truth.add_lost(LOST_SOURCES[source], count)
            now = self.node.clock.time_ns()
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
        self._next_attempt = self.node.clock.monotonic() + self._backoff.next()

    def refresh(self) -> None:
        """Scrape time: reconnect attempts due by now, then the status the exporter last polled."""
        state = self.node.state
        now = self.node.clock.monotonic()
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

    def __init__(self, config: Config, state: ExporterState, model: NodeModel, clock: Clock = REAL) -> None:
        super().__init__(config, state, clock.monotonic)
        self.model = model
        self.wall = clock.time

    def fetch(self) -> Any:
        return kubelet_fake.summary(self.model, now=self.wall())


class NodeAgentMetrics(AgentMetricsSource):
    """The exporter's agent-metrics source reading the runtime's agent counters without HTTP.

    Like the agent-metrics fake: nothing listens without Cilium's ``prometheus.enabled`` (the source is then
    unavailable), and the connection is closed while the agent container is not running; otherwise Cilium's
    reason strings and directions go through the source's own mapping, and the memory families the fake
    serves (:func:`~cilium_node_simulator.agent_metrics_fake.memory_families`) through the source's reading of
    them, without the text format.
    """

    def __init__(self, config: Config, state: ExporterState, model: NodeModel, runtime: ScenarioRuntime) -> None:
        super().__init__(config, state, runtime.clock.monotonic)
        self.model = model
        self.runtime = runtime
        self._memory_key: tuple[Any, ...] | None = None
        self._memory: AgentMemory | None = None

    def read(self) -> None:
        where = f"agent metrics {self.config.agent_metrics_address}"
        if not self.runtime.cilium.prometheus:
            raise SourceError("connect", f"{where}: connection refused", absent=True)
        if not self.model.agent.sample.running:
            raise SourceError("connect", f"{where}: connection closed without a response")
        totals = self.runtime.agent_datapath()
        dropped: defaultdict[tuple[str, str], float] = defaultdict(float)
        for (text, direction), n in totals["dropped"].items():
            dropped[(reason_name(text), direction_label(direction))] += n
        forwarded: defaultdict[str, float] = defaultdict(float)
        for direction, n in totals["forwarded"].items():
            forwarded[direction_label(direction)] += n
        self.state.agent_datapath = AgentDatapath(dict(dropped), dict(forwarded), dict(totals["map_pressure"]),
                                                  totals.get("ratelimited"))
        started = self.model.agent.container_started
        uptime = (self.runtime.clock.time() - started) * self.runtime.speed
        sample, model = self.runtime.agent_memory(), self.runtime.memory
        key = (id(model), sample, uptime >= LB_PRESSURE_INTERVAL)  # what the parsed families depend on
        if key != self._memory_key:  # one node's memory changes with its ramps only: most scrapes reuse it
            families = memory_families(model, sample, uptime, started)
            self._memory = memory_from_samples((name, labels, value) for name, _, samples in families
                                               for labels, value in samples)
            self._memory_key = key
        self.state.agent_memory = self._memory


class FleetNode:
    """One node: its runtime, Cilium pods, exporter state and registry (see the module docstring)."""

    def __init__(self, name: str, cluster: str, plan: NodePlan, sources: str, memory_envelope: str,
                 speed: float, exporter_flags: tuple[str, ...] = EXPORTER_FLAGS,
                 memory_envelope_mode: str = "static", clock: Clock = REAL, tick: float = TICK) -> None:
        self.name = name
        self.clock = clock
        self.cluster = cluster
        self.plan = plan
        self.config = parse_args([f"--node-name={name}", f"--sources={sources}",
                                  f"--memory-envelope={memory_envelope}",
                                  f"--memory-envelope-mode={memory_envelope_mode}", *exporter_flags], environ={})
        self.state = ExporterState(sources=self.config.sources.names, envelope=self.config.memory_envelope,
                                   optional=self.config.sources.optional,
                                   envelope_mode=self.config.memory_envelope_mode)
        self.state.hubble_gap.clock = clock.monotonic
        self.hubble = NodeHubble(self)
        self.runtime = ScenarioRuntime(plan.scenario, self.hubble, speed=speed, tick=tick, clock=clock)
        self.model = NodeModel(self.runtime, name, namespace=self.config.cilium_namespace, clock=clock.time)
        self.registry: CollectorRegistry = build_registry(self.state)
        self._configs: dict[str, AgentConfig] = {plan.scenario.version: self.runtime.cilium}
        self._settings_read = -float("inf")
        self.state.refreshers.append(self._refresh_pods)
        sources_on = self.config.sources
        if "hubble" in sources_on:
            self.state.refreshers.append(self.hubble.refresh)
        if "kubelet" in sources_on:
            NodeKubelet(self.config, self.state, self.model, clock).start()
        if "agent" in sources_on:
            NodeAgentMetrics(self.config, self.state, self.model, self.runtime).start()
        if "settings" in sources_on:
            self.state.refreshers.append(self._refresh_settings)

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

    def agent_config(self) -> AgentConfig:
        """The agent's configuration for the release the node runs now (the runtime's own for the first)."""
        version = self.extras().version
        if version not in self._configs:
            self._configs[version] = AgentConfig(self.plan.scenario.cilium, version,
                                                 host_memory=self.plan.scenario.host.memory)
        return self._configs[version]

    def _refresh_pods(self) -> None:
        """The API server source: the Cilium pods as the node model shows them (a rollout makes a new agent pod)."""
        self.model.update()
        if self.hubble.take_rollout():
            self.model.agent.version = self.extras().version  # the image the DaemonSet rolled out
            self.model.recreate("agent")
            # what the new release's agent reports of its memory (the maps' scope changes with 1.17)
            self.runtime.memory = dataclasses.replace(self.runtime.memory, release=self.agent_config().release)
        if "apiserver" not in self.config.sources:
            return
        for component in components(self.config):
            pod = self.model.pods.get(component.name)
            candidate = parse_pod(pod.pod(self.model.resource_version), component.container) \
                if pod is not None and not pod.deleted else None
            if candidate is None:
                self.state.pods.pop(component.name, None)
            else:
                self.state.pods[component.name] = candidate.pod
        self.state.health["apiserver"].ok()

    def _refresh_settings(self) -> None:
        """The settings source: the agent API's documents through its parser, every ``--settings-interval``
        (while the agent is down its socket refuses: the source keeps its last reading's absence)."""
        now = self.clock.monotonic()
        if now - self._settings_read < self.config.settings_interval:
            return
        self._settings_read = now
        health = self.state.health["settings"]
        if not self.model.agent.sample.running:
            self.state.settings = None
            health.absent("connect", f"agent API {self.config.agent_api_socket}: connection refused")
            return
        cilium = self.agent_config()
        self.state.settings = agent_api.parse(cilium.config_doc(), cilium.healthz(brief=True))
        health.ok()
