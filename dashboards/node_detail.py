"""Cilium / Node Detail: one node, raw exporter metrics with `$__rate_interval`."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm

from dashboards import panels as P
from dashboards import promql as R
from dashboards.panels import Q

UID = P.DETAIL_UID
S = R.raw()


def rate(metric: str, *extra: str) -> str:
    """Per-second rate of a raw counter over `$__rate_interval`."""
    return f"rate({metric}{R.raw(*extra)}[$__rate_interval])"


UNEXPECTED_DROPS = rate("cilium_node_drops_total", f'reason!~"{R.EXPECTED_REASONS}"')
L7_DENIED = rate("cilium_node_l7_requests_total", 'action="dropped"')


def _drops() -> list:
    return [
        P.timeseries("Drops by reason", "Dropped packets per second by DropReason, from Hubble drop "
                     "notifications (event type 1: one per dropped packet).", "pps",
                     [Q(f"sum by (reason) ({rate('cilium_node_drops_total')})", "{{reason}}")],
                     stacked=True, legend_table=True),
        P.timeseries("Drops by direction", "Dropped packets per second by packet direction at the endpoint "
                     "where it was dropped (a dropped reply looks like ingress).", "pps",
                     [Q(f"sum by (direction) ({rate('cilium_node_drops_total')})", "{{direction}}")],
                     stacked=True),
        P.timeseries("Unexpected drops", "Drops whose reason is outside the policy, handled and configured "
                     "classes of the metric contract (start-up reasons count when sustained).", "pps",
                     [Q(f"sum by (reason) ({UNEXPECTED_DROPS})", "{{reason}}")], stacked=True),
        P.timeseries("Datapath packets (agent, packet-exact)",
                     "Forwarded and dropped packets from the agent's BPF metrics maps (optional agent source): "
                     "no sampling and no ring buffer, to check Hubble-derived drops against.", "pps",
                     [Q(f"sum by (direction) ({rate('cilium_node_datapath_forwarded_packets_total')})",
                        "forwarded {{direction}}"),
                      Q(f"sum by (reason) ({rate('cilium_node_datapath_dropped_packets_total')})",
                        "dropped {{reason}}")]),
        P.timeseries("BPF map pressure", "Fill ratio of the agent's BPF maps: packets drop when a map fills.",
                     "percentunit", [Q(f"max by (map_name) (cilium_node_bpf_map_pressure{S})", "{{map_name}}")],
                     steps=P.thresholds((None, "green"), (0.9, "red")), threshold_lines=True, width=24),
    ]


def _policy() -> list:
    return [
        P.timeseries("Policy verdicts by action", "Policy verdicts per second by action. Denied verdicts are "
                     "per packet, allowed ones per new connection: do not build a ratio of them.", "cps",
                     [Q(f"sum by (action) ({rate('cilium_node_policy_verdicts_total')})", "{{action}}")]),
        P.timeseries("Policy verdicts by match", "Policy verdicts per second by match type (l3-only, l3-l4, "
                     "l7/http, ...).", "cps",
                     [Q(f"sum by (match, action) ({rate('cilium_node_policy_verdicts_total')})",
                        "{{match}} {{action}}")]),
        P.timeseries("L7 requests by method and action", "L7 requests per second by HTTP method and verdict: "
                     "a POST storm against a GET-only policy shows up as POST dropped.", "reqps",
                     [Q(f"sum by (method, action) ({rate('cilium_node_l7_requests_total')})",
                        "{{method}} {{action}}")], stacked=True),
        P.timeseries("L7 requests denied by protocol and method", "L7 requests the proxy denied, by protocol "
                     "and method, per direction.", "reqps",
                     [Q(f"sum by (protocol, method, direction) ({L7_DENIED})",
                        "{{protocol}} {{method}} {{direction}}")]),
    ]


MEMORY_SERIES = {
    "working set": f"max(cilium_node_agent_memory_working_set_bytes{S})",
    "RSS": f"max(cilium_node_agent_memory_rss_bytes{S})",
    "envelope lower": f"max(cilium_node_agent_memory_envelope_lower_bytes{S})",
    "envelope upper": f"max(cilium_node_agent_memory_envelope_upper_bytes{S})",
    "limit": f"max(cilium_node_agent_memory_limit_bytes{S})",
    "forecast +24h": f"max(predict_linear(cilium_node_agent_memory_working_set_bytes{S}[6h], 86400))",
}


def _memory_panel() -> P.tsb.Panel:
    p = P.timeseries(
        "Agent memory against its envelope",
        "cilium-agent working set and RSS (kubelet Summary API). The shaded band is the node's expected "
        "envelope (lower to upper bound, published by the exporter); the red line is the container limit "
        "(absent without a limit); the dashed line is where the working set will be in 24 h, extrapolated "
        "linearly from the last 6 h (predict_linear). Restarts and OOM kills are annotations.", "bytes",
        [Q(expr, name) for name, expr in MEMORY_SERIES.items()], width=24, height=10, min_val=0,
        legend_table=True)
    dash = {"fill": "dash", "dash": [10, 10]}
    p = p.override_by_name("envelope upper", [
        dm.DynamicConfigValue(id_val="custom.fillBelowTo", value="envelope lower"),
        dm.DynamicConfigValue(id_val="custom.fillOpacity", value=20),
        dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "green"})])
    p = p.override_by_name("envelope lower", [
        dm.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
        dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "green"})])
    p = p.override_by_name("limit", [
        dm.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
        dm.DynamicConfigValue(id_val="custom.lineWidth", value=2),
        dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "red"})])
    p = p.override_by_name("forecast +24h", [
        dm.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
        dm.DynamicConfigValue(id_val="custom.lineStyle", value=dash),
        dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "orange"})])
    for name in ("working set", "RSS"):
        p = p.override_by_name(name, [dm.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
                                      dm.DynamicConfigValue(id_val="custom.lineWidth", value=2)])
    return p


def _memory() -> list:
    ws, upper = MEMORY_SERIES["working set"], MEMORY_SERIES["envelope upper"]
    return [
        _memory_panel(),
        P.stat("Working set / envelope upper", "Working set now relative to the node's envelope upper "
               "bound: above 100 % the agent is outside its envelope.", "percentunit",
               [Q(f"{ws} / {upper}")], width=6, height=5,
               steps=P.thresholds((None, "green"), (0.8, "yellow"), (1, "red"))),
        P.stat("Forecast +24h / limit", "Working set in 24 h (predict_linear over 6 h) relative to the "
               "container memory limit: at 100 % the agent would be OOM-killed. Empty without a limit.",
               "percentunit", [Q(f"{MEMORY_SERIES['forecast +24h']} / {MEMORY_SERIES['limit']}")],
               width=6, height=5, steps=P.thresholds((None, "green"), (0.8, "yellow"), (1, "red"))),
        P.stat("Agent uptime", "Time since the cilium-agent container started (kubelet Summary API).", "s",
               [Q(f"time() - max(cilium_node_agent_container_start_time_seconds{S})")], width=6, height=5),
        P.stat("Last termination reason", "Reason of the cilium-agent container's last termination "
               "(pod status lastState.terminated), OOMKilled in red.", "none",
               [Q(f"max by (reason) (cilium_node_agent_last_terminated_reason{S})", "{{reason}}")],
               width=6, height=5, steps=P.thresholds((None, "blue")), text_mode=P.cm.BigValueTextMode.NAME)
        .override_by_name("OOMKilled", [dm.DynamicConfigValue(id_val="color",
                                                             value={"mode": "fixed", "fixedColor": "red"})]),
    ]


def _hubble() -> list:
    return [
        P.timeseries("Hubble buffer fill", "Events held in Hubble's ring buffer relative to its capacity "
                     "(ServerStatus num_flows / max_flows).", "percentunit",
                     [Q(f"max(cilium_node_hubble_buffer_flows{S}) / max(cilium_node_hubble_buffer_capacity_flows{S})",
                        "buffer fill")], width=8, steps=P.thresholds((None, "green"), (1, "orange")),
                     threshold_lines=True),
        P.timeseries("Hubble lost events by source", "Events Hubble reported lost: hubble_ring_buffer means "
                     "this exporter read too slowly, the other sources mean the agent was overloaded.", "cps",
                     [Q(f"sum by (source) ({rate('cilium_node_hubble_lost_events_total')})", "{{source}}")],
                     width=8),
        P.timeseries("Flows seen and events received", "Flows decoded by the node's Hubble observer "
                     "(ServerStatus seen_flows) and messages this exporter received, by kind.", "cps",
                     [Q(f"sum({rate('cilium_node_hubble_flows_seen_total')})", "seen by Hubble"),
                      Q(f"sum by (kind) ({rate('cilium_node_exporter_events_total')})", "received {{kind}}")],
                     width=8),
    ]


def _exporter() -> list:
    return [
        P.state_timeline("Exporter sources up", "Whether each enabled source (hubble, kubelet, apiserver, "
                         "agent) delivered data at its last attempt.",
                         [Q(f"max by (source) (cilium_node_exporter_source_up{S})", "{{source}}")], width=6),
        P.timeseries("Source errors by reason", "Errors talking to the sources, by bounded reason.", "ops",
                     [Q(f"sum by (source, reason) ({rate('cilium_node_exporter_source_errors_total')})",
                        "{{source}} {{reason}}")], width=6, height=6),
        P.timeseries("Hubble stream gaps", "Fraction of time without a live GetFlows stream and reconnects "
                     "per second (right axis).", "percentunit",
                     [Q(f"sum({rate('cilium_node_exporter_hubble_disconnected_seconds_total')})", "disconnected"),
                      Q(f"sum({rate('cilium_node_exporter_hubble_reconnects_total')})", "reconnects/s")],
                     width=6, height=6)
        .override_by_name("reconnects/s", [dm.DynamicConfigValue(id_val="unit", value="ops"),
                                           dm.DynamicConfigValue(id_val="custom.axisPlacement", value="right")]),
        P.timeseries("Label overflow", "Events whose optional label value was past its cap and counted as "
                     "'other', by label.", "cps",
                     [Q(f"sum by (label) ({rate('cilium_node_exporter_label_overflow_total')})", "{{label}}")],
                     width=6, height=6),
    ]


RESTART_ANNOTATION = f"changes(cilium_node_agent_restarts_total{S}[$__rate_interval]) > 0"
_OOM = R.raw('reason="OOMKilled"')
OOM_ANNOTATION = (f"cilium_node_agent_last_terminated_reason{_OOM}"
                  f" and ignoring(reason) (time() - cilium_node_agent_last_terminated_timestamp_seconds{S} < 300)")


def annotations() -> list[db.AnnotationQuery]:
    """Restarts (restart count changed) and OOM kills (last termination OOMKilled, within 5 min of it)."""
    return [
        db.AnnotationQuery().name("Agent restarts").datasource(P.DATASOURCE).enable(True).hide(False)
        .icon_color("orange").expr(RESTART_ANNOTATION),
        db.AnnotationQuery().name("Agent OOM kills").datasource(P.DATASOURCE).enable(True).hide(False)
        .icon_color("red").expr(OOM_ANNOTATION),
    ]


def build() -> db.Dashboard:
    d = (db.Dashboard(P.TITLES[UID]).uid(UID).tags([P.TAG, "cilium"])
         .description("One node: drops by reason and direction, policy and L7 verdicts, cilium-agent memory "
                      "against its envelope, Hubble buffer and losses, exporter sources.")
         .time("now-6h", "now").refresh("1m").timezone("browser").readonly()
         .with_variable(P.datasource_variable()).with_variable(P.job_variable())
         .with_variable(P.cluster_variable()).with_variable(P.node_variable(multi=False))
         .annotations(annotations()).links(P.dashboard_links(UID)))
    for title, group in (("Drops", _drops()), ("Policy and L7", _policy()), ("cilium-agent memory", _memory()),
                         ("Hubble", _hubble()), ("Exporter", _exporter())):
        d = d.with_row(P.row(title))
        for p in group:
            d = d.with_panel(p)
    return d
