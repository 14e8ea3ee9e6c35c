"""The rule pack under Debian's promtool: unit tests of every alert and recording rule, the linter, and
proof that the unit tests catch a changed threshold."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from alerts import generate
from cilium_node_exporter.mixin.config import DEFAULTS, duration_seconds
from tests.support.paths import REPO

ALERTS = REPO / "alerts"
RULES = ALERTS / "rules" / generate.RULES_FILE
TEST_FILES = sorted((ALERTS / "tests").glob("*.yaml"))


def promtool() -> str:
    """Path of promtool; the test fails (never skips) without it."""
    path = shutil.which("promtool")
    if not path:
        pytest.fail("promtool not found: apt-get install prometheus (make system-deps)")
    return path


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def scoped_copy(test_file: Path, dest: Path, rules_dir: Path | None = None) -> Path:
    """``test_file`` copied into ``dest``, every expected alert with the pack's scope label added.

    The unit tests state the labels of the alert definitions; alerts/tuning.py adds the scope label
    (``scopeLabel: scopeValue``, overriding a label of that name the expression keeps) to every rendered
    alert. ``rule_files`` point at ``rules_dir`` (default: where the test file's own point)."""
    doc = yaml.safe_load(test_file.read_text())
    doc["rule_files"] = [str((rules_dir or (test_file.parent / f).parent) / Path(f).name) for f in doc["rule_files"]]
    for test in doc["tests"]:
        for case in test.get("alert_rule_test", []):
            for alert in case.get("exp_alerts") or []:
                alert.setdefault("exp_labels", {})[DEFAULTS["scopeLabel"]] = DEFAULTS["scopeValue"]
    dest.mkdir(parents=True, exist_ok=True)
    (dest / test_file.name).write_text(yaml.safe_dump(doc, sort_keys=False, width=1_000_000))
    return dest / test_file.name


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(test_file: Path, tmp_path: Path) -> None:
    copy = scoped_copy(test_file, tmp_path)
    result = run("test", "rules", copy.name, cwd=copy.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules_lint_all() -> None:
    result = run("check", "rules", "--lint=all", str(RULES), cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "WARNING" not in (result.stdout + result.stderr).upper()


def _tests() -> list[dict]:
    return [t for f in TEST_FILES for t in yaml.safe_load(f.read_text())["tests"]]


def test_every_alert_is_tested_firing_and_silent() -> None:
    alerts = {r["alert"] for g in generate.build_groups() for r in g["rules"] if "alert" in r}
    fired: set[str] = set()
    silent: set[str] = set()
    for test in _tests():
        for case in test.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else silent).add(case["alertname"])
    assert alerts - fired == set(), "alerts never asserted firing"
    assert alerts - silent == set(), "alerts never asserted silent"
    assert fired | silent <= alerts, "tests name alerts that do not exist"


def test_every_slo_window_pair_is_tested_firing() -> None:
    pairs = {(r["alert"], r["labels"]["long"], r["labels"]["short"])
             for g in generate.build_groups() for r in g["rules"] if "long" in r.get("labels", {})}
    tested = {(case["alertname"], a["exp_labels"]["long"], a["exp_labels"]["short"])
              for t in _tests() for case in t.get("alert_rule_test", []) for a in case.get("exp_alerts") or []
              if "long" in a["exp_labels"]}
    assert pairs == tested


def test_every_recording_rule_has_an_expression_test() -> None:
    records = {r["record"] for g in generate.build_groups() for r in g["rules"] if "record" in r}
    exprs = " ".join(c["expr"] for t in _tests() for c in t.get("promql_expr_test", []))
    assert {name for name in records if name not in exprs} == set()


_EXPECTED = DEFAULTS["dropClasses"]["expected"]
# (settings changed, unit test file, the name of its test group that must fail). Only that group is run: the
# whole file passes against the shipped pack (test_promtool_unit_tests_pass), and the group is where the mutant's
# behaviour is asserted, at a fraction of the file's time.
MUTANTS = (({"memoryNearLimitRatio": 0.95}, "memory.yaml", "CiliumAgentMemoryNearLimit (a ticket)"),
           ({"exporterDownFor": "6m"}, "telemetry.yaml", "CiliumNodeExporterDown fires"),
           ({"policyDenialSurgeFloor": 3}, "datapath.yaml", "CiliumNodePolicyDenialSurge compares"),
           ({"dropClasses": {**DEFAULTS["dropClasses"], "expected": [
               r for r in _EXPECTED if r != "UNSUPPORTED_L3_PROTOCOL"]}}, "datapath.yaml",
            "CiliumNodeUnexpectedDrops needs"),
           ({"dropSloMinTrafficRate": 30}, "slo.yaml", "CiliumNodeDropErrorBudgetBurn pages"),
           ({"dropSloMinErrors": 50}, "slo.yaml", "CiliumNodeDropErrorBudgetBurn pages"),
           ({"fleetMinNodes": 4}, "cluster.yaml", "CiliumClusterExportersDown fires"),
           ({"fleetNodeShare": 0.09}, "cluster.yaml", "CiliumClusterExportersDown fires"),
           # pages.yaml: the roll-up at exactly 3 of 30 nodes, the start-up (its not-ready drops no longer
           # transient), the Hubble loss correction
           ({"fleetNodeShare": 0.11}, "pages.yaml", "Crash loops page at exactly 3 of 30 nodes"),
           ({"dropClasses": {**DEFAULTS["dropClasses"], "transient": []}}, "pages.yaml",
            "CiliumNodeDropErrorBudgetBurn: a total outage"),
           ({"hubbleLossCorrectionMax": 1}, "pages.yaml", "CiliumClusterUnexpectedDropsHubble pages"))


@pytest.mark.parametrize(("overrides", "test_file", "group"), MUTANTS,
                         ids=[f"{f}:{','.join(o)}" for o, f, _ in MUTANTS])
def test_unit_tests_fail_when_a_threshold_or_window_changes(tmp_path: Path, overrides: dict, test_file: str,
                                                            group: str) -> None:
    """The promtool tests are not vacuous: a rule file with other thresholds or windows fails them."""
    assert_mutant_fails(overrides, test_file, group, tmp_path)


def assert_mutant_fails(overrides: dict, test_file: str, group: str, tmp_path: Path) -> None:
    """The test group of ``test_file`` whose name starts with ``group`` fails against the rules rendered with
    ``overrides``."""
    rules_dir, tests_dir = tmp_path / "rules", tmp_path / "tests"
    rules_dir.mkdir()
    (rules_dir / generate.RULES_FILE).write_text(generate.render_rules(overrides))
    copy = scoped_copy(ALERTS / "tests" / test_file, tests_dir, rules_dir)
    doc = yaml.safe_load(copy.read_text())
    doc["tests"] = [t for t in doc["tests"] if t.get("name", "").startswith(group)]
    assert len(doc["tests"]) == 1, f"{test_file} has {len(doc['tests'])} test groups named {group!r}..."
    copy.write_text(yaml.safe_dump(doc, sort_keys=False, width=1_000_000))
    result = run("test", "rules", copy.name, cwd=tests_dir)
    assert result.returncode == 1 and "FAILED" in result.stdout + result.stderr, overrides


def test_accelerated_rendering_is_valid_and_fast(tmp_path: Path) -> None:
    out = tmp_path / "accelerated"
    assert generate.main(["--preset", "accelerated", "--out", str(out)]) == 0
    result = run("check", "rules", "--lint=all", str(out / generate.RULES_FILE), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    groups = yaml.safe_load((out / generate.RULES_FILE).read_text())["groups"]
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    assert all(duration_seconds(a["for"]) <= 10 for a in alerts)
    assert max(duration_seconds(r["labels"]["long"]) for r in alerts if "long" in r["labels"]) <= 3 * 3600
