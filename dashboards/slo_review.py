"""Cilium / SLO Review: the monthly review of both SLOs over the period picked in the time picker.

Every number over the period reads the alert pack's coarse tiles (``sloReviewStep``, 1h by default): a 28d
review of 200 nodes touches 672 samples per node and series instead of recomputing 28 days of 5m rates.
The review period is the time range (`$__range`, instant queries at its end), so "Previous month" in the time
picker reviews last calendar month. Objectives, windows and burn factors come from the mixin configuration.
- drop-ratio (event-based, agent counters): sum of unexpected drops / sum of packets over the period;
- memory-envelope (time-based): share of the node's measured time above its envelope.
Worst-node views only count nodes above a floor (traffic for drops, measured time for memory): a node that
lived 20 minutes does not decide the month.
"""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard as db

from cilium_node_exporter.mixin import names as n
from cilium_node_exporter.mixin import slo
from cilium_node_exporter.mixin.config import Values, duration_seconds, go_number
from cilium_node_exporter.mixin.promql import PromQL
from dashboards import panels as P
from dashboards.panels import Column, Q

UID = P.SLO_UID
BURN_UNIT = "none"  # burn rate: multiples of the rate that spends the budget exactly over the period
BUDGET_STEPS = P.thresholds((None, "red"), (0, "orange"), (0.25, "green"))
SPENT_STEPS = P.thresholds((None, "green"), (0.5, "yellow"), (1, "red"))
MEMORY_MIN_COVERAGE = 0.25  # memory worst-node views: nodes measured for at least this share of the period
RANGE = "$__range"
ACTION = {"critical": "pages", "warning": "opens a ticket"}


@dataclass(frozen=True)
class Review:
    """PromQL of one SLO over the review period for the selected nodes."""

    slo: slo.Slo
    per_node: str  # error ratio per node, by (cluster, node)
    floor: str  # nodes that count for worst-node views, by (cluster, node)
    pooled: str  # error ratio of all selected nodes together
    how: str  # panel-description sentence
    volume: Column | None = None  # how much each node counts (drops: average packets/s over the period)


def _burn_steps(factors: list[float]) -> P.db.ThresholdsConfig:
    """Green below 1 (the budget lasts the period), yellow from 1, then one colour per alert factor."""
    colors = iter(("orange", "red", "dark-red", "purple", "purple", "purple"))
    steps: list[tuple[float | None, str]] = [(None, "green")]
    for value in sorted({1.0, *factors}):
        steps.append((value, "yellow" if value == 1.0 else next(colors)))
    return P.thresholds(*steps)


def reviews(v: Values) -> tuple[Review, Review]:
    """The drop-ratio and memory-envelope reviews for configuration ``v``."""
    q, step = PromQL.for_dashboards(v), v.raw("sloReviewStep")
    step_s = go_number(duration_seconds(step))
    by = q.by()
    err = q.rec(n.tile(n.drop_errors(step), step))
    traffic = q.rec(n.tile(n.drop_traffic(step), step))
    memory = q.rec(n.tile(n.memory_ratio(step), step))
    drop_sum, traffic_sum = f"sum_over_time({err}[{RANGE}])", f"sum_over_time({traffic}[{RANGE}])"
    drop = Review(
        slo.DROP,
        per_node=f"sum by ({by}) ({drop_sum}) / (sum by ({by}) ({traffic_sum}) > 0)",
        floor=f"sum by ({by}) ({traffic_sum}) / $__range_s >= {v['dropSloMinTrafficRate']}",
        pooled=f"sum({drop_sum}) / (sum({traffic_sum}) > 0)",
        how=f"error ratio over the period = sum_over_time({n.tile(n.drop_errors(step), step)}) / "
            f"sum_over_time({n.tile(n.drop_traffic(step), step)}) (packets counted exactly: the pack's chain of "
            f"counts every {step})",
        volume=Column("packets/s", f"sum by ({by}) ({traffic_sum}) / $__range_s", "pps", decimals=1))
    memory_count = f"count_over_time({memory}[{RANGE}])"
    mem = Review(
        slo.MEMORY,
        per_node=f"avg by ({by}) (avg_over_time({memory}[{RANGE}]))",
        floor=f"max by ({by}) ({memory_count}) * {step_s} / $__range_s >= {MEMORY_MIN_COVERAGE}",
        pooled=f"sum(sum_over_time({memory}[{RANGE}])) / sum({memory_count})",
        how=f"error ratio over the period = share of the measured time above the envelope "
            f"(avg_over_time of {n.tile(n.memory_ratio(step), step)}; unknown time not counted)")
    return drop, mem


