"""docs/dashboards.md and docs/dashboards/*.svg: generated from the dashboard code, current, and complete (every
panel, where Grafana places it, with what it draws)."""

from __future__ import annotations

import importlib.util
import re
import xml.etree.ElementTree as ET
from types import ModuleType

import pytest

from dashboards import generate
from tests.support.paths import REPO


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboards_guide", REPO / "scripts" / "dashboards_guide.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GUIDE = _script()
DASHBOARDS = generate.build_all()
SVG = "{http://www.w3.org/2000/svg}"


def test_the_guide_and_pictures_are_current() -> None:
    """Fails when a dashboard changed and `python scripts/dashboards_guide.py` (make dashboards) was not run."""
    assert GUIDE.main(["--check"]) == 0


def test_the_guide_follows_the_dashboard_code() -> None:
    """Another configuration gives another guide (nothing in it is written by hand)."""
    custom = GUIDE.guide(generate.build_all({"clusterLabel": "k8s_cluster"}))
    assert custom != (REPO / "docs" / "dashboards.md").read_text() and 'k8s_cluster=~"$cluster"' in custom


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_every_panel_is_described_with_its_queries(uid: str) -> None:
    text = (REPO / "docs" / "dashboards.md").read_text()
    dash = DASHBOARDS[uid]
    section = text.split(f"## {dash['title']}\n", 1)[1].split("\n## ", 1)[0]
    assert f"![Layout of {dash['title']}](dashboards/{uid}.svg)" in section
    for panel in dash["panels"]:
        heading = f"### {panel['title']}\n" if panel["type"] == "row" else f"**{panel['title']}** ("
        assert heading in section, panel["title"]
        for target in panel.get("targets", []):
            assert target["expr"].split("\n", 1)[0] in section, (panel["title"], target["refId"])


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_the_picture_places_every_panel_where_grafana_does(uid: str) -> None:
    root = ET.fromstring((REPO / "docs" / "dashboards" / f"{uid}.svg").read_text())
    width, height = float(root.get("width", 0)), float(root.get("height", 0))
    boxes = [(float(r.get("x", 0)), float(r.get("y", 0)), float(r.get("width", 0)), float(r.get("height", 0)))
             for r in root.iter(f"{SVG}rect")][1:]  # the first is the background
    panels = [p for p in DASHBOARDS[uid]["panels"] if p["type"] != "row"]
    assert len(boxes) == len(panels)
    for (x, y, w, h), panel in zip(boxes, panels, strict=True):
        g = panel["gridPos"]
        assert (x, y) == (GUIDE.PAD + g["x"] * GUIDE.COL, GUIDE.PAD + g["y"] * GUIDE.ROW), panel["title"]
        assert x + w <= width and y + h <= height, panel["title"]
    for i, a in enumerate(boxes):  # Grafana's grid never overlaps panels; neither does the picture
        for b in boxes[i + 1:]:
            assert a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0] or a[1] + a[3] <= b[1] or b[1] + b[3] <= a[1]
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    for panel in DASHBOARDS[uid]["panels"]:
        assert panel["title"].split()[0] in texts, panel["title"]


def test_what_a_reader_needs_is_said() -> None:
    """Units, colours, empty-panel meaning, columns and links come through for the panels that have them."""
    text = (REPO / "docs" / "dashboards.md").read_text()
    worst = text.split("**Nodes, worst first** (table)", 1)[1].split("\n**", 1)[0]
    assert re.search(r"columns: `node`; `cluster`; `unexpected drop ratio` \(in percent, coloured green; yellow "
                     r"from 0\.0001; red from 0\.001, no value shows 'not measured'\)", worst), worst
    assert "links: Node detail for ${__data.fields.node}" in worst
    memory = text.split("**Agent and Envoy memory against the envelope** (time series, bytes)", 1)[1]
    assert "`envelope upper` (shaded down to 'envelope lower', green)" in memory.split("\n**", 1)[0]
