"""The rule-pack generator: committed files up to date, CLI, configuration, SLO factors, one list of reasons."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alerts import generate, recording
from alerts.alerting import all_alerts
from alerts.config import Values, go_number, merge
from cilium_node_exporter import contract
from tests.support.paths import REPO

SCRIPT = REPO / "alerts" / "generate.py"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_committed_files_equal_generator_output() -> None:
    for path, text in generate.committed_files().items():
        assert path.read_text() == text, f"{path.relative_to(REPO)} is stale: run python alerts/generate.py"
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
    assert "node:cilium_node_drop_slo_errors:ratio_rate30d" in text and "ratio_rate28d" not in text
    burn = [r for g in groups for r in g["rules"] if r.get("alert") == "CiliumNodeDropErrorBudgetBurn"]
    assert [r["expr"].split("(")[1].split(" *")[0] for r in burn] == ["14.4", "6", "3", "1"]
    inhibit = yaml.safe_load((tmp_path / "out" / generate.INHIBIT_FILE).read_text())
    assert all(rule["equal"] == ["cluster", "kubernetes_node"] for rule in inhibit["inhibit_rules"])


@pytest.mark.parametrize("bad", [{"nodeLable": "node"}, {"memoryNearLimitRatio": "0.9"}, {"exporterDownFor": "5 min"},
                                 {"runbookUrlPattern": "https://example.com/runbooks"}, {"selector": ""}])
def test_bad_configuration_is_rejected(tmp_path: Path, bad: dict) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(bad))
    result = cli("--config", str(config), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "error:" in result.stderr
    with pytest.raises(generate.ConfigError):
        generate.build_groups(bad)


def test_helm_values_block_lists_every_helm_key() -> None:
    result = cli("--helm-values")
    assert result.returncode == 0
    config = yaml.safe_load(result.stdout)["prometheusRule"]["config"]
    assert list(config) == list(generate.HELM_KEYS)
    assert config == {k: generate.DEFAULTS[k] for k in generate.HELM_KEYS}
    assert set(generate.HELM_KEYS) | set(generate.STRUCTURAL_KEYS) == set(generate.DEFAULTS)


@pytest.mark.parametrize(("period", "factors"), [("28d", [13.44, 5.6, 2.8, 0.93]), ("30d", [14.4, 6, 3, 1])])
def test_burn_factors_follow_the_period(period: str, factors: list[float]) -> None:
    windows = generate.DEFAULTS["sloBurnWindows"]
    assert [generate.burn_factor(period, w) for w in windows] == factors


def test_accelerated_preset_keeps_the_burn_factors_and_expressions() -> None:
    accelerated = merge(generate.ACCELERATED)
    assert [generate.burn_factor(accelerated["sloPeriod"], w) for w in accelerated["sloBurnWindows"]] == \
        [generate.burn_factor("28d", w) for w in generate.DEFAULTS["sloBurnWindows"]]
    fast = {r.get("alert") or r["record"] for g in generate.build_groups(generate.ACCELERATED) for r in g["rules"]}
    slow = {r.get("alert") or r["record"] for g in generate.build_groups() for r in g["rules"]}
    assert {n for n in slow if "slo_" not in n} == {n for n in fast if "slo_" not in n}
    dashboards = [getattr(recording, n) for n in ("DROPS_BY_REASON", "POLICY_DENIED", "DATAPATH_PACKETS")]
    assert set(dashboards) <= fast


def test_go_number_matches_helm_formatting() -> None:
    assert [go_number(v) for v in (3, 3.0, 0.999, 1e-05, 86400, 1000000, 123456789, -2.5, 0)] == \
        ["3", "3", "0.999", "1e-05", "86400", "1e+06", "1.23456789e+08", "-2.5", "0"]


def test_drop_reasons_come_from_the_contract_only() -> None:
    text = generate.render_rules()
    assert f'reason!~"{contract.expected_reasons_regex()}"' in text
    assert contract.CONNTRACK_FULL_REASON in text
    literals = [node.value for path in (REPO / "alerts").glob("*.py")
                for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Constant)
                and isinstance(node.value, str)]
    names = (*contract.EXPECTED_DROP_REASONS, *contract.DROP_CLASS_TRANSIENT, contract.CONNTRACK_FULL_REASON)
    retyped = [n for n in names if any(re.search(rf"\b{n}\b", text) for text in literals)]
    assert retyped == []


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
        reads = _referenced_sources(alert.expr, records)
        assert set(alert.sources) <= reads, alert.name
        if len(reads) == 1:  # no fallback between sources: the one it reads must inhibit it
            assert set(alert.sources) == reads, alert.name
        elif reads:
            assert reads == {"hubble", "agent"} and not alert.sources, alert.name
