"""Cilium / Node Detail: one node, raw exporter metrics with `$__rate_interval`.

What can be measured on the node comes first: the drop SLI's source (agent counters or the Hubble
approximation), whether Hubble is blind and why, and the node's Cilium settings. Panels that depend on
Hubble show "not measured" on a blind node instead of a reassuring zero.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm

from cilium_node_exporter import contract as c
from cilium_node_exporter.mixin import names as n
from cilium_node_exporter.mixin.config import Values
from cilium_node_exporter.mixin.promql import PromQL
from dashboards import memory_parts
from dashboards import panels as P
from dashboards.panels import Q

UID = P.DETAIL_UID
NOT_MEASURED_BLIND = "not measured: Hubble is blind on this node (see Drop measurement)"
PERCENT_STEPS = P.thresholds((None, "green"), (0.8, "yellow"), (1, "red"))


class Node:
    """PromQL for one node: raw series with the dashboard's variables."""

    def __init__(self, v: Values) -> None:
        self.v, self.q = v, PromQL.for_dashboards(v)

    def s(self, metric: c.Metric, *matchers: str) -> str:
        return self.q.sel(metric, *matchers)

    def rate(self, metric: c.Metric, *matchers: str) -> str:
        """Per-second rate of a raw counter over `$__rate_interval`."""
        return f"rate({self.s(metric, *matchers)}[$__rate_interval])"

    def unless_blind(self, expr: str) -> str:
        """``expr`` unless Hubble is blind on the node (recorded by the alert pack)."""
        return f"{expr} unless on () {self.q.rec(n.BLIND)}"


def _measurement(v: Values, x: Node) -> list:
    q = x.q
    source = (f"max({q.rec(n.DATAPATH_PACKETS)}) * 0 + 1\nor\nmax({q.rec(n.FLOWS_SEEN)}) * 0 + 2")
    codes = dm.ValueMap(options={
        "1": dm.ValueMappingResult(text="packet-exact (agent counters)", color="green", index=0),
        "2": dm.ValueMappingResult(text="Hubble approximation (no agent source)", color="orange", index=1)})
    settings = f"max by (version, envoy_mode, kube_proxy_replacement, monitor_aggregation) ({x.s(c.CILIUM_INFO)})"
    return [
        P.stat("Drop measurement", "Where the drop numbers of this node come from: the agent's BPF counters "
               "(packet-exact, the drop SLO), or only Hubble drop events over flows seen (an approximation: no "
               "SLO, tickets only), or nothing.", "none", [Q(source, instant=True)], width=6, height=4,
               mappings=[codes, *P.not_measured()], text_mode=P.cm.BigValueTextMode.VALUE),
        P.stat("Hubble blind", "Why Hubble cannot see this node's drops or verdicts, if it cannot: drop or "
               "policy-verdict notifications off (bpf-events-*-enabled=false), hubble-monitor-events without "
               "them, the BPF events rate limiter discarding them, or datapath drops Hubble never delivers "
               f"(`{n.BLIND}`).", "none", [Q(x.q.rec(n.BLIND), "{{cause}}", instant=True)], width=6, height=4,
               steps=P.thresholds((None, "red")), text_mode=P.cm.BigValueTextMode.NAME,
               no_value="no: Hubble sees drops and verdicts"),
        P.stat("Cilium", "The node's Cilium version and the settings that change what is measured "
               "(`cilium_node_cilium_info`, from the agent's configuration).", "none",
               [Q(settings, "{{version}} envoy={{envoy_mode}} kpr={{kube_proxy_replacement}} "
                  "aggregation={{monitor_aggregation}}", instant=True)], width=6, height=4,
               text_mode=P.cm.BigValueTextMode.NAME, no_value="unknown (settings source off)"),
        P.bar_gauge("Monitor notifications", "Notifications the agent emits (1) or not (0), monitor events "
                    "Hubble observes, and the BPF events rate limit (0 = unlimited, Cilium 1.17+).", "none",
                    [Q(f"max by (event) ({x.s(c.AGENT_NOTIFICATIONS_ENABLED)})", "agent emits {{event}}",
                       instant=True),
                     Q(f"max by (event) ({x.s(c.HUBBLE_MONITOR_EVENTS)})", "Hubble observes {{event}}", instant=True),
                     Q(f"max by (kind) ({x.s(c.AGENT_EVENTS_RATE_LIMIT)})", "rate limit {{kind}}", instant=True)],
                    width=6, height=4),
    ]


