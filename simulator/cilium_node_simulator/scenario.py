"""Scenario files (YAML) and the runtime that plays them against a :class:`HubbleServer`.

A scenario is a timeline of phases. Each phase lasts ``duration`` (simulated time) and produces
events at ``rates`` (per simulated second), LostEvents (``lost``), optionally restarts the Hubble
server at its start, and sets the cilium-agent's memory and lifecycle (``agent``), which the
kubelet / API-server fakes (``k8s.py``) serve from :meth:`ScenarioRuntime.agent_state`, and the
cilium-envoy pod's (``envoy``, :meth:`ScenarioRuntime.envoy_state`). The agent's configuration
(``cilium``: :mod:`.cilium_settings`) decides which of the produced events reach Hubble: switched-off
notifications and the 1.17+ BPF events rate limiter remove them in the datapath (the agent's own
packet counters still count the packets), ``hubble-monitor-events`` in Hubble.
``speed`` compresses time: at speed 10 a 5m phase takes 30 s and its rates are 10x per real second.
The file format is documented in :data:`FORMAT_HELP` (shown by ``simulate --help``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from cilium_node_simulator.cilium_enums import drop_reason_text
from cilium_node_simulator.cilium_settings import (
    PERF_EVENT_TYPES,
    AgentConfig,
    CiliumSpec,
    RuntimeOptions,
    SettingsError,
)
from cilium_node_simulator.clock import REAL, Clock
from cilium_node_simulator.events import LOST_SOURCES, CompiledSpec, EventSpec, SpecError
from cilium_node_simulator.memory_model import Cluster, Host, MemoryModel, MemorySample
from cilium_node_simulator.quantities import QuantityError, bytes_of, seconds_of
from cilium_node_simulator.releases import parse_version
from cilium_node_simulator.ring import check_capacity
from cilium_node_simulator.truth import GroundTruth, flow_truth

log = logging.getLogger(__name__)

FORMAT_HELP = """\
scenario file format (YAML; built-in files: --list-scenarios):

  name: my-drill                 # required
  description: what it shows     # optional
  node: sim-1                    # node name in flows (default sim-1)
  version: 1.19.4                # emulated Cilium release 1.14..1.19 (X.Y.Z; --version overrides)
  ring_capacity: 4095            # Hubble ring buffer, 2^n-1
  seed: 1                        # flow generation is deterministic per seed
  loop: false                    # true: repeat the phases forever
  repeat: 1                      # or: play the phases this many times
  agent: {working_set: 300Mi, limit: null}   # initial cilium-agent state (optional)
  host: {memory: 64Gi, kernel: "6.8"}   # the node: MemTotal (Cilium sizes its BPF maps by it) and kernel
  cluster: {pods: 6000, nodes: 200, services: 300, policies: 100, identities: 900, endpoints: 30}
                                 # what the agent holds state for (its metrics report it)
  envoy: {working_set: 60Mi, limit: 256Mi}     # initial cilium-envoy state (external Envoy only)
  cilium:                        # the agent's startup configuration (cilium-config), all optional
    envoy: external              # external (own DaemonSet: 1.16+ default) | embedded (1.14/1.15
                                 # default) | none (l7-proxy off)
    prometheus: true             # false: no agent metrics endpoint (Cilium's prometheus.enabled)
    drop_events: true            # bpf-events-drop-enabled (1.16+); also policy_verdict_events,
                                 # trace_events
    monitor_aggregation: medium  # none | lowest | low | medium | max
    hubble_monitor_events: []    # e.g. [drop, policy-verdict]; L7 passes only with "agent"
    rate_limit: 0                # bpf-events-default-rate-limit, events/s (1.17+; with burst_limit)
    burst_limit: 0
    kube_proxy_replacement: "false"
    map_dynamic_size_ratio: 0.0025   # bpf-map-dynamic-size-ratio; ipv6: false; ct_global_tcp_max: 0
  phases:
    - name: baseline
      duration: 5m               # 30s, 5m, 1h30m or seconds
      server_restart: false      # restart the Hubble server (ring, seen_flows) at phase start
      rates:                     # events per simulated second
        - {type: trace, rate: 500}
        - {type: verdict, action: forwarded, direction: egress, match: l3-l4, rate: 20}
        - {type: policy_denied, direction: ingress, source: default/xwing, rate: 2}
        - {type: drop, reason: CT_MAP_INSERTION_FAILED, direction: egress, rate: 1}
        - {type: http, method: POST, action: dropped, direction: ingress, rate: 5}
      lost:
        - {source: perf_event_ring_buffer, rate: 100, cpu: 1}   # per second ...
        - {source: observer_events_queue, count: 5000}          # ... or once at phase start
      agent:                     # omitted keys keep the previous phase's end state
        working_set: {from: 300Mi, to: 600Mi}   # linear ramp over the phase (or a fixed 300Mi)
        rss: 250Mi               # default: 85% of working_set (when working_set is set here)
        limit: 1Gi               # null: no limit
        restart: false           # a restart at phase start (last reason Error) ...
        oom_kill: false          # ... or an OOM kill (last reason OOMKilled); both restart Hubble
        running: true            # false: the agent (and Hubble) is down for the phase; a later
                                 # phase with running: true (restart: true) brings it back
        process: {from: 280Mi, to: 900Mi}   # instead of working_set: the agent process's RSS; the working
                                 # set is then the process plus the BPF maps charged to the container
        maps_recreated: false    # this phase's (re)start creates the BPF maps anew (charged to the
                                 # new container); a restart otherwise reuses them (not charged)
        map_leak: {from: 0, to: 300Mi}   # entries leaked into the maps that grow
      map_pressure: {ct4_global: 0.95}   # BPF map fill ratios on the agent metrics (Cilium's map_name:
                                 # the map's name without "cilium_") for this phase (drop and forward counters follow
                                 # the events above and reset when the agent restarts)
      envoy: {working_set: {from: 60Mi, to: 256Mi}, limit: 256Mi, oom_kill: false}
                                 # the cilium-envoy container, keys as for agent (its restarts
                                 # leave the agent and Hubble alone)
      cilium: {drop_notification: false}   # runtime options at phase start (cilium-dbg config):
                                 # drop_notification, policy_verdict_notification,
                                 # trace_notification, monitor_aggregation; an agent restart
                                 # resets them from the startup configuration

  event types: trace, drop (needs reason: enum name or number), policy_denied (a type-5 verdict
  plus a type-1 drop, reason 133), policy_deny (explicit deny, 181, *_denied_by), verdict
  (action forwarded|dropped|audit|redirected, match none|l3-only|l3-l4|l4-only|all|l3-proto|
  proto-only), http (method, path, action forwarded|dropped: a REQUEST, then a RESPONSE that is
  FORWARDED even when denied, 403), dns (query, action; always egress; a denied query is one
  REQUEST, no response), kafka (api_key, topics: one REQUEST per topic, action; a denied request
  has no response).
  Common keys: direction ingress|egress|unknown (or a number), source/destination ns/workload,
  source_identity/destination_identity host|world|health|<n>, policy ns/name, protocol
  tcp|udp|icmp, unknown_field true (adds an unknown protobuf field), pool (distinct flows).