def _objective(v: Values, s: slo.Slo) -> str:
    return f'scalar(max({n.SLO_OBJECTIVE}{{slo="{s.name}"}}))'


def _slo_panels(v: Values, r: Review) -> list:
    q = PromQL.for_dashboards(v)
    s = r.slo
    budget = f"(1 - {_objective(v, s)})"
    floor_text = (f"nodes averaging at least {v['dropSloMinTrafficRate']} packets/s over the period"
                  if s is slo.DROP else f"nodes measured for at least {MEMORY_MIN_COVERAGE:.0%} of the period")
    how = f"SLO {s.name}: an error is {s.error}; {r.how}."
    counted = f"({r.per_node}) and {q.on()} ({r.floor})"
    pairs = slo.burn_windows(v.config, s)
    windows = [v.raw("sloRateWindow"), *sorted({w for p in pairs for w in (p.short, p.long)},
                                                key=duration_seconds)]
    if s is slo.DROP:
        def burn(w: str) -> str:
            return f"sum({q.rec(n.drop_errors(w))}) / (sum({q.rec(n.drop_traffic(w))}) > 0) / {budget}"
    else:
        def burn(w: str) -> str:
            return f"avg({q.rec(n.memory_ratio(w))}) / {budget}"
    period = v.raw("sloPeriod")
    burndown = f"1 - max by ({q.cluster}) ({q.rec_cluster(n.cluster(s.ratio(period)))}) / {budget}"
    page = pairs[0]
    return [
        P.stat(f"{s.title}: objective", f"Target of the {s.name} SLO per node, from the pack's recording rule "
               f'`{n.SLO_OBJECTIVE}{{slo="{s.name}"}}`.', "percentunit",
               [Q(f'max({n.SLO_OBJECTIVE}{{slo="{s.name}"}})', instant=True)], width=4, height=6, decimals=2),
        P.stat(f"{s.title}: error budget remaining, all selected nodes",
               f"{how} All selected nodes pooled. Budget remaining = 1 - error ratio / (1 - objective); below 0 "
               "the SLO is missed for the fleet.", "percentunit",
               [Q(f"1 - ({r.pooled}) / {budget}", "budget remaining", instant=True),
                Q(f"1 - ({r.pooled})", "SLI", instant=True)],
               width=5, height=6, decimals=2, steps=BUDGET_STEPS, text_mode=P.cm.BigValueTextMode.VALUE_AND_NAME,
               no_value="not measured"),
        P.stat(f"{s.title}: nodes meeting the SLO",
               f"{how} Share of the {floor_text} whose own error ratio stayed within the budget, and how many "
               "nodes that is.", "percentunit",
               [Q(f"count(({counted}) <= {budget}) / count({r.floor})", "meeting", instant=True),
                Q(f"count({r.floor})", "nodes counted", instant=True)],
               width=5, height=6, decimals=1, steps=P.thresholds((None, "red"), (0.95, "yellow"), (1, "green")),
               text_mode=P.cm.BigValueTextMode.VALUE_AND_NAME, no_value="not measured")
        .override_by_name("nodes counted", [P.dm.DynamicConfigValue(id_val="unit", value="none"),
                                            P.dm.DynamicConfigValue(id_val="decimals", value=0)]),
        P.stat(f"{s.title}: worst node's budget remaining", f"{how} Among the {floor_text} only.", "percentunit",
               [Q(f"1 - max({counted}) / {budget}", instant=True)], width=5, height=6, decimals=1,
               steps=BUDGET_STEPS, no_value="not measured"),
        P.bar_gauge(f"{s.title}: burn rate now, by window",
                    "Error ratio over each window of the pack's recording rules divided by the error budget, all "
                    "selected nodes pooled. 1 spends the budget exactly over the period; the alert pack "
                    + ", ".join(f"{ACTION[p.severity]} at {go_number(p.factor)} ({p.long}/{p.short})" for p in pairs)
                    + ".", BURN_UNIT,
                    [Q(burn(w), w, instant=True) for w in windows], width=5, height=6,
                    steps=_burn_steps([p.factor for p in pairs]), decimals=2),
        P.timeseries(f"{s.title}: error budget remaining over the trailing {period}, per cluster",
                     f"Budget remaining of all the cluster's nodes pooled over the {period} before each point "
                     f"(`{n.cluster(s.ratio(period))}`, recorded every {v['sloPeriodInterval']}): how the budget "
                     "was spent over the review period.", "percentunit",
                     [Q(burndown, f"{{{{{q.cluster}}}}}", interval=v.raw("sloReviewStep"))], width=24, height=8,
                     steps=BUDGET_STEPS, threshold_lines=True, min_val=None),
        P.node_table(
            v, f"{s.title}: nodes that spent the most budget",
            f"{how} Budget spent = error ratio over the period / (1 - objective); above 100 % the node missed its "
            f"SLO. Only {floor_text}. Burn rate {page.long} shows whether it is still burning. Click a row for the "
            "node detail.",
            [Column("budget spent", f"{counted} / {budget}", "percentunit", SPENT_STEPS, 1),
             *([r.volume] if r.volume else []),
             Column(f"burn rate {page.long}", f"max by ({q.by()}) ({q.rec(s.ratio(page.long))}) / {budget}",
                    BURN_UNIT, _burn_steps([p.factor for p in pairs]), 1, not_measured="not measured")],
            sort_by="budget spent", width=24, height=8),
    ]


