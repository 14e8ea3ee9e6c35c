"""Alerting rules and the Alertmanager inhibitions between them.

Paging policy (one incident, one page, at 200 nodes):
- ``critical`` (the ``page`` receiver) only for what hurts users now or within the hour: the packet-exact
  drop SLO burning fast, a full conntrack table dropping a share of traffic, an agent or Envoy in an
  OOM-kill loop, and the cluster roll-ups of harm (unexpected drops, from the agent's counters or, on
  Hubble-only nodes, loss-corrected Hubble events; agents crash-looping; agents about to hit their limit).
- Routine work stays ``warning`` at most: a rolling reboot restarts every agent once (a restart roll-up,
  not a crash loop), a slow leak far from the limit (above the envelope), monitoring that is blind
  (exporters or sources down) and an SLO without data (``CiliumNodeSloUnmeasured``).
- ``warning`` (the ``ticket`` receiver) for single-node problems that can wait, the Hubble approximation
  (labelled ``measurement="hubble-approximation"``) and the slow burns.
- Every alert name has exactly one severity, so severity inhibitions that match on ``alertname`` (the
  kube-prometheus default ``equal: [namespace, alertname]``) can never mute one node's alert with another's.
- Per-cluster alerts fire once when ``fleetNodeShare`` and ``fleetMinNodes`` of a cluster's nodes have the
  problem, and mute the per-node alerts of the same kind in that cluster.

Descriptions are %-templates over the configuration plus ``where`` (the node and cluster) and ``cluster``
(the cluster), so Prometheus' Go templates stay literal: ``{{ $value | humanize }}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from cilium_node_exporter import contract as c
from cilium_node_exporter.mixin import lifecycle as lc
from cilium_node_exporter.mixin import names as n
from cilium_node_exporter.mixin import slo
from cilium_node_exporter.mixin.config import Values, duration_seconds, go_number
from cilium_node_exporter.mixin.promql import PromQL

# Exporter sources an alert cannot do without: the exporter's `<source>` source down inhibits it. Drop
# alerts that read the datapath counters or else Hubble are only inhibited when the exporter is down.
HUBBLE, KUBELET, APISERVER, AGENT, SETTINGS = "hubble", "kubelet", "apiserver", "agent", "settings"
NODE, CLUSTER, GLOBAL = "node", "cluster", "global"


@dataclass(frozen=True)
class Alert:
    """One alerting rule. ``description`` is a %-template (see the module docstring)."""

    name: str
    severity: str
    expr: str
    for_: str
    summary: str
    description: str
    needs: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    scope: str = NODE  # node: labels cluster+node; cluster: cluster only; global: neither
    reads_exporter: bool = True

    def rule(self, text: Mapping[str, str], runbook_url: str) -> dict[str, Any]:
        """The rule as it goes into a Prometheus rule group."""
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity, **self.labels},
            "annotations": {"summary": self.summary, "description": self.description % text,
                            "runbook_url": runbook_url},
        }


class Text(Mapping[str, str]):
    """What descriptions may use: every configuration value (as text or Helm token), where, cluster."""

    def __init__(self, v: Values) -> None:
        q = PromQL(v)
        self._v = v
        self._extra = {"where": q.where(), "cluster": q.in_cluster(), "period": v.raw("sloPeriod")}

    def __getitem__(self, key: str) -> str:
        return self._extra[key] if key in self._extra else self._v[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._extra)

    def __len__(self) -> int:
        return len(self._extra)


def _label(expr: str, name: str, value: str) -> str:
    return f'label_replace(\n{expr},\n"{name}", "{value}", "", "")'


# --- per-node alerts -----------------------------------------------------------------------------
def memory_alerts(v: Values) -> list[Alert]:
    """cilium-agent and cilium-envoy memory and lifecycle (kubelet and API server sources)."""
    q = PromQL(v)
    start = q.max(c.AGENT_START_TIME)
    return [
        Alert(name=n.AGENT_ABOVE_ENVELOPE, severity="warning",
              expr=q.above_envelope(), for_=v["memoryAboveEnvelopeFor"],
              summary="The cilium-agent working set is above its memory envelope.",
              description="The cilium-agent on %(where)s uses {{ $value | humanize1024 }}B, above the upper bound "
                          "of its memory envelope for more than %(memoryAboveEnvelopeFor)s.",
              needs=(KUBELET,)),
        Alert(name=n.AGENT_NEAR_LIMIT, severity="warning",
              expr=f"{n.WORKING_SET} / {n.MEMORY_LIMIT} > {v['memoryNearLimitRatio']}",
              for_=v["memoryNearLimitFor"],
              summary="The cilium-agent is close to its container memory limit.",
              description="The cilium-agent on %(where)s uses {{ $value | humanizePercentage }} of its container "
                          "memory limit: the kernel OOM-kills it when it reaches the limit.",
              needs=(KUBELET,)),
        Alert(name=n.AGENT_GROWTH_FORECAST, severity="warning",
              expr=lc.growth_forecast(q),
              for_=v["memoryGrowthForecastFor"],
              summary="The cilium-agent memory trend crosses its envelope soon.",
              description="The cilium-agent on %(where)s is inside its memory envelope, but its footprint's trend "
                          "over the last %(memoryForecastWindow)s reaches {{ $value | humanize1024 }}B within "
                          "{{ %(memoryForecastHorizonSeconds)s | humanizeDuration }}, above the upper bound.",
              needs=(KUBELET,)),
        Alert(name="CiliumAgentMemoryBelowEnvelope", severity="info",
              expr=f"{n.WORKING_SET} < {n.ENVELOPE_LOWER}\n"
                   f"and\ntime() - {start} > {v['memoryBelowEnvelopeMinUptimeSeconds']}",
              for_=v["memoryBelowEnvelopeFor"],
              summary="The cilium-agent working set is below its memory envelope.",
              description="The cilium-agent on %(where)s uses only {{ $value | humanize1024 }}B, below the lower "
                          "bound of its memory envelope: Hubble may be off, the agent not warmed up, or the "
                          "envelope wrong for this node pool.",
              needs=(KUBELET,)),
        Alert(name=n.AGENT_OOM_KILLED, severity="warning",
              expr=q.oom_killed(c.AGENT_LAST_TERMINATED_TIMESTAMP, c.AGENT_LAST_TERMINATED_REASON),
              for_=v["oomKilledFor"],
              summary="The cilium-agent was OOM-killed.",
              description="The cilium-agent on %(where)s was OOM-killed {{ $value | humanizeDuration }} ago and "
                          "restarted: policy updates, Hubble and the CNI were down meanwhile. One kill is a "
                          "ticket; CiliumAgentOOMKillLoop pages when it repeats.",
              needs=(APISERVER,)),
        Alert(name=n.AGENT_OOM_KILL_LOOP, severity="critical",
              expr=q.oom_kill_loop(c.AGENT_RESTARTS, c.AGENT_LAST_TERMINATED_REASON),
              for_=v["oomKillLoopFor"],
              summary="The cilium-agent is being OOM-killed repeatedly.",
              description="The cilium-agent on %(where)s restarted {{ printf \"%%.0f\" $value }} times in the "
                          "last %(oomKillLoopWindow)s and was OOM-killed: new pods on the node get no network "
                          "and policy changes do not apply while it restarts.",
              needs=(APISERVER,)),
        Alert(name="CiliumAgentRestartingFrequently", severity="warning",
              expr=f"{q.restarts(c.AGENT_RESTARTS, v['restartsWindow'])} >= {v['restartsThreshold']}",
              for_=v["restartingFrequentlyFor"],
              summary="The cilium-agent restarts frequently.",
              description="The cilium-agent on %(where)s restarted {{ printf \"%%.0f\" $value }} times in the last "
                          "%(restartsWindow)s.",
              needs=(APISERVER,)),
        Alert(name="CiliumEnvoyMemoryNearLimit", severity="warning",
              expr=f"{n.ENVOY_WORKING_SET} / {n.ENVOY_LIMIT} > {v['envoyMemoryNearLimitRatio']}",
              for_=v["envoyMemoryNearLimitFor"],
              summary="The cilium-envoy container is close to its container memory limit.",
              description="cilium-envoy on %(where)s uses {{ $value | humanizePercentage }} of its container "
                          "memory limit: when it is OOM-killed, L7 policy (HTTP, Kafka, DNS proxying) on the node "
                          "fails until it restarts.",
              needs=(KUBELET,)),
        Alert(name="CiliumEnvoyOOMKilled", severity="warning",
              expr=q.oom_killed(c.ENVOY_LAST_TERMINATED_TIMESTAMP, c.ENVOY_LAST_TERMINATED_REASON),
              for_=v["oomKilledFor"],
              summary="The cilium-envoy container was OOM-killed.",
              description="cilium-envoy on %(where)s was OOM-killed {{ $value | humanizeDuration }} ago: "
                          "connections through L7 policy on the node were reset. The cilium-agent was not "
                          "affected. CiliumEnvoyOOMKillLoop pages when it repeats.",
              needs=(APISERVER,)),
        Alert(name="CiliumEnvoyOOMKillLoop", severity="critical",
              expr=q.oom_kill_loop(c.ENVOY_RESTARTS, c.ENVOY_LAST_TERMINATED_REASON),
              for_=v["oomKillLoopFor"],
              summary="The cilium-envoy container is being OOM-killed repeatedly.",
              description="cilium-envoy on %(where)s restarted {{ printf \"%%.0f\" $value }} times in the last "
                          "%(oomKillLoopWindow)s and was OOM-killed: traffic under L7 policy on the node keeps "
                          "failing. The cilium-agent itself is not the one restarting.",
              needs=(APISERVER,)),
    ]


def _surge(q: PromQL, v: Values, rate: str, prefix: str) -> str:
    """Above the floor and several times the baseline (tiles of the rate); floor alone while the node is
    younger than the minimum baseline age (no sample ``denialBaselineMinAge`` ago)."""
    baseline = f"avg_over_time({n.tile(rate, v.raw('sloRateWindow'))}[{v['denialBaselineWindow']}])"
    return (f"{rate} > {v[prefix + 'Floor']}\nand\n(\n"
            f"  {rate} > {v[prefix + 'Factor']} * {baseline}\n"
            f"  or\n  {rate} unless {rate} offset {v['denialBaselineMinAge']}\n)")


def datapath_alerts(v: Values) -> list[Alert]:
    """Unexpected drops, conntrack full, policy and L7 denial surges."""
    q = PromQL(v)
    ct = q.reason(c.CONNTRACK_FULL_REASON)
    ct_packets = f"sum by ({q.by()}) ({n.DATAPATH_DROPS_BY_REASON}{{{ct}}})"
    ct_hubble = f"sum by ({q.by()}) ({n.DROPS_BY_REASON}{{{ct}}})"
    return [
        Alert(name="CiliumNodeUnexpectedDrops", severity="warning",
              expr=f"{_label(q.unexpected_drops_packets(), 'measurement', 'packets')}\nor\n"
                   f"{_label(q.unexpected_drops_hubble(), 'measurement', 'hubble-approximation')}",
              for_=v["unexpectedDropsFor"],
              summary="Packets are dropped for unexpected reasons.",
              description="The datapath on %(where)s drops {{ $value | humanize }} packets/s for reasons that are "
                          "neither policy, expected by Cilium, nor configuration (more than "
                          "{{ %(unexpectedDropsRatio)s | humanizePercentage }} of its traffic{{ if eq "
                          "$labels.measurement \"hubble-approximation\" }}, approximated from Hubble events over "
                          "flows seen: no agent source on this node{{ end }}); drops by reason: Cilium / Node "
                          "Detail."),
        Alert(name="CiliumNodeConntrackMapFull", severity="critical",
              expr=f"{ct_packets} > {v['conntrackFullDropRate']}\n"
                   f"and {q.on()}\n{ct_packets} / ({n.DATAPATH_PACKETS} > 0) > {v['conntrackFullDropRatio']}\n"
                   f"or\n({ct_hubble} > {v['conntrackFullDropRate']}\n"
                   f" unless {q.on()} {n.DATAPATH_PACKETS}\n unless {q.on()} {n.BLIND})",
              for_=v["conntrackFullFor"],
              summary="The conntrack map is full and new connections fail.",
              description="The datapath on %(where)s drops {{ $value | humanize }} packets/s with "
                          + c.CONNTRACK_FULL_REASON + " (more than %(conntrackFullDropRate)s/s and, where the agent "
                          "counts packets, more than {{ %(conntrackFullDropRatio)s | humanizePercentage }} of the "
                          "node's packets): new connections through this node fail."),
        Alert(name=n.POLICY_DENIAL_SURGE, severity="warning",
              expr=_surge(q, v, n.POLICY_DENIED, "policyDenialSurge"), for_=v["policyDenialSurgeFor"],
              summary="Policy denials surge above their baseline.",
              description="Network policy on %(where)s denies {{ $value | humanize }} packets/s, more than "
                          "%(policyDenialSurgeFactor)s times its %(denialBaselineWindow)s average (or above the "
                          "floor on a young node): a rollout gone wrong, or lateral movement.",
              needs=(HUBBLE,)),
        Alert(name=n.L7_DENIAL_SURGE, severity="warning",
              expr=_surge(q, v, n.L7_DENIED, "l7DenialSurge"), for_=v["l7DenialSurgeFor"],
              summary="L7 policy denials surge above their baseline.",
              description="L7 policy on %(where)s denies {{ $value | humanize }} requests/s, more than "
                          "%(l7DenialSurgeFactor)s times its %(denialBaselineWindow)s average (or above the floor "
                          "on a young node).",
              needs=(HUBBLE,)),
    ]


BLIND_WHY = (
    '{{ if eq $labels.cause "drop_notifications_off" }}the agent emits no drop notifications '
    "(bpf-events-drop-enabled=false)"
    '{{ else if eq $labels.cause "verdict_notifications_off" }}the agent emits no policy-verdict notifications '
    "(bpf-events-policy-verdict-enabled=false)"
    '{{ else if eq $labels.cause "monitor_events_filtered" }}Hubble does not observe drop or policy-verdict '
    "events (hubble-monitor-events)"
    '{{ else if eq $labels.cause "events_rate_limited" }}the BPF events rate limiter discards notifications '
    "(bpf-events-default-rate-limit)"
    "{{ else }}the datapath counts drops that Hubble never delivers{{ end }}"
)


def telemetry_alerts(v: Values) -> list[Alert]:
    """Hubble loss and blindness, exporter and source availability, BPF maps, retention."""
    q = PromQL(v)
    by = q.by()
    ksm = v["kubeStateMetricsSelector"]
    ds = f"{{{ksm}, {v['exporterDaemonSetSelector']}}}"
    dsby = f"{q.cluster}, namespace, daemonset"
    return [
        Alert(name="CiliumHubbleEventsLost", severity="warning",
              expr=f"{n.LOST_BY_SOURCE} / on ({by}) group_left {n.FLOWS_SEEN} > 0\nand on ({by})\n"
                   f"sum by ({by}) ({n.LOST_BY_SOURCE}) / {n.FLOWS_SEEN} > {v['hubbleLostEventsRatio']}",
              for_=v["hubbleEventsLostFor"],
              summary="Hubble loses events: counts on the node are under-reported.",
              description="Hubble on %(where)s lost {{ $value | humanizePercentage }} of the flows it saw at "
                          "{{ $labels.source }}: {{ if eq $labels.source \"hubble_ring_buffer\" }}this exporter "
                          "reads too slowly{{ else }}the cilium-agent is overloaded{{ end }}. Drop and verdict "
                          "counts on this node are under-reported.",
              needs=(HUBBLE,)),
        Alert(name="CiliumNodeHubbleBlind", severity="warning",
              expr=n.BLIND, for_=v["blindFor"],
              summary="Hubble cannot see what the node drops: the node is not measured.",
              description="Hubble on %(where)s is blind: " + BLIND_WHY + ". Zero drops there mean nothing; "
                          "the Hubble-based drop alerts treat the node as not measured (the packet-exact drop "
                          "SLO, from the agent's counters, is not affected)."),
        Alert(name="CiliumNodeExporterDown", severity="warning",
              expr=f"{q.exporter_up()} == 0", for_=v["exporterDownFor"],
              summary="The cilium-node-exporter is down.",
              description="The exporter on %(where)s is down: the other alerts of this pack are blind there.",
              reads_exporter=False),
        Alert(name="CiliumNodeExporterSourceDown", severity="warning",
              expr=f"{q.sources_up()} == 0", for_=v["sourceDownFor"],
              summary="An exporter source is down.",
              description="The exporter on %(where)s cannot read its {{ $labels.source }} source: the alerts "
                          "that read it are blind on this node."),
        Alert(name="CiliumNodeBpfMapPressure", severity="warning",
              expr=f"{q.max(c.BPF_MAP_PRESSURE, by=('map_name',))} > {v['bpfMapPressureRatio']}",
              for_=v["bpfMapPressureFor"],
              summary="A BPF map is nearly full.",
              description="The BPF map {{ $labels.map_name }} on %(where)s is {{ $value | humanizePercentage }} "
                          "full: packets that need a new entry drop once it is full.",
              needs=(AGENT,)),
        # kube-state-metrics' KubeDaemonSetRolloutStuck pattern: pods missing AND no progress; a slow
        # rollout (one node every ~20 s on 200 nodes) keeps progressing and stays quiet.
        Alert(name="CiliumNodeExporterRolloutStuck", severity="warning",
              expr=f"max by ({dsby}) (kube_daemonset_status_number_unavailable{ds}) > 0\n"
                   f"and on ({dsby})\nmax by ({dsby}) (changes(kube_daemonset_status_updated_number_scheduled"
                   f"{ds}[5m])) == 0\nand on ({dsby})\n"
                   f"max by ({dsby}) (changes(kube_daemonset_status_number_available{ds}[5m])) == 0",
              for_=v["exporterRolloutStuckFor"],
              summary="The cilium-node-exporter DaemonSet is stuck with nodes unmonitored.",
              description="The DaemonSet {{ $labels.namespace }}/{{ $labels.daemonset }} in %(cluster)s has "
                          "{{ $value }} unavailable pods and has made no progress for %(exporterRolloutStuckFor)s: "
                          "those nodes are not monitored.",
              scope=CLUSTER, reads_exporter=False),
    ]


def retention_alerts(v: Values) -> list[Alert]:
    """Prometheus keeps less than the SLO period (one series per Prometheus: evaluated every sloPeriodInterval)."""
    prom = f"prometheus_tsdb_lowest_timestamp_seconds{{{v['prometheusSelector']}}}"
    period_s = go_number(duration_seconds(v.raw("sloPeriod")))
    return [
        Alert(name="CiliumSloRetentionTooShort", severity="warning",
              expr=f"time() - max({prom}) < {period_s}\nand\n"
                   f"max(max_over_time({prom}[1d]) - min_over_time({prom}[1d])) > 0",
              for_=v["retentionTooShortFor"],
              summary="Prometheus keeps less data than the SLO period.",
              description="Prometheus holds only {{ $value | humanizeDuration }} of data and deletes older data, "
                          "but the SLOs are computed over %(period)s: their period SLIs and the SLO Review cover "
                          "less than they say. Raise the retention (docs/deploy.md).",
              scope=GLOBAL, reads_exporter=False),
    ]


def _drop_short(q: PromQL, v: Values, pair: slo.BurnWindow, threshold: str) -> str:
    """The short window burns. While a node starts (its counters new or reset within dropSloStartupFor plus the
    short window), the transient class is left out: start-up drops do not page, a sustained not-ready does
    once the start-up is over, and every drop still counts in the SLI."""
    ratio = f"{n.drop_ratio(pair.short)} > {threshold}"
    if not slo.from_raw(v.config, pair.short):
        return ratio
    total = n.DROP_SLO_TRAFFIC_TOTAL
    span = f"{int(duration_seconds(v.raw('dropSloStartupFor')) + duration_seconds(pair.short))}s"
    starting = f"resets({total}[{span}]) > 0\n  or\n  {total} unless {total} offset {span}"
    settled = (f"({n.drop_errors(pair.short)} - {n.drop_transient(pair.short)})\n  / ({n.drop_traffic(pair.short)} > 0)"
               f" > {threshold}")
    return (f"(\n  {ratio}\n  unless {q.on()}\n  (\n  {starting}\n  )\n"
            f"  or\n  {settled}\n  and {q.on()}\n  (\n  {starting}\n  )\n)")


def slo_alerts(v: Values) -> list[Alert]:
    """Multi-window multi-burn-rate alerts: one rule per window pair. Pages only on the packet-exact SLI."""
    q = PromQL(v)
    alerts = []
    for slo_, pairs in ((slo.DROP, slo.burn_windows(v.config, slo.DROP)),
                        (slo.MEMORY, slo.burn_windows(v.config, slo.MEMORY))):
        budget = f"(1 - {v[slo_.objective_key]})"
        for pair in pairs:
            factor = go_number(pair.factor)
            threshold = f"({factor} * {budget})"
            labels = {"slo": slo_.name, "long": pair.long, "short": pair.short}
            text = (f"over the last {pair.long} (and over the last {pair.short}): {factor} times the rate the "
                    "%(period)s objective allows.")
            if slo_ is slo.DROP:
                seconds = go_number(duration_seconds(pair.short))
                alerts.append(Alert(
                    name="CiliumNodeDropErrorBudgetBurn" if pair.severity == "critical"
                    else "CiliumNodeDropErrorBudgetSlowBurn",
                    severity=pair.severity,
                    expr=f"{n.drop_ratio(pair.long)} > {threshold}\nand\n{_drop_short(q, v, pair, threshold)}\n"
                         f"and\n{n.drop_traffic(pair.short)} >= {v['dropSloMinTrafficRate']} * {seconds}\n"
                         f"and\n{n.drop_errors(pair.long)} >= {v['dropSloMinErrors']}",
                    for_=pair.for_,
                    summary="The node burns its unexpected-drop error budget too fast."
                    if pair.severity == "critical" else "The node burns its unexpected-drop error budget.",
                    description="The datapath on %(where)s dropped {{ $value | humanizePercentage }} of its packets "
                                "for unexpected reasons " + text,
                    needs=(AGENT,), labels=labels))
            else:
                alerts.append(Alert(
                    name="CiliumAgentMemoryEnvelopeBudgetBurn", severity="warning",
                    expr=f"{n.memory_ratio(pair.long)} > {threshold}\nand\n{n.memory_ratio(pair.short)} > {threshold}",
                    for_=pair.for_,
                    summary="The cilium-agent burns its memory-envelope error budget too fast.",
                    description="The cilium-agent on %(where)s was not running or above its memory envelope "
                                "{{ $value | humanizePercentage }} of the time " + text,
                    needs=(KUBELET,), labels=labels))
    # Scraped throughout the window (up now and at its start, never down in it) and no SLI sample in all of it:
    # no `for:` (no pending state while a starting exporter reads its sources or an SLI skips a sample).
    window = v["sloUnmeasuredFor"]
    up = (f"max by ({q.by()}) (min_over_time({q.sel('up')}[{window}])) == 1\n"
          f"and {q.on()}\nmax by ({q.by()}) ({q.sel('up')} offset {window})")
    no_drop_sli = f"{up}\nunless {q.on()}\nlast_over_time({n.DROP_SLO_TRAFFIC_TOTAL}[{window}])"
    no_memory_sli = f"{up}\nunless {q.on()}\nlast_over_time({n.MEMORY_ENVELOPE_ERROR}[{window}])"
    alerts.append(Alert(
        name="CiliumNodeSloUnmeasured", severity="warning",
        expr=f"{_label(no_drop_sli, 'slo', slo.DROP.name)}\nor\n{_label(no_memory_sli, 'slo', slo.MEMORY.name)}",
        for_="0s",
        summary="An SLO of the node has no data although its exporter is up.",
        description="The {{ $labels.slo }} SLO of %(where)s has had no data for %(sloUnmeasuredFor)s although "
                    "the exporter is scraped: {{ if eq $labels.slo \"drop-ratio\" }}the exporter reads no "
                    "datapath counters from the cilium-agent. Cilium's chart ships prometheus.enabled=false: "
                    "enable the agent's metrics (prometheus.enabled=true) and the exporter's agent source; "
                    "until then the node's drops page only through the Hubble approximation"
                    "{{ else }}the exporter reads no cilium-agent working set from the kubelet (kubelet "
                    "source down, or no cilium-agent pod on the node){{ end }}. Zero burn there means nothing."))
    return alerts


def _fleet(v: Values, affected: str, population: str, *by: str) -> str:
    """True per cluster (and ``by``) when ``fleetNodeShare`` of ``population`` and ``fleetMinNodes`` nodes are
    affected; the value is the share."""
    cl = ", ".join((PromQL(v).cluster, *by))
    return (f"count by ({cl}) (\n{affected}\n)\n/ on ({cl})\ncount by ({cl}) (\n{population}\n)\n"
            f">= {v['fleetNodeShare']}\nand on ({cl})\ncount by ({cl}) (\n{affected}\n) >= {v['fleetMinNodes']}")


def cluster_alerts(v: Values) -> list[Alert]:
    """One alert per cluster for a problem many of its nodes share (a bad rollout, a broken dependency)."""
    q = PromQL(v)
    cl = q.cluster
    up = f"{q.exporter_up()} == 1"
    share = ("{{ $value | humanizePercentage }} of the nodes in %(cluster)s (at least %(fleetMinNodes)s, "
             "threshold {{ %(fleetNodeShare)s | humanizePercentage }})")
    agent_restarted = f"{q.restarts(c.AGENT_RESTARTS, v['restartsWindow'])} > 0"
    envoy_restarted = f"{q.restarts(c.ENVOY_RESTARTS, v['restartsWindow'])} > 0"
    agent_looping = f"{q.restarts(c.AGENT_RESTARTS, v['restartsWindow'])} >= {v['clusterCrashLoopRestarts']}"
    envoy_looping = f"{q.restarts(c.ENVOY_RESTARTS, v['restartsWindow'])} >= {v['clusterCrashLoopRestarts']}"
    near_limit = (f"{n.WORKING_SET} / {n.MEMORY_LIMIT} > {v['memoryNearLimitRatio']}\nor\n"
                  f"predict_linear({n.WORKING_SET}[{v['memoryLimitForecastWindow']}], "
                  f"{v['memoryLimitForecastHorizonSeconds']}) >= {n.MEMORY_LIMIT}")
    hubble_drops = q.unexpected_drops_hubble_corrected()
    ksm_nodes = f"count by ({cl}) (kube_node_info{{{v['kubeStateMetricsSelector']}}})"
    sources = q.sources_up()
    return [
        Alert(name="CiliumClusterAgentMemoryNearLimit", severity="critical",
              expr=_fleet(v, near_limit, n.WORKING_SET), for_=v["memoryNearLimitFor"],
              summary="The cilium-agents across the cluster are about to hit their memory limit.",
              description="On " + share + " the cilium-agent is above {{ %(memoryNearLimitRatio)s | "
                          "humanizePercentage }} of its container memory limit or, at its trend over the last "
                          "%(memoryLimitForecastWindow)s, reaches it within {{ %(memoryLimitForecastHorizonSeconds)s "
                          "| humanizeDuration }}: OOM kills across the cluster are imminent (new pods get no "
                          "network while agents restart). Roll back the release or raise the limit.",
              needs=(KUBELET,), scope=CLUSTER),
        Alert(name="CiliumClusterAgentMemoryAboveEnvelope", severity="warning",
              expr=_fleet(v, q.above_envelope(), n.WORKING_SET), for_=v["memoryAboveEnvelopeFor"],
              summary="The cilium-agents across the cluster are above their memory envelope.",
              description="On " + share + " the cilium-agent is above its memory envelope: a leak in the running "
                          "Cilium release or a change that grew every agent. Compare by Cilium version "
                          "(Cilium / Node Fleet) and consider rolling back.",
              needs=(KUBELET,), scope=CLUSTER),
        Alert(name="CiliumClusterAgentCrashLooping", severity="critical",
              expr=_fleet(v, agent_looping, up), for_=v["clusterCrashLoopFor"],
              summary="The cilium-agents across the cluster are crash-looping.",
              description="On " + share + " the cilium-agent restarted at least %(clusterCrashLoopRestarts)s "
                          "times (OOM kills included) in the last %(restartsWindow)s: new pods get no network and "
                          "policy updates stall. A bad Cilium release or configuration is the usual cause.",
              needs=(APISERVER,), scope=CLUSTER),
        Alert(name="CiliumClusterAgentRestarts", severity="warning",
              expr=_fleet(v, agent_restarted, up), for_=v["oomKilledFor"],
              summary="The cilium-agents across the cluster are restarting.",
              description="On " + share + " the cilium-agent restarted (OOM kills included) in the last "
                          "%(restartsWindow)s: new pods get no network and policy updates stall while they "
                          "restart. A bad Cilium release or configuration is the usual cause.",
              needs=(APISERVER,), scope=CLUSTER),
        Alert(name="CiliumClusterEnvoyCrashLooping", severity="critical",
              expr=_fleet(v, envoy_looping, up), for_=v["clusterCrashLoopFor"],
              summary="The cilium-envoy containers across the cluster are crash-looping.",
              description="On " + share + " cilium-envoy restarted at least %(clusterCrashLoopRestarts)s times "
                          "(OOM kills included) in the last %(restartsWindow)s: traffic under L7 policy fails.",
              needs=(APISERVER,), scope=CLUSTER),
        Alert(name="CiliumClusterEnvoyRestarts", severity="warning",
              expr=_fleet(v, envoy_restarted, up), for_=v["oomKilledFor"],
              summary="The cilium-envoy containers across the cluster are restarting.",
              description="On " + share + " cilium-envoy restarted (OOM kills included) in the last "
                          "%(restartsWindow)s: traffic under L7 policy fails while it restarts.",
              needs=(APISERVER,), scope=CLUSTER),
        Alert(name="CiliumClusterUnexpectedDrops", severity="critical",
              expr=_fleet(v, q.unexpected_drops_packets(), n.DATAPATH_PACKETS), for_=v["unexpectedDropsFor"],
              summary="Nodes across the cluster drop packets for unexpected reasons.",
              description="On " + share + " the datapath drops more than %(unexpectedDropsRate)s packets/s and "
                          "more than {{ %(unexpectedDropsRatio)s | humanizePercentage }} of its packets for "
                          "unexpected reasons (agent counters): a datapath regression or a shared dependency. "
                          "Drops by reason: Cilium / Node Fleet.",
              scope=CLUSTER),
        Alert(name="CiliumClusterUnexpectedDropsHubble", severity="critical",
              expr=_fleet(v, hubble_drops, f"{up}\nunless {q.on()}\n{n.DATAPATH_PACKETS}"),
              for_=v["unexpectedDropsFor"],
              summary="Nodes across the cluster drop packets for unexpected reasons (Hubble, no agent counters).",
              description="On " + share + " of the nodes without the agent's packet counters, Hubble reports "
                          "more than %(unexpectedDropsRate)s unexpected drops/s per node, corrected for the "
                          "events Hubble lost (at most %(hubbleLossCorrectionMax)sx): a datapath regression "
                          "or a shared dependency. Those nodes have no drop SLO (CiliumNodeSloUnmeasured): "
                          "this is their page.",
              labels={"measurement": "hubble-approximation"}, scope=CLUSTER),
        Alert(name="CiliumClusterExporterSourceDown", severity="warning",
              expr=_fleet(v, f"{sources} == 0", sources, "source"),
              for_=v["sourceDownFor"],
              summary="An exporter source is down across the cluster.",
              description="On {{ $value | humanizePercentage }} of the nodes in %(cluster)s the exporter cannot read "
                          "its {{ $labels.source }} source: the alerts that read it are blind for the cluster "
                          "(Hubble disabled by an upgrade, RBAC or TLS changed).",
              scope=CLUSTER),
        Alert(name="CiliumClusterExportersDown", severity="warning",
              expr=_fleet(v, f"{q.exporter_up()} == 0", q.exporter_up()), for_=v["exporterDownFor"],
              summary="The cilium-node-exporters across the cluster are down.",
              description="On " + share + " the exporter target is down: this pack is blind there.",
              scope=CLUSTER, reads_exporter=False),
        # kubernetes-mixin KubeletDown pattern: kube-state-metrics' node list keeps the cluster label when
        # no exporter target is left in the cluster (absent() would lose it).
        Alert(name="CiliumClusterExportersAbsent", severity="warning",
              expr=f"{ksm_nodes}\nunless on ({cl})\ncount by ({cl}) ({q.sel('up')})",
              for_=v["exportersAbsentFor"],
              summary="No cilium-node-exporter is scraped in the cluster.",
              description="kube-state-metrics lists {{ $value }} nodes in %(cluster)s, but Prometheus scrapes no "
                          "cilium-node-exporter there: the DaemonSet is gone or the scrape configuration "
                          "(ServiceMonitor, job name) does not match. The whole cluster is unmonitored.",
              scope=CLUSTER, reads_exporter=False),
        Alert(name="CiliumClusterHubbleBlindNodes", severity="warning",
              expr=_fleet(v, f"group by ({q.by()}) ({n.BLIND})", up), for_=v["blindFor"],
              summary="Hubble is blind on many nodes of the cluster.",
              description="On " + share + " Hubble cannot see what the node drops (see CiliumNodeHubbleBlind "
                          "for the causes): usually a Cilium setting changed for the whole cluster.",
              scope=CLUSTER),
    ]


def _lifecycle_alerts(v: Values) -> list[Alert]:
    """Restart artefacts and the version canary (alerts/memory_lifecycle.py, which imports this module)."""
    from alerts.memory_lifecycle import lifecycle_alerts

    return lifecycle_alerts(v)


ALERT_GROUPS: tuple[tuple[str, Callable[[Values], list[Alert]]], ...] = (
    ("cilium-node-exporter.memory", memory_alerts),
    ("cilium-node-exporter.datapath", datapath_alerts),
    ("cilium-node-exporter.telemetry", telemetry_alerts),
    ("cilium-node-exporter.slo", slo_alerts),
    ("cilium-node-exporter.cluster", cluster_alerts),
    ("cilium-node-exporter.retention", retention_alerts),
    ("cilium-node-exporter.lifecycle", _lifecycle_alerts),
)
# Alert groups evaluated less often than the global interval (a configuration key: Helm value).
GROUP_INTERVALS = {"cilium-node-exporter.retention": "sloPeriodInterval"}


def all_alerts(v: Values) -> list[Alert]:
    """Every alert of the pack, in group order."""
    return [alert for _, build in ALERT_GROUPS for alert in build(v)]


def alert_groups(v: Values) -> list[dict[str, Any]]:
    """The alerting rule groups."""
    text = Text(v)
    out = []
    for name, build in ALERT_GROUPS:
        group: dict[str, Any] = {"name": name}
        if name in GROUP_INTERVALS:
            group["interval"] = v[GROUP_INTERVALS[name]]
        out.append({**group, "rules": [a.rule(text, v.runbook_url(a.name)) for a in build(v)]})
    return out


def _names(names: list[str] | tuple[str, ...]) -> str:
    unique = list(dict.fromkeys(names))
    return f'alertname="{unique[0]}"' if len(unique) == 1 else f'alertname=~"{"|".join(unique)}"'


# Kubernetes alerts (kubernetes-mixin, kube-prometheus) that explain every per-node alert on their node.
NODE_DOWN_ALERTS = ("KubeNodeNotReady", "KubeNodeUnreachable")


def inhibit_rules(v: Values) -> list[dict[str, Any]]:
    """Alertmanager inhibitions: a cause mutes its echoes on the same node, or in the same cluster.

    Every rule is scoped by the cluster label (a label missing on both alerts compares equal, so
    single-cluster setups without the label work too).
    """
    alerts = all_alerts(v)
    cl, nd = v.config["clusterLabel"], v.config["nodeLabel"]
    per_node = [a.name for a in alerts if a.scope == NODE]

    def node(source: list[str] | tuple[str, ...], target: list[str], *matchers: str) -> dict[str, Any]:
        return {"source_matchers": [_names(source), *matchers], "target_matchers": [_names(target)],
                "equal": [cl, nd]}

    def cluster(source: str, target: list[str], *also: str) -> dict[str, Any]:
        return {"source_matchers": [_names([source])], "target_matchers": [_names(target)], "equal": [cl, *also]}

    drop_all = ["CiliumNodeUnexpectedDrops", "CiliumNodeDropErrorBudgetBurn", "CiliumNodeDropErrorBudgetSlowBurn"]
    rules = [
        node(["CiliumNodeConntrackMapFull"], drop_all),
        node(["CiliumNodeDropErrorBudgetBurn"], ["CiliumNodeUnexpectedDrops", "CiliumNodeDropErrorBudgetSlowBurn"]),
        node(["CiliumAgentOOMKillLoop"], ["CiliumAgentOOMKilled", "CiliumAgentRestartingFrequently"]),
        node(["CiliumAgentOOMKilled"], ["CiliumAgentRestartingFrequently"]),
        node(["CiliumEnvoyOOMKillLoop"], ["CiliumEnvoyOOMKilled"]),
        node(["CiliumAgentMemoryNearLimit"], ["CiliumAgentMemoryAboveEnvelope"]),
        node(["CiliumAgentMemoryAboveEnvelope"], ["CiliumAgentMemoryEnvelopeBudgetBurn"]),
        node(["CiliumNodeExporterDown"], [a.name for a in alerts if a.scope == NODE and a.reads_exporter]),
        node(NODE_DOWN_ALERTS, per_node),
    ]
    for source in c.SOURCES:
        targets = [a.name for a in alerts if source in a.needs and a.scope == NODE]
        if targets:
            rules.append(node(["CiliumNodeExporterSourceDown"], targets, f'source="{source}"'))
    memory = ["CiliumAgentMemoryAboveEnvelope", "CiliumAgentMemoryNearLimit", "CiliumAgentMemoryGrowthForecast",
              "CiliumAgentMemoryEnvelopeBudgetBurn"]
    agent_restarts = ["CiliumAgentOOMKilled", "CiliumAgentOOMKillLoop", "CiliumAgentRestartingFrequently"]
    rules += [
        cluster("CiliumClusterAgentMemoryNearLimit", [*memory, "CiliumClusterAgentMemoryAboveEnvelope"]),
        cluster("CiliumClusterAgentMemoryAboveEnvelope", memory),
        # a bad release that leaks into OOM kills pages once, for the crash loop, with pages grouped per alert
        # name (routing.py): the loop mutes the restart and memory roll-ups and their per-node alerts
        cluster("CiliumClusterAgentCrashLooping",
                [*agent_restarts, "CiliumClusterAgentRestarts", "CiliumClusterAgentMemoryNearLimit",
                 "CiliumClusterAgentMemoryAboveEnvelope"]),
        cluster("CiliumClusterAgentRestarts", [*agent_restarts, "CiliumClusterAgentMemoryAboveEnvelope"]),
        cluster("CiliumClusterEnvoyCrashLooping",
                ["CiliumEnvoyOOMKilled", "CiliumEnvoyOOMKillLoop", "CiliumClusterEnvoyRestarts"]),
        cluster("CiliumClusterEnvoyRestarts", ["CiliumEnvoyOOMKilled", "CiliumEnvoyOOMKillLoop"]),
        cluster("CiliumClusterUnexpectedDrops", [*drop_all, "CiliumNodeConntrackMapFull"]),
        cluster("CiliumClusterUnexpectedDropsHubble", ["CiliumNodeUnexpectedDrops", "CiliumNodeConntrackMapFull"]),
        cluster("CiliumClusterExporterSourceDown", ["CiliumNodeExporterSourceDown"], "source"),
        cluster("CiliumClusterExportersDown", ["CiliumNodeExporterDown"]),
        cluster("CiliumClusterExportersAbsent",
                ["CiliumClusterExportersDown", "CiliumNodeExporterDown", "CiliumNodeExporterRolloutStuck"]),
        cluster("CiliumClusterHubbleBlindNodes", ["CiliumNodeHubbleBlind"]),
    ]
    return rules