def _drops(v: Values, x: Node) -> list:
    q = x.q
    return [
        P.timeseries("Drops by reason (Hubble)", "Dropped packets per second by DropReason, from Hubble drop "
                     "notifications (event type 1: one per dropped packet).", "pps",
                     [Q(x.unless_blind(f"sum by (reason) ({x.rate(c.DROPS)})"), "{{reason}}")],
                     stacked=True, legend_table=True, no_value=NOT_MEASURED_BLIND),
        P.timeseries("Drops by direction (Hubble)", "Dropped packets per second by packet direction at the "
                     "endpoint where it was dropped (a dropped reply looks like ingress).", "pps",
                     [Q(x.unless_blind(f"sum by (direction) ({x.rate(c.DROPS)})"), "{{direction}}")],
                     stacked=True, no_value=NOT_MEASURED_BLIND),
        P.timeseries("Unexpected drops", "Drops whose reason is outside the policy, expected, handled and "
                     "configured classes (start-up reasons count when sustained): agent counters, and Hubble "
                     "events.", "pps",
                     [Q(f"sum by (reason) ({x.rate(c.DATAPATH_DROPPED, q.errors())})", "agent {{reason}}"),
                      Q(x.unless_blind(f"sum by (reason) ({x.rate(c.DROPS, q.errors())})"), "Hubble {{reason}}")],
                     stacked=True, no_value="not measured"),
        P.timeseries("Datapath packets (agent, packet-exact)",
                     "Forwarded and dropped packets from the agent's BPF metrics maps: no sampling and no ring "
                     "buffer, the drop SLO's source. Events the BPF rate limiter discarded before Hubble (1.17+) "
                     "on the right axis.", "pps",
                     [Q(f"sum by (direction) ({x.rate(c.DATAPATH_FORWARDED)})", "forwarded {{direction}}"),
                      Q(f"sum by (reason) ({x.rate(c.DATAPATH_DROPPED)})", "dropped {{reason}}"),
                      Q(f"sum({x.rate(c.DATAPATH_RATELIMIT_DROPPED)})", "events rate-limited")],
                     no_value="not measured (no agent source)")
        .override_by_name("events rate-limited", [dm.DynamicConfigValue(id_val="unit", value="cps"),
                                                  dm.DynamicConfigValue(id_val="custom.axisPlacement", value="right")]),
        P.timeseries("BPF map pressure", "Fill ratio of the agent's BPF maps: packets drop when a map fills.",
                     "percentunit", [Q(f"max by (map_name) ({x.s(c.BPF_MAP_PRESSURE)})", "{{map_name}}")],
                     steps=P.thresholds((None, "green"), (0.9, "red")), threshold_lines=True, width=24),
    ]


def _policy(x: Node) -> list:
    l7_denied = x.rate(c.L7_REQUESTS, 'action="dropped"')
    return [
        P.timeseries("Policy verdicts by action", "Policy verdicts per second by action. Denied verdicts are "
                     "per packet, allowed ones per new connection: do not build a ratio of them.", "cps",
                     [Q(x.unless_blind(f"sum by (action) ({x.rate(c.POLICY_VERDICTS)})"), "{{action}}")],
                     no_value=NOT_MEASURED_BLIND),
        P.timeseries("Policy verdicts by match", "Policy verdicts per second by match type (l3-only, l3-l4, "
                     "l7/http, ...).", "cps",
                     [Q(x.unless_blind(f"sum by (match, action) ({x.rate(c.POLICY_VERDICTS)})"),
                        "{{match}} {{action}}")],
                     no_value=NOT_MEASURED_BLIND),
        P.timeseries("L7 requests by method and action", "L7 requests per second by HTTP method and verdict: "
                     "a POST storm against a GET-only policy shows up as POST dropped.", "reqps",
                     [Q(f"sum by (method, action) ({x.rate(c.L7_REQUESTS)})", "{{method}} {{action}}")], stacked=True),
        P.timeseries("L7 requests denied by protocol and method", "L7 requests the proxy denied, by protocol "
                     "and method, per direction.", "reqps",
                     [Q(f"sum by (protocol, method, direction) ({l7_denied})",
                        "{{protocol}} {{method}} {{direction}}")]),
    ]


