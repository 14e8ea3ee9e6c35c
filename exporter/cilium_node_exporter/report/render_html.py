"""The report as one self-contained HTML page: inline CSS and SVG charts, no script, nothing fetched."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from . import charts
from .text import FILTERS, summary


def render_html(report: dict[str, Any]) -> str:
    env = Environment(loader=PackageLoader("cilium_node_exporter.report", "templates"),
                      autoescape=select_autoescape(["html", "j2"]), undefined=StrictUndefined, trim_blocks=True,
                      lstrip_blocks=True)
    env.filters.update(FILTERS)
    figures: list[dict[str, Any]] = []
    short = len(report["days"]) < 2  # one point a day: a chart would be a dot on an axis of made-up dates
    note = (f'<p class="small chart-note">Daily charts need at least two days; this period has '
            f'{report["period"]["hours"]} hour(s): every figure is in the tables.</p>')

    def daily(draw: Callable[..., str], *args: Any) -> str:
        return note if short else draw(*args)

    for cluster in report["clusters"]:
        figs: dict[str, Any] = {"burndown": {s["key"]: daily(charts.burndown, report, s) for s in cluster["slos"]},
                                "memory": {}, "histogram": {}, "drops": {}}
        for mem in cluster["memory"]:
            if mem["present"]:
                figs["memory"][mem["component"]] = (charts.memory_band(report, mem) if report["period"]["hours"] > 1
                                                    else "")
                figs["histogram"][mem["component"]] = charts.memory_histogram(mem)
        for source in cluster["drops"]["by_class_daily"]:
            figs["drops"][source] = daily(charts.drops_by_class, report, cluster["drops"], source)
        figs["denials"] = daily(charts.denials, report, cluster["drops"])
        figs["coverage"] = daily(charts.coverage, report, cluster)
        figs["versions"] = daily(charts.versions, report, cluster["versions"]) if cluster["versions"]["cohorts"] else ""
        figs["alerts"] = daily(charts.alerts, report, cluster["alerts"])
        figures.append(figs)
    return env.get_template("report.html.j2").render(
        r=report, figures=figures, summaries=[summary(report, c) for c in report["clusters"]],
        colours={"good": charts.GOOD, "bad": charts.BAD, "warn": charts.WARN, "not_measured": charts.NOT_MEASURED})
