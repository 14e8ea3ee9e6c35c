"""Dashboard ConfigMaps rendered by the real Helm engine carry exactly the committed dashboard JSON for the
default values, and follow the chart's prometheusRule.config (label names, the selector's job, thresholds)
as its rules do: every query of every dashboard, checked."""

from __future__ import annotations

import json
import re

from dashboards import generate, queries
from tests.chart.test_helm_render import CHART, REPO, one, render, validate_object

COMMITTED = sorted((REPO / "dashboards").glob("*.json"))
RECORDED = re.compile(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b")


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


def _labels_in(expr: str) -> str:
    """An expression without recorded-series names (``cluster:...``, ``node:...``) and string literals."""
    return re.sub(r'"[^"]*"', '""', RECORDED.sub("REC", expr))


def test_dashboards_follow_the_charts_label_names_selector_and_thresholds() -> None:
    config = {"clusterLabel": "k8s_cluster", "nodeLabel": "kube_node", "selector": 'namespace="obs", job="cne"',
              "unexpectedDropsRate": 2.5, "dropSloMinTrafficRate": 3, "prometheusSelector": 'job="prom<&>"'}
    maps = _dashboard_maps({"dashboards": {"enabled": True}, "prometheusRule": {"config": config}})
    docs = {}
    for cm in maps:
        validate_object(cm)
        (text,) = cm["data"].values()
        doc = json.loads(text)
        docs[doc["uid"]] = doc
    assert docs == {uid: json.loads(t) for uid, t in
                    ((json.loads(t)["uid"], t) for t in generate.render(config).values())}
    checked = queries.all_queries({"cluster": "CL", "node": "ND"}, docs)
    assert len(checked) >= 100
    for q in checked:
        labels = _labels_in(q.expr)
        assert not re.search(r"\b(cluster|node)\b", labels), (q.dashboard, q.panel, q.expr)
        queries.parse(q.expr)  # still PromQL
    assert sum(bool(re.search(r"\bkube_node\b", _labels_in(q.expr))) for q in checked) >= 100
    assert any('prometheus_tsdb_lowest_timestamp_seconds{job="prom<&>"}' in q.expr for q in checked)
    for doc in docs.values():
        job = next(v for v in doc["templating"]["list"] if v["name"] == "job")
        assert job["current"]["value"] == ["cne"]
        text = json.dumps(doc)
        assert "HELMVALUE" not in text and "__data.fields.node}" not in text and "labels.node}" not in text
    fleet = json.dumps(docs["cilium-node-fleet"])
    assert '"value": 2.5' in fleet and "__data.fields.kube_node}" in fleet