"""

_TOP_KEYS = {"name", "description", "node", "version", "ring_capacity", "seed", "loop", "repeat", "agent",
             "envoy", "cilium", "phases", "host", "cluster"}
_PHASE_KEYS = {"name", "duration", "rates", "lost", "server_restart", "agent", "envoy", "cilium", "map_pressure"}
_CILIUM_KEYS = {"envoy", "prometheus", "drop_events", "policy_verdict_events", "trace_events", "monitor_aggregation",
                "hubble_monitor_events", "rate_limit", "burst_limit", "kube_proxy_replacement",
                "map_dynamic_size_ratio", "ipv6", "ct_global_tcp_max"}
_RUNTIME_KEYS = {"drop_notification", "policy_verdict_notification", "trace_notification", "monitor_aggregation"}
ENVOY_DEFAULT = 60 * 2**20  # working set of an idle cilium-envoy
# BPF map fill ratios the agent metrics endpoint serves when a phase does not set `map_pressure`.
# Cilium labels them with the map's name less "cilium_" (pkg/bpf/map_linux.go NonPrefixedName); the ipcache and
# reverse-NAT maps' pressures come from the memory model (memory_model.py), per release.
DEFAULT_MAP_PRESSURE = {"ct4_global": 0.12, "lb4_services_v2": 0.02}
_AGENT_KEYS = {"working_set", "rss", "limit", "restart", "oom_kill", "running", "process", "maps_recreated",
               "map_leak"}
_CLUSTER_KEYS = {"pods", "nodes", "services", "policies", "identities", "endpoints"}
_LOST_KEYS = {"source", "rate", "count", "cpu"}
# The agent's metrics-map directions ([v1.16.15 pkg/maps/metricsmap/metricsmap.go:78-81]: 0 UNKNOWN, 1 INGRESS,
# 2 EGRESS, 3 SERVICE) for the Hubble TrafficDirection of a simulated drop (not 1:1 in reality: SERVICE has no
# Hubble counterpart, and Hubble guesses a drop's direction).
_AGENT_DIRECTIONS = {0: "UNKNOWN", 1: "INGRESS", 2: "EGRESS"}
_SCENARIO_PACKAGE = "cilium_node_simulator.scenarios"


class ScenarioError(SpecError):
    """A scenario file is invalid or cannot be found; the message names the file and the key."""


@dataclass(frozen=True)
class Ramp:
    """A memory value over a phase: constant (start == end) or a linear ramp."""

    start: int
    end: int

    def at(self, fraction: float) -> int:
        return int(self.start + (self.end - self.start) * min(max(fraction, 0.0), 1.0))


@dataclass(frozen=True)
class AgentSpec:
    """The ``agent`` block of a phase; ``None`` fields inherit. ``limit`` uses ``_UNSET`` for inherit."""

    working_set: Ramp | None = None
    rss: Ramp | None = None
    limit: int | str | None = "inherit"
    restart: bool = False
    oom_kill: bool = False
    running: bool | None = None
    process: Ramp | None = None  # the agent process's RSS (instead of working_set: the memory model adds the maps)
    maps_recreated: bool = False
    map_leak: Ramp | None = None


@dataclass(frozen=True)
class LostSpec:
    source: str
    rate: float = 0.0
    count: int = 0
    cpu: int | None = None


@dataclass(frozen=True)
class Phase:
    name: str
    duration: float
    rates: tuple[EventSpec, ...] = ()
    lost: tuple[LostSpec, ...] = ()
    server_restart: bool = False
    agent: AgentSpec = field(default_factory=AgentSpec)
    map_pressure: Mapping[str, float] | None = None  # None: the defaults
    envoy: AgentSpec = field(default_factory=AgentSpec)
    cilium: RuntimeOptions | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    phases: tuple[Phase, ...]
    description: str = ""
    node: str = "sim-1"
    version: str = "1.19.4"
    ring_capacity: int = 4095
    seed: int = 1
    loop: bool = False
    repeat: int = 1
    agent: AgentSpec = field(default_factory=AgentSpec)
    source: str = "<memory>"
    envoy: AgentSpec = field(default_factory=AgentSpec)
    cilium: CiliumSpec = field(default_factory=CiliumSpec)
    host: Host = field(default_factory=Host)
    cluster: Cluster = field(default_factory=Cluster)

    @property
    def duration(self) -> float:
        return sum(p.duration for p in self.phases)


@dataclass(frozen=True)
class AgentState:
    """A Cilium container (cilium-agent, cilium-envoy) at a point of the timeline (what the kubelet / API
    fakes serve)."""

    working_set: int  # bytes
    rss: int
    usage: int
    limit: int | None  # None: no limit
    restart_count: int
    last_terminated_reason: str | None
    last_terminated_at: float | None  # Unix seconds
    running: bool
    phase: str
    elapsed: float  # simulated seconds since the scenario started


# --- parsing ---------------------------------------------------------------------------------

def _check_keys(data: Any, allowed: set[str], where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{where}: expected a mapping")
    for key in data:
        if key not in allowed:
            raise ScenarioError(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
    return data


def _duration(value: Any, where: str) -> float:
    if isinstance(value, bool) or value is None:
        raise ScenarioError(f"{where}: invalid duration {value!r} (use e.g. 30s, 5m)")
    try:
        seconds = float(value) if isinstance(value, int | float) else seconds_of(str(value))
    except QuantityError as exc:
        raise ScenarioError(f"{where}: {exc}") from None
    if seconds <= 0:
        raise ScenarioError(f"{where}: duration must be positive, got {value!r}")
    return seconds


def _quantity(value: Any, where: str) -> int:
    if isinstance(value, bool) or value is None:
        raise ScenarioError(f"{where}: invalid memory quantity {value!r} (use e.g. 300Mi, 1Gi)")
    try:
        return int(value) if isinstance(value, int) else bytes_of(str(value))
    except QuantityError as exc:
        raise ScenarioError(f"{where}: {exc}") from None


def _ramp(value: Any, where: str) -> Ramp:
    if isinstance(value, Mapping):
        _check_keys(value, {"from", "to"}, where)
        if "from" not in value or "to" not in value:
            raise ScenarioError(f"{where}: a ramp needs both 'from' and 'to'")
        return Ramp(_quantity(value["from"], f"{where}.from"), _quantity(value["to"], f"{where}.to"))
    q = _quantity(value, where)
    return Ramp(q, q)


def _bool(data: Mapping[str, Any], key: str, where: str, default: bool = False) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ScenarioError(f"{where}.{key}: expected true or false, got {value!r}")
    return value


def _agent(data: Any, where: str) -> AgentSpec:
    data = _check_keys(data, _AGENT_KEYS, where)
    limit: int | str | None = "inherit"
    if "limit" in data:
        limit = None if data["limit"] is None else _quantity(data["limit"], f"{where}.limit")
    running = None
    if "running" in data:
        running = _bool(data, "running", where)
    if "process" in data and ("working_set" in data or "rss" in data):
        raise ScenarioError(f"{where}: give either process (the working set then follows the memory model) or "
                            "working_set/rss, not both")
    return AgentSpec(
        working_set=_ramp(data["working_set"], f"{where}.working_set") if "working_set" in data else None,
        rss=_ramp(data["rss"], f"{where}.rss") if "rss" in data else None,
        limit=limit, restart=_bool(data, "restart", where), oom_kill=_bool(data, "oom_kill", where),
        running=running, process=_ramp(data["process"], f"{where}.process") if "process" in data else None,
        maps_recreated=_bool(data, "maps_recreated", where),
        map_leak=_ramp(data["map_leak"], f"{where}.map_leak") if "map_leak" in data else None)


def _envoy(data: Any, where: str) -> AgentSpec:
    spec = _agent(data, where)
    if spec.process is not None or spec.maps_recreated or spec.map_leak is not None:
        raise ScenarioError(f"{where}: process, maps_recreated and map_leak are the agent's (cilium-envoy has no "
                            "BPF maps): use working_set")
    return spec


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ScenarioError(f"{where}: expected a whole number >= 0, got {value!r}")
    return value


def _host(data: Any, where: str) -> Host:
    data = _check_keys(data, {"memory", "kernel"}, where)
    memory = _quantity(data["memory"], f"{where}.memory") if "memory" in data else Host().memory
    kernel = Host().kernel
    if "kernel" in data:
        parts = str(data["kernel"]).split(".")
        if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
            raise ScenarioError(f"{where}.kernel: a kernel version like 6.8, got {data['kernel']!r}")
        kernel = (int(parts[0]), int(parts[1]))
    if memory < 2**30:
        raise ScenarioError(f"{where}.memory: a node has at least 1Gi, got {data.get('memory')!r}")
    return Host(memory, kernel)


def _cluster(data: Any, where: str) -> Cluster:
    data = _check_keys(data, _CLUSTER_KEYS, where)
    return Cluster(**{key: _count(data[key], f"{where}.{key}") for key in data})


def _lost(data: Any, where: str) -> LostSpec:
    data = _check_keys(data, _LOST_KEYS, where)
    source = data.get("source")
    if source not in LOST_SOURCES or source == "hubble_ring_buffer":
        raise ScenarioError(f"{where}.source: must be perf_event_ring_buffer or observer_events_queue "
                            f"(hubble_ring_buffer losses come from slow readers), got {source!r}")
    rate, count, cpu = data.get("rate", 0), data.get("count", 0), data.get("cpu")
    if isinstance(rate, bool) or not isinstance(rate, int | float) or rate < 0:
        raise ScenarioError(f"{where}.rate: must be a non-negative number")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ScenarioError(f"{where}.count: must be a non-negative integer")
    if not rate and not count:
        raise ScenarioError(f"{where}: needs 'rate' (per second) or 'count' (once at phase start)")
    if cpu is not None and (isinstance(cpu, bool) or not isinstance(cpu, int) or cpu < 0):
        raise ScenarioError(f"{where}.cpu: must be a non-negative integer")
    return LostSpec(source, float(rate), count, cpu)


def _map_pressure(data: Any, where: str) -> dict[str, float]:
    if not isinstance(data, Mapping) or not data:
        raise ScenarioError(f"{where}: expected a mapping of BPF map name to fill ratio, "
                            "e.g. {ct4_global: 0.95}")
    out = {}
    for name, ratio in data.items():
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio <= 1:
            raise ScenarioError(f"{where}.{name}: fill ratio must be a number from 0 to 1, got {ratio!r}")
        out[str(name)] = float(ratio)
    return out


def _cilium(data: Any, where: str, release: tuple[int, int]) -> CiliumSpec:
    data = _check_keys(data, _CILIUM_KEYS, where)
    kw: dict[str, Any] = {}
    for key in ("prometheus", "drop_events", "policy_verdict_events", "trace_events"):
        if key in data:
            kw[key] = _bool(data, key, where)
    for key in ("rate_limit", "burst_limit"):
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
                raise ScenarioError(f"{where}.{key}: must be a whole number of events per second (uint32)")
            kw[key] = value
    if "ipv6" in data:
        kw["ipv6"] = _bool(data, "ipv6", where)
    if "ct_global_tcp_max" in data:
        kw["ct_global_tcp_max"] = _count(data["ct_global_tcp_max"], f"{where}.ct_global_tcp_max")
    if "map_dynamic_size_ratio" in data:
        ratio = data["map_dynamic_size_ratio"]
        if isinstance(ratio, bool) or not isinstance(ratio, int | float):
            raise ScenarioError(f"{where}.map_dynamic_size_ratio: a number from 0 to 1, got {ratio!r}")
        kw["map_dynamic_size_ratio"] = float(ratio)
    for key in ("envoy", "monitor_aggregation", "kube_proxy_replacement"):
        if key in data:
            value = data[key]
            if isinstance(value, bool):  # YAML reads an unquoted false as a bool
                value = "true" if value else "false"
            kw[key] = str(value)
    if "hubble_monitor_events" in data:
        events = data["hubble_monitor_events"] or []
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            raise ScenarioError(f"{where}.hubble_monitor_events: expected a list of monitor event names")
        kw["hubble_monitor_events"] = tuple(events)
    spec = CiliumSpec(**kw)
    try:
        spec.check(release)
    except SettingsError as exc:
        raise ScenarioError(f"{where}.{exc}") from None
    return spec


def _runtime_options(data: Any, where: str) -> RuntimeOptions:
    data = _check_keys(data, _RUNTIME_KEYS, where)
    kw: dict[str, Any] = {k: _bool(data, k, where) for k in _RUNTIME_KEYS - {"monitor_aggregation"} if k in data}
    if "monitor_aggregation" in data:
        kw["monitor_aggregation"] = str(data["monitor_aggregation"])
    options = RuntimeOptions(**kw)
    try:
        options.check()
    except SettingsError as exc:
        raise ScenarioError(f"{where}.{exc}") from None
    return options


def _list(data: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise ScenarioError(f"{where}.{key}: expected a list")
    return value


def parse_scenario(data: Any, source: str = "<memory>") -> Scenario:
    """Validate a loaded YAML document; errors read ``<source>: phases[1].rates[0]: ...``."""
    try:
        return _parse(data, source)
    except ScenarioError:
        raise
    except SpecError as exc:
        raise ScenarioError(f"{source}: {exc}") from None


def _parse(data: Any, source: str) -> Scenario:
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{source}: a scenario must be a YAML mapping with 'name' and 'phases'")
    _check_keys(data, _TOP_KEYS, source)
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ScenarioError(f"{source}: 'name' is required (a string)")
    phases_data = data.get("phases")
    if not isinstance(phases_data, list) or not phases_data:
        raise ScenarioError(f"{source}: 'phases' must be a non-empty list")
    version = str(data.get("version", "1.19.4"))
    release = parse_version(version).numbers[:2]
    cilium = _cilium(data["cilium"], f"{source}: cilium", release) if "cilium" in data else CiliumSpec()
    ring = data.get("ring_capacity", 4095)
    try:
        check_capacity(ring if isinstance(ring, int) and not isinstance(ring, bool) else -1)
    except ValueError as exc:
        raise ScenarioError(f"{source}: ring_capacity: {exc}") from None
    seed = data.get("seed", 1)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ScenarioError(f"{source}: seed: must be an integer")
    phases = []
    for i, pdata in enumerate(phases_data):
        where = f"{source}: phases[{i}]"
        pdata = _check_keys(pdata, _PHASE_KEYS, where)
        if "duration" not in pdata:
            raise ScenarioError(f"{where}: 'duration' is required")
        rates = tuple(EventSpec.from_mapping(r, f"{where}.rates[{j}]")
                      for j, r in enumerate(_list(pdata, "rates", where)))
        lost = tuple(_lost(x, f"{where}.lost[{j}]") for j, x in enumerate(_list(pdata, "lost", where)))
        phases.append(Phase(
            name=str(pdata.get("name", f"phase-{i + 1}")), duration=_duration(pdata["duration"], f"{where}.duration"),
            rates=rates, lost=lost, server_restart=_bool(pdata, "server_restart", where),
            agent=_agent(pdata["agent"], f"{where}.agent") if "agent" in pdata else AgentSpec(),
            map_pressure=_map_pressure(pdata["map_pressure"], f"{where}.map_pressure") if "map_pressure" in pdata
            else None,
            envoy=_envoy(pdata["envoy"], f"{where}.envoy") if "envoy" in pdata else AgentSpec(),
            cilium=_runtime_options(pdata["cilium"], f"{where}.cilium") if "cilium" in pdata else None))
        if "envoy" in pdata and cilium.envoy_mode(release) != "external":
            raise ScenarioError(f"{where}.envoy: there is no cilium-envoy pod with Envoy "
                                f"{cilium.envoy_mode(release)} (set cilium: {{envoy: external}})")
    repeat = data.get("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ScenarioError(f"{source}: repeat: must be an integer >= 1")
    node = data.get("node", "sim-1")
    if not isinstance(node, str) or not node:
        raise ScenarioError(f"{source}: node: must be a non-empty string")
    if "envoy" in data and cilium.envoy_mode(release) != "external":
        raise ScenarioError(f"{source}: envoy: there is no cilium-envoy pod with Envoy {cilium.envoy_mode(release)} "
                            "(set cilium: {envoy: external})")
    return Scenario(name=name, phases=tuple(phases), description=str(data.get("description", "")).strip(),
                    node=node, version=version, ring_capacity=ring, seed=seed,
                    loop=_bool(data, "loop", source), repeat=repeat, source=source,
                    agent=_agent(data["agent"], f"{source}: agent") if "agent" in data else AgentSpec(),
                    envoy=_envoy(data["envoy"], f"{source}: envoy") if "envoy" in data else AgentSpec(),
                    cilium=cilium, host=_host(data["host"], f"{source}: host") if "host" in data else Host(),
                    cluster=_cluster(data["cluster"], f"{source}: cluster") if "cluster" in data else Cluster())


def builtin_files(folder_name: str) -> dict[str, Path]:
    """The YAML files of the package folder ``folder_name`` (``scenarios``, ``scenarios/fleet``) by name."""
    folder = resources.files(_SCENARIO_PACKAGE.rsplit(".", 1)[0]).joinpath(folder_name)
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith((".yaml", ".yml"))}


def builtin_scenarios() -> dict[str, Path]:
    """Built-in scenario files by name."""
    return builtin_files("scenarios")


def read_named_yaml(name_or_path: str, builtins: dict[str, Path], what: str) -> tuple[Any, Path]:
    """The YAML data of the built-in ``what`` named ``name_or_path``, or of that file, and its path."""
    path = Path(name_or_path)
    if name_or_path in builtins and not path.exists():
        path = builtins[name_or_path]
    elif not path.exists():
        raise ScenarioError(f"no {what} {name_or_path!r}: not a file and not one of "
                            f"{', '.join(sorted(builtins))}")
    try:
        return yaml.safe_load(path.read_text()), path
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise ScenarioError(f"{path}: {exc.strerror}") from None


def load_scenario(name_or_path: str) -> Scenario:
    """Load a built-in scenario by name, or a YAML file by path."""
    data, path = read_named_yaml(name_or_path, builtin_scenarios(), "scenario")
    return parse_scenario(data, str(path))


def list_scenarios() -> list[tuple[str, str]]:
    """(name, first line of description) of every built-in scenario."""
    out = []
    for name, path in sorted(builtin_scenarios().items()):
        try:
            desc = load_scenario(str(path)).description.splitlines()[0]
        except (ScenarioError, IndexError):
            desc = ""
        out.append((name, desc))
    return out


# --- runtime ---------------------------------------------------------------------------------

@dataclass
class _AgentTrack:
    working_set: Ramp = Ramp(300 * 2**20, 300 * 2**20)
    rss: Ramp | None = None
    limit: int | None = None
    running: bool = True
    restart_count: int = 0
    last_reason: str | None = None
    last_terminated_at: float | None = None
    process: Ramp | None = None  # the process's RSS when the memory model makes the working set
    owns_maps: bool = True  # the running container created the BPF maps (the first one on a fresh node did)
    leak: Ramp = Ramp(0, 0)

    def apply(self, spec: AgentSpec, now: float) -> tuple[bool, bool]:
        """Enter a phase; returns (restarted, running changed)."""
        if spec.process is not None:
            self.process = spec.process
        elif spec.working_set is not None:
            self.process = None
        elif self.process is not None:
            self.process = Ramp(self.process.end, self.process.end)
        self.leak = spec.map_leak or Ramp(self.leak.end, self.leak.end)
        ws_end, rss_end = self.working_set.end, (self.rss.end if self.rss else None)
        self.working_set = spec.working_set or Ramp(ws_end, ws_end)
        if spec.rss is not None:
            self.rss = spec.rss
        elif spec.working_set is not None or rss_end is None:
            self.rss = None  # follows the new working set (85 %)
        else:
            self.rss = Ramp(rss_end, rss_end)
        if spec.limit != "inherit":
            self.limit = spec.limit  # type: ignore[assignment]
        restarted = False
        coming_back = spec.running is True and not self.running
        if spec.oom_kill or (spec.restart and not coming_back):
            # a restart of an agent that was down only brings it back: counted at its termination
            self.restart_count += 1
            self.last_reason = "OOMKilled" if spec.oom_kill else "Error"
            self.last_terminated_at = now
            restarted = True
        was = self.running
        if spec.running is not None:
            self.running = spec.running
        if restarted or (self.running and not was):  # a new container: it reuses the pinned maps, unless
            self.owns_maps = spec.maps_recreated     # this start recreates them
        return restarted, was != self.running


class ScenarioRuntime:
    """Plays a scenario in a thread: emits events into the server and tracks the agent state."""

    def __init__(self, scenario: Scenario, server: Any, speed: float = 1.0, emit_events: bool = True,
                 tick: float = 0.1, clock: Clock = REAL) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.scenario = scenario
        self.server = server
        self.speed = speed
        self.emit_events = emit_events
        self.tick = tick
        self.clock = clock  # time is read and slept through it (a recorder's virtual clock: clock.py)
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._agent = _AgentTrack()
        self._agent.apply(scenario.agent, clock.time())
        self.cilium = AgentConfig(scenario.cilium, scenario.version, host_memory=scenario.host.memory)
        self.host = scenario.host
        self.memory = MemoryModel(self.cilium.release, scenario.host, scenario.cluster, scenario.cilium.sizing())
        self._envoy: _AgentTrack | None = None
        if self.cilium.envoy_mode == "external":
            self._envoy = _AgentTrack(working_set=Ramp(ENVOY_DEFAULT, ENVOY_DEFAULT))
            self._envoy.apply(scenario.envoy, clock.time())
        # What happened in the datapath (every packet, notified or not) vs what Hubble received (server.truth)
        self.datapath_truth = GroundTruth()
        self._datapath_baseline: Any = None  # datapath truth when the agent last (re)started: its counters reset
        self._visible: dict[tuple[int, frozenset[int]], CompiledSpec | None] = {}
        self._datapath_next: dict[int, int] = {}
        self._phase_index = 0
        self._cycle = 0
        self._phase_sim_start = 0.0
        self._phase_real_start = clock.monotonic()
        self._compiled: list[list[CompiledSpec]] = []

    @property
    def truth(self) -> Any:
        return self.server.truth

    @property
    def thread(self) -> threading.Thread | None:
        """The thread playing the timeline (None before :meth:`start`)."""
        return self._thread

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> ScenarioRuntime:
        self._compiled = [[self.server.compile(spec, 100 * i + j) for j, spec in enumerate(p.rates)]
                          for i, p in enumerate(self.scenario.phases)]
        self._thread = threading.Thread(target=self._run, name="scenario", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until a non-looping scenario played all its phases."""
        return self.finished.wait(timeout)

    # -- state --------------------------------------------------------------------------------
    @property
    def phase(self) -> Phase:
        return self.scenario.phases[self._phase_index]

    @property
    def phase_index(self) -> int:
        return self._phase_index

    def elapsed(self) -> float:
        """Simulated seconds since the scenario started (stops at the end of a non-looping one)."""
        with self._lock:
            in_phase = (self.clock.monotonic() - self._phase_real_start) * self.speed
            return self._phase_sim_start + min(in_phase, self.phase.duration)

    def agent_state(self) -> AgentState:
        return self._container_state(self._agent)

    def envoy_state(self) -> AgentState | None:
        """The cilium-envoy container; None when Envoy is not a pod of its own (embedded, or no L7 proxy)."""
        return self._container_state(self._envoy) if self._envoy is not None else None

    def _fraction(self) -> tuple[float, float]:
        """(fraction of the current phase played, simulated seconds into it); call with the lock held."""
        phase = self.phase
        in_phase = min((self.clock.monotonic() - self._phase_real_start) * self.speed, phase.duration)
        if self.finished.is_set():
            in_phase = phase.duration
        return in_phase / phase.duration, in_phase

    def agent_memory(self) -> MemorySample:
        """The agent's memory by part now (:mod:`.memory_model`): the process from the phase's ``process`` (else
        its RSS), the maps from the node's memory and the map sizing, charged to the container that created them."""
        with self._lock:
            return self._memory_sample(self._agent, self._fraction()[0])

    def _memory_sample(self, a: _AgentTrack, frac: float) -> MemorySample:
        if a.process is not None:
            process = a.process.at(frac)
        else:
            process = a.rss.at(frac) if a.rss is not None else int(a.working_set.at(frac) * 0.85)
        return self.memory.sample(process, a.owns_maps, a.leak.at(frac))

    def _container_state(self, a: _AgentTrack) -> AgentState:
        with self._lock:
            phase = self.phase
            frac, in_phase = self._fraction()
            if a.process is not None:
                sample = self._memory_sample(a, frac)
                ws, rss, usage = sample.working_set, sample.anon, sample.usage
            else:
                ws = a.working_set.at(frac)
                rss = a.rss.at(frac) if a.rss is not None else int(ws * 0.85)
                usage = ws + 32 * 2**20
            return AgentState(
                working_set=ws, rss=rss, usage=usage, limit=a.limit,
                restart_count=a.restart_count, last_terminated_reason=a.last_reason,
                last_terminated_at=a.last_terminated_at, running=a.running,
                phase=phase.name, elapsed=self._phase_sim_start + in_phase)

    def agent_datapath(self) -> dict[str, Any]:
        """The agent's own packet counters (what ``cilium_drop_count_total`` etc. would say).

        Drops are the drops the scenario produced in the datapath since the agent last started,
        whether or not a notification reached Hubble (Cilium's reason strings, ``"<code>, 0"`` for a
        code Cilium has no string for, upper-case directions); forwarded packets grow with the traced
        packets (a few packets per trace, as monitor aggregation thins them); map pressure comes from
        the phase's ``map_pressure`` (defaults otherwise); ``ratelimited`` is the BPF events rate
        limiter's discard counter (None while the agent does not export it).
        """
        now = self.datapath_truth.snapshot()
        with self._lock:
            base = self._datapath_baseline
            pressure = self.phase.map_pressure
        dropped: dict[tuple[str, str], int] = {}
        for (code, direction), n in now.drop_codes.items():
            n -= base.drop_codes.get((code, direction), 0) if base is not None else 0
            if n > 0:
                # DropReasonExt [v1.16.15 pkg/monitor/api/drop.go:112]; the metrics map's directions
                key = (drop_reason_text(code), _AGENT_DIRECTIONS.get(direction, "UNKNOWN"))
                dropped[key] = dropped.get(key, 0) + n
        traces = now.flows_by_type.get(4, 0) - (base.flows_by_type.get(4, 0) if base is not None else 0)
        return {"dropped": dropped, "forwarded": {"INGRESS": 3 * traces, "EGRESS": 2 * traces},
                "map_pressure": dict(pressure if pressure is not None else DEFAULT_MAP_PRESSURE),
                "ratelimited": self.cilium.ratelimited()}

    # -- from the datapath to Hubble ------------------------------------------------------------
    def _deliver(self, batch: list[tuple[CompiledSpec, int]]) -> None:
        """Record ``batch`` in the datapath truth, then send Hubble what reaches it: notifications
        switched off are never emitted, the rate limiter discards what exceeds its bucket (both in
        BPF, before the perf ring), and Hubble's monitor filter drops the types it does not observe."""
        silenced = self.cilium.silenced_types()
        filtered = self.cilium.hubble_filtered_types()
        limiter = self.cilium.limiter
        emitted: list[tuple[CompiledSpec, CompiledSpec, int]] = []
        for compiled, n in batch:
            # the datapath truth keeps its own round-robin position (the server advances the spec's own)
            start = self._datapath_next.get(id(compiled), 0)
            for occ, truth, k in zip(compiled.occurrences, compiled.truths, compiled.counts(n, start), strict=True):
                self.datapath_truth.add(truth, k, [t.event_type for t in occ])
            self._datapath_next[id(compiled)] = (start + n) % len(compiled.occurrences)
            notified = self._variant(compiled, silenced)
            if notified is not None:
                emitted.append((compiled, notified, n))
        if limiter is not None:
            emitted = self._rate_limit(limiter, emitted)
        out = []
        for _, notified, n in emitted:
            seen = self._variant(notified, filtered)
            if seen is not None and n > 0:
                out.append((seen, n))
        if out:
            self.server.emit(out)

    def _rate_limit(self, limiter: Any, emitted: list[tuple[CompiledSpec, CompiledSpec, int]]
                    ) -> list[tuple[CompiledSpec, CompiledSpec, int]]:
        """Share the bucket's tokens fairly among the specs (whole occurrences only)."""
        per_occ = [sum(1 for t in notified.occurrences[0] if t.event_type in PERF_EVENT_TYPES)
                   for _, notified, _ in emitted]
        wanted = [k * n for k, (_, _, n) in zip(per_occ, emitted, strict=True)]
        total = sum(wanted)
        if not total:
            return emitted
        granted = limiter.admit(total, self.elapsed())  # simulated seconds: --speed scales the bucket too
        out, used = [], 0
        for (compiled, notified, n), k, want in zip(emitted, per_occ, wanted, strict=True):
            if not k:
                out.append((compiled, notified, n))
                continue
            occurrences = min(n, (granted * want // total) // k)
            used += occurrences * k
            out.append((compiled, notified, occurrences))
        limiter.give_back(granted - used)
        return out

    def _variant(self, compiled: CompiledSpec, hidden: frozenset[int]) -> CompiledSpec | None:
        """``compiled`` without the flows of the ``hidden`` event types (None when nothing is left)."""
        if not hidden:
            return compiled
        key = (id(compiled), hidden)
        if key not in self._visible:
            occurrences = [tuple(t for t in occ if t.event_type not in hidden) for occ in compiled.occurrences]
            # the truth of what is left, computed from its flows as flows.FlowFactory.compile does
            truths = [[entry for t in occ if t.flow is not None for entry in flow_truth(t.flow)]
                      for occ in occurrences]
            self._visible[key] = (CompiledSpec(compiled.spec, occurrences, truths) if any(occurrences)
                                  else None)
        return self._visible[key]

    # -- the timeline -------------------------------------------------------------------------
    def _enter(self, index: int, sim_start: float) -> None:
        phase = self.scenario.phases[index]
        with contextlib.suppress(Exception):  # the previous phase's events land before a counter baseline
            self.server.sync()
        now = self.clock.time()
        with self._lock:
            self._phase_index = index
            self._phase_sim_start = sim_start
            self._phase_real_start = self.clock.monotonic()
            restarted, running_changed = self._agent.apply(phase.agent, now)
            running = self._agent.running
            if restarted or (running_changed and running):
                self._datapath_baseline = self.datapath_truth.snapshot()
                self.cilium.restart()  # runtime options come back from the startup flags
            if self._envoy is not None:
                self._envoy.apply(phase.envoy, now)  # Envoy's restarts leave the agent and Hubble alone
            if phase.cilium is not None:
                self.cilium.apply(phase.cilium)
        log.info("simulator: phase %r (%s)", phase.name, _fmt_duration(phase.duration))
        if running_changed and not running:
            self.server.kill()
        elif running_changed and running:
            self.server.reset()
            self.server.start()
        elif running and (restarted or phase.server_restart):
            self.server.restart()
        if running and self.emit_events:
            for lost in phase.lost:
                if lost.count:
                    self.server.emit_lost(lost.source, lost.count, lost.cpu)

    def _run(self) -> None:
        phases = self.scenario.phases
        sim = 0.0
        index = 0
        try:
            while not self._stop.is_set():
                self._enter(index, sim)
                self._play(index)
                if self._stop.is_set():
                    break
                sim += phases[index].duration
                index += 1
                if index == len(phases):
                    self._cycle += 1
                    if not self.scenario.loop and self._cycle >= self.scenario.repeat:
                        break
                    index = 0
        finally:
            self.finished.set()

    def _play(self, index: int) -> None:
        phase = self.scenario.phases[index]
        compiled = self._compiled[index]
        carry = [0.0] * len(compiled)
        lost_carry = [0.0] * len(phase.lost)
        real_duration = phase.duration / self.speed
        start = last = self.clock.monotonic()
        while not self._stop.is_set():
            now = self.clock.monotonic()
            end = min(now, start + real_duration)
            dt_sim = (end - last) * self.speed
            last = end
            if self.emit_events and self._agent.running and dt_sim > 0:
                batch = []
                for i, c in enumerate(compiled):
                    carry[i] += c.spec.rate * dt_sim
                    n = int(carry[i])
                    if n:
                        carry[i] -= n
                        batch.append((c, n))
                if batch:
                    self._deliver(batch)
                for i, lost in enumerate(phase.lost):
                    lost_carry[i] += lost.rate * dt_sim
                    n = int(lost_carry[i])
                    if n:
                        lost_carry[i] -= n
                        self.server.emit_lost(lost.source, n, lost.cpu)
            if end >= start + real_duration:
                return
            self.clock.wait(self._stop, min(self.tick, start + real_duration - self.clock.monotonic()))


def _fmt_duration(seconds: float) -> str:
    return f"{seconds / 60:g}m" if seconds >= 60 else f"{seconds:g}s"


def with_version(scenario: Scenario, version: str | None) -> Scenario:
    """The scenario with its Cilium/Hubble version overridden (``--version``); its ``cilium`` block must
    suit that release."""
    if not version:
        return scenario
    release = parse_version(version).numbers[:2]
    try:
        scenario.cilium.check(release)
    except SettingsError as exc:
        raise ScenarioError(f"{scenario.source}: cilium.{exc} (--version {version})") from None
    has_envoy = scenario.envoy != AgentSpec() or any(p.envoy != AgentSpec() for p in scenario.phases)
    if has_envoy and scenario.cilium.envoy_mode(release) != "external":
        raise ScenarioError(f"{scenario.source}: envoy blocks need cilium: {{envoy: external}} with --version "
                            f"{version} (its chart runs Envoy {scenario.cilium.envoy_mode(release)})")
    return replace(scenario, version=version)
