"""The PrometheusRule rendered by the real Helm engine equals the alert pack's generated rules, for the
default values and for overridden thresholds; the inhibition ConfigMap carries the generated file."""

from __future__ import annotations

import re
import subprocess
import sys

import helm_python as helm
import pytest
import yaml

from alerts import generate as GEN
from cilium_node_exporter.mixin.config import DEFAULTS, HELM_KEYS, STRUCTURAL_KEYS
from tests.chart.test_helm_render import CHART, REPO, SCHEMA, chart, ci_values, one, render, validate_object


def _rule(values: dict) -> dict:
    rule = one(render(values), "PrometheusRule")
    validate_object(rule)
    return rule


def test_default_values_render_exactly_the_generated_rules() -> None:
    rule = _rule({"prometheusRule": {"enabled": True}})
    assert rule["spec"]["groups"] == GEN.build_groups()
    assert rule["metadata"]["namespace"] == "monitoring"


def test_values_yaml_carries_the_generators_helm_values() -> None:
    out = subprocess.run([sys.executable, "-m", "alerts.generate", "--helm-values"], cwd=REPO,
                         capture_output=True, text=True, check=True, timeout=60).stdout
    printed = yaml.safe_load(out)["prometheusRule"]["config"]
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["prometheusRule"]["config"]
    assert defaults == printed
    assert set(defaults) == set(HELM_KEYS) and not set(defaults) & set(STRUCTURAL_KEYS)


def test_schema_of_the_rule_config_follows_the_generator() -> None:
    props = SCHEMA["properties"]["prometheusRule"]["properties"]["config"]
    assert props["additionalProperties"] is False
    assert set(props["properties"]) == set(HELM_KEYS)
    for key in HELM_KEYS:
        expected = "string" if isinstance(DEFAULTS[key], str) else "number"
        assert props["properties"][key]["type"] == expected, key


OVERRIDES = {
    "selector": 'job="cne", namespace="monitoring"',
    "clusterLabel": "k8s_cluster",
    "nodeLabel": "instance_node",
    "memoryNearLimitRatio": 0.85,
    "restartsThreshold": 5,
    "unexpectedDropsRatio": 0.0005,
    "memoryForecastHorizonSeconds": 1209600,
    "exporterDownFor": "7m30s",
    "runbookUrlPattern": "https://runbooks.example.com/cilium#%s",
}


@pytest.mark.parametrize("key", sorted(OVERRIDES))
def test_overridden_config_renders_what_the_generator_builds(key: str) -> None:
    config = {key: OVERRIDES[key]}
    rule = _rule({"prometheusRule": {"enabled": True, "config": config}})
    assert rule["spec"]["groups"] == GEN.build_groups(config)
    assert rule["spec"]["groups"] != GEN.build_groups()


def test_all_overrides_at_once_and_ci_values() -> None:
    rule = _rule({"prometheusRule": {"enabled": True, "config": OVERRIDES}})
    assert rule["spec"]["groups"] == GEN.build_groups(OVERRIDES)
    values = ci_values("operator-values.yaml")
    rule = _rule(values)
    assert rule["spec"]["groups"] == GEN.build_groups(values["prometheusRule"]["config"])
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_unknown_or_mistyped_rule_config_is_rejected() -> None:
    for config in ({"memoryNearLimitRatioo": 0.9}, {"restartsThreshold": "3"}, {"exporterDownFor": "5 min"},
                   {"sloPeriod": "30d"}):
        with pytest.raises(helm.HelmValuesError, match="prometheusRule/config"):
            render({"prometheusRule": {"enabled": True, "config": config}})


def test_inhibit_rules_configmap_carries_the_generated_file() -> None:
    objects = render({"alertmanagerInhibitRules": {"enabled": True, "additionalLabels": {"a": "b"}}})
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap"]
    validate_object(cm)
    assert cm["metadata"]["name"] == "cne-cilium-node-exporter-inhibit-rules"
    assert cm["metadata"]["labels"]["a"] == "b"
    text = cm["data"]["inhibit-rules.yaml"]
    assert text == (CHART / "files" / "inhibit-rules.yaml").read_text()
    assert text == GEN.render_inhibit()
    assert yaml.safe_load(text)["inhibit_rules"] == GEN.build_inhibit_rules()


def test_no_operator_objects_by_default() -> None:
    assert not {"PrometheusRule", "ConfigMap", "ServiceMonitor", "PodMonitor"} & {o["kind"] for o in render({})}


def test_notes_warn_about_rule_selectors_that_cannot_match() -> None:
    def notes(values: dict, name: str = "cne") -> str:
        return chart().render(values, name=name, namespace="monitoring")["cilium-node-exporter/templates/NOTES.txt"]

    ok = notes({"prometheusRule": {"enabled": True}}, name="cilium-node-exporter")
    assert "WARNING" not in ok
    text = notes({"prometheusRule": {"enabled": True}, "jobLabel": "cne",
                  "clusterLabel": {"name": "k8s_cluster", "value": "x"}})
    assert "prometheusRule.config.selector" in text
    assert "exporterDaemonSetSelector='daemonset=\"cne-cilium-node-exporter\"'" in text
    assert "prometheusRule.config.clusterLabel=k8s_cluster" in text
    assert "WARNING" not in notes({"prometheusRule": {"enabled": True}, "fullnameOverride": "cilium-node-exporter"})


def test_alerts_named_in_notes_exist_in_the_pack() -> None:
    notes = chart().render({}, name="cne", namespace="monitoring")["cilium-node-exporter/templates/NOTES.txt"]
    named = set(re.findall(r"\bCilium[A-Za-z]+\b", notes))
    alerts = {r["alert"] for g in GEN.build_groups() for r in g["rules"] if "alert" in r}
    assert named and named <= alerts
