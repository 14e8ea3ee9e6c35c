"""Cilium / Node Fleet: 200 nodes at a glance.

Distributions (min, median, p90, max across nodes) and counts of nodes per state instead of "top 10" lines
(whose members change from one step to the next), the canary view (nodes compared by Cilium version), and a
table of every node, worst first, whose rows open the node detail in the row's own cluster. Range panels
read the pack's 5m recorded rates at a 5m step: a 5m rate has nothing to show between two steps, and at
200 nodes a 30 s step would read ten times the samples.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db

from cilium_node_exporter import contract as c
from cilium_node_exporter.mixin import lifecycle as lc
from cilium_node_exporter.mixin import names as n
from cilium_node_exporter.mixin.config import Values
from cilium_node_exporter.mixin.promql import PromQL
from dashboards import panels as P
from dashboards.panels import Column, Q

UID = P.FLEET_UID
STEP = n.RATE_WINDOW  # minimum step of the range panels
ENVELOPE_STEPS = P.thresholds((None, "green"), (0.8, "yellow"), (1, "red"))
DROP_RATIO_STEPS = P.thresholds((None, "green"), (0.0001, "yellow"), (0.001, "red"))
BANDS = (("min", "min({})"), ("median", "quantile(0.5, {})"), ("p90", "quantile(0.9, {})"), ("max", "max({})"))


def _bands(expr: str) -> list[Q]:
    return [Q(template.format(expr), name, interval=STEP) for name, template in BANDS]


def node_states(q: PromQL) -> dict[str, str]:
    """Node counts per state: the alerts' own per-node conditions, counted (0 when none)."""
    return {
        "exporter up": f"count({q.exporter_up()} == 1)",
        "exporter down": f"count({q.exporter_up()} == 0)",
        "a source down": f"count(group by ({q.by()}) ({q.sources_up()} == 0))",
        "packet-exact drop SLI": f"count({q.rec(n.DATAPATH_PACKETS)})",
        "Hubble approximation only": f"count({q.rec(n.FLOWS_SEEN)} unless {q.on()} {q.rec(n.DATAPATH_PACKETS)})",
        "Hubble blind": f"count({q.blind()})",
        "dropping unexpectedly": f"count({q.unexpected_drops_packets()})",
        "above memory envelope": f"count({q.above_envelope()})",
    }


def _overview(v: Values, q: PromQL) -> list:
    blind = f"unless {q.on()} {q.blind()}"
    states = node_states(q)
    return [
        P.bar_gauge("Nodes per state", "Selected nodes in each state right now, from the same per-node "
                    "conditions as the alerts. Packet-exact drop SLI: the agent's counters are scraped; Hubble "
                    "approximation only: drop events over flows seen; Hubble blind: drop or verdict events are "
                    "switched off, filtered or rate-limited on the node (not measured, not healthy).", "none",
                    [Q(f"{expr} or vector(0)", name, instant=True) for name, expr in states.items()],
                    width=8, height=8),
        P.stat("Unexpected drops (agent counters)", "Packets dropped for unexpected reasons on the selected nodes "
               f"that the agent counts (`{n.DATAPATH_UNEXPECTED}`); not measured without the agent source.", "pps",
               [Q(f"sum({q.rec(n.DATAPATH_UNEXPECTED)})", instant=True)], width=4, height=4,
               steps=P.thresholds((None, "green"), (P.number(v, "unexpectedDropsRate"), "red")),
               no_value="not measured"),
        P.stat("Unexpected drops (Hubble, approximation)", "Hubble drop events for unexpected reasons on the "
               "selected nodes without the agent's counters, blind nodes left out (not measured).", "pps",
               [Q(f"sum({q.rec(n.DROPS_UNEXPECTED)} unless {q.on()} {q.rec(n.DATAPATH_PACKETS)} {blind})",
                  instant=True)], width=4, height=4, no_value="not measured"),
        P.stat("Policy denials", f"Packets denied by network policy (`{n.POLICY_DENIED}`), blind nodes left "
               "out.", "pps", [Q(f"sum({q.rec(n.POLICY_DENIED)} {blind})", instant=True)], width=4, height=4,
               no_value="not measured"),
        P.stat("Hubble lost events", f"Events Hubble reported lost, all sources (`{n.LOST_BY_SOURCE}`).", "cps",
               [Q(f"sum({q.rec(n.LOST_BY_SOURCE)}) or vector(0)", instant=True)], width=4, height=4,
               steps=P.thresholds((None, "green"), (0.001, "orange"))),
        P.stat("Exporters up", "Exporter targets up, out of all scraped (`up`).", "none",
               [Q(f"count({q.exporter_up()} == 1) or vector(0)", "up", instant=True),
                Q(f"count({q.exporter_up()}) or vector(0)", "scraped", instant=True)],
               width=4, height=4, text_mode=P.cm.BigValueTextMode.VALUE_AND_NAME),
        P.stat("Exporter sources down", "Node and source pairs whose last attempt failed (optional sources "
               "reported unavailable excluded).", "none",
               [Q(f"count({q.sources_up()} == 0) or vector(0)", instant=True)], width=4, height=4,
               steps=P.thresholds((None, "green"), (1, "red"))),
    ]


