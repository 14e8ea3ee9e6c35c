"""Charts of the report as inline SVG (matplotlib, text kept as text so it can be searched and read).

One colour means one thing in every chart: GOOD (inside objective or envelope), BAD (errors, above the
envelope, pages), NOT_MEASURED (time nobody could see), and neutral blues/greys for context.
"""

from __future__ import annotations

import io
import itertools
import re
from datetime import UTC, datetime
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib import dates as mdates
from matplotlib import rcParams
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

GOOD = "#2e7d32"
BAD = "#c62828"
WARN = "#ef6c00"
NOT_MEASURED = "#9e9e9e"
NEUTRAL = "#1565c0"
CONTEXT = "#90caf9"
CLASS_COLOURS = {"unexpected": BAD, "policy": NEUTRAL, "expected": CONTEXT, "handled": "#78909c",
                 "configured": "#7b1fa2", "transient": WARN}
PALETTE = ["#1565c0", "#2e7d32", "#ef6c00", "#7b1fa2", "#00838f", "#6d4c41", "#ad1457", "#455a64"]
MIB = 2**20

rcParams.update({"svg.fonttype": "none", "font.family": "DejaVu Sans", "font.size": 9, "axes.spines.top": False,
                 "axes.spines.right": False, "axes.grid": True, "grid.color": "#e0e0e0", "grid.linewidth": 0.6,
                 "axes.edgecolor": "#9e9e9e", "axes.titlesize": 10, "axes.titleweight": "bold",
                 "legend.frameon": False, "legend.fontsize": 8})


def _svg(fig: Figure, name: str) -> str:
    """The figure as an ``<svg>`` element (no XML prolog), ids unique to ``name``."""
    rcParams["svg.hashsalt"] = name
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.S)
    text = re.sub(r'<svg ', f'<svg role="img" aria-label="{name}" class="chart" ', text, count=1)
    return text


def _figure(height: float = 2.6, width: float = 8.0) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), dpi=96, layout="constrained")
    return fig, fig.add_subplot()


def _days(report: dict[str, Any]) -> list[datetime]:
    return [datetime.strptime(d, "%Y-%m-%d").replace(tzinfo=UTC) for d in report["days"]]


def _hours(report: dict[str, Any]) -> list[datetime]:
    start, hours = report["period"]["start"], report["period"]["hours"]
    return [datetime.fromtimestamp(start + 3600 * (i + 1), UTC) for i in range(hours)]


def _date_axis(ax: Any) -> None:
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=4, maxticks=10))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))


def _none(values: list[Any]) -> list[float]:
    return [float("nan") if v is None else v for v in values]


def burndown(report: dict[str, Any], slo: dict[str, Any]) -> str:
    """Error budget left at the end of each day (fleet-pooled, and what the worst ranked node's errors alone
    would leave of the same fleet budget), with the line that spends the budget evenly."""
    days = _days(report)
    fig, ax = _figure()
    ends = [d.timestamp() + 86400 for d in days]
    x = [datetime.fromtimestamp(t, UTC) for t in ends]
    ax.plot([days[0], x[-1]], [1, 0], color=NOT_MEASURED, linestyle=":", linewidth=1, label="even spend")
    fleet = _none(slo["burndown"])
    ax.plot(x, fleet, color=GOOD if (slo["budget_left"] or 0) >= 0 else BAD, linewidth=2.2,
            label="all nodes (pooled)", marker="o", markersize=2.5)
    if slo["worst"] and slo["worst_burndown"]:
        ax.plot(x, _none(slo["worst_burndown"]), color=BAD, linewidth=1.2, linestyle="--",
                label=f"left after the worst node's errors alone: {slo['worst'][0]['node']}")
    ax.axhline(0, color=BAD, linewidth=0.8)
    ax.axhspan(min(-0.05, *(v for v in fleet + _none(slo["worst_burndown"]) if v == v)), 0, color=BAD, alpha=0.06)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_ylabel("error budget left")
    ax.set_title(f"{slo['title']}: error budget burndown")
    _date_axis(ax)
    ax.legend(loc="lower left")
    return _svg(fig, f"burndown {slo['key']}")


def memory_band(report: dict[str, Any], memory: dict[str, Any]) -> str:
    """Hourly working set across nodes (min-max, median, p90) against the envelope band."""
    x = _hours(report)
    q = {k: [(v / MIB) if v is not None else float("nan") for v in vals] for k, vals in memory["quantiles"].items()}
    lower = [(v / MIB) if v is not None else float("nan") for v in memory["envelope_band"]["lower"]]
    upper = [(v / MIB) if v is not None else float("nan") for v in memory["envelope_band"]["upper"]]
    fig, ax = _figure(2.9)
    label = "envelope" if memory["component"] == "agent" else "near limit .. limit"
    ax.fill_between(x, lower, upper, color=GOOD, alpha=0.15, linewidth=0, label=label)
    ax.plot(x, upper, color=GOOD, linewidth=0.8)
    ax.fill_between(x, q["p0"], q["p100"], color=CONTEXT, alpha=0.45, linewidth=0, label="all nodes (min .. max)")
    ax.plot(x, q["p50"], color=NEUTRAL, linewidth=1.4, label="median")
    ax.plot(x, q["p90"], color=NEUTRAL, linewidth=0.9, linestyle="--", label="p90")
    ax.plot(x, q["p100"], color=BAD, linewidth=0.7, alpha=0.8, label="max")
    ax.set_ylabel("working set (MiB)")
    name = "cilium-agent" if memory["component"] == "agent" else "cilium-envoy"
    ax.set_title(f"{name} working set (hourly maximum per node) against the {label}")
    _date_axis(ax)
    ax.legend(loc="upper left", ncol=5)
    ax.set_ylim(bottom=0)
    return _svg(fig, f"memory {memory['component']}")