def memory_series(x: Node) -> dict[str, str]:
    """Legend -> expression of the memory panel: agent and Envoy side by side against the envelope."""
    agent_ws, envoy_ws = f"max({x.s(c.AGENT_WORKING_SET)})", f"max({x.s(c.ENVOY_WORKING_SET)})"
    return {
        "agent working set": agent_ws,
        "agent RSS": f"max({x.s(c.AGENT_RSS)})",
        "Envoy working set": envoy_ws,
        "Envoy RSS": f"max({x.s(c.ENVOY_RSS)})",
        "agent + Envoy": f"{agent_ws} + {envoy_ws}",
        "envelope lower": f"max({x.s(c.ENVELOPE_LOWER)})",
        "envelope upper": f"max({x.s(c.ENVELOPE_UPPER)})",
        "agent limit": f"max({x.s(c.AGENT_LIMIT)})",
        "Envoy limit": f"max({x.s(c.ENVOY_LIMIT)})",
        "forecast +24h": f"max(predict_linear({x.s(c.AGENT_WORKING_SET)}[6h], 86400))",
    }


def _fixed(color: str, *extra: dm.DynamicConfigValue) -> list[dm.DynamicConfigValue]:
    return [dm.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
            dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": color}), *extra]


def _memory_panel(x: Node) -> P.tsb.Panel:
    p = P.timeseries(
        "Agent and Envoy memory against the envelope",
        "cilium-agent and cilium-envoy working set and RSS (kubelet Summary API). From Cilium 1.16 Envoy runs "
        "in its own DaemonSet by default; with envoy_mode=embedded (1.14/1.15, or envoy.enabled=false) it runs "
        "inside the agent container and is counted in the agent's numbers, so compare 'agent + Envoy' across "
        "releases. The shaded band is the node's expected envelope; the red lines are the container limits "
        "(absent without a limit); the dashed line is the agent's working set in 24 h, extrapolated linearly "
        "from the last 6 h. Restarts and OOM kills of both are annotations.", "bytes",
        # the forecast reads 6 h per point: a 5m step is plenty for a 24 h extrapolation
        [Q(expr, name, interval="5m" if name == "forecast +24h" else "") for name, expr in memory_series(x).items()],
        width=24, height=10, min_val=0,
        legend_table=True)
    width2 = dm.DynamicConfigValue(id_val="custom.lineWidth", value=2)
    p = p.override_by_name("envelope upper", [
        dm.DynamicConfigValue(id_val="custom.fillBelowTo", value="envelope lower"),
        dm.DynamicConfigValue(id_val="custom.fillOpacity", value=20),
        dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "green"})])
    p = p.override_by_name("envelope lower", _fixed("green"))
    p = p.override_by_name("agent limit", _fixed("red", width2))
    p = p.override_by_name("Envoy limit", _fixed("dark-red", width2))
    p = p.override_by_name("forecast +24h", _fixed("orange", dm.DynamicConfigValue(
        id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]})))
    p = p.override_by_name("agent + Envoy", _fixed("purple", dm.DynamicConfigValue(
        id_val="custom.lineStyle", value={"fill": "dot", "dash": [2, 6]})))
    for name in ("agent working set", "agent RSS", "Envoy working set", "Envoy RSS"):
        p = p.override_by_name(name, [dm.DynamicConfigValue(id_val="custom.fillOpacity", value=0), width2])
    return p