def _coverage(v: Values, drop: Review) -> list:
    q = PromQL.for_dashboards(v)
    step = v.raw("sloReviewStep")
    lowest = f"max(prometheus_tsdb_lowest_timestamp_seconds{{{v['prometheusSelector']}}})"
    days = slo.retention_needed_seconds(v.config) / 86400
    traffic = q.rec(n.tile(n.drop_traffic(step), step))
    return [
        P.stat("Data retained for the period", "Share of the selected period that Prometheus still holds "
               "(prometheus_tsdb_lowest_timestamp_seconds): below 100 % every number on this dashboard covers "
               f"less than the period. The {v.raw('sloPeriod')} SLO needs a retention of at least {days:.0f} days "
               "(docs/deploy.md).", "percentunit",
               [Q(f"clamp(($__to / 1000 - {lowest}) / $__range_s, 0, 1)", instant=True)], width=6, height=4,
               decimals=1, steps=P.thresholds((None, "red"), (1, "green")),
               no_value="unknown: Prometheus does not scrape itself"),
        P.stat("Nodes with a drop SLI", "Selected nodes with packet-exact drop measurements (agent counters) "
               "during the period, those above the traffic floor, and those with only the Hubble approximation "
               "now (no drop SLO: tickets only).", "none",
               [Q(f"count(count_over_time({traffic}[{RANGE}])) or vector(0)", "measured", instant=True),
                Q(f"count({drop.floor}) or vector(0)", "above the traffic floor", instant=True),
                Q(f"count({q.rec(n.FLOWS_SEEN)} unless {q.on()} {q.rec(n.DATAPATH_PACKETS)}) or vector(0)",
                  "Hubble approximation only", instant=True)],
               width=12, height=4, text_mode=P.cm.BigValueTextMode.VALUE_AND_NAME),
        P.stat("Hubble blind nodes now", "Selected nodes where Hubble cannot see drops or verdicts (their "
               "Hubble numbers are not measured; the packet-exact SLO is unaffected).", "none",
               [Q(f"count({q.blind()}) or vector(0)", instant=True)], width=6, height=4,
               steps=P.thresholds((None, "green"), (1, "orange"))),
    ]


def _memory_extra(v: Values, mem: Review) -> list:
    q = PromQL.for_dashboards(v)
    return [
        P.timeseries("Memory: nodes outside their envelope", "Number of selected nodes whose cilium-agent "
                     f"working set is outside its envelope ({n.MEMORY_ENVELOPE_ERROR}).", "none",
                     [Q(f"sum({q.rec(n.MEMORY_ENVELOPE_ERROR)})", "nodes outside", interval=v.raw("sloReviewStep"))],
                     width=24, height=6, steps=P.thresholds((None, "green"), (1, "red"))),
    ]


def build(v: Values) -> db.Dashboard:
    drop, mem = reviews(v)
    d = (db.Dashboard(P.TITLES[UID]).uid(UID).tags([P.TAG, "cilium", "slo"])
         .description("Platform-team SLO review over the time range: per SLO the objective, fleet-pooled budget "
                      "remaining, nodes meeting the SLO, the worst node above a floor, burn rates, the budget over "
                      "time and the nodes that spent most.")
         .time(f"now-{v.raw('sloPeriod')}", "now").refresh("5m").timezone("browser").readonly()
         .with_variable(P.datasource_variable()).with_variable(P.job_variable(v))
         .with_variable(P.cluster_variable(v)).with_variable(P.node_variable(v, multi=True))
         .links(P.dashboard_links(UID)))
    for title, group in (("Coverage", _coverage(v, drop)), (f"SLO: {slo.DROP.name}", _slo_panels(v, drop)),
                         (f"SLO: {slo.MEMORY.name}", _slo_panels(v, mem) + _memory_extra(v, mem))):
        d = d.with_row(P.row(title))
        for p in group:
            d = d.with_panel(p)
    return d
