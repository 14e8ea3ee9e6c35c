"""Restarts, warm-ups, churn and leaks told apart, and the version canary: recorded names and their PromQL.

The kubelet's working set is what the OOM killer sees, but BPF maps are charged only to the container that
created them (kernels >= 5.11; cilium/cilium#37935): after an agent restart that reuses its pinned maps the working
set drops by their size although nothing was freed. The *footprint* adds back the agent's BPF memory that the
running container is not charged for, so it is continuous across restarts:

    footprint = working set + max(0, agent-reported BPF memory - BPF charged to this container)

(without the agent source the footprint is the working set). The envelope and the growth forecast read the
footprint; the near-limit alerts keep the working set. The version canary compares *cohorts* (the nodes of a
cluster running one Cilium version) on restart-artefact-free figures only: the process, the BPF memory beyond
the dynamically sized maps, unexpected drops per packet, policy denials and restarts (docs/envelope.md).

Level prefixes: ``node:`` keeps cluster and node, ``node_version:`` also the version, ``cohort:`` cluster and
version. Standard library only (the report reads these names from the installed package).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from cilium_node_exporter import contract as c
from cilium_node_exporter.mixin import names as n

if TYPE_CHECKING:
    from cilium_node_exporter.mixin.promql import PromQL

# --- per node: the parts that survive a restart ---------------------------------------------------------
PROCESS: Final = "node:cilium_node_agent_memory_process_bytes:max"  # the process alone (no BPF, no page cache)
BPF: Final = "node:cilium_node_agent_memory_bpf_bytes:max"  # the agent's maps and programs (what exists)
# ...not charged to the running container: > 0 only after a restart that reused the maps (the restart artefact: the
# working set is lower by about this much, which is no recovery)
BPF_UNCHARGED: Final = "node:cilium_node_agent_memory_bpf_uncharged_bytes:max"
FOOTPRINT: Final = "node:cilium_node_agent_memory_footprint_bytes:max"  # working set + uncharged BPF
IPCACHE: Final = "node:cilium_node_agent_ipcache_entries:max"  # the cluster's scale as this agent sees it
# BPF memory beyond the maps Cilium sizes from the node's memory (bpf_dynamic_maps): comparable across node sizes
BPF_UNSIZED: Final = "node:cilium_node_agent_memory_bpf_unsized_bytes:max"

# --- the version canary -----------------------------------------------------------------------------------
VERSION: Final = "node_version:cilium_node_agent_version:info"  # 1 per node and running Cilium version
SETTLED: Final = "node_version:cilium_node_agent_settled:info"  # ... whose agent started canarySettleSeconds ago
COHORT_NODES: Final = "cohort:cilium_node_agent_nodes:count"
COHORT_SETTLED: Final = "cohort:cilium_node_agent_settled_nodes:count"
COHORT_START: Final = "cohort:cilium_node_agent_container_start_time_seconds:median"
COHORT_PROCESS: Final = "cohort:cilium_node_agent_memory_process_bytes:median"
COHORT_BPF_UNSIZED: Final = "cohort:cilium_node_agent_memory_bpf_unsized_bytes:median"
COHORT_DROPS: Final = "cohort:cilium_node_datapath_drops_unexpected:ratio_rate5m"
COHORT_DENIED: Final = "cohort:cilium_node_policy_denied:avg_rate5m"
COHORT_RESTARTS: Final = "cohort:cilium_node_agent_restarts:avg_increase"
# signal label of CiliumClusterVersionCanary -> the cohort series it compares
CANARY_SIGNALS: Final = {"process_memory": COHORT_PROCESS, "bpf_memory": COHORT_BPF_UNSIZED,
                         "unexpected_drops": COHORT_DROPS, "policy_denials": COHORT_DENIED,
                         "restarts": COHORT_RESTARTS}
VERSION_CANARY: Final = "CiliumClusterVersionCanary"


def node_records(q: PromQL) -> list[tuple[str, str]]:
    """(name, expression) of the per-node records, in evaluation order (after the pack's memory rules)."""
    by, on = q.by(), q.on()
    part = q.max(c.AGENT_MEMORY_PART, 'part=~"bpf_maps|bpf_progs"', by=("part",))
    dynamic = q.max(c.DERIVED_UPPER, 'part="bpf_dynamic_maps"')
    rss = q.max(c.AGENT_MEMORY_PART, 'part="process_rss"')
    return [
        (PROCESS, f"{rss}\nor\n{q.max(c.AGENT_RSS)}"),
        (BPF, f"sum by ({by}) ({part})"),
        (BPF_UNCHARGED, f"clamp_min({BPF} - {on} {q.max(c.AGENT_BPF_CHARGED)}, 0)"),
        (FOOTPRINT, f"{n.WORKING_SET} + {on} ({BPF_UNCHARGED} or 0 * {n.WORKING_SET})"),
        (IPCACHE, q.max(c.CLUSTER_OBJECTS, 'kind="ipcache_entries"')),
        (BPF_UNSIZED, f"clamp_min({BPF} - {on} {dynamic}, 0)"),
    ]


def growth_forecast(q: PromQL) -> str:
    """The leak forecast: the footprint's trend crosses the envelope's upper bound within the horizon, while the
    footprint is still inside it, the container is past its warm-up, it still grows over the recent window at
    ``memoryForecastRecentShare`` of the long-window rate (a warm-up levels off, a leak does not) and the growth
    is not explained by the cluster's churn (``memoryChurnBytesPerEntry`` per ipcache entry added over the window:
    two samples each, not a regression over the window's)."""
    v = q.v
    w, recent = v["memoryForecastWindow"], v["memoryForecastRecentWindow"]
    start = q.max(c.AGENT_START_TIME)
    return (f"predict_linear({FOOTPRINT}[{w}], {v['memoryForecastHorizonSeconds']}) > {n.ENVELOPE_UPPER}\n"
            f"and\n{FOOTPRINT} <= {n.ENVELOPE_UPPER}\n"
            f"and\ntime() - {start} > {v['memoryForecastWarmupSeconds']}\n"
            f"and\nderiv({FOOTPRINT}[{recent}]) > {v['memoryForecastRecentShare']} * deriv({FOOTPRINT}[{w}])\n"
            f"unless\n{FOOTPRINT} - {FOOTPRINT} offset {w}\n"
            f"  <= {v['memoryChurnBytesPerEntry']} * ({IPCACHE} - {IPCACHE} offset {w})")


def above_envelope(q: PromQL) -> str:
    """The footprint (value) where it is above the envelope's upper bound."""
    return f"{q.rec(FOOTPRINT)} > {q.rec(n.ENVELOPE_UPPER)}"


def cohort_records(q: PromQL) -> list[tuple[str, str]]:
    """(name, expression) of the canary's per-version records: membership, the settled nodes, and each
    cohort's figures (restart-artefact-free, comparable across node sizes)."""
    v, cl, on = q.v, q.cluster, q.on()
    cohort = f"{cl}, version"
    start = q.max(c.AGENT_START_TIME)

    def settled(series: str) -> str:
        return f"{series}\n* {on} group_left (version)\n{SETTLED}"

    return [
        (VERSION, q.max(c.CILIUM_INFO, by=("version",))),
        (SETTLED, f"{VERSION}\nand {on}\ntime() - {start} > {v['canarySettleSeconds']}"),
        (COHORT_NODES, f"count by ({cohort}) ({VERSION})"),
        (COHORT_SETTLED, f"count by ({cohort}) ({SETTLED})"),
        (COHORT_START, f"quantile by ({cohort}) (0.5, {start}\n* {on} group_left (version)\n{VERSION})"),
        (COHORT_PROCESS, f"quantile by ({cohort}) (0.5, {settled(PROCESS)})"),
        (COHORT_BPF_UNSIZED, f"quantile by ({cohort}) (0.5, {settled(BPF_UNSIZED)})"),
        (COHORT_DROPS, f"sum by ({cohort}) ({settled(n.DATAPATH_UNEXPECTED)})\n/\n"
                       f"(sum by ({cohort}) ({settled(n.DATAPATH_PACKETS)}) > 0)"),
        (COHORT_DENIED, f"avg by ({cohort}) ({settled(n.POLICY_DENIED)})"),
        (COHORT_RESTARTS, f"avg by ({cohort}) ({q.restarts(c.AGENT_RESTARTS, v['canaryRestartsWindow'])}\n"
                          f"* {on} group_left (version)\n{VERSION})"),
    ]


def version_canary(q: PromQL) -> str:
    """The newest cohort (its agents started last) worse than the cluster's best cohort beyond noise, by any
    signal, while at least two cohorts have ``canaryMinNodes`` nodes (settled ones, for all but restarts)."""
    v, cl = q.v, q.cluster
    cohort = f"on ({cl}, version)"

    def eligible(series: str, count: str) -> str:
        return f"({series} and {cohort} {count} >= {v['canaryMinNodes']})"

    def worse(series: str, count: str, factor: str, floor: str, *, relative_floor: bool) -> str:
        mine = eligible(series, count)
        best = f"min by ({cl}) {mine}"
        beyond = f"({mine} - on ({cl}) group_left () {best})" if relative_floor else mine
        return (f"{mine} > on ({cl}) group_left () ({factor} * {best})\n"
                f"  and {cohort} {beyond} > {floor}")

    def signal(name: str, expr: str) -> str:
        return f'label_replace(\n  {expr},\n  "signal", "{name}", "", "")'

    memory = (v["canaryMemoryRatio"], v["canaryMemoryMinBytes"])
    clauses = [
        signal("process_memory", worse(COHORT_PROCESS, COHORT_SETTLED, *memory, relative_floor=True)),
        signal("bpf_memory", worse(COHORT_BPF_UNSIZED, COHORT_SETTLED, *memory, relative_floor=True)),
        signal("unexpected_drops", worse(COHORT_DROPS, COHORT_SETTLED, v["canaryDropFactor"],
                                         v["canaryDropRatio"], relative_floor=False)),
        signal("policy_denials", worse(COHORT_DENIED, COHORT_SETTLED, v["canaryDenialFactor"],
                                       v["canaryDenialFloor"], relative_floor=False)),
        signal("restarts", worse(COHORT_RESTARTS, COHORT_NODES, "1", v["canaryRestartsPerNode"],
                                 relative_floor=True)),
    ]
    newest = f"{COHORT_START} == on ({cl}) group_left () max by ({cl}) ({COHORT_START})"
    two = f"count by ({cl}) ({COHORT_NODES} >= {v['canaryMinNodes']}) >= 2"
    return f"(\n{chr(10).join(clauses[:1])}\n" + "".join(f"or\n{x}\n" for x in clauses[1:]) + \
        f")\nand {cohort}\n({newest})\nand on ({cl})\n({two})"


def read_drop(before: float, after: float, restarted: bool, uncharged_after: float | None) -> tuple[str, str]:
    """How a report words a fall of an agent's working set from ``before`` to ``after`` bytes: (verdict, why).

    ``restarted``: the agent's container started between the two readings; ``uncharged_after``: the recorded
    ``BPF_UNCHARGED`` after the fall (None: the agent's maps are unknown, its metrics are off). A restart whose drop
    is at least half BPF memory still charged to the earlier container is a restart artefact, never a recovery."""
    drop = before - after
    if drop <= 0:
        return "no drop", "the working set did not fall"
    if not restarted:
        return "recovered", "the same container freed the memory"
    if uncharged_after is None:
        return "unknown", "restarted; the agent's BPF maps are unknown (its metrics are off), so a restart artefact " \
                          "cannot be told from a recovery"
    if uncharged_after >= 0.5 * drop:
        return "restart artefact", f"{uncharged_after / 2**20:,.0f} MiB of BPF maps stay charged to the earlier " \
                                   "container (cilium/cilium#37935); nothing was freed"
    return "recovered by the restart", "the new process is smaller; its maps are charged to it"
