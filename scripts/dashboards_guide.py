"""Write the dashboards guide from the dashboard code: docs/dashboards.md (every panel of every dashboard: what
it shows, unit, thresholds, what "no data" means, its queries) and a layout picture per dashboard
(docs/dashboards/<uid>.svg: the panels where Grafana places them, with the series each one draws).

    python scripts/dashboards_guide.py           rewrite them (also part of `make dashboards`)
    python scripts/dashboards_guide.py --check   exit 1 when a file is stale (also a test)

Everything comes from ``dashboards.generate.build_all()``, the JSON Grafana imports, so the guide cannot say
what the dashboards do not do.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from html import escape
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dashboards import generate  # noqa: E402  (the checkout's dashboards package, as `make dashboards` runs it)

GUIDE = REPO / "docs" / "dashboards.md"
PICTURES = REPO / "docs" / "dashboards"
Panel = dict[str, Any]

TYPES = {"timeseries": "time series", "stat": "stat", "table": "table", "bargauge": "bar gauge",
         "state-timeline": "state timeline"}
UNITS = {"pps": "packets/s", "cps": "per second", "reqps": "requests/s", "ops": "per second",
         "percentunit": "percent", "bytes": "bytes", "s": "seconds", "bool_on_off": "on/off", "none": ""}
# Layout picture: Grafana's 24-column grid, scaled.
COL, ROW, PAD, FONT = 40, 24, 4, 12
CHAR = 7.4  # average width of a bold 12px sans-serif character (DejaVu Sans), so titles wrap inside their box


def unit(panel: Panel) -> str:
    raw = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
    return UNITS.get(raw, raw)


def steps(thresholds: dict[str, Any] | None) -> str:
    """``green; yellow from 0.8; red from 1`` (empty for a single base colour)."""
    found = (thresholds or {}).get("steps", [])
    if len(found) < 2:
        return ""
    return "; ".join(s["color"] if s.get("value") is None else f"{s['color']} from {s['value']:g}" for s in found)


def mappings(items: list[dict[str, Any]] | None) -> list[str]:
    out = []
    for m in items or []:
        if m.get("type") == "value":
            out += [f"{value} shows {o.get('text', value)!r}" for value, o in m["options"].items()]
        elif m.get("type") == "special":
            out.append(f"no value shows {m['options']['result'].get('text', '')!r}")
        elif m.get("type") == "range":
            o = m["options"]
            out.append(f"{o.get('from')}..{o.get('to')} shows {o['result'].get('text', '')!r}")
    return out


def override_words(override: dict[str, Any]) -> str:
    """What one field override changes, in words."""
    words = []
    for prop in override.get("properties", []):
        pid, value = prop["id"], prop.get("value")
        if pid == "unit":
            words.append(f"in {UNITS.get(value, value) or 'plain numbers'}")
        elif pid == "color" and isinstance(value, dict) and value.get("fixedColor"):
            words.append(value["fixedColor"])
        elif pid == "custom.fillBelowTo":
            words.append(f"shaded down to {value!r}")
        elif pid == "custom.lineStyle" and isinstance(value, dict):
            words.append(f"{value.get('fill', 'dashed')} line")
        elif pid == "custom.lineWidth" and value and value > 1:
            words.append("thick line")
        elif pid == "thresholds":
            words.append(f"coloured {steps(value)}")
        elif pid == "mappings":
            words += mappings(value)
        elif pid == "displayName":
            words.append(f"shown as {value!r}")
        elif pid == "custom.axisPlacement" and value == "right":
            words.append("right axis")
        elif pid == "custom.hidden" or pid == "custom.hideFrom":
            words.append("hidden")
    return ", ".join(words)


def names(panel: Panel) -> list[str]:
    """What a panel draws, by name: a table's columns (its organize transformation), else each query's legend."""
    for step in panel.get("transformations", []):
        if step.get("id") == "organize":
            options = step["options"]
            index = sorted(options.get("indexByName", {}), key=lambda n: options["indexByName"][n])
            return index + list(options.get("renameByName", {}).values())
    targets = panel.get("targets", [])
    several = len(targets) > 1 or panel["type"] == "timeseries"
    return [t.get("legendFormat") or ("(one series per label set)" if several else "") for t in targets]


def series(panel: Panel) -> list[str]:
    """The series (or columns) a panel draws, with what field overrides do to each."""
    overrides = {o["matcher"].get("options"): override_words(o) for o in panel.get("fieldConfig", {})
                 .get("overrides", []) if o.get("matcher", {}).get("id") == "byName"}
    out = []
    for name in filter(None, names(panel)):
        extra = overrides.get(name, "")
        out.append(f"`{name}`" + (f" ({extra})" if extra else ""))
    return out


def describe(panel: Panel) -> list[str]:
    """The guide's entry for one panel."""
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    kind = TYPES.get(panel["type"], panel["type"])
    head = f"**{panel['title']}** ({kind}" + (f", {unit(panel)}" if unit(panel) else "") + ")"
    lines = [head + (": " + panel["description"] if panel.get("description") else "")]
    shown = series(panel)
    if shown:
        lines.append(("  - columns: " if panel["type"] == "table" else "  - shows: ") + "; ".join(shown))
    colours = steps(defaults.get("thresholds"))
    if colours:
        lines.append(f"  - colours: {colours}")
    mapped = mappings(defaults.get("mappings"))
    if mapped:
        lines.append("  - values: " + "; ".join(mapped))
    if defaults.get("noValue"):
        lines.append(f"  - with no data: {defaults['noValue']!r}")
    links = [link["title"] for link in defaults.get("links", []) + panel.get("links", [])]
    if links:
        lines.append("  - links: " + "; ".join(links))
    queries = [f"{t['refId']} ({'instant' if t.get('instant') else 'range'}): "
               + t["expr"].replace("\n", "\n    ") for t in panel.get("targets", [])]
    if queries:
        block = "\n".join(queries).splitlines()
        lines += ["  <details><summary>queries</summary>", "", "  ```promql", *(f"  {q}" for q in block),
                  "  ```", "  </details>"]
    return lines