def _distribution(q: PromQL) -> list:
    return [
        P.timeseries("Agent working set / envelope upper bound, across nodes",
                     "min, median, p90 and max over the selected nodes of the cilium-agent working set divided by "
                     "the node's own envelope upper bound: a fleet-wide shift after an upgrade moves the median; "
                     "one bad node moves only the max.", "percentunit", _bands(q.envelope_fill()),
                     steps=ENVELOPE_STEPS, threshold_lines=True),
        P.timeseries("Unexpected drop ratio (agent counters), across nodes",
                     "min, median, p90 and max over the selected nodes of unexpected drops / datapath packets "
                     "(5m), nodes with the agent's counters only.", "percentunit",
                     _bands(q.unexpected_ratio_packets()), steps=DROP_RATIO_STEPS, threshold_lines=True),
        P.timeseries("Nodes per state over time", "Selected nodes in each state over time (the same conditions as the "
                     "alerts and the bar gauge above).", "none",
                     [Q(f"{expr} or vector(0)", name, interval=STEP) for name, expr in node_states(q).items()],
                     width=24, height=8),
    ]


def _canary(v: Values, q: PromQL) -> list:
    version = f"max by ({q.by('version')}) ({q.sel(c.CILIUM_INFO)})"

    def per_version(expr: str) -> str:
        return f"({expr}) * {q.on()} group_left (version) {version}"

    pooled = (f"sum by (version) ({per_version(q.rec(n.DATAPATH_UNEXPECTED))})\n/\n"
              f"(sum by (version) ({per_version(q.rec(n.DATAPATH_PACKETS))}) > 0)")
    restarts = f"sum by ({q.by()}) (increase({q.sel(c.AGENT_RESTARTS)}[$__range]))"
    return [
        P.group_table(
            "Nodes by Cilium version (canary view)",
            "During a Cilium upgrade, compare the nodes already on the new version with the others: agent "
            "memory against the envelope, unexpected drops (agent counters, pooled), agent restarts over the "
            "time range and blind nodes. Version from the exporter's settings source (cilium_node_cilium_info).",
            "version",
            [Column("nodes", f"count by (version) ({version})", "none", decimals=0),
             Column("working set / envelope, median", f"quantile by (version) (0.5, {per_version(q.envelope_fill())})",
                    "percentunit", ENVELOPE_STEPS, 0),
             Column("working set / envelope, max", f"max by (version) ({per_version(q.envelope_fill())})",
                    "percentunit", ENVELOPE_STEPS, 0),
             Column("unexpected drop ratio", pooled, "percentunit", DROP_RATIO_STEPS, 3, not_measured="not measured"),
             Column("agent restarts", f"sum by (version) ({per_version(restarts)})", "none", decimals=0),
             Column("Hubble blind nodes", f"count by (version) ({per_version(q.blind())})", "none", decimals=0,
                    not_measured="0")],
            sort_by="version", width=24, height=6),
        P.timeseries("Agent working set / envelope by Cilium version, p90",
                     "p90 over the nodes of each Cilium version: a new release that grows the agent shows up as "
                     "its own line moving away from the others.", "percentunit",
                     [Q(f"quantile by (version) (0.9, {per_version(q.envelope_fill())})", "{{version}}",
                        interval=STEP)], steps=ENVELOPE_STEPS, threshold_lines=True, width=24),
    ]


