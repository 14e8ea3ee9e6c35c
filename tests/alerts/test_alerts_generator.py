"""The rule-pack generator: committed files up to date, CLI, configuration, SLO factors, one list of reasons."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alerts import generate
from alerts.alerting import all_alerts
from alerts.render import rule_file
from cilium_node_exporter import contract
from cilium_node_exporter.mixin import config as mixin_config
from cilium_node_exporter.mixin import names, slo
from cilium_node_exporter.mixin.config import (
    ACCELERATED,
    DEFAULTS,
    HELM_KEYS,
    STRUCTURAL_KEYS,
    Values,
    go_number,
    merge,
)
from tests.chart.test_helm_render import crd_validator
from tests.support.paths import REPO


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alerts.generate", *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO)


def test_committed_files_equal_generator_output() -> None:
    for path, text in generate.committed_files().items():
        assert path.read_text() == text, f"{path.relative_to(REPO)} is stale: run python -m alerts.generate"
    assert cli("--check").returncode == 0


def test_check_exits_1_on_stale_or_missing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generate, "ROOT", tmp_path)
    assert generate.main(["--check"]) == 1
    assert generate.main([]) == 0
    assert generate.main(["--check"]) == 0
    rules = tmp_path / "alerts" / "rules" / generate.RULES_FILE
    rules.write_text(rules.read_text().replace("for: 15m", "for: 16m"))
    assert generate.main(["--check"]) == 1


def test_config_and_out_render_plain_files(tmp_path: Path) -> None:
    config = tmp_path / "my.yaml"
    config.write_text(yaml.safe_dump({"prometheusRule": {"config": {
        "selector": 'job="cne", namespace="obs"', "nodeLabel": "kubernetes_node", "sloPeriod": "30d",
        "memoryNearLimitRatio": 0.8}}}))
    result = cli("--config", str(config), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "out" / generate.RULES_FILE).read_text()
    groups = yaml.safe_load(text)["groups"]
    assert 'cilium_node_drops_total{job="cne", namespace="obs"}' in text
    assert "sum by (cluster, kubernetes_node)" in text and "$labels.kubernetes_node" in text
    assert names.drop_ratio("30d") in text and "ratio_rate28d" not in text
    burn = [r for g in groups for r in g["rules"] if r.get("alert", "").startswith("CiliumNodeDropErrorBudget")]
    assert [r["expr"].split("(")[1].split(" *")[0] for r in burn] == ["14.4", "6", "3", "1"]
    inhibit = yaml.safe_load((tmp_path / "out" / generate.INHIBIT_FILE).read_text())
    assert all(rule["equal"][:2] == ["cluster", "kubernetes_node"] or rule["equal"][0] == "cluster"
               for rule in inhibit["inhibit_rules"])
    am = yaml.safe_load((tmp_path / "out" / generate.ALERTMANAGER_FILE).read_text())
    assert am["inhibit_rules"] == inhibit["inhibit_rules"]


@pytest.mark.parametrize("bad", [
    {"nodeLable": "node"}, {"memoryNearLimitRatio": "0.9"}, {"exporterDownFor": "5 min"},
    {"runbookUrlPattern": "https://example.com/runbooks"}, {"selector": ""}, {"fleetNodeShare": 0},
    {"sloReviewStep": "7m"}, {"sloBurnWindows": [{"severity": "page", "long": "1h", "short": "5m",
                                                  "budgetShare": 0.02, "for": "2m"}]},
    {"sloBurnWindows": [{"severity": "critical", "long": "1h", "short": "7m", "budgetShare": 0.02, "for": "2m"}]},
    {"dropClasses": {**DEFAULTS["dropClasses"], "expected": ["NOT_A_REASON"]}},
    {"dropClasses": {**DEFAULTS["dropClasses"], "expected": ["POLICY_DENIED"]}},
    {"dropClasses": {"policy": []}},
    {"disabled": {"CiliumNodeUnexpectedDrop": True}}, {"customRules": {"CiliumAgentOOMKill": {"for": "1m"}}},
    {"customRules": {"CiliumNodeUnexpectedDrops": {"severity": "page"}}}, {"keepFiringFor": "5 min"},
    {"additionalRuleLabels": {"severity": "critical"}}, {"additionalRuleLabels": {"namespace": "x"}},
    {"customRules": {"CiliumNodeDropErrorBudgetBurn": {"labels": {"long": "2h"}}}}, {"scopeValue": ""},
    {"scopeLabel": "alertname"}, {"scopeValue": 'a"b'},
])
def test_bad_configuration_is_rejected(tmp_path: Path, bad: dict) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(bad))
    result = cli("--config", str(config), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "error:" in result.stderr
    with pytest.raises(mixin_config.ConfigError):
        generate.build_groups(bad)


def test_helm_values_block_lists_every_helm_key() -> None:
    result = cli("--helm-values")
    assert result.returncode == 0
    config = yaml.safe_load(result.stdout)["prometheusRule"]["config"]
    assert list(config) == list(HELM_KEYS)
    assert config == {k: DEFAULTS[k] for k in HELM_KEYS} | {"scopeValue": ""}  # the chart's: its namespace
    assert set(HELM_KEYS) | set(STRUCTURAL_KEYS) == set(DEFAULTS)


@pytest.mark.parametrize(("period", "factors"), [("28d", [13.44, 5.6, 2.8, 0.93]), ("30d", [14.4, 6, 3, 1])])
def test_burn_factors_follow_the_period(period: str, factors: list[float]) -> None:
    assert [w.factor for w in slo.burn_windows(merge({"sloPeriod": period}))] == factors
    assert [w.factor for w in slo.burn_windows(merge({"sloPeriod": period}), slo.MEMORY)] == factors[2:]


def test_accelerated_preset_keeps_the_burn_factors_and_expressions() -> None:
    accelerated = merge(None, "accelerated")
    assert [w.factor for w in slo.burn_windows(accelerated)] == [w.factor for w in slo.burn_windows(merge())]
    fast = {r.get("alert") or r["record"] for g in generate.build_groups(preset="accelerated") for r in g["rules"]}
    slow = {r.get("alert") or r["record"] for g in generate.build_groups() for r in g["rules"]}
    same = {x for x in slow if "slo_" not in x and "_every" not in x}  # SLO windows and tile steps scale
    assert same == {x for x in fast if "slo_" not in x and "_every" not in x}
    assert {names.DROPS_BY_REASON, names.POLICY_DENIED, names.DATAPATH_PACKETS, names.BLIND} <= fast
    assert generate.build_groups(preset="accelerated") == generate.build_groups(ACCELERATED)


def test_go_number_matches_helm_formatting() -> None:
    assert [go_number(v) for v in (3, 3.0, 0.999, 1e-05, 86400, 1000000, 123456789, -2.5, 0)] == \
        ["3", "3", "0.999", "1e-05", "86400", "1e+06", "1.23456789e+08", "-2.5", "0"]


def test_drop_reasons_come_from_the_mixin_configuration_only() -> None:
    text = generate.render_rules()
    assert f'reason!~"{slo.not_error_regex(DEFAULTS)}"' in text
    assert contract.CONNTRACK_FULL_REASON in text
    literals = [node.value for path in (REPO / "alerts").glob("*.py") for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    classed = [r for reasons in DEFAULTS["dropClasses"].values() for r in reasons]
    names_ = (*classed, contract.CONNTRACK_FULL_REASON)
    retyped = [x for x in names_ if any(re.search(rf"\b{x}\b", t) for t in literals)]
    assert retyped == []


def test_changed_drop_classes_reach_every_error_matcher() -> None:
    classes = {**DEFAULTS["dropClasses"], "expected": [r for r in DEFAULTS["dropClasses"]["expected"]
                                                       if r != "NO_EGRESS_GATEWAY"]}
    text = yaml.safe_dump(generate.build_groups({"dropClasses": classes}))
    default = yaml.safe_dump(generate.build_groups())
    assert default.count("NO_EGRESS_GATEWAY") >= 2 and "NO_EGRESS_GATEWAY" not in text


def _referenced_sources(expr: str, records: dict[str, str], seen: frozenset[str] = frozenset()) -> set[str]:
    by_name = {m.name: m for m in contract.ALL_METRICS}
    found: set[str] = set()
    for token in set(re.findall(r"[a-z_:][a-z0-9_:]*", expr)):
        if token in records and token not in seen:
            found |= _referenced_sources(records[token], records, seen | {token})
        elif token in by_name and by_name[token].source:
            found.add(by_name[token].source)
    return found


def test_inhibition_sources_match_what_each_alert_reads() -> None:
    values = Values(merge(None))
    records = {r["record"]: r["expr"] for g in generate.build_groups() for r in g["rules"] if "record" in r}
    for alert in all_alerts(values):
        if alert.scope != "node":
            continue
        reads = _referenced_sources(alert.expr, records)
        assert set(alert.needs) <= reads, alert.name
        if len(reads) == 1:  # no fallback between sources: the one it reads must inhibit it
            assert set(alert.needs) == reads, alert.name


def test_every_alert_name_has_one_severity() -> None:
    """So severity inhibitions keyed on alertname (kube-prometheus: equal [namespace, alertname]) cannot let
    one node's critical alert mute another node's warning of the same name."""
    severities: dict[str, set[str]] = {}
    for group in generate.build_groups():
        for rule in group["rules"]:
            if "alert" in rule:
                severities.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
    assert {name: s for name, s in severities.items() if len(s) > 1} == {}


def test_pages_only_from_the_packet_exact_sli() -> None:
    """A drop page reads the agent's packet counters; the one exception is the Hubble-only cluster page, which
    says so in its `measurement` label, needs no per-flow denominator and only fires where the packet-exact
    SLI does not exist (so it can never double a page of the SLO)."""
    records = {r["record"]: r["expr"] for g in generate.build_groups() for r in g["rules"] if "record" in r}
    hubble_pages = []
    for group in generate.build_groups():
        for rule in group["rules"]:
            if (rule.get("labels", {}).get("severity") == "critical" and "Drop" in rule["alert"]
                    and "hubble" in _referenced_sources(rule["expr"], records)):
                hubble_pages.append(rule["alert"])
                assert rule["labels"].get("measurement") == "hubble-approximation", rule["alert"]
                assert "unless on (cluster, node)\nnode:cilium_node_datapath_packets:rate5m" in rule["expr"]
    assert hubble_pages == ["CiliumClusterUnexpectedDropsHubble"]


def test_no_long_window_rate_of_a_raw_counter() -> None:
    """Raw counters are only rate()d over 5m (or the SLI base window); long windows read recorded series."""
    base = DEFAULTS["sloRateWindow"]
    for group in generate.build_groups():
        for rule in group["rules"]:
            for metric, window in re.findall(r"(?:rate|increase)\((cilium_node_\w+)\{[^}]*\}\[(\w+)\]\)", rule["expr"]):
                allowed = {"5m", base} | ({DEFAULTS["restartsWindow"], DEFAULTS["oomKillLoopWindow"]}
                                          if "restarts" in metric else set())
                assert window in allowed, (rule.get("record") or rule.get("alert"), metric, window)
            for metric, window in re.findall(r"_over_time\((cilium_node_\w+)\{[^}]*\}\[(\w+)\]\)", rule["expr"]):
                assert window == DEFAULTS["oomKillLoopWindow"], (rule.get("record") or rule.get("alert"), metric)


# --- shaping the alerts (alerts/tuning.py) ---------------------------------------------------------------------

def test_default_rules_are_the_packs_own_plus_the_scope_label_text_for_text() -> None:
    scope = f"          {DEFAULTS['scopeLabel']}: {DEFAULTS['scopeValue']}"
    shipped = [line for line in generate.render_rules().splitlines() if not line.startswith("#")]
    own = rule_file(generate.pack_groups(Values(merge(None))), "").splitlines()
    assert [line for line in shipped if line != scope] == own
    alerts = [r for g in generate.build_groups() for r in g["rules"] if "alert" in r]
    assert shipped.count(scope) == len(alerts) > 30
    assert "keep_firing_for" not in generate.render_rules()


SHAPED = {
    "disabled": {"CiliumAgentMemoryBelowEnvelope": True, "CiliumClusterHubbleBlindNodes": True},
    "customRules": {"CiliumNodeUnexpectedDrops": {"severity": "critical", "for": "20m", "keepFiringFor": "15m",
                                                  "labels": {"team": "network"},
                                                  "annotations": {"summary": "Unexpected drops."}},
                    "CiliumNodeDropErrorBudgetBurn": {"for": "5m"}},
    "additionalRuleLabels": {"owner": "platform"},
    "additionalRuleAnnotations": {"dashboard": "https://grafana.example.com/d/cilium-node-fleet"},
    "keepFiringFor": "5m",
    "scopeLabel": "pack",
    "scopeValue": "cilium",
}


def test_shaped_plain_files_pass_promtool_and_the_prometheusrule_crd(tmp_path: Path) -> None:
    config = tmp_path / "my.yaml"
    config.write_text(yaml.safe_dump({"prometheusRule": {"config": SHAPED}}))
    result = cli("--config", str(config), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    rules_path = tmp_path / "out" / generate.RULES_FILE
    groups = yaml.safe_load(rules_path.read_text())["groups"]
    check = subprocess.run(["promtool", "check", "rules", "--lint=all", str(rules_path)], capture_output=True,
                           text=True, timeout=60)  # Debian's promtool 2.42.0 knows keep_firing_for
    assert check.returncode == 0, check.stdout + check.stderr
    crd = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "x"},
           "spec": {"groups": groups}}
    assert not list(crd_validator("PrometheusRule").iter_errors(crd))
    alerts = {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}
    assert not {"CiliumAgentMemoryBelowEnvelope", "CiliumClusterHubbleBlindNodes"} & set(alerts)
    drops = alerts["CiliumNodeUnexpectedDrops"]
    assert (drops["for"], drops["keep_firing_for"]) == ("20m", "15m")
    assert drops["labels"] == {"severity": "critical", "owner": "platform", "team": "network", "pack": "cilium"}
    assert drops["annotations"]["summary"] == "Unexpected drops." and "dashboard" in drops["annotations"]
    assert {a["for"] for n, a in alerts.items() if n == "CiliumNodeDropErrorBudgetBurn"} == {"5m"}
    assert all(a["keep_firing_for"] == "5m" for n, a in alerts.items() if n != "CiliumNodeUnexpectedDrops")
    assert all(a["labels"]["pack"] == "cilium" and a["labels"]["owner"] == "platform" for a in alerts.values())
    records = [r for g in groups for r in g["rules"] if "record" in r]
    assert records == [r for g in generate.build_groups() for r in g["rules"] if "record" in r]
    am = yaml.safe_load((tmp_path / "out" / generate.ALERTMANAGER_FILE).read_text())
    (scoped,) = am["route"]["routes"]
    assert scoped["matchers"][0] == 'pack="cilium"' and scoped["group_by"] == ["pack", "cluster", "alertname"]
    assert "CiliumClusterHubbleBlindNodes" not in yaml.safe_dump(am)
    assert all('pack="cilium"' in r["target_matchers"] for r in am["inhibit_rules"])


def test_keep_firing_for_holds_a_resolved_alert_in_promtool(tmp_path: Path) -> None:
    """The emitted field does what it says in Debian's Prometheus engine: the exporter is back after 10 minutes,
    the alert keeps firing for keepFiringFor."""
    (tmp_path / "rules.yaml").write_text(generate.render_rules({"keepFiringFor": "10m"}))
    up = 'up{job="cilium-node-exporter", cluster="c1", node="n1"}'
    firing = 'ALERTS{alertname="CiliumNodeExporterDown", alertstate="firing"}'
    labels = {"__name__": "ALERTS", "alertname": "CiliumNodeExporterDown", "alertstate": "firing",
              "cluster": "c1", "node": "n1", "severity": "warning", DEFAULTS["scopeLabel"]: DEFAULTS["scopeValue"]}
    sample = [{"labels": "ALERTS{" + ", ".join(f'{k}="{v}"' for k, v in labels.items() if k != "__name__") + "}",
               "value": 1}]
    test = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": [{"series": up, "values": "0x15 1x30"}],
        "promql_expr_test": [{"expr": firing, "eval_time": t, "exp_samples": sample if on else []}
                             for t, on in (("14m", True), ("24m", True), ("27m", False))]}]}
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test))
    result = subprocess.run(["promtool", "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_alert_name_keeps_one_severity_when_overridden() -> None:
    config = {"customRules": {"CiliumNodeDropErrorBudgetSlowBurn": {"severity": "critical"},
                              "CiliumNodeDropErrorBudgetBurn": {"severity": "warning"}}}
    severities: dict[str, set[str]] = {}
    for group in generate.build_groups(config):
        for rule in group["rules"]:
            if "alert" in rule:
                severities.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
    assert severities["CiliumNodeDropErrorBudgetSlowBurn"] == {"critical"}
    assert severities["CiliumNodeDropErrorBudgetBurn"] == {"warning"}
    assert {name: s for name, s in severities.items() if len(s) > 1} == {}


def test_a_misspelled_alert_name_says_which_it_meant() -> None:
    with pytest.raises(mixin_config.ConfigError, match="did you mean CiliumNodeUnexpectedDrops"):
        generate.build_groups({"disabled": {"CiliumNodeUnexpectedDrop": True}})

