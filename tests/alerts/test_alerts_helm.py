"""The chart's rule template, rendered by the real Helm engine (helm-python-sdk) in a throwaway chart,
equals the pack's own groups (before shaping: the chart's templates shape them, tests/chart/test_helm_rules.py),
for the default values and for changed ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import helm_python as helm
import pytest
import yaml

from alerts import generate
from alerts.render import rule_file
from cilium_node_exporter.mixin.config import DEFAULTS, HELM_KEYS, TUNING_KEYS, Values, merge
from tests.support.paths import REPO

TEMPLATE = REPO / "helm" / "cilium-node-exporter" / "files" / "prometheus-rules.tpl.yaml"
SHAPING = REPO / "helm" / "cilium-node-exporter" / "templates" / "_alerting.tpl"

CHANGED = {
    "selector": 'job="cne", namespace="obs"', "nodeLabel": "kubernetes_node", "clusterLabel": "k8s_cluster",
    "runbookUrlPattern": "https://runbooks.example.com/cilium/%s.md", "memoryNearLimitRatio": 0.85,
    "memoryForecastHorizonSeconds": 43200, "memoryAboveEnvelopeFor": "20m", "unexpectedDropsRatio": 0.005,
    "dropSloObjective": 0.9995, "memorySloObjective": 0.995, "sloPeriodInterval": "10m",
    "denialBaselineWindow": "12h", "restartsThreshold": 5, "hubbleLostEventsRatio": 0.02,
}


def render(tmp_path: Path, config: dict) -> str:
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "files").mkdir()
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: rules-only\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text(yaml.safe_dump({"prometheusRule": {"config": config}}))
    shutil.copy(TEMPLATE, chart / "files" / TEMPLATE.name)
    (chart / "templates" / "rules.yaml").write_text(
        '{{- tpl (.Files.Get "files/prometheus-rules.tpl.yaml") . }}\n')
    return helm.Chart.load(str(chart)).render({}, name="r", namespace="monitoring")["rules-only/templates/rules.yaml"]


def own_groups(config: dict | None = None) -> list[dict]:
    return generate.pack_groups(Values(merge(config)))


def test_default_values_render_the_plain_groups_text_for_text(tmp_path: Path) -> None:
    defaults = {k: DEFAULTS[k] for k in HELM_KEYS}
    out = render(tmp_path, defaults)
    assert yaml.safe_load(out) == {"groups": own_groups()}
    body = [line for line in rule_file(own_groups(), "").splitlines() if not line.startswith("#")]
    assert [line for line in out.splitlines() if not line.startswith("#") and line] == body


def test_changed_values_render_what_the_generator_renders_for_them(tmp_path: Path) -> None:
    config = {**{k: DEFAULTS[k] for k in HELM_KEYS}, **CHANGED}
    rendered = yaml.safe_load(render(tmp_path, config))
    assert rendered == {"groups": own_groups(CHANGED)}
    assert rendered != {"groups": own_groups()}
    text = yaml.safe_dump(rendered)
    assert "$labels.kubernetes_node" in text and "https://runbooks.example.com/cilium/ciliumagentoomkilled.md" in text


@pytest.mark.parametrize("key", HELM_KEYS)
def test_every_helm_key_reaches_the_template(key: str) -> None:
    """Thresholds, selectors and label names in the rule template; the shaping keys in the templates that shape
    the alerts and the inhibitions."""
    if key in TUNING_KEYS:
        text = SHAPING.read_text()
        assert f"$cfg.{key} " in text or f".Values.prometheusRule.config.{key} " in text
    else:
        assert f".Values.prometheusRule.config.{key} " in TEMPLATE.read_text()