def _memory(x: Node) -> list:
    series = memory_series(x)
    reason_red = [dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "red"})]
    return [
        _memory_panel(x),
        P.stat("Working set / envelope upper", "Agent working set (and agent + Envoy) now relative to the node's "
               "envelope upper bound: above 100 % the agent is outside its envelope.", "percentunit",
               [Q(f"{series['agent working set']} / {series['envelope upper']}", "agent", instant=True),
                Q(f"({series['agent + Envoy']}) / {series['envelope upper']}", "agent + Envoy", instant=True)],
               width=6, height=5, steps=PERCENT_STEPS, text_mode=P.cm.BigValueTextMode.VALUE_AND_NAME),
        P.stat("Forecast +24h / limit", "Agent working set in 24 h (predict_linear over 6 h) relative to the "
               "container memory limit: at 100 % the agent would be OOM-killed. Empty without a limit.",
               "percentunit", [Q(f"{series['forecast +24h']} / {series['agent limit']}", instant=True)],
               width=6, height=5, steps=PERCENT_STEPS, no_value="no limit"),
        P.stat("Uptime", "Time since the cilium-agent and cilium-envoy containers started (kubelet Summary API).",
               "s", [Q(f"time() - max({x.s(c.AGENT_START_TIME)})", "agent", instant=True),
                     Q(f"time() - max({x.s(c.ENVOY_START_TIME)})", "Envoy", instant=True)],
               width=6, height=5, text_mode=P.cm.BigValueTextMode.VALUE_AND_NAME),
        P.stat("Last termination reason", "Reason of the last termination of the cilium-agent and cilium-envoy "
               "containers (pod status lastState.terminated), OOMKilled in red.", "none",
               [Q(f"max by (reason) ({x.s(c.AGENT_LAST_TERMINATED_REASON)})", "agent: {{reason}}", instant=True),
                Q(f"max by (reason) ({x.s(c.ENVOY_LAST_TERMINATED_REASON)})", "Envoy: {{reason}}", instant=True)],
               width=6, height=5, steps=P.thresholds((None, "blue")), text_mode=P.cm.BigValueTextMode.NAME,
               no_value="never terminated")
        .override_by_regexp(".*OOMKilled", reason_red),
    ]


def _hubble(x: Node) -> list:
    return [
        P.timeseries("Hubble buffer fill", "Events held in Hubble's ring buffer relative to its capacity "
                     "(ServerStatus num_flows / max_flows).", "percentunit",
                     [Q(f"max({x.s(c.BUFFER_FLOWS)}) / max({x.s(c.BUFFER_CAPACITY)})", "buffer fill")], width=8,
                     steps=P.thresholds((None, "green"), (1, "orange")), threshold_lines=True),
        P.timeseries("Hubble lost events by source", "Events Hubble reported lost: hubble_ring_buffer means "
                     "this exporter read too slowly, the other sources mean the agent was overloaded.", "cps",
                     [Q(f"sum by (source) ({x.rate(c.LOST_EVENTS)})", "{{source}}")], width=8),
        P.timeseries("Flows seen and events received", "Flows decoded by the node's Hubble observer "
                     "(ServerStatus seen_flows) and messages this exporter received, by kind.", "cps",
                     [Q(f"sum({x.rate(c.FLOWS_SEEN)})", "seen by Hubble"),
                      Q(f"sum by (kind) ({x.rate(c.EVENTS)})", "received {{kind}}")], width=8),
    ]


