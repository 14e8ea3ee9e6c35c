"""Fleet scenario files: one cluster's story, told as node scenarios played by groups of nodes.

A fleet scenario gives a cluster's size, the Cilium release its nodes start on and the exporter's
sources, and splits the nodes into groups (in order). Each group plays a node scenario: the format of
``simulate --scenario`` (:mod:`cilium_node_simulator.scenario`) plus three phase keys that only the
fleet plays, because they are about the cluster around the node rather than the node's own Hubble:

- ``version: 1.16.6`` (or ``rollout: true``): the DaemonSet rolls this node's agent at the phase start
  (a new pod: new uid, restart count from 0, Hubble restarts, the agent's counters restart);
- ``hubble: false``: Hubble is off on the running agent (its socket is gone: ``hubble.enabled=false``
  after a values mistake); ``true`` turns it back on;
- ``exporter: down``: this node's exporter stops answering scrapes (crash-looping, or its port blocked);
  ``absent``: its pod and scrape target are gone (the DaemonSet was deleted); ``up`` again.

The three keys are inherited by later phases like the ``agent`` block. File format::

  name: bad-rollout
  description: ...
  nodes: 200                        # the cluster's size (``--fleet N`` overrides)
  version: 1.16.5                   # the Cilium release every node starts on
  sources: auto                     # the exporter's --sources on every node (default auto)
  memory_envelope: 200Mi-600Mi      # the exporter's --memory-envelope (default: the exporter's)
  memory_envelope_mode: static      # the exporter's --memory-envelope-mode (static or derived)
  groups:                           # nodes are given to the groups in order
    - name: canary
      nodes: 1                      # a count, a share of the cluster ("10%") or "rest" (the default)
      stagger: 5m                   # node k of the group's n starts its timeline k/n * stagger later
      jitter: 0.1                   # each node's rates and memory scaled by a factor in [0.9, 1.1]
      scenario: {...}               # a node scenario (mapping), a built-in node scenario or a file

Time: ``speed`` compresses the timeline (phase durations, memory ramps, stagger) but not the rates.
Prometheus computes ``rate()`` per real second and the rule pack's accelerated preset scales windows
and ``for:`` durations, not thresholds: so a node plays its scenario's rates per real second, and an
alert threshold in events/s means what it means in production. ``increase()`` over a compressed window
sees ``speed`` times fewer events than over the real window (the scenarios' rates leave every count
guard of the pack clearly met or clearly missed).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from cilium_node_exporter.config import FLAGS_BY_NAME
from cilium_node_simulator.quantities import envelope_of, seconds_of
from cilium_node_simulator.releases import parse_version
from cilium_node_simulator.scenario import (
    AgentSpec,
    Phase,
    Ramp,
    Scenario,
    ScenarioError,
    builtin_files,
    builtin_scenarios,
    load_scenario,
    parse_scenario,
    read_named_yaml,
)

_TOP_KEYS = {"name", "description", "nodes", "version", "sources", "memory_envelope", "memory_envelope_mode",
             "groups"}
_GROUP_KEYS = {"name", "nodes", "stagger", "jitter", "scenario"}
FLEET_PHASE_KEYS = ("version", "rollout", "hubble", "exporter")
EXPORTER_STATES = ("up", "down", "absent")
_PACKAGE_DIR = "scenarios/fleet"


@dataclass(frozen=True)
class PhaseExtras:
    """What the fleet plays at one phase of a node scenario (already inherited from earlier phases)."""

    version: str
    rollout: bool = False  # a new agent pod at the phase start
    hubble: bool = True
    exporter: str = "up"


@dataclass(frozen=True)
class NodePlan:
    """One node scenario as a group plays it: the scenario and, per phase, the fleet's extras."""

    scenario: Scenario
    extras: tuple[PhaseExtras, ...]


@dataclass(frozen=True)
class Group:
    name: str
    nodes: str  # "3", "10%" or "rest"
    stagger: float
    jitter: float
    plan: NodePlan


@dataclass(frozen=True)
class FleetScenario:
    name: str
    groups: tuple[Group, ...]
    description: str = ""
    nodes: int = 200
    version: str = "1.16.5"
    sources: str = FLAGS_BY_NAME["sources"].default  # the exporter's --sources
    memory_envelope: str = FLAGS_BY_NAME["memory-envelope"].default
    source: str = "<memory>"
    memory_envelope_mode: str = FLAGS_BY_NAME["memory-envelope-mode"].default


@dataclass(frozen=True)
class NodeAssignment:
    """Node ``index`` of the cluster: its group and its own (staggered, jittered) scenario."""

    index: int
    group: str
    plan: NodePlan


# --- parsing ---------------------------------------------------------------------------------

