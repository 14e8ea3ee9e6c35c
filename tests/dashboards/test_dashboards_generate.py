"""The committed dashboard JSON is what the generator writes; uids, titles, links and schema are stable."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from grafana_foundation_sdk.models import dashboard as sdk_dashboard

from dashboards import generate
from tests.support.paths import REPO

EXPECTED = {
    "cilium-node-fleet": "Cilium / Node Fleet",
    "cilium-node-detail": "Cilium / Node Detail",
    "cilium-node-slo": "Cilium / SLO Review",
}
CHART_DIR = REPO / "helm" / "cilium-node-exporter" / "files" / "dashboards"


@pytest.fixture(scope="module")
def committed() -> dict[str, dict]:
    return {uid: json.loads((REPO / "dashboards" / f"{uid}.json").read_text()) for uid in EXPECTED}


def test_committed_files_are_fresh() -> None:
    stale = generate.stale_files()
    assert not stale, f"stale dashboards, run `python -m dashboards.generate`: {stale}"


def test_check_script_exits_0_when_fresh() -> None:
    proc = subprocess.run([sys.executable, "-m", "dashboards.generate", "--check"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_check_detects_a_stale_and_a_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dirs = (tmp_path / "dashboards", tmp_path / "chart")
    for src, dst in zip(generate.OUT_DIRS, dirs, strict=True):
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monkeypatch.setattr(generate, "OUT_DIRS", dirs)
    assert generate.stale_files() == []
    assert generate.main(["--check"]) == 0
    fleet = dirs[0] / "cilium-node-fleet.json"
    fleet.write_text(fleet.read_text().replace("Unexpected drops", "Unexpected Drops", 1))
    (dirs[1] / "cilium-node-slo.json").unlink()
    assert sorted(generate.stale_files()) == sorted([fleet, dirs[1] / "cilium-node-slo.json"])
    assert generate.main(["--check"]) == 1
    assert generate.main([]) == 0  # rewrite
    assert generate.stale_files() == []


def test_chart_copies_are_the_same_dashboards_with_helm_tokens() -> None:
    """The chart fills the tokens from its values (tests/chart/test_helm_dashboards.py renders them)."""
    helm = generate.render(helm=True)
    for uid in EXPECTED:
        chart_copy = (CHART_DIR / f"{uid}.json").read_text()
        assert chart_copy == helm[f"{uid}.json"]
        assert "HELMVALUE_clusterLabel_END" in chart_copy and "HELMVALUE_selectorJob_END" in chart_copy
    assert sorted(p.name for p in CHART_DIR.glob("*.json")) == sorted(f"{uid}.json" for uid in EXPECTED)


def test_stable_uids_and_titles(committed: dict[str, dict]) -> None:
    assert {uid: d["title"] for uid, d in committed.items()} == EXPECTED
    assert {d["uid"] for d in committed.values()} == set(EXPECTED)
    assert sorted(p.stem for p in (REPO / "dashboards").glob("*.json")) == sorted(EXPECTED)


def test_schema_version_is_the_pinned_sdks(committed: dict[str, dict]) -> None:
    sdk_default = sdk_dashboard.Dashboard().schema_version
    assert sdk_default == 41  # grafana-foundation-sdk==1769699379!11.6.0 targets Grafana 11.6
    assert {d["schemaVersion"] for d in committed.values()} == {sdk_default}


def test_links_between_the_three_dashboards(committed: dict[str, dict]) -> None:
    for uid, doc in committed.items():
        targets = {link["url"] for link in doc["links"]}
        assert targets == {f"/d/{other}" for other in EXPECTED if other != uid}, uid
        for link in doc["links"]:
            assert link["keepTime"] and link["includeVars"], link


def test_panel_ids_unique_and_grid_fits(committed: dict[str, dict]) -> None:
    for uid, doc in committed.items():
        ids = [p["id"] for p in doc["panels"]]
        assert len(ids) == len(set(ids)), uid
        for p in doc["panels"]:
            pos = p["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, (uid, p["title"], pos)
        # No two panels overlap.
        cells: set[tuple[int, int]] = set()
        for p in doc["panels"]:
            g = p["gridPos"]
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not cells & mine, (uid, p["title"])
            cells |= mine
