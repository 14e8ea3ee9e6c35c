"""Cilium / SLO Review: per SLO the objective, SLI over `$window`, budget left, burn rates, worst nodes.

Both SLOs are per node. The error ratio over the review window is computed at query time from the alert
pack's 5m recording rules, with the same formula as the pack's 28d rule, so any window can be reviewed and
`$window` = 28d matches `...:ratio_rate28d`:
- drop-ratio (event-based): sum_over_time(errors:rate5m[$window]) / sum_over_time(traffic:rate5m[$window]);
- memory-envelope (time-based): avg_over_time(envelope_error:bool[$window]), the fraction of bad minutes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm

from dashboards import panels as P
from dashboards import promql as R
from dashboards.panels import Column, Q

UID = P.SLO_UID
WINDOWS = ("1d", "7d", "14d", "28d", "30d")
DEFAULT_WINDOW = "28d"
BURN_UNIT = "none"  # burn rate: multiples of the rate that spends the budget exactly over the period
# The alert pack's burn-rate factors for a 28d period: page at 13.44 (1h) and 5.6 (6h), ticket at 2.8 (1d).
BURN_FACTORS = (2.8, 5.6, 13.44)
BUDGET_STEPS = P.thresholds((None, "red"), (0, "orange"), (0.25, "green"))
SPENT_STEPS = P.thresholds((None, "green"), (0.5, "yellow"), (1, "red"))
BURN_STEPS = P.thresholds((None, "green"), (1, "yellow"), (BURN_FACTORS[0], "orange"), (BURN_FACTORS[1], "red"),
                          (BURN_FACTORS[2], "dark-red"))


@dataclass(frozen=True)
class Slo:
    slo: str  # value of the objective series' `slo` label
    title: str
    what: str  # one sentence: what an error is
    rule: Callable[[str], str]  # window -> error-ratio recording rule name
    errors: str  # per-node error ratio over $window, `by (cluster, node)`
    pooled: str  # error ratio over $window of all selected nodes together
    how: str  # how `errors` is computed, for panel descriptions


_DROP_ERR = f"sum_over_time({R.DROP_SLO_ERRORS_RATE}{R.rec()}[$window])"
_DROP_TRAFFIC = f"sum_over_time({R.DROP_SLO_TRAFFIC_RATE}{R.rec()}[$window])"
_MEM_ERR = f"avg_over_time({R.MEMORY_ENVELOPE_ERROR}{R.rec()}[$window])"

DROP = Slo(
    R.SLO_DROP, "Drop ratio",
    "an error is a packet dropped for an unexpected reason, out of all datapath packets", R.drop_slo_errors,
    errors=f"sum by (cluster, node) ({_DROP_ERR}) / (sum by (cluster, node) ({_DROP_TRAFFIC}) > 0)",
    pooled=f"sum({_DROP_ERR}) / (sum({_DROP_TRAFFIC}) > 0)",
    how=f"error ratio over $window = sum_over_time({R.DROP_SLO_ERRORS_RATE}[$window]) / "
        f"sum_over_time({R.DROP_SLO_TRAFFIC_RATE}[$window]) (packet-weighted, as the alert pack's 28d rule)")
MEMORY = Slo(
    R.SLO_MEMORY, "Memory envelope",
    "an error is a minute with the cilium-agent working set above the node's envelope (or unknown while the "
    "kubelet answers)", R.memory_slo_errors,
    errors=f"max by (cluster, node) ({_MEM_ERR})",
    pooled=f"avg({_MEM_ERR})",
    how=f"error ratio over $window = avg_over_time({R.MEMORY_ENVELOPE_ERROR}[$window]) (fraction of bad "
        "minutes, as the alert pack's 28d rule)")


def _how(slo: Slo) -> str:
    return f"SLO {slo.slo}: {slo.what}. SLI = 1 - {slo.how}, computed at query time."


def _slo_panels(slo: Slo) -> list:
    budget = R.budget(slo.slo)
    both = "Worst node, and all selected nodes together."
    return [
        P.stat(f"{slo.title}: objective", f"Target of the {slo.slo} SLO per node, read from the recording rule "
               f'`{R.SLO_OBJECTIVE}{{slo="{slo.slo}"}}` of the alert pack.', "percentunit",
               [Q(f'max({R.SLO_OBJECTIVE}{{slo="{slo.slo}"}})', instant=True)], width=4, height=8, decimals=2),
        P.stat(f"{slo.title}: SLI over $window", f"{_how(slo)} {both}", "percentunit",
               [Q(f"1 - max({slo.errors})", "worst node", instant=True),
                Q(f"1 - ({slo.pooled})", "all nodes", instant=True)],
               width=6, height=8, decimals=3, text_mode=P.cm.BigValueTextMode.VALUE_AND_NAME),
        P.stat(f"{slo.title}: error budget remaining", f"{_how(slo)} Budget remaining = 1 - error ratio / "
               f"(1 - objective); below 0 the SLO is missed. {both}", "percentunit",
               [Q(f"1 - max({slo.errors}) / {budget}", "worst node", instant=True),
                Q(f"1 - ({slo.pooled}) / {budget}", "all nodes", instant=True)],
               width=6, height=8, decimals=1, steps=BUDGET_STEPS, text_mode=P.cm.BigValueTextMode.VALUE_AND_NAME),
        P.timeseries(f"{slo.title}: burn rate, worst node", f"Error ratio over each window of the alert "
                     f"pack's recording rules ({slo.rule('1h')}, ...) divided by the error budget (1 - "
                     "objective), worst selected node. 1 spends the budget exactly over a 28d period; the "
                     "alert pack pages at 13.44 (1h) and 5.6 (6h) and opens a ticket at 2.8 (1d).", BURN_UNIT,
                     [Q(f"max({slo.rule(w)}{R.rec()}) / {budget}", w) for w in R.SLO_WINDOWS],
                     width=8, steps=BURN_STEPS, threshold_lines=True, height=8),
        P.node_table(
            f"{slo.title}: nodes that spent the most budget over $window",
            f"{_how(slo)} Budget spent = error ratio over $window / (1 - objective); above 100 % the node "
            "missed its SLO. Burn rate 1h shows whether it is still burning. Click a row for the node detail.",
            [Column("budget spent", f"{slo.errors} / {budget}", "percentunit", SPENT_STEPS, 1),
             Column("SLI", f"1 - {slo.errors}", "percentunit", decimals=3),
             Column("burn rate 1h", f"max by (cluster, node) ({slo.rule('1h')}{R.rec()}) / {budget}",
                    BURN_UNIT, BURN_STEPS, 1)],
            sort_by="budget spent", width=24, height=8),
    ]


def _memory_extra() -> list:
    return [
        P.node_table(
            "Memory: time in envelope per node over $window",
            "Fraction of the review window each node's cilium-agent working set stayed inside its envelope: "
            f"1 - avg_over_time({R.MEMORY_ENVELOPE_ERROR}[$window]) (the rule is 1 for a bad minute; "
            "below the lower bound is not an error). "
            "Worst first; the current working set relative to the envelope upper bound for context.",
            [Column("time in envelope", f"1 - {MEMORY.errors}", "percentunit",
                    P.thresholds((None, "red"), (0.99, "yellow"), (0.999, "green")), 2),
             Column("working set / envelope now",
                    f"max by (cluster, node) (cilium_node_agent_memory_working_set_bytes{R.raw()}) / "
                    f"max by (cluster, node) (cilium_node_agent_memory_envelope_upper_bytes{R.raw()})",
                    "percentunit", P.thresholds((None, "green"), (0.8, "yellow"), (1, "red")), 0)],
            sort_by="time in envelope", desc=False, width=16, height=8),
        P.timeseries("Memory: nodes outside their envelope", "Number of selected nodes whose cilium-agent "
                     f"working set is outside its envelope ({R.MEMORY_ENVELOPE_ERROR}).", "none",
                     [Q(f"sum({R.MEMORY_ENVELOPE_ERROR}{R.rec()})", "nodes outside")], width=8, height=8,
                     steps=P.thresholds((None, "green"), (1, "red"))),
    ]


def window_variable() -> db.CustomVariable:
    return (db.CustomVariable("window").label("Review window").values(",".join(WINDOWS))
            .description("SLO review period: SLIs and error budgets are computed over this window.")
            .current(dm.VariableOption(selected=True, text=DEFAULT_WINDOW, value=DEFAULT_WINDOW)))


def build() -> db.Dashboard:
    d = (db.Dashboard(P.TITLES[UID]).uid(UID).tags([P.TAG, "cilium", "slo"])
         .description("Platform-team SLO review: per SLO the objective, SLI over the review window, error budget "
                      "remaining, burn rates and the nodes that spent most of the budget.")
         .time("now-7d", "now").refresh("5m").timezone("browser").readonly()
         .with_variable(P.datasource_variable()).with_variable(P.job_variable())
         .with_variable(P.cluster_variable()).with_variable(P.node_variable(multi=True))
         .with_variable(window_variable()).links(P.dashboard_links(UID)))
    for title, group in ((f"SLO: {DROP.slo}", _slo_panels(DROP)),
                         (f"SLO: {MEMORY.slo}", _slo_panels(MEMORY) + _memory_extra())):
        d = d.with_row(P.row(title))
        for p in group:
            d = d.with_panel(p)
    return d