def _check_keys(data: Any, allowed: set[str], where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{where}: expected a mapping")
    unknown = sorted(set(map(str, data)) - allowed)
    if unknown:
        raise ScenarioError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    return data


def _node_scenario_data(value: Any, where: str) -> Mapping[str, Any]:
    """The mapping of a node scenario given inline, by built-in name or by path."""
    if isinstance(value, Mapping):
        return value
    if not isinstance(value, str) or not value:
        raise ScenarioError(f"{where}: expected a node scenario (a mapping, a built-in name or a file)")
    path = Path(value)
    builtins = builtin_scenarios()
    if value in builtins and not path.exists():
        path = builtins[value]
    elif not path.exists():
        raise ScenarioError(f"{where}: no node scenario {value!r}: not a file and not one of "
                            f"{', '.join(sorted(builtins))}")
    load_scenario(str(path))  # validates, with the file's name in errors
    data = yaml.safe_load(path.read_text())
    return data if isinstance(data, Mapping) else {}


def _extras(phases: list[Any], version: str, where: str) -> tuple[list[Any], tuple[PhaseExtras, ...]]:
    """Split the fleet-only keys off the phases; returns (plain phases, extras per phase)."""
    plain: list[Any] = []
    out: list[PhaseExtras] = []
    current = PhaseExtras(version=version)
    for i, pdata in enumerate(phases):
        if not isinstance(pdata, Mapping):
            plain.append(pdata)  # parse_scenario names the error
            continue
        at = f"{where}.phases[{i}]"
        rollout = False
        if "version" in pdata:
            new = str(pdata["version"]).lstrip("v")
            try:
                parse_version(new)
            except ValueError as exc:
                raise ScenarioError(f"{at}.version: {exc}") from None
            rollout = True
            current = replace(current, version=new)
        if "rollout" in pdata:
            if not isinstance(pdata["rollout"], bool):
                raise ScenarioError(f"{at}.rollout: expected true or false")
            rollout = rollout or pdata["rollout"]
        if "hubble" in pdata:
            if not isinstance(pdata["hubble"], bool):
                raise ScenarioError(f"{at}.hubble: expected true or false")
            current = replace(current, hubble=pdata["hubble"])
        if "exporter" in pdata:
            if pdata["exporter"] not in EXPORTER_STATES:
                raise ScenarioError(f"{at}.exporter: one of {', '.join(EXPORTER_STATES)}, "
                                    f"got {pdata['exporter']!r}")
            current = replace(current, exporter=pdata["exporter"])
        out.append(replace(current, rollout=rollout))
        phase = {k: v for k, v in pdata.items() if k not in FLEET_PHASE_KEYS}
        agent = phase.get("agent")
        if rollout and (agent is None or (isinstance(agent, Mapping) and not agent.get("oom_kill"))):
            # the runtime restarts Hubble and the agent's counters on a restart; the new pod resets the count
            phase["agent"] = {**(agent or {}), "restart": True}
        plain.append(phase)
    return plain, tuple(out)


def parse_node_plan(value: Any, version: str, where: str) -> NodePlan:
    """A group's node scenario with the fleet's phase keys split off."""
    data = dict(_node_scenario_data(value, where))
    data.setdefault("name", where)
    phases = data.get("phases")
    if not isinstance(phases, list):
        raise ScenarioError(f"{where}: 'phases' must be a non-empty list")
    plain, extras = _extras(phases, version, where)
    data["phases"] = plain
    data["version"] = version
    return NodePlan(parse_scenario(data, where), extras)


def _group_nodes(value: Any, where: str) -> str:
    text = str(value).strip() if not isinstance(value, bool) else ""
    if text == "rest" or (text.isdigit() and int(text) > 0):
        return text
    if text.endswith("%"):
        try:
            share = float(text[:-1])
        except ValueError:
            share = -1.0
        if 0 < share <= 100:
            return text
    raise ScenarioError(f"{where}.nodes: a positive count, a share like '10%' or 'rest', got {value!r}")


def _seconds(value: Any, where: str) -> float:
    try:
        seconds = float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
            else seconds_of(str(value))
    except ValueError as exc:
        raise ScenarioError(f"{where}: {exc}") from None
    if seconds < 0:
        raise ScenarioError(f"{where}: must not be negative")
    return seconds


def parse_fleet(data: Any, source: str = "<memory>") -> FleetScenario:
    """Validate a loaded fleet file; errors read ``<source>: groups[1].scenario.phases[0]: ...``."""
    data = _check_keys(data, _TOP_KEYS, source)
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ScenarioError(f"{source}: 'name' is required (a string)")
    version = str(data.get("version", "1.16.5")).lstrip("v")
    try:
        parse_version(version)
    except ValueError as exc:
        raise ScenarioError(f"{source}: version: {exc}") from None
    nodes = data.get("nodes", 200)
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise ScenarioError(f"{source}: nodes: a positive integer")
    sources = str(data.get("sources", FLAGS_BY_NAME["sources"].default))
    try:
        FLAGS_BY_NAME["sources"].parse(sources)
    except ValueError as exc:
        raise ScenarioError(f"{source}: sources: {exc}") from None
    envelope = str(data.get("memory_envelope", FLAGS_BY_NAME["memory-envelope"].default))
    try:
        envelope_of(envelope)
    except ValueError as exc:
        raise ScenarioError(f"{source}: memory_envelope: {exc}") from None
    mode = str(data.get("memory_envelope_mode", FLAGS_BY_NAME["memory-envelope-mode"].default))
    try:
        FLAGS_BY_NAME["memory-envelope-mode"].parse(mode)
    except ValueError as exc:
        raise ScenarioError(f"{source}: memory_envelope_mode: {exc}") from None
    groups_data = data.get("groups")
    if not isinstance(groups_data, list) or not groups_data:
        raise ScenarioError(f"{source}: 'groups' must be a non-empty list")
    groups = []
    for i, g in enumerate(groups_data):
        where = f"{source}: groups[{i}]"
        g = _check_keys(g, _GROUP_KEYS, where)
        if "scenario" not in g:
            raise ScenarioError(f"{where}: 'scenario' is required")
        jitter = g.get("jitter", 0.1)
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter < 1:
            raise ScenarioError(f"{where}.jitter: a number from 0 to below 1")
        groups.append(Group(
            name=str(g.get("name", f"group-{i + 1}")), nodes=_group_nodes(g.get("nodes", "rest"), where),
            stagger=_seconds(g.get("stagger", 0), f"{where}.stagger"), jitter=float(jitter),
            plan=parse_node_plan(g["scenario"], version, f"{where}.scenario")))
    return FleetScenario(name=name, groups=tuple(groups), description=str(data.get("description", "")).strip(),
                         nodes=nodes, version=version, sources=sources, memory_envelope=envelope, source=source,
                         memory_envelope_mode=mode)


def builtin_fleets() -> dict[str, Path]:
    """Built-in fleet scenario files by name."""
    return builtin_files(_PACKAGE_DIR)


def load_fleet(name_or_path: str) -> FleetScenario:
    """Load a built-in fleet scenario by name, or a YAML file by path."""
    data, path = read_named_yaml(name_or_path, builtin_fleets(), "fleet scenario")
    return parse_fleet(data, str(path))


# --- nodes -----------------------------------------------------------------------------------

def _counts(fleet: FleetScenario, nodes: int) -> list[int]:
    """How many of ``nodes`` each group gets, in order; 'rest' takes what is left (at most one)."""
    left = nodes
    counts = []
    for g in fleet.groups:
        if g.nodes == "rest":
            want = left
        elif g.nodes.endswith("%"):
            want = max(1, round(nodes * float(g.nodes[:-1]) / 100))
        else:
            want = int(g.nodes)
        take = min(want, left)
        counts.append(take)
        left -= take
    return counts


def _scaled_ramp(ramp: Ramp | None, factor: float) -> Ramp | None:
    return None if ramp is None else Ramp(int(ramp.start * factor), int(ramp.end * factor))


def _node_scenario(plan: NodePlan, delay: float, factor: float, speed: float, name: str) -> Scenario:
    """The group's scenario for one node: first phase ``delay`` longer, rates and memory x ``factor``,
    rates divided by ``speed`` (the runtime multiplies them back: see the module docstring)."""

    def agent(spec: AgentSpec) -> AgentSpec:
        return replace(spec, working_set=_scaled_ramp(spec.working_set, factor), rss=_scaled_ramp(spec.rss, factor),
                       process=_scaled_ramp(spec.process, factor))

    phases: list[Phase] = []
    for i, p in enumerate(plan.scenario.phases):
        phases.append(replace(
            p, duration=p.duration + (delay if i == 0 else 0.0),
            rates=tuple(replace(r, rate=r.rate * factor / speed) for r in p.rates),
            lost=tuple(replace(x, rate=x.rate * factor / speed) for x in p.lost),
            agent=agent(p.agent)))
    return replace(plan.scenario, phases=tuple(phases), node=name, agent=agent(plan.scenario.agent))


def assign(fleet: FleetScenario, nodes: int, speed: float, seed: int = 1,
           name: str = "node-{index:03d}") -> list[tuple[str, NodeAssignment]]:
    """(node name, assignment) for every node of a cluster playing ``fleet`` with ``nodes`` nodes."""
    rng = random.Random(f"{seed}/{fleet.name}")
    out = []
    index = 0
    for group, count in zip(fleet.groups, _counts(fleet, nodes), strict=True):
        for k in range(count):
            node = name.format(index=index + 1)
            delay = group.stagger * k / count if count else 0.0
            factor = 1.0 + rng.uniform(-group.jitter, group.jitter)
            scenario = _node_scenario(group.plan, delay, factor, speed, node)
            scenario = replace(scenario, seed=seed * 100_003 + index)
            out.append((node, NodeAssignment(index, group.name, NodePlan(scenario, group.plan.extras))))
            index += 1
    return out