def _exporter(x: Node) -> list:
    unavailable = dm.ValueMap(options={"2": dm.ValueMappingResult(text="unavailable", color="blue", index=2)})
    sources = (f"max by (source) ({x.s(c.SOURCE_UP)})\nor\n"
               f"max by (source) ({x.s(c.SOURCE_UNAVAILABLE)} == 1) * 2")
    return [
        P.state_timeline("Exporter sources", "Whether each enabled source (hubble, kubelet, apiserver, agent, "
                         "settings) delivered data at its last attempt; 'unavailable': an optional source with no "
                         "endpoint on this node (e.g. Cilium's prometheus.enabled off), skipped, not down.",
                         [Q(sources, "{{source}}")], width=6).mappings([
                             dm.ValueMap(options={"0": dm.ValueMappingResult(text="down", color="red", index=0),
                                                  "1": dm.ValueMappingResult(text="up", color="green", index=1)}),
                             unavailable]),
        P.timeseries("Source errors by reason", "Errors talking to the sources, by bounded reason.", "ops",
                     [Q(f"sum by (source, reason) ({x.rate(c.SOURCE_ERRORS)})", "{{source}} {{reason}}")],
                     width=6, height=6),
        P.timeseries("Hubble stream gaps", "Fraction of time without a live GetFlows stream and reconnects "
                     "per second (right axis).", "percentunit",
                     [Q(f"sum({x.rate(c.HUBBLE_DISCONNECTED)})", "disconnected"),
                      Q(f"sum({x.rate(c.HUBBLE_RECONNECTS)})", "reconnects/s")],
                     width=6, height=6)
        .override_by_name("reconnects/s", [dm.DynamicConfigValue(id_val="unit", value="ops"),
                                           dm.DynamicConfigValue(id_val="custom.axisPlacement", value="right")]),
        P.timeseries("Label overflow", "Events whose optional label value was past its cap and counted as "
                     "'other', by label.", "cps",
                     [Q(f"sum by (label) ({x.rate(c.LABEL_OVERFLOW)})", "{{label}}")], width=6, height=6),
    ]


def annotation_exprs(x: Node) -> dict[str, str]:
    """Annotation name -> expression: restarts (restart count changed) and OOM kills (last termination
    OOMKilled, within 5 min of it), for the agent and Envoy."""
    out = {}
    for who, restarts, reason, ts in (
            ("Agent", c.AGENT_RESTARTS, c.AGENT_LAST_TERMINATED_REASON, c.AGENT_LAST_TERMINATED_TIMESTAMP),
            ("Envoy", c.ENVOY_RESTARTS, c.ENVOY_LAST_TERMINATED_REASON, c.ENVOY_LAST_TERMINATED_TIMESTAMP)):
        out[f"{who} restarts"] = f"changes({x.s(restarts)}[$__rate_interval]) > 0"
        oom = x.s(reason, x.q.reason("OOMKilled"))
        out[f"{who} OOM kills"] = f"{oom} and ignoring(reason) (time() - {x.s(ts)} < 300)"
    return out


def annotations(x: Node) -> list[db.AnnotationQuery]:
    colors = {"Agent restarts": "orange", "Agent OOM kills": "red", "Envoy restarts": "yellow",
              "Envoy OOM kills": "dark-red"}
    return [db.AnnotationQuery().name(name).datasource(P.DATASOURCE).enable(True).hide(False)
            .icon_color(colors[name]).expr(expr) for name, expr in annotation_exprs(x).items()]


def build(v: Values) -> db.Dashboard:
    x = Node(v)
    d = (db.Dashboard(P.TITLES[UID]).uid(UID).tags([P.TAG, "cilium"])
         .description("One node: what is measured and how, drops by reason and direction, policy and L7 verdicts, "
                      "cilium-agent and cilium-envoy memory against the envelope, Hubble buffer and losses, "
                      "exporter sources.")
         .time("now-6h", "now").refresh("1m").timezone("browser").readonly()
         .with_variable(P.datasource_variable()).with_variable(P.job_variable(v))
         .with_variable(P.cluster_variable(v)).with_variable(P.node_variable(v, multi=False))
         .annotations(annotations(x)).links(P.dashboard_links(UID)))
    for title, group in (("Measurement", _measurement(v, x)), ("Drops", _drops(v, x)), ("Policy and L7", _policy(x)),
                         ("Memory: cilium-agent and cilium-envoy", _memory(x)),
                         ("Memory by part and the derived envelope", memory_parts.panels(x.q)), ("Hubble", _hubble(x)),
                         ("Exporter", _exporter(x))):
        d = d.with_row(P.row(title))
        for p in group:
            d = d.with_panel(p)
    return d