def memory_histogram(memory: dict[str, Any]) -> str:
    """Node-hours by working set, the envelope shaded."""
    edges = [e / MIB for e in memory["histogram"]["edges"]]
    counts = memory["histogram"]["counts"]
    fig, ax = _figure(2.3)
    if counts:
        lo, hi = memory["envelope_lower"], memory["envelope_upper"]
        colours = [BAD if hi is not None and (e0 * MIB) >= hi else NEUTRAL for e0 in edges[:-1]]
        ax.bar(edges[:-1], counts, width=[b - a for a, b in itertools.pairwise(edges)], align="edge",
               color=colours, edgecolor="white", linewidth=0.4)
        if lo is not None and hi is not None:
            ax.axvspan(lo / MIB, hi / MIB, color=GOOD, alpha=0.12, label="envelope")
            ax.legend(loc="upper right")
    ax.set_xlabel("working set (MiB)")
    ax.set_ylabel("node-hours")
    ax.set_title("Distribution over the period")
    return _svg(fig, f"histogram {memory['component']}")


def drops_by_class(report: dict[str, Any], drops: dict[str, Any], source: str) -> str:
    """Drops per day, stacked by reason class."""
    days = _days(report)
    fig, ax = _figure(2.5)
    bottom = [0.0] * len(days)
    for klass, values in drops["by_class_daily"][source].items():
        ax.bar(days, values, bottom=bottom, width=0.8, color=CLASS_COLOURS.get(klass, NOT_MEASURED), label=klass,
               align="edge")
        bottom = [a + b for a, b in zip(bottom, values, strict=True)]
    ax.yaxis.set_major_formatter(FuncFormatter(_si))
    ax.set_ylabel("drops per day")
    what = "datapath (agent counters)" if source == "datapath" else "Hubble drop events"
    ax.set_title(f"Drops by reason class: {what}")
    _date_axis(ax)
    ax.legend(loc="upper left", ncol=5)
    return _svg(fig, f"drops {source}")


def denials(report: dict[str, Any], drops: dict[str, Any]) -> str:
    days = _days(report)
    fig, ax = _figure(2.3)
    ax.plot(days, drops["policy_denied_daily"], color=NEUTRAL, marker="o", markersize=2.5, label="policy (L3/L4)")
    ax.plot(days, drops["l7_denied_daily"], color="#7b1fa2", marker="o", markersize=2.5, label="L7")
    ax.yaxis.set_major_formatter(FuncFormatter(_si))
    ax.set_ylabel("denials per day")
    ax.set_title("Policy and L7 denials")
    _date_axis(ax)
    ax.legend(loc="upper left")
    ax.set_ylim(bottom=0)
    return _svg(fig, "denials")


def coverage(report: dict[str, Any], cluster: dict[str, Any]) -> str:
    """Nodes reporting per day, and node-hours of the drop SLI nobody measured."""
    days = _days(report)
    fig, ax = _figure(2.3)
    ax.bar(days, cluster["coverage"]["daily_nodes_reporting"], width=0.8, align="edge", color=CONTEXT,
           label="nodes reporting")
    ax.set_ylabel("nodes")
    ax2 = ax.twinx()
    ax2.bar(days, cluster["hubble"]["not_measured_daily"], width=0.4, align="edge", color=NOT_MEASURED,
            label="drop SLI not measured (node-hours)")
    ax2.set_ylabel("node-hours not measured")
    ax2.grid(False)
    ax2.spines["right"].set_visible(True)
    ax.set_title("Data coverage")
    _date_axis(ax)
    handles = ax.get_legend_handles_labels()
    handles2 = ax2.get_legend_handles_labels()
    ax.legend(handles[0] + handles2[0], handles[1] + handles2[1], loc="upper center", bbox_to_anchor=(0.5, -0.12),
              ncol=2)
    return _svg(fig, "coverage")


def versions(report: dict[str, Any], versions_: dict[str, Any]) -> str:
    days = _days(report)
    fig, ax = _figure(2.3)
    names = list(versions_["daily_nodes"])
    if names:
        ax.stackplot(days, [versions_["daily_nodes"][v] for v in names], labels=names,
                     colors=PALETTE[: len(names)] * (len(names) // len(PALETTE) + 1), alpha=0.85, step="post")
    ax.set_ylabel("nodes")
    ax.set_title("Cilium versions (nodes at the end of each day)")
    _date_axis(ax)
    ax.legend(loc="lower left", ncol=6)
    return _svg(fig, "versions")


def alerts(report: dict[str, Any], alerts_: dict[str, Any]) -> str:
    days = _days(report)
    fig, ax = _figure(2.1)
    ax.bar(days, alerts_["daily"]["page"], width=0.8, align="edge", color=BAD, label="pages")
    ax.bar(days, alerts_["daily"]["ticket"], width=0.8, align="edge", color=WARN, label="tickets",
           bottom=alerts_["daily"]["page"])
    ax.set_ylabel("alerts started")
    ax.set_title("Pages and tickets per day")
    _date_axis(ax)
    ax.legend(loc="upper left")
    return _svg(fig, "alerts")


def _si(value: float, _pos: Any = None) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= div:
            return f"{value / div:g}{unit}"
    return f"{value:g}"
