"""Cilium / SLO Review: per SLO the objective, SLI over `$window`, budget left, burn rates, worst nodes.

Both SLOs are per node. The SLI over the review window is computed at query time from the alert pack's
5m error-ratio recording rules: `avg_over_time(<rule>:ratio_rate5m[$window])` (time-weighted mean of the
5m ratios), so any window can be reviewed, not only the 28d the rules pre-compute.
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
BUDGET_STEPS = P.thresholds((None, "red"), (0, "orange"), (0.25, "green"))
SPENT_STEPS = P.thresholds((None, "green"), (0.5, "yellow"), (1, "red"))
BURN_STEPS = P.thresholds((None, "green"), (1, "yellow"), (6, "orange"), (14.4, "red"))


@dataclass(frozen=True)
class Slo:
    slo: str  # value of the objective series' `slo` label
    title: str
    what: str  # one sentence: what an error is
    rule: Callable[[str], str]  # window -> recording rule name

    @property
    def windowed_errors(self) -> str:
        """Per-node error ratio over the review window, from the 5m ratio rule."""
        return f"avg_over_time({self.rule('5m')}{R.rec()}[$window])"


DROP = Slo(R.SLO_DROP, "Drop ratio", "an error is a packet dropped for an unexpected reason, out of all "
           "datapath packets", R.drop_slo_errors)
MEMORY = Slo(R.SLO_MEMORY, "Memory envelope", "an error is a minute with the cilium-agent working set "
             "outside the node's envelope", R.memory_slo_errors)


def _how(slo: Slo) -> str:
    return (f"SLO {slo.slo}: {slo.what}. SLI over $window = 1 - avg_over_time({slo.rule('5m')}[$window]) "
            "(time-weighted mean of the 5m error ratio, computed at query time).")


def _slo_panels(slo: Slo) -> list:
    budget = R.budget(slo.slo)
    per_node = f"max by (cluster, node) ({slo.windowed_errors})"
    return [
        P.stat(f"{slo.title}: objective", f"Target of the {slo.slo} SLO per node, read from the recording rule "
               f'`{R.SLO_OBJECTIVE}{{slo="{slo.slo}"}}` of the alert pack.', "percentunit",
               [Q(f'max({R.SLO_OBJECTIVE}{{slo="{slo.slo}"}})', instant=True)], width=4, height=8, decimals=2),
        P.stat(f"{slo.title}: SLI over $window", _how(slo) + " Worst node and mean over the selected nodes.",
               "percentunit", [Q(f"1 - max({slo.windowed_errors})", "worst node", instant=True),
                               Q(f"1 - avg({slo.windowed_errors})", "mean of nodes", instant=True)],
               width=6, height=8, decimals=3, text_mode=P.cm.BigValueTextMode.VALUE_AND_NAME),
        P.stat(f"{slo.title}: error budget remaining", _how(slo) + " Budget remaining = 1 - error ratio / "
               "(1 - objective), for the worst node and the mean over nodes; below 0 the SLO is missed.",
               "percentunit", [Q(f"1 - max({slo.windowed_errors}) / {budget}", "worst node", instant=True),
                               Q(f"1 - avg({slo.windowed_errors}) / {budget}", "mean of nodes", instant=True)],
               width=6, height=8, decimals=1, steps=BUDGET_STEPS, text_mode=P.cm.BigValueTextMode.VALUE_AND_NAME),
        P.timeseries(f"{slo.title}: burn rate, worst node", f"Error ratio over each window of the alert "
                     f"pack's recording rules ({slo.rule('1h')} ...) divided by the error budget, worst "
                     "selected node. 1 spends the budget exactly over the SLO period; 14.4 (1h) and 6 (6h) are "
                     "the page thresholds of the multi-window burn-rate alerts.", BURN_UNIT,
                     [Q(f"max({slo.rule(w)}{R.rec()}) / {budget}", w) for w in R.SLO_WINDOWS],
                     width=8, steps=BURN_STEPS, threshold_lines=True, height=8),
        P.node_table(
            f"{slo.title}: nodes that spent the most budget over $window",
            _how(slo) + " Budget spent = error ratio over $window / (1 - objective); above 100 % the node "
            "missed its SLO. Burn rate 1h shows whether it is still burning. Click a row for the node detail.",
            [Column("budget spent", f"{per_node} / {budget}", "percentunit", SPENT_STEPS, 1),
             Column("SLI", f"1 - {per_node}", "percentunit", decimals=3),
             Column("burn rate 1h", f"max by (cluster, node) ({slo.rule('1h')}{R.rec()}) / {budget}",
                    BURN_UNIT, BURN_STEPS, 1)],
            sort_by="budget spent", width=24, height=8),
    ]


def _memory_extra() -> list:
    in_envelope = f"1 - avg_over_time({R.MEMORY_ENVELOPE_ERROR}{R.rec()}[$window])"
    return [
        P.node_table(
            "Memory: time in envelope per node over $window",
            "Fraction of the review window each node's cilium-agent working set stayed inside its envelope: "
            f"1 - avg_over_time({R.MEMORY_ENVELOPE_ERROR}[$window]) (the rule is 1 for a bad minute). "
            "Worst first; the current working set relative to the envelope upper bound for context.",
            [Column("time in envelope", f"max by (cluster, node) ({in_envelope})", "percentunit",
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
