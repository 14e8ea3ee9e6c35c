"""The report's verdict on its own data: "complete", or "partial" when too little of the period has data.

Coverage is the share of the period between the first and the last hour with data (retention, a late
start or an early end cut it), times the share of node-hours with data inside the nodes' lifetimes (scrape
gaps). Below ``--min-coverage`` the verdict is "partial": every SLO card reads "partial data" whatever its
figures (a month read from 11 days of retention is not "met"), and the command exits with its own code.
"""

from __future__ import annotations

from datetime import UTC, datetime

from . import model as m

VERDICTS = ("complete", "partial")
DEFAULT_MIN_COVERAGE = 0.99


def _day(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:00 UTC")


def retention_hint(period_start: float, period_end: float, oldest: float | None, retention: str) -> str:
    """Why the start of a period is missing when this Prometheus no longer holds it ("" when it does)."""
    if oldest is None or oldest <= period_start:
        return ""
    kept = f" (retention {retention})" if retention and retention != "0s" else ""
    if oldest >= period_end:
        return (f"The whole period has aged out: this Prometheus holds data only from {_day(oldest)}{kept}. Run the "
                "report against long-term storage (Thanos, Mimir) or keep the period plus a day of retention.")
    return (f"The period's first {(oldest - period_start) / 86400:.1f} days have aged out: this Prometheus holds data "
            f"only from {_day(oldest)}{kept}. Keep the period plus a day of retention, or read long-term storage.")


def judge(span_hours: float, period_hours: float, present_node_hours: float, lifetime_node_hours: float,
          min_coverage: float, hint: str = "") -> m.Verdict:
    """The verdict of one cluster from its covered span and its node-hours."""
    span = span_hours / period_hours if period_hours > 0 else 0.0
    nodes = present_node_hours / lifetime_node_hours if lifetime_node_hours > 0 else 0.0
    coverage = max(0.0, min(1.0, span * nodes))
    reasons = []
    if span < 1:
        reasons.append(f"data covers {span_hours:.0f} of the period's {period_hours:.0f} hours")
    if nodes < 1:
        reasons.append(f"{lifetime_node_hours - present_node_hours:.0f} node-hour(s) without data inside the nodes' "
                       "lifetimes")
    if hint:
        reasons.append(hint)
    status = "complete" if coverage >= min_coverage else "partial"
    return m.Verdict(status, coverage, min_coverage, reasons)


def overall(verdicts: list[m.Verdict], min_coverage: float) -> m.Verdict:
    """The report's verdict: partial when any cluster's is (its coverage the lowest)."""
    if not verdicts:
        return m.Verdict("partial", 0.0, min_coverage, ["no data"])
    worst = min(verdicts, key=lambda v: v.coverage)
    status = "partial" if any(v.status == "partial" for v in verdicts) else "complete"
    return m.Verdict(status, worst.coverage, min_coverage, list(worst.reasons))
