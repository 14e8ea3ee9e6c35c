"""Dashboard ConfigMaps rendered by the real Helm engine carry exactly the committed dashboard JSON."""

from __future__ import annotations

import json

from tests.chart.test_helm_render import CHART, REPO, one, render, validate_object

COMMITTED = sorted((REPO / "dashboards").glob("*.json"))


def _dashboard_maps(values: dict) -> list[dict]:
    return [o for o in render(values)
            if o["kind"] == "ConfigMap" and any(k.endswith(".json") for k in o.get("data", {}))]


def test_one_configmap_per_committed_dashboard_with_identical_json() -> None:
    assert COMMITTED, "dashboards/*.json missing"
    maps = _dashboard_maps({"dashboards": {"enabled": True}})
    data = {}
    for cm in maps:
        validate_object(cm)
        (key,) = cm["data"]
        data[key] = cm["data"][key]
    assert sorted(data) == [p.name for p in COMMITTED]
    for path in COMMITTED:
        assert data[path.name] == path.read_text(encoding="utf-8"), f"{path.name} differs from the chart's copy"
        json.loads(data[path.name])
    chart_copies = sorted(p.name for p in (CHART / "files" / "dashboards").glob("*.json"))
    assert chart_copies == [p.name for p in COMMITTED]


def test_sidecar_label_and_folder_annotation() -> None:
    for cm in _dashboard_maps({"dashboards": {"enabled": True}}):
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "Cilium"}
        assert cm["metadata"]["namespace"] == "monitoring"
    custom = {"enabled": True, "label": "grafana.com/dashboard", "labelValue": "cilium", "namespace": "grafana",
              "folderAnnotation": "k8s-sidecar-target-directory", "folder": "/tmp/dashboards/cilium",
              "annotations": {"team": "net"}}
    maps = _dashboard_maps({"dashboards": custom})
    assert len(maps) == len(COMMITTED)
    for cm in maps:
        validate_object(cm)
        assert cm["metadata"]["labels"]["grafana.com/dashboard"] == "cilium"
        assert "grafana_dashboard" not in cm["metadata"]["labels"]
        assert cm["metadata"]["annotations"] == {"k8s-sidecar-target-directory": "/tmp/dashboards/cilium",
                                                 "team": "net"}
        assert cm["metadata"]["namespace"] == "grafana"
    no_folder = _dashboard_maps({"dashboards": {"enabled": True, "folderAnnotation": ""}})
    assert all("annotations" not in cm["metadata"] for cm in no_folder)


def test_no_dashboards_by_default() -> None:
    assert not _dashboard_maps({})
    assert one(render({}), "DaemonSet")
