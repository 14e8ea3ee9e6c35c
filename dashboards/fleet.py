"""Cilium / Node Fleet: every node at a glance, worst nodes first, each row links to the node detail."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db

from dashboards import panels as P
from dashboards import promql as R
from dashboards.panels import Column, Q

UID = P.FLEET_UID

_WS = f"max by (cluster, node) (cilium_node_agent_memory_working_set_bytes{R.raw()})"
_UPPER = f"max by (cluster, node) (cilium_node_agent_memory_envelope_upper_bytes{R.raw()})"
# Working set as a fraction of the node's own envelope upper bound: 100 % = at the bound.
ENVELOPE_FILL = f"{_WS} / {_UPPER}"
ENVELOPE_STEPS = P.thresholds((None, "green"), (0.8, "yellow"), (1, "red"))
DROP_RATIO_STEPS = P.thresholds((None, "green"), (0.0001, "yellow"), (0.001, "red"))


def _overview() -> list:
    return [
        P.stat("Exporters up", "Scrape targets of the exporter that are up, out of all scraped (`up`).", "none",
               [Q(f"sum(up{R.raw()})", "up"), Q(f"count(up{R.raw()})", "scraped")],
               text_mode=P.cm.BigValueTextMode.VALUE_AND_NAME),
        P.stat("Unexpected drops", "Packets dropped for reasons outside the policy/handled/configured classes, "
               f"all selected nodes (recording rule `{R.DROPS_UNEXPECTED}`).", "pps",
               [Q(f"sum({R.DROPS_UNEXPECTED}{R.rec()}) or vector(0)")],
               steps=P.thresholds((None, "green"), (0.001, "red"))),
        P.stat("Policy denials", f"Packets denied by network policy, all selected nodes (`{R.POLICY_DENIED}`).",
               "pps", [Q(f"sum({R.POLICY_DENIED}{R.rec()}) or vector(0)")]),
        P.stat("Nodes outside memory envelope",
               "Nodes whose cilium-agent working set is outside its envelope right now "
               f"(`{R.MEMORY_ENVELOPE_ERROR}` = 1).", "none",
               [Q(f"sum({R.MEMORY_ENVELOPE_ERROR}{R.rec()}) or vector(0)")],
               steps=P.thresholds((None, "green"), (1, "red"))),
        P.stat("Hubble lost events", "Events Hubble reported lost, all sources and selected nodes "
               f"(`{R.LOST_EVENTS_BY_SOURCE}`).", "cps",
               [Q(f"sum({R.LOST_EVENTS_BY_SOURCE}{R.rec()}) or vector(0)")],
               steps=P.thresholds((None, "green"), (0.001, "orange"))),
        P.stat("Exporter sources down", "Enabled exporter sources (hubble, kubelet, apiserver, agent) whose "
               "last attempt failed, summed over nodes (`cilium_node_exporter_source_up` = 0).", "none",
               [Q(f"sum(1 - cilium_node_exporter_source_up{R.raw()}) or vector(0)")],
               steps=P.thresholds((None, "green"), (1, "red"))),
    ]


def _worst_nodes_table() -> P.tableb.Panel:
    by = "sum by (cluster, node)"
    return P.node_table(
        "Nodes, worst first",
        "One row per node, sorted by unexpected-drop ratio (SLO error ratio, 5m). Click a row to open the "
        "node detail. Working set is shown relative to the node's own envelope upper bound (100 % = at the "
        "bound); sources up is the fraction of enabled exporter sources that delivered data.",
        [
            Column("unexpected drop ratio", f"max by (cluster, node) ({R.drop_slo_errors('5m')}{R.rec()})",
                   "percentunit", DROP_RATIO_STEPS, 3),
            Column("unexpected drops/s", f"{by} ({R.DROPS_UNEXPECTED}{R.rec()})", "pps", decimals=2),
            Column("policy denials/s", f"{by} ({R.POLICY_DENIED}{R.rec()})", "pps", decimals=2),
            Column("working set / envelope", ENVELOPE_FILL, "percentunit", ENVELOPE_STEPS, 0),
            Column("lost events/s", f"{by} ({R.LOST_EVENTS_BY_SOURCE}{R.rec()})", "cps",
                   P.thresholds((None, "green"), (0.001, "orange")), 2),
            Column("sources up", f"avg by (cluster, node) (cilium_node_exporter_source_up{R.raw()})",
                   "percentunit", P.thresholds((None, "red"), (1, "green")), 0),
        ],
        sort_by="unexpected drop ratio", height=10)


def _trends() -> list:
    link = [P.node_detail_link(P.NODE_LINK_FROM_SERIES).title("Node detail for ${__field.labels.node}")]
    return [
        P.timeseries("Unexpected drop ratio, worst 10 nodes",
                     "Unexpected drops / datapath packets per node: the drop-ratio SLO error ratio "
                     f"(`{R.drop_slo_errors('5m')}`). Click a series for the node detail.", "percentunit",
                     [Q(f"topk(10, {R.drop_slo_errors('5m')}{R.rec()})", "{{node}}")],
                     steps=DROP_RATIO_STEPS, threshold_lines=True, links=link),
        P.timeseries("Drops by reason, all selected nodes",
                     f"Dropped packets per second by DropReason, 10 largest (`{R.DROPS_BY_REASON}`).", "pps",
                     [Q(f"topk(10, sum by (reason) ({R.DROPS_BY_REASON}{R.rec()}))", "{{reason}}")],
                     stacked=True),
        P.timeseries("Policy denials, worst 10 nodes",
                     f"Packets denied by network policy (`{R.POLICY_DENIED}`) and L7 requests denied by the "
                     f"proxy (`{R.L7_DENIED}`), per node.", "pps",
                     [Q(f"topk(10, {R.POLICY_DENIED}{R.rec()})", "{{node}} L3/L4"),
                      Q(f"topk(10, {R.L7_DENIED}{R.rec()})", "{{node}} L7")], links=link),
        P.timeseries("Agent working set / envelope upper bound, worst 10 nodes",
                     "cilium-agent working set divided by the node's own envelope upper bound (published by "
                     "the exporter per node): above 100 % the agent is outside its expected envelope.",
                     "percentunit", [Q(f"topk(10, {ENVELOPE_FILL})", "{{node}}")],
                     steps=ENVELOPE_STEPS, threshold_lines=True, links=link),
        P.timeseries("Hubble lost events by source",
                     "Events Hubble reported lost: hubble_ring_buffer = this exporter read too slowly; "
                     "perf_event_ring_buffer / observer_events_queue = agent overloaded "
                     f"(`{R.LOST_EVENTS_BY_SOURCE}`).",
                     "cps", [Q(f"sum by (source) ({R.LOST_EVENTS_BY_SOURCE}{R.rec()})", "{{source}}")]),
        P.timeseries("Hubble flows seen, top 10 nodes",
                     f"Flows decoded by each node's Hubble observer (`{R.FLOWS_SEEN}`): load context for drops "
                     "and losses.", "cps", [Q(f"topk(10, {R.FLOWS_SEEN}{R.rec()})", "{{node}}")], links=link),
    ]


def _exporter_health() -> list:
    return [
        P.timeseries("Nodes with a source down, by source",
                     "Number of nodes where an enabled exporter source failed at its last attempt.", "none",
                     [Q(f"sum by (source) (1 - cilium_node_exporter_source_up{R.raw()})", "{{source}}")],
                     width=8, steps=P.thresholds((None, "green"), (1, "red"))),
        P.timeseries("Source errors by reason",
                     "Errors talking to the exporter's sources, by source and bounded reason.", "ops",
                     [Q(f"sum by (source, reason) (rate(cilium_node_exporter_source_errors_total{R.raw()}"
                        "[$__rate_interval]))", "{{source}} {{reason}}")], width=8),
        P.timeseries("Hubble stream disconnected, worst 10 nodes",
                     "Fraction of time without a live Hubble GetFlows stream: the gap no event counter covers.",
                     "percentunit",
                     [Q("topk(10, sum by (cluster, node) (rate(cilium_node_exporter_hubble_disconnected_seconds_"
                        f"total{R.raw()}[$__rate_interval])))", "{{node}}")], width=8),
    ]


def build() -> db.Dashboard:
    d = (db.Dashboard(P.TITLES[UID]).uid(UID).tags([P.TAG, "cilium"])
         .description("Every node at a glance: drops, policy denials, agent memory against its envelope, "
                      "Hubble losses and exporter health; worst nodes first.")
         .time("now-6h", "now").refresh("1m").timezone("browser").readonly()
         .with_variable(P.datasource_variable()).with_variable(P.job_variable())
         .with_variable(P.cluster_variable()).with_variable(P.node_variable(multi=True))
         .links(P.dashboard_links(UID)))
    d = d.with_row(P.row("Overview"))
    for p in _overview():
        d = d.with_panel(p)
    d = d.with_row(P.row("Worst nodes")).with_panel(_worst_nodes_table())
    d = d.with_row(P.row("Trends"))
    for p in _trends():
        d = d.with_panel(p)
    d = d.with_row(P.row("Exporter health"))
    for p in _exporter_health():
        d = d.with_panel(p)
    return d
