"""Alerting rules and the Alertmanager inhibitions between them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cilium_node_exporter import contract as c

from . import recording as r
from .config import Values, burn_factor, go_number
from .promql import PromQL

# Sources whose loss an alert cannot survive: the exporter's `<source>` source down inhibits it.
# Alerts that read the datapath counters fall back to Hubble (and back) and are only inhibited when
# the whole exporter is down.
HUBBLE, KUBELET, APISERVER, AGENT = "hubble", "kubelet", "apiserver", "agent"


@dataclass(frozen=True)
class Alert:
    """One alerting rule; ``sources`` are the exporter sources it cannot do without."""

    name: str
    severity: str
    expr: str
    for_: str
    summary: str
    description: str
    sources: tuple[str, ...] = ()
    extra_labels: dict[str, str] = field(default_factory=dict)
    reads_exporter: bool = True

    def rule(self, values: Values) -> dict[str, Any]:
        """The rule as it goes into a Prometheus rule group."""
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity, **self.extra_labels},
            "annotations": {"summary": self.summary, "description": self.description,
                            "runbook_url": values.runbook_url(self.name)},
        }


def _start_time(q: PromQL) -> str:
    return q.max(c.AGENT_START_TIME)


def memory_alerts(v: Values) -> list[Alert]:
    """Memory envelope, limit, forecast and lifecycle alerts (kubelet and API server sources)."""
    q, where = PromQL(v), PromQL(v).where()
    oom = 'reason="OOMKilled"'
    return [
        Alert("CiliumAgentMemoryAboveEnvelope", "warning",
              f"{r.WORKING_SET} > {r.ENVELOPE_UPPER}", v["memoryAboveEnvelopeFor"],
              "The cilium-agent working set is above its memory envelope.",
              f"The cilium-agent on {where} uses {{{{ $value | humanize1024 }}}}B, above the upper bound "
              f"of its memory envelope for more than {v['memoryAboveEnvelopeFor']}.",
              (KUBELET,)),
        Alert("CiliumAgentMemoryNearLimit", "critical",
              f"{r.WORKING_SET} / {r.MEMORY_LIMIT} > {v['memoryNearLimitRatio']}", v["memoryNearLimitFor"],
              "The cilium-agent is close to its container memory limit.",
              f"The cilium-agent on {where} uses {{{{ $value | humanizePercentage }}}} of its container "
              "memory limit: the kernel kills it when it reaches the limit.",
              (KUBELET,)),
        Alert("CiliumAgentMemoryGrowthForecast", "warning",
              f"predict_linear({r.WORKING_SET}[{v['memoryForecastWindow']}], "
              f"{v['memoryForecastHorizonSeconds']}) > {r.ENVELOPE_UPPER}\n"
              f"and\n{r.WORKING_SET} <= {r.ENVELOPE_UPPER}\n"
              f"and\ntime() - {_start_time(q)} > {v['memoryForecastWarmupSeconds']}",
              v["memoryGrowthForecastFor"],
              "The cilium-agent memory trend crosses its envelope soon.",
              f"The cilium-agent on {where} is inside its memory envelope, but its working-set trend over "
              f"the last {v['memoryForecastWindow']} reaches {{{{ $value | humanize1024 }}}}B within "
              f"{{{{ {v['memoryForecastHorizonSeconds']} | humanizeDuration }}}}, above the upper bound.",
              (KUBELET,)),
        Alert("CiliumAgentMemoryBelowEnvelope", "info",
              f"{r.WORKING_SET} < {r.ENVELOPE_LOWER}\n"
              f"and\ntime() - {_start_time(q)} > {v['memoryBelowEnvelopeMinUptimeSeconds']}",
              v["memoryBelowEnvelopeFor"],
              "The cilium-agent working set is below its memory envelope.",
              f"The cilium-agent on {where} uses only {{{{ $value | humanize1024 }}}}B, below the lower "
              f"bound of its memory envelope: Hubble may be off, the agent not warmed up, or the envelope "
              "wrong for this node pool.",
              (KUBELET,)),
        Alert("CiliumAgentOOMKilled", "critical",
              f"time() - {q.max(c.AGENT_LAST_TERMINATED_TIMESTAMP)} < {v['oomKilledWindowSeconds']}\n"
              f"and\n{q.max(c.AGENT_LAST_TERMINATED_REASON, oom)} == 1",
              v["oomKilledFor"],
              "The cilium-agent was OOM-killed.",
              f"The cilium-agent on {where} was OOM-killed {{{{ $value | humanizeDuration }}}} ago: the "
              "datapath kept running, but policy updates, Hubble and the CNI were down while it restarted.",
              (APISERVER,)),
        Alert("CiliumAgentRestartingFrequently", "warning",
              f"max by ({q.by()}) (increase({q.sel(c.AGENT_RESTARTS)}[{v['restartsWindow']}])) "
              f">= {v['restartsThreshold']}",
              v["restartingFrequentlyFor"],
              "The cilium-agent restarts frequently.",
              f"The cilium-agent on {where} restarted {{{{ printf \"%.0f\" $value }}}} times in the last "
              f"{v['restartsWindow']}.",
              (APISERVER,)),
    ]


def _surge(q: PromQL, v: Values, rate: str, prefix: str) -> str:
    """Above the floor and several times the baseline; floor alone while the node is younger than
    the minimum baseline age (no sample `denialBaselineMinAge` ago)."""
    return (f"{rate} > {v[prefix + 'Floor']}\nand\n(\n"
            f"  {rate} > {v[prefix + 'Factor']} * avg_over_time({rate}[{v['denialBaselineWindow']}])\n"
            f"  or\n  {rate} unless {rate} offset {v['denialBaselineMinAge']}\n)")


def datapath_alerts(v: Values) -> list[Alert]:
    """Unexpected drops, conntrack full, policy and L7 denial surges."""
    q, where = PromQL(v), PromQL(v).where()
    ct = f'reason="{c.CONNTRACK_FULL_REASON}"'
    baseline = v["denialBaselineWindow"]
    return [
        Alert("CiliumNodeUnexpectedDrops", "warning",
              f"{r.drop_errors(r.DASHBOARD_WINDOW)} > {v['unexpectedDropsRate']}\nand\n"
              f"{r.drop_ratio(r.DASHBOARD_WINDOW)} > {v['unexpectedDropsRatio']}",
              v["unexpectedDropsFor"],
              "Packets are dropped for unexpected reasons.",
              f"The datapath on {where} drops "
              f"{{{{ $value | humanize }}}} packets/s for reasons that are neither policy nor configuration "
              f"(more than {{{{ {v['unexpectedDropsRatio']} | humanizePercentage }}}} of its traffic); "
              f"{r.DROPS_BY_REASON} shows which.",
              ()),
        Alert("CiliumNodeConntrackMapFull", "critical",
              f"max by ({q.by()}) (\n  {r.DATAPATH_DROPS_BY_REASON}{{{ct}}}\n  or\n"
              f"  {r.DROPS_BY_REASON}{{{ct}}}\n) > {v['conntrackFullDropRate']}",
              v["conntrackFullFor"],
              "The conntrack map is full.",
              f"The datapath on {where} drops {{{{ $value | humanize }}}} packets/s with "
              f"{c.CONNTRACK_FULL_REASON}: new connections through this node fail.",
              ()),
        Alert("CiliumNodePolicyDenialSurge", "warning",
              _surge(q, v, r.POLICY_DENIED, "policyDenialSurge"), v["policyDenialSurgeFor"],
              "Policy denials surge above their baseline.",
              f"Network policy on {where} denies {{{{ $value | humanize }}}} packets/s, more than "
              f"{v['policyDenialSurgeFactor']} times its {baseline} average (or above the floor on a young "
              "node): a rollout gone wrong, or lateral movement.",
              (HUBBLE,)),
        Alert("CiliumNodeL7DenialSurge", "warning",
              _surge(q, v, r.L7_DENIED, "l7DenialSurge"), v["l7DenialSurgeFor"],
              "L7 policy denials surge above their baseline.",
              f"L7 policy on {where} denies {{{{ $value | humanize }}}} requests/s, more than "
              f"{v['l7DenialSurgeFactor']} times its {baseline} average (or above the floor on a young "
              "node).",
              (HUBBLE,)),
    ]


def telemetry_alerts(v: Values) -> list[Alert]:
    """Hubble loss, exporter and source availability, BPF map pressure."""
    q, where = PromQL(v), PromQL(v).where()
    by = q.by()
    return [
        Alert("CiliumHubbleEventsLost", "warning",
              f"{r.LOST_BY_SOURCE} / on ({by}) group_left {r.FLOWS_SEEN} > 0\nand on ({by})\n"
              f"sum by ({by}) ({r.LOST_BY_SOURCE}) / {r.FLOWS_SEEN} > {v['hubbleLostEventsRatio']}",
              v["hubbleEventsLostFor"],
              "Hubble loses events: counts on the node are under-reported.",
              f"Hubble on {where} lost {{{{ $value | humanizePercentage }}}} of the flows it saw at "
              f"{{{{ $labels.source }}}}: {{{{ if eq $labels.source \"hubble_ring_buffer\" }}}}this exporter "
              "reads too slowly{{ else }}the cilium-agent is overloaded{{ end }}. Drop and verdict counts "
              "on this node are under-reported.",
              (HUBBLE,)),
        Alert("CiliumNodeExporterDown", "warning",
              f"max by ({by}) ({q.sel('up')}) == 0\nor\nabsent({q.sel('up')})", v["exporterDownFor"],
              "The cilium-node-exporter is down.",
              f"{{{{ if {q.label('nodeLabel')} }}}}The exporter on {where} is down{{{{ else }}}}Prometheus "
              "scrapes no exporter target at all{{ end }}: the other alerts of this pack are blind there.",
              (), reads_exporter=False),
        Alert("CiliumNodeExporterSourceDown", "warning",
              f"{q.max(c.SOURCE_UP, by=('source',))} == 0", v["sourceDownFor"],
              "An exporter source is down.",
              f"The exporter on {where} cannot read its {{{{ $labels.source }}}} source: the alerts that "
              "read it are blind on this node.",
              ()),
        Alert("CiliumNodeBpfMapPressure", "warning",
              f"{q.max(c.BPF_MAP_PRESSURE, by=('map_name',))} > {v['bpfMapPressureRatio']}",
              v["bpfMapPressureFor"],
              "A BPF map is nearly full.",
              f"The BPF map {{{{ $labels.map_name }}}} on {where} is {{{{ $value | humanizePercentage }}}} "
              "full: packets that need a new entry drop once it is full.",
              (AGENT,)),
        Alert("CiliumNodeExporterMissing", "warning",
              f"max by ({v['clusterLabel']}, namespace, daemonset) (kube_daemonset_status_number_unavailable"
              f"{{{v['kubeStateMetricsSelector']}, {v['exporterDaemonSetSelector']}}}) > 0",
              v["exporterMissingFor"],
              "Nodes run without a cilium-node-exporter.",
              "The DaemonSet {{ $labels.namespace }}/{{ $labels.daemonset }}"
              f"{{{{ with {q.label('clusterLabel')} }}}} in cluster {{{{ . }}}}{{{{ end }}}} has "
              "{{ $value }} unavailable pods: those nodes are not monitored.",
              (), reads_exporter=False),
    ]


def slo_alerts(v: Values) -> list[Alert]:
    """Multi-window multi-burn-rate alerts of both SLOs, one rule per window pair."""
    where, period = PromQL(v).where(), v.raw("sloPeriod")
    drop, memory = [], []
    for pair in v.raw("sloBurnWindows"):
        factor = go_number(burn_factor(period, pair))
        long, short = pair["long"], pair["short"]
        labels = {"long": long, "short": short}
        threshold = f"({factor} * (1 - {v['dropSloObjective']}))"
        drop.append(Alert(
            "CiliumNodeDropErrorBudgetBurn", pair["severity"],
            f"{r.drop_ratio(long)} > {threshold}\nand\n{r.drop_ratio(short)} > {threshold}\nand\n"
            f"{r.drop_traffic(long)} >= {v['dropSloMinTrafficRate']}",
            pair["for"],
            "The node burns its unexpected-drop error budget too fast.",
            f"The datapath on {where} dropped {{{{ $value | humanizePercentage }}}} of its traffic for "
            f"unexpected reasons over the last {long} (and over the last {short}): {factor} times the rate "
            f"the {period} objective allows.",
            (), labels))
        if pair["severity"] == "critical":  # a memory SLO opens tickets; the envelope alerts page
            continue
        threshold = f"({factor} * (1 - {v['memorySloObjective']}))"
        memory.append(Alert(
            "CiliumAgentMemoryEnvelopeBudgetBurn", "warning",
            f"{r.memory_ratio(long)} > {threshold}\nand\n{r.memory_ratio(short)} > {threshold}",
            pair["for"],
            "The cilium-agent burns its memory-envelope error budget too fast.",
            f"The cilium-agent on {where} was not running or above its memory envelope "
            f"{{{{ $value | humanizePercentage }}}} of the time over the last {long} (and over the last "
            f"{short}): {factor} times the rate the {period} objective allows.",
            (KUBELET,), labels))
    return drop + memory


ALERT_GROUPS = (
    ("cilium-node-exporter.memory", memory_alerts),
    ("cilium-node-exporter.datapath", datapath_alerts),
    ("cilium-node-exporter.telemetry", telemetry_alerts),
    ("cilium-node-exporter.slo", slo_alerts),
)


def all_alerts(v: Values) -> list[Alert]:
    """Every alert of the pack, in group order."""
    return [alert for _, build in ALERT_GROUPS for alert in build(v)]


def alert_groups(v: Values) -> list[dict[str, Any]]:
    """The alerting rule groups."""
    return [{"name": name, "rules": [a.rule(v) for a in build(v)]} for name, build in ALERT_GROUPS]


def _names(names: list[str] | tuple[str, ...]) -> str:
    unique = list(dict.fromkeys(names))
    return f'alertname="{unique[0]}"' if len(unique) == 1 else f'alertname=~"{"|".join(unique)}"'


def inhibit_rules(v: Values) -> list[dict[str, Any]]:
    """Alertmanager inhibitions: each cause mutes its echoes on the same node (and cluster)."""
    alerts = all_alerts(v)
    equal = [v.config["clusterLabel"], v.config["nodeLabel"]]

    def rule(source: list[str], target: list[str]) -> dict[str, Any]:
        return {"source_matchers": source, "target_matchers": target, "equal": equal}

    rules = [
        rule([_names(["CiliumNodeConntrackMapFull"])],
             [_names(["CiliumNodeUnexpectedDrops", "CiliumNodeDropErrorBudgetBurn"])]),
        rule([_names(["CiliumAgentOOMKilled"])], [_names(["CiliumAgentRestartingFrequently"])]),
        rule([_names(["CiliumAgentMemoryNearLimit"])], [_names(["CiliumAgentMemoryAboveEnvelope"])]),
        rule([_names(["CiliumNodeDropErrorBudgetBurn"]), 'severity="critical"'],
             [_names(["CiliumNodeDropErrorBudgetBurn"]), 'severity="warning"']),
        rule([_names(["CiliumNodeExporterDown"])],
             [_names([a.name for a in alerts if a.reads_exporter])]),
    ]
    for source in c.SOURCES:
        targets = [a.name for a in alerts if source in a.sources]
        if targets:
            rules.append(rule([_names(["CiliumNodeExporterSourceDown"]), f'source="{source}"'],
                              [_names(targets)]))
    return rules
