"""Number formats and the sentences both the HTML and the Markdown report use (same figures, same words)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

NOT_MEASURED = "not measured"


def pct(value: float | None, digits: int = 3) -> str:
    """A ratio as a percentage (``99.978 %``); None is "not measured"."""
    return NOT_MEASURED if value is None else f"{value * 100:.{digits}f} %"


def budget(value: float | None) -> str:
    return NOT_MEASURED if value is None else f"{value * 100:.1f} %"


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f} MiB"


def mib_per_day(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:+,.1f} MiB/day"


def hours(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 48:
        return f"{value / 24:.1f} d"
    return f"{value:.1f} h" if value != int(value) else f"{value:.0f} h"


def count(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= div:
            return f"{value / div:.2f}{unit}"
    return f"{value:.0f}"


def when(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")


def hour_span(t: float | None) -> str:
    """The hour that starts at ``t`` (the report's resolution: an event in it, not at its first minute)."""
    if t is None:
        return "-"
    start = datetime.fromtimestamp(t, UTC)
    end = datetime.fromtimestamp(t + 3600, UTC)
    return f"{start:%Y-%m-%d %H:00}\u2013{'24:00' if end.hour == 0 else f'{end:%H:00}'}"


def span(start: float | None, end: float | None) -> str:
    """Whole hours from ``start`` to ``end`` (``2026-02-19 09:00`` to ``15:00``; the end's date when it
    differs, ``24:00`` for the midnight that ends the start's day)."""
    if start is None or end is None:
        return "-"
    a, b = datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
    if b.date() == a.date():
        tail = f"{b:%H:00}"
    elif datetime.fromtimestamp(end - 1, UTC).date() == a.date():
        tail = "24:00"
    else:
        tail = f"{b:%Y-%m-%d %H:00}"
    return f"{a:%Y-%m-%d %H:00}\u2013{tail}"


def number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def state(slo: dict[str, Any], verdict: dict[str, Any] | None = None) -> str:
    """met, missed, not measured, or partial data whatever the figures (the colour class)."""
    if verdict is not None and verdict["status"] == "partial":
        return "partial"
    if slo["achieved"] is None:
        return "not-measured"
    return "good" if slo["achieved"] >= slo["objective"] else "bad"


FILTERS = {"pct": pct, "budget": budget, "mib": mib, "mib_per_day": mib_per_day, "hours": hours, "count": count,
           "when": when, "number": number, "state": state, "hour_span": hour_span, "span": span}


def summary(report: dict[str, Any], cluster: dict[str, Any]) -> list[str]:
    """The first page's sentences for one cluster: what a reader must know before the details."""
    out = []
    v = cluster["verdict"]
    if v["status"] == "partial":
        out.append(f"PARTIAL DATA: only {v['coverage'] * 100:.1f} % of the period's node-hours have data (below "
                   f"{v['min_coverage'] * 100:g} %): {'; '.join(v['reasons'])}. No SLO below reads met or missed.")
    for slo in cluster["slos"]:
        verdict = {"good": "met", "bad": "missed", "not-measured": "not measured",
                   "partial": "partial data (no verdict)"}[state(slo, v)]
        approx = " (approximation)" if slo["approximation"] else ""
        line = (f"{slo['title']}{approx}: {verdict}, {pct(slo['achieved'])} against {pct(slo['objective'], 2)}; "
                f"error budget spent {budget(slo['budget_spent'])}")
        if slo["worst"]:
            w = slo["worst"][0]
            line += f"; worst node {w['node']} spent {budget(w['budget_spent'])}"
        out.append(line + ".")
    for key, name in (("drop-ratio", "drop"), ("memory-envelope", "agent memory")):
        found = [i for i in cluster.get("incidents", []) if i["slo"] == key]
        if found:
            big = found[0]
            out.append(f"Incidents: {len(found)} spent {budget(sum(i['budget_cost'] for i in found))} of the {name} "
                       f"budget; the largest, {span(big['start'], big['end'])} UTC on {', '.join(big['nodes']) or '-'}"
                       f" ({big['cause']}), spent {budget(big['budget_cost'])}.")
    agent = next((m for m in cluster["memory"] if m["component"] == "agent"), None)
    if agent and agent["present"]:
        out.append(f"cilium-agent: {len(agent['nodes_above'])} node(s) spent time above the envelope, "
                   f"{agent['oom_kills']} OOM kill(s), {agent['restarts']} restart(s).")
    alerts = cluster["alerts"]
    out.append(f"Alerts: {alerts['pages']} page(s) and {alerts['tickets']} ticket(s).")
    ups = cluster["versions"]["upgrades"]
    if ups:
        pairs = sorted({f"{u['from']} \u2192 {u['to']}" for u in ups})
        out.append(f"Upgrades: {len(ups)} node(s) changed version ({', '.join(pairs)}), in the hours "
                   f"{hour_span(ups[0]['at'])} to {hour_span(ups[-1]['at'])} UTC.")
    blind = cluster["hubble"]["blind_nodes"]
    if blind:
        out.append(f"{len(blind)} node(s) had time the drop SLI could not measure "
                   f"({hours(sum(b['not_measured_hours'] for b in blind))} in all): shown as not measured.")
    return out