def _cohorts(v: Values, q: PromQL) -> list:
    """The version canary's cohorts (mixin/lifecycle.py records): what CiliumClusterVersionCanary compares."""

    def by_version(name: str, agg: str = "max") -> str:
        return f"{agg} by (version) ({q.rec_cluster(name)})"

    return [
        P.group_table(
            "Cohorts: what the version canary compares",
            "Per Cilium version, from the pack's records: nodes, nodes settled (agent started "
            f"{v['canarySettleSeconds']} s ago), and over the settled nodes the median agent process (no BPF maps: "
            "free of restart artefacts), the median BPF memory beyond the dynamically sized maps (comparable across "
            "node sizes), unexpected drops per packet and policy denials per node; restarts per node over "
            f"{v['canaryRestartsWindow']} (every node). With several "
            "clusters selected each figure is the worst cluster's: select one cluster to compare its cohorts.",
            "version",
            [Column("nodes", by_version(lc.COHORT_NODES, "sum"), "none", decimals=0),
             Column("settled", by_version(lc.COHORT_SETTLED, "sum"), "none", decimals=0, not_measured="0"),
             Column("process, median", by_version(lc.COHORT_PROCESS), "bytes", decimals=0,
                    not_measured="not measured"),
             Column("BPF beyond sized maps, median", by_version(lc.COHORT_BPF_UNSIZED), "bytes", decimals=0,
                    not_measured="not measured"),
             Column("unexpected drops / packets", by_version(lc.COHORT_DROPS), "percentunit", DROP_RATIO_STEPS, 3,
                    not_measured="not measured"),
             Column("policy denials/s per node", by_version(lc.COHORT_DENIED), "pps", decimals=2,
                    not_measured="not measured"),
             Column("restarts per node", by_version(lc.COHORT_RESTARTS), "none", decimals=2)],
            sort_by="version", width=24, height=6),
        P.timeseries("Agent process by Cilium version, median over settled nodes",
                     "The version canary's memory signal: a new release that grows the agent's own memory is its "
                     "own line above the others once its nodes settle; the working set would dip instead right "
                     "after each upgrade (BPF maps still charged to the old containers).", "bytes",
                     [Q(by_version(lc.COHORT_PROCESS), "{{version}}", interval=STEP)], width=12),
        P.timeseries("Unexpected drops / packets by Cilium version, settled nodes",
                     "The version canary's drop signal, pooled over each cohort's settled nodes.", "percentunit",
                     [Q(by_version(lc.COHORT_DROPS), "{{version}}", interval=STEP)], steps=DROP_RATIO_STEPS,
                     threshold_lines=True, width=12),
    ]