def guide(dashboards: dict[str, dict[str, Any]]) -> str:
    """docs/dashboards.md."""
    out = ["# Dashboards, panel by panel", "",
           "<!-- generated from dashboards/*.py by `python scripts/dashboards_guide.py` (make dashboards); "
           "do not edit -->", "",
           "What each Grafana dashboard of this project shows, before you install it: the layout as Grafana places "
           "it, then every panel with what it draws, its unit, its colours, what an empty panel means and its "
           "queries. The fleet and SLO dashboards read the alert pack's recording rules: load the rules where "
           "Grafana's Prometheus evaluates them (`dashboards/README.md`).", ""]
    for uid, dash in dashboards.items():
        out.append(f"- [{dash['title']}](#{anchor(dash['title'])}) (`{uid}`): {dash.get('description', '')}")
    for uid, dash in dashboards.items():
        out += ["", f"## {dash['title']}", "", dash.get("description", ""), "",
                f"![Layout of {dash['title']}](dashboards/{uid}.svg)", ""]
        variables = [f"`{v['name']}` ({v.get('label', v['name'])})" + (": " + v["description"].rstrip(".") if v.get(
            "description") else "") for v in dash.get("templating", {}).get("list", [])]
        if variables:
            out += ["Variables: " + "; ".join(variables) + ".", ""]
        links = [link["title"] for link in dash.get("links", [])]
        out += [f"Default time range: {dash['time']['from']} to {dash['time']['to']}"
                + (f"; links to {', '.join(links)}" if links else "") + ".", ""]
        for panel in dash["panels"]:
            if panel["type"] == "row":
                out += [f"### {panel['title']}", ""]
                continue
            out += [*describe(panel), ""]
    return "\n".join(out).rstrip() + "\n"


def anchor(title: str) -> str:
    """GitHub's heading anchor."""
    return "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c in "-_")


def wrap(text: str, width_px: float) -> list[str]:
    return textwrap.wrap(text, max(4, int(width_px / CHAR))) or [""]


def layout_svg(dash: dict[str, Any]) -> str:
    """The dashboard's panels on Grafana's grid: title, kind and unit, then the series each one draws."""
    panels = dash["panels"]
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels) * ROW + 2 * PAD
    width = 24 * COL + 2 * PAD
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" '
           f'font-size="{FONT}">',
           f"<title>{escape(dash['title'])}: layout</title>",
           f'<rect width="{width}" height="{height}" fill="#111217"/>']
    for panel in panels:
        g = panel["gridPos"]
        x, y = PAD + g["x"] * COL, PAD + g["y"] * ROW
        w, h = g["w"] * COL - PAD, g["h"] * ROW - PAD
        if panel["type"] == "row":
            out.append(f'<text x="{x + 4}" y="{y + ROW - 8}" fill="#d8d9da" font-weight="bold" font-size="14">'
                       f"{escape(panel['title'])}</text>")
            continue
        out.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="3" fill="#181b1f" stroke="#2c3235"/>')
        lines = [(line, "#d8d9da", "bold") for line in wrap(panel["title"], w - 12)]
        kind = TYPES.get(panel["type"], panel["type"]) + (f" · {unit(panel)}" if unit(panel) else "")
        lines.append((kind, "#8e8e8e", "normal"))
        for legend in names(panel):
            lines += [(f"— {part}" if i == 0 else f"  {part}", "#73bf69", "normal")
                      for i, part in enumerate(wrap(legend, w - 20)) if legend]
        room = int((h - 8) / (FONT + 3))
        if len(lines) > room:
            lines = [*lines[:room - 1], ("…", "#8e8e8e", "normal")]
        for i, (text, colour, weight) in enumerate(lines):
            out.append(f'<text x="{x + 6}" y="{y + 16 + i * (FONT + 3)}" fill="{colour}" font-weight="{weight}">'
                       f"{escape(text)}</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def outputs() -> dict[Path, str]:
    """Every file this script writes -> its content."""
    dashboards = generate.build_all()
    out = {GUIDE: guide(dashboards)}
    out.update({PICTURES / f"{uid}.svg": layout_svg(dash) for uid, dash in dashboards.items()})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a written file is stale or missing")
    args = parser.parse_args(argv)
    stale = [path for path, text in outputs().items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"stale: {path.relative_to(REPO)} (run: python scripts/dashboards_guide.py)", file=sys.stderr)
        return 1 if stale else 0
    for path, text in outputs().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
