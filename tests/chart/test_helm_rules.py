"""The PrometheusRule rendered by the real Helm engine equals the alert pack's generated rules, for the
default values, overridden thresholds and every way of shaping the alerts (scope, disabled alerts, severity,
for, keep_firing_for, labels, annotations); the inhibition ConfigMap and the AlertmanagerConfig carry the
generator's routes and inhibitions for the same values. The chart's default scope is its namespace."""

from __future__ import annotations

import re
import subprocess
import sys

import helm_python as helm
import pytest
import yaml

from alerts import generate as GEN
from cilium_node_exporter.mixin.config import (
    DEFAULTS,
    HELM_DEFAULTS,
    HELM_KEYS,
    STRUCTURAL_KEYS,
    ConfigError,
    Values,
    merge,
)
from tests.chart.test_helm_render import CHART, NAMESPACE, REPO, SCHEMA, chart, ci_values, one, render, validate_object


def _rule(values: dict) -> dict:
    rule = one(render(values), "PrometheusRule")
    validate_object(rule)
    return rule


def plain(config: dict | None = None) -> dict:
    """The generator's configuration for what the chart renders with ``config``: the scope defaults to the
    release namespace."""
    return {**(config or {}), "scopeValue": (config or {}).get("scopeValue") or NAMESPACE}