def _worst_nodes_table(v: Values, q: PromQL) -> P.tableb.Panel:
    by = f"by ({q.by()})"
    blind = f"unless {q.on()} {q.blind()}"
    return P.node_table(
        v, "Nodes, worst first",
        "One row per node, sorted by the unexpected-drop ratio from the agent's counters (5m). 'not measured': "
        "no agent source (drop ratio) or Hubble blind on the node (Hubble columns): zero would be a lie. "
        "Working set relative to the node's own envelope upper bound (100 % = at the bound). Click a row for "
        "the node detail in its cluster.",
        [
            Column("unexpected drop ratio", f"max {by} ({q.unexpected_ratio_packets()})", "percentunit",
                   DROP_RATIO_STEPS, 3, not_measured="not measured"),
            Column("Hubble: unexpected drops/s", f"sum {by} ({q.rec(n.DROPS_UNEXPECTED)} {blind})", "pps",
                   decimals=2, not_measured="not measured"),
            Column("policy denials/s", f"sum {by} ({q.rec(n.POLICY_DENIED)} {blind})", "pps", decimals=2,
                   not_measured="not measured"),
            Column("working set / envelope", f"max {by} ({q.envelope_fill()})", "percentunit", ENVELOPE_STEPS, 0),
            Column("Envoy working set", f"max {by} ({q.rec(n.ENVOY_WORKING_SET)})", "bytes", decimals=0,
                   not_measured="in the agent"),
            Column("lost events/s", f"sum {by} ({q.rec(n.LOST_BY_SOURCE)})", "cps",
                   P.thresholds((None, "green"), (0.001, "orange")), 2),
            Column("sources up", f"avg {by} ({q.sources_up()})", "percentunit",
                   P.thresholds((None, "red"), (1, "green")), 0),
            Column("Hubble blind", f"count {by} ({q.rec(n.BLIND)})", "none", P.thresholds((None, "green"), (1, "red")),
                   0, not_measured="no"),
        ],
        sort_by="unexpected drop ratio", height=10)


def _trends(q: PromQL) -> list:
    return [
        P.timeseries("Datapath drops by reason (agent counters)",
                     f"Dropped packets per second by DropReason, selected nodes (`{n.DATAPATH_DROPS_BY_REASON}`).",
                     "pps", [Q(f"sum by (reason) ({q.rec(n.DATAPATH_DROPS_BY_REASON)})", "{{reason}}", interval=STEP)],
                     stacked=True, no_value="not measured (no agent source)"),
        P.timeseries("Hubble drop events by reason",
                     f"Drop events per second by DropReason, selected nodes, blind nodes left out "
                     f"(`{n.DROPS_BY_REASON}`).", "pps",
                     [Q(f"sum by (reason) ({q.rec(n.DROPS_BY_REASON)} unless {q.on()} {q.blind()})", "{{reason}}",
                        interval=STEP)], stacked=True, no_value="not measured"),
        P.timeseries("Hubble lost events by source",
                     "Events Hubble reported lost: hubble_ring_buffer = this exporter read too slowly; "
                     f"perf_event_ring_buffer / observer_events_queue = agent overloaded (`{n.LOST_BY_SOURCE}`).",
                     "cps", [Q(f"sum by (source) ({q.rec(n.LOST_BY_SOURCE)})", "{{source}}", interval=STEP)]),
        P.timeseries("Nodes with a source down, by source",
                     "Selected nodes where an enabled exporter source failed at its last attempt.", "none",
                     [Q(f"count by (source) ({q.sources_up()} == 0)", "{{source}}", interval=STEP)],
                     steps=P.thresholds((None, "green"), (1, "red"))),
    ]


def build(v: Values) -> db.Dashboard:
    q = PromQL.for_dashboards(v)
    d = (db.Dashboard(P.TITLES[UID]).uid(UID).tags([P.TAG, "cilium"])
         .description("200 nodes at a glance: nodes per state, fleet distributions, nodes by Cilium version, every "
                      "node worst first; not-measured nodes are shown as such, never as zero.")
         .time("now-6h", "now").refresh("1m").timezone("browser").readonly()
         .with_variable(P.datasource_variable()).with_variable(P.job_variable(v))
         .with_variable(P.cluster_variable(v)).with_variable(P.node_variable(v, multi=True))
         .links(P.dashboard_links(UID)))
    for title, group in (("Overview", _overview(v, q)), ("Fleet distribution", _distribution(q)),
                         ("Canary: nodes by Cilium version", _canary(v, q) + _cohorts(v, q)),
                         ("Worst nodes", [_worst_nodes_table(v, q)]), ("Trends", _trends(q))):
        d = d.with_row(P.row(title))
        for p in group:
            d = d.with_panel(p)
    return d
