"""Render ``docs/metrics.md`` from the contract module: ``python -m cilium_node_exporter.contract_doc``.

The committed file is checked against this rendering by the test suite, so the documented
contract and the exporter's registry cannot drift apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cilium_node_exporter import contract as c
from cilium_node_exporter.mixin import slo
from cilium_node_exporter.mixin.config import DEFAULTS

SECTIONS = (
    ("Datapath events (source `hubble`)", "hubble"),
    ("Datapath packets (source `agent`, where Cilium serves its metrics)", "agent"),
    ("Agent and Envoy memory (source `kubelet`) and envelope", "kubelet"),
    ("Agent and Envoy lifecycle (source `apiserver`)", "apiserver"),
    ("The node's Cilium settings (source `settings`)", "settings"),
    ("Agent memory by part and the derived envelope (sources `agent`, `kubelet`, `settings`; docs/envelope.md)",
     "envelope"),
    ("The exporter's own health", ""),
)


# What each counter counts, and where Cilium releases differ (facts read in Cilium's sources; the file and
# release are named in each line, see also the simulator's ``releases.py``).
PER_RELEASE = (
    "## What each counter counts, per Cilium release",
    "",
    "The exporter is tested against an emulation of each release 1.14 to 1.19 (the simulator's release "
    "matrix). Where a count means something different from what its name suggests:",
    "",
    "| counter | what one increment is | per release |",
    "|---|---|---|",
    "| drops: `cilium_node_drops_total` | one dropped packet (a type-1 drop notification). `direction` is the packet's "
    "direction at the endpoint where it was dropped, as Hubble guesses it (egress only when dropped at the "
    "packet's source endpoint; `unknown` without an endpoint) | 1.14-1.19 alike. None while "
    "`bpf-events-drop-enabled` is off (1.16+) or `hubble-monitor-events` leaves drops out; over 1.17+'s BPF events "
    "rate limit they are discarded before Hubble (`cilium_node_datapath_ratelimited_events_total`) |",
    "| verdicts: `cilium_node_policy_verdicts_total` (type 5) | `action=\"dropped\"`: one **packet**; "
    "`forwarded`/`redirected`/`audit`: one **new connection** (`bpf/bpf_lxc.c` emits a verdict for every denied "
    "packet but for allowed ones only when the conntrack entry is not established). Only endpoints and "
    "directions with policy enforcement emit verdicts (`POLICY_VERDICT_LOG_FILTER`): no verdicts is not "
    "\"no traffic\". Never build a ratio of the two actions | 1.14 also for re-opened connections; the host "
    "firewall (`bpf_host`) emits none in 1.14 and all but allow-all allows from 1.16; `policy` label: empty on "
    "1.14 (no `*_allowed_by`/`*_denied_by` in its `flow.proto`), allowing policies only on 1.15, both from 1.16 |",
    "| L7: `cilium_node_policy_verdicts_total{match=~\"l7/.*\"}`, `cilium_node_l7_requests_total` | one L7 "
    "**REQUEST** flow. HTTP: Envoy logs a denied request as a DROPPED request and its local 403 as a FORWARDED "
    "response (not counted); DNS (egress only): a denied query is one DROPPED request and no response; Kafka: "
    "one request flow per topic. L7 flows carry Envoy's request-start time: after a reconnect the stream "
    "resumes 250 ms before the last counted event, so a request that started earlier and had not been "
    "delivered when the stream broke is not counted (an undercount only around reconnects) | 1.14-1.19 alike "
    "(`pkg/envoy/accesslog.go`, `pkg/fqdn/dnsproxy`); Kafka's parser exists up to 1.19 |",
    "| losses: `cilium_node_hubble_lost_events_total{source=\"hubble_ring_buffer\"}` | one ring slot this exporter "
    "did not read in time (any event type, traces included) | one message per slot up to 1.18; one batch per "
    "interval with `first`/`last` in 1.19, sent when the next event arrives (same sum) |",
    "| version: `cilium_node_hubble_info{version}` | — | `ServerStatus.version`: `cilium v<X.Y.Z>+g<short sha>` on "
    "1.14-1.19; a custom build with `GOEXPERIMENT` reports `cilium` only (the exporter then sends no field mask) |",
    "| refused request: `cilium_node_exporter_source_errors_total{source=\"hubble\",reason=\"rejected\"}` | "
    "a server refused the GetFlows request (gRPC UNKNOWN `invalid fieldmask`, or INVALID_ARGUMENT); the "
    "exporter retries once without a field mask and never repeats the refused request | the request follows "
    "the server's version: no field mask for 1.14 (its copy code can panic the agent), "
    "`experimental.field_mask` for 1.15 (allowing policies only), `field_mask` from 1.16; `l7` is always "
    "asked for whole (a path below one of its oneof members is scrambled by 1.15-1.18 and left stale by 1.19) |",
    "| agent packets: `cilium_node_datapath_dropped_packets_total`, `cilium_node_datapath_forwarded_packets_total` "
    "| one packet (the agent's BPF metrics map: no sampling, no loss). `direction` is the map's: `ingress`, `egress`, "
    "`service` (NodePort/ClusterIP service traffic) or `unknown`; it is not Hubble's direction, so join agent and "
    "Hubble drops by `reason` only. An agent string `\"<n>, <ext>\"` (a code the agent has no string for, "
    "`DropReasonExt`) becomes `REASON_<n>` as on the Hubble side | 1.14-1.19 alike "
    "(`pkg/maps/metricsmap/metricsmap.go`, `pkg/monitor/api/drop.go`) |",
    "| map pressure: `cilium_node_bpf_map_pressure` | the fill ratio of one map, while it is **above that map's "
    "threshold** (Cilium's gauge with threshold: 0 for most maps, 0.1 for the policy maps, which are reported once as "
    "`map_name=\"cilium_policy_*\"`; conntrack maps update at garbage collection). An absent series means "
    "below the threshold or unknown, never 0: alert on `> x`, not on absence | 1.14-1.19 (`pkg/metrics/metrics.go`) |",
    "| memory by part: `cilium_node_agent_memory_part_bytes` | bytes now (gauges) | `bpf_maps`/`bpf_progs`: every map "
    "and program on the node up to 1.16 (`bpftool`), maps named `cilium_*` in 1.17, those of Cilium's programs from "
    "1.18 (`pkg/metrics/bpf.go`); kernels before 6.4 report key + value per entry, less than is allocated. "
    "`go_*` and `process_rss` alike 1.14-1.19 (client_golang collectors) |",
    "| cluster objects: `cilium_node_agent_cluster_objects` | `ipcache_entries`: ipcache map pressure x its capacity "
    "(`map_name` `ipcache` up to 1.17, `ipcache_v2` from 1.18; capacity 512,000); `services`: reverse-NAT "
    "(frontend) entries, only while Cilium reports that map's pressure (1.18+ every `lb-pressure-metrics-interval`) | "
    "capacity from `cilium_bpf_map_capacity` 1.15+ |",
    "",
)


def _row(m: c.Metric) -> str:
    labels = ", ".join(f"`{x}`" for x in m.labels) or "—"
    if m.optional_labels:
        labels += " (optional: " + ", ".join(f"`{x}`" for x in m.optional_labels) + ")"
    return f"| `{m.name}` | {m.type} | {labels} | {m.help} |"


def render() -> str:
    """The full Markdown text of docs/metrics.md."""
    out = [
        "# Metrics",
        "",
        "Generated from `exporter/cilium_node_exporter/contract.py` by "
        "`python -m cilium_node_exporter.contract_doc`; do not edit by hand.",
        "The counting rules behind these names are summarised in the README (*Metrics*) and applied in "
        "`exporter/cilium_node_exporter/sources/hubble/decode.py`.",
        "",
        "Series carry no `node`, `namespace` or `pod` label from the exporter: the node is a target label "
        "added by the scrape configuration (`__meta_kubernetes_pod_node_name` → `node`).",
        "",
    ]
    for title, source in SECTIONS:
        if source == "envelope":
            members = list(c.ENVELOPE_METRICS)
        elif source:
            members = [m for m in c.ALL_METRICS if m.source == source and m not in c.ENVELOPE_METRICS]
        else:
            members = [m for m in c.ALL_METRICS if m.name.startswith(c.SELF_PREFIX)]
        if source == "kubelet":
            members += [c.ENVELOPE_LOWER, c.ENVELOPE_UPPER]
        out += [f"## {title}", "", "| metric | type | labels | meaning |", "|---|---|---|---|"]
        out += [_row(m) for m in members]
        out.append("")
    out += [
        "Plus the standard `process_*` and `python_*` collectors of prometheus-client.",
        "",
        "## Label values",
        "",
        f"- `direction`: {', '.join(c.DIRECTIONS)} (Hubble); the agent's datapath counters also have `service`",
        f"- `action`: {', '.join(c.ACTIONS)}",
        "- `match`: " + ", ".join([*c.MATCH_BY_TYPE.values(), c.MATCH_UNKNOWN, "l7/http", "l7/dns", "l7/kafka"]),
        "- `source` (lost events): " + ", ".join(c.LOST_SOURCE_BY_ENUM.values()),
        f"- `source` (exporter health): {', '.join(c.SOURCES)}",
        f"- `reason` (source errors): {', '.join(c.ERROR_REASONS)}",
        f"- `kind` (events): {', '.join(c.EVENT_KINDS)}",
        f"- `event` (agent notifications): {', '.join(c.NOTIFICATION_EVENTS)}; (Hubble monitor events): "
        f"{', '.join(c.MONITOR_EVENTS)}",
        f"- `kind` (events rate limit): {', '.join(c.RATE_LIMIT_KINDS)}",
        f"- `part` (memory by part): {', '.join(c.MEMORY_PARTS)}; (derived envelope): {', '.join(c.ENVELOPE_PARTS)}",
        f"- `kind` (cluster objects): {', '.join(c.CLUSTER_OBJECT_KINDS)}",
        f"- `source` (envelope): {', '.join(c.ENVELOPE_SOURCES)}",
        f"- `envoy_mode`: {', '.join(c.ENVOY_MODES)}, {c.UNKNOWN_VALUE}",
        f"- `kube_proxy_replacement`: {', '.join(c.KUBE_PROXY_REPLACEMENT_MODES)}, {c.OVERFLOW_VALUE}, "
        f"{c.UNKNOWN_VALUE}",
        f"- `monitor_aggregation`: {', '.join(c.MONITOR_AGGREGATION_LEVELS)}, {c.UNKNOWN_VALUE}",
        f"- `version` (Cilium): X.Y.Z[-pre] from the agent, {c.OVERFLOW_VALUE} (not a version, or longer than 64 "
        f"characters), {c.UNKNOWN_VALUE} (read from the ConfigMap)",
        "- `reason` (drops): the DropReason enum name; `REASON_<n>` for a number this exporter does not know "
        "(at most 32 distinct, then `REASON_other`).",
        "",
        *PER_RELEASE,
        "## Drop-reason classes",
        "",
        "Alerts and the drop SLO treat only *unexpected* drops as errors (the default classes of the monitoring "
        "mixin, `cilium_node_exporter.mixin.config` `dropClasses`; change them with `python -m alerts.generate "
        "--config`). Everything not listed here, including `REASON_<n>`, is unexpected; transient start-up "
        "reasons count as unexpected when sustained. The *expected* class is Cilium's own: cilium-cli "
        "`defaults/defaults.go` `ExpectedDropReasons` (in cilium/cilium `cilium-cli/`, main branch, read at commit "
        "d15aaab064c1), less the policy and start-up reasons it also lists.",
        "",
        "| class | why | reasons |",
        "|---|---|---|",
        *(f"| {name} | {slo.CLASS_WHY[name]} | " + ", ".join(f"`{r}`" for r in reasons) + " |"
          for name, reasons in DEFAULTS["dropClasses"].items()),
        "",
        "Why each reason sits where it does:",
        "",
        "| reason | class | why |",
        "|---|---|---|",
        *(f"| `{reason}` | {name} | {slo.DROP_REASON_WHY[reason]} |"
          for name, reasons in DEFAULTS["dropClasses"].items() for reason in reasons),
        "",
        "## DropReason table",
        "",
        "| code | enum name | Cilium's string (`cilium_drop_count_total{reason}`) | class |",
        "|---|---|---|---|",
    ]
    for code, (name, text) in sorted(c.DROP_REASONS.items()):
        out.append(f"| {code} | `{name}` | {text} | {slo.drop_class(name)} |")
    out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Write docs/metrics.md (or the path given)."""
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render())
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