def test_default_values_render_exactly_the_generated_rules() -> None:
    rule = _rule({"prometheusRule": {"enabled": True}})
    assert rule["spec"]["groups"] == GEN.build_groups(plain())
    assert rule["metadata"]["namespace"] == "monitoring"
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts and all(r["labels"]["namespace"] == "monitoring" for r in alerts)
    # nothing but the scope differs from the pack's own rules
    own = [r for g in GEN.pack_groups(Values(merge(None))) for r in g["rules"]]
    assert [r for g in rule["spec"]["groups"] for r in g["rules"]] == \
        [r if "alert" not in r else {**r, "labels": {**r["labels"], "namespace": "monitoring"}} for r in own]


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
        default = HELM_DEFAULTS.get(key, DEFAULTS[key])
        expected = "string" if isinstance(default, str) else "object" if isinstance(default, dict) else "number"
        schema = props["properties"][key]
        schema = SCHEMA["definitions"][schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema else schema
        assert schema["type"] == expected, key


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
    assert rule["spec"]["groups"] == GEN.build_groups(plain(config))
    assert rule["spec"]["groups"] != GEN.build_groups(plain())


def test_all_overrides_at_once_and_ci_values() -> None:
    rule = _rule({"prometheusRule": {"enabled": True, "config": OVERRIDES}})
    assert rule["spec"]["groups"] == GEN.build_groups(plain(OVERRIDES))
    values = ci_values("operator-values.yaml")
    rule = _rule(values)
    assert rule["spec"]["groups"] == GEN.build_groups(plain(values["prometheusRule"]["config"]))
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


# Shaping as kube-prometheus-stack users do (defaultRules.disabled, additionalRuleLabels/Annotations,
# customRules.<Alert>.{severity,for}, keepFiringFor), one way at a time and all at once.
SHAPINGS = {
    "disabled": {"disabled": {"CiliumNodeConntrackMapFull": True, "CiliumClusterUnexpectedDrops": True,
                              "CiliumAgentMemoryBelowEnvelope": False}},
    "severity": {"customRules": {"CiliumNodeUnexpectedDrops": {"severity": "critical"},
                                 "CiliumClusterAgentRestarts": {"severity": "warning"}}},
    "for": {"customRules": {"CiliumNodeDropErrorBudgetBurn": {"for": "5m"}, "CiliumAgentOOMKilled": {"for": "1m"}}},
    "keepFiringFor": {"keepFiringFor": "10m", "customRules": {"CiliumNodeExporterDown": {"keepFiringFor": "0s"},
                                                             "CiliumNodeUnexpectedDrops": {"keepFiringFor": "30m"}}},
    "labels": {"additionalRuleLabels": {"team": "platform", "tier": "1"},
               "customRules": {"CiliumNodeConntrackMapFull": {"labels": {"tier": "0", "service": "dns"}}}},
    "annotations": {"additionalRuleAnnotations": {"dashboard": "https://grafana.example.com/d/x?a=1&b={{ 2 }}"},
                    "customRules": {"CiliumAgentOOMKillLoop": {"annotations": {"runbook_url": "https://wiki/oom",
                                                                              "summary": "Agents die."}}}},
    "scope": {"scopeLabel": "alert_scope", "scopeValue": "cilium-prod"},
}


@pytest.mark.parametrize("name", sorted(SHAPINGS))
def test_shaped_alerts_render_what_the_generator_builds(name: str) -> None:
    config = SHAPINGS[name]
    rule = _rule({"prometheusRule": {"enabled": True, "config": config}})
    assert rule["spec"]["groups"] == GEN.build_groups(plain(config))
    assert rule["spec"]["groups"] != GEN.build_groups(plain())
    inhibit = render({"alertmanagerInhibitRules": {"enabled": True}, "prometheusRule": {"config": config}})
    (cm,) = [o for o in inhibit if o["kind"] == "ConfigMap"]
    assert yaml.safe_load(cm["data"]["inhibit-rules.yaml"])["inhibit_rules"] == GEN.build_inhibit_rules(plain(config))


def test_all_shapings_at_once() -> None:
    config: dict = {"customRules": {}}
    for shaping in SHAPINGS.values():
        for key, value in shaping.items():
            if key == "customRules":
                for alert, custom in value.items():
                    config[key][alert] = {**config[key].get(alert, {}), **custom}
            else:
                config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    rule = _rule({"prometheusRule": {"enabled": True, "config": config}})
    groups = rule["spec"]["groups"]
    assert groups == GEN.build_groups(plain(config))
    alerts = {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}
    assert "CiliumNodeConntrackMapFull" not in alerts and "CiliumAgentMemoryBelowEnvelope" in alerts
    drops = alerts["CiliumNodeUnexpectedDrops"]
    assert drops["labels"] == {"severity": "critical", "team": "platform", "tier": "1", "alert_scope": "cilium-prod"}
    assert drops["keep_firing_for"] == "30m" and alerts["CiliumNodeExporterDown"]["keep_firing_for"] == "0s"
    assert alerts["CiliumAgentOOMKilled"]["for"] == "1m" and alerts["CiliumAgentOOMKilled"]["keep_firing_for"] == "10m"
    assert alerts["CiliumAgentOOMKillLoop"]["annotations"]["summary"] == "Agents die."
    assert alerts["CiliumAgentOOMKilled"]["annotations"]["dashboard"].endswith("b={{ 2 }}")  # not templated by Helm


def test_keep_firing_for_only_where_set() -> None:
    """Emitted only when set (a ruler older than Prometheus 2.42 rejects the field), and valid for the operator's
    PrometheusRule CRD (validate_object in _rule)."""
    default = _rule({"prometheusRule": {"enabled": True}})
    assert "keep_firing_for" not in yaml.safe_dump(default)
    one_alert = _rule({"prometheusRule": {"enabled": True, "config": {
        "customRules": {"CiliumNodeExporterDown": {"keepFiringFor": "5m"}}}}})
    kept = [r["alert"] for g in one_alert["spec"]["groups"] for r in g["rules"] if "keep_firing_for" in r]
    assert kept == ["CiliumNodeExporterDown"]


def test_structural_keys_are_not_helm_values() -> None:
    with pytest.raises(helm.HelmValuesError, match="prometheusRule/config"):
        render({"prometheusRule": {"enabled": True, "config": {"sloPeriod": "30d"}}})


@pytest.mark.parametrize(("config", "error"), [
    ({"memoryNearLimitRatioo": 0.9}, "prometheusRule/config"),
    ({"restartsThreshold": "3"}, "prometheusRule/config"),
    ({"exporterDownFor": "5 min"}, "prometheusRule/config"),
    ({"disabled": {"CiliumNodeUnexpectedDrops": "yes"}}, "prometheusRule/config"),
    ({"customRules": {"CiliumNodeUnexpectedDrops": {"severity": "page"}}}, "prometheusRule/config"),
    ({"customRules": {"CiliumNodeUnexpectedDrops": {"for": "5 min"}}}, "prometheusRule/config"),
    ({"customRules": {"CiliumNodeUnexpectedDrops": {"forr": "5m"}}}, "prometheusRule/config"),
    ({"additionalRuleLabels": {"severity": "critical"}}, "invalid propertyName 'severity'"),
    ({"keepFiringFor": "soon"}, "prometheusRule/config"),
    ({"scopeLabel": "alertname"}, "prometheusRule/config"),
    ({"disabled": {"CiliumNodeUnexpectedDrop": True}}, "the pack has no alert"),
    ({"customRules": {"CiliumAgentOOMKill": {"severity": "warning"}}}, "the pack has no alert"),
    ({"additionalRuleLabels": {"namespace": "x"}}, "namespace is set by the pack"),
    ({"customRules": {"CiliumNodeDropErrorBudgetBurn": {"labels": {"long": "2h"}}}}, "long is set by the pack"),
])
def test_unknown_or_mistyped_rule_config_is_rejected(config: dict, error: str) -> None:
    """By the chart (its schema, or its templates where alert names matter) and by the generator alike."""
    with pytest.raises(helm.HelmError, match=error):
        render({"prometheusRule": {"enabled": True, "config": config}})
    with pytest.raises(ConfigError):
        GEN.build_groups(plain(config))


def test_inhibit_rules_configmap_carries_the_generated_rules() -> None:
    objects = render({"alertmanagerInhibitRules": {"enabled": True, "additionalLabels": {"a": "b"}}})
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap"]
    validate_object(cm)
    assert cm["metadata"]["name"] == "cne-cilium-node-exporter-inhibit-rules"
    assert cm["metadata"]["labels"]["a"] == "b"
    rules = yaml.safe_load(cm["data"]["inhibit-rules.yaml"])["inhibit_rules"]
    assert rules == GEN.build_inhibit_rules(plain())
    assert all('namespace="monitoring"' in r["target_matchers"] for r in rules)
    labels = {"clusterLabel": "k8s_cluster", "nodeLabel": "kubernetes_node"}
    objects = render({"alertmanagerInhibitRules": {"enabled": True}, "prometheusRule": {"config": labels}})
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap"]
    rules = yaml.safe_load(cm["data"]["inhibit-rules.yaml"])["inhibit_rules"]
    assert rules == GEN.build_inhibit_rules(plain(labels))
    assert all(r["equal"][0] == "k8s_cluster" for r in rules) and any("kubernetes_node" in r["equal"] for r in rules)


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
