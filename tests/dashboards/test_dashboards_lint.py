"""grafana/dashboard-linter (v0.2.0) rules that apply to our dashboards, one test per rule ID.

The linter is a Go binary that cannot be installed here; these tests implement its rules on the committed
JSON (stricter where noted). Rules that do not apply are excluded in `dashboards/.lint` with a reason.
PromQL structure comes from promql-parser; validity from Debian's promtool.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from dashboards.generate import RECORDED
from dashboards.queries import (
    DEFAULT_JOB,
    DURATION_ONLY,
    iter_panels,
    load_dashboards,
    parse,
    selectors,
    substitute,
    variable_promql,
    walk,
)
from tests.support.paths import REPO

DOCS = load_dashboards()
UIDS = sorted(DOCS)
RATE_INTERVAL = parse(f"x[{DURATION_ONLY['__rate_interval']}]").range
RANGE = parse(f"x[{DURATION_ONLY['__range']}]").range
LINT = yaml.safe_load((REPO / "dashboards" / ".lint").read_text())

# Units the linter accepts (its list, from Grafana's valueFormats categories), the ones that make sense here.
VALID_UNITS = frozenset({
    "none", "string", "short", "percent", "percentunit", "bytes", "decbytes", "bits", "decbits", "kbytes",
    "mbytes", "gbytes", "pps", "binBps", "Bps", "bps", "hertz", "ns", "µs", "ms", "s", "m", "h", "d",
    "dtdurationms", "dtdurations", "dthms", "dtdhms", "dateTimeAsIso", "dateTimeFromNow", "cps", "ops", "reqps",
    "rps", "wps", "iops", "cpm", "opm", "rpm", "wpm", "bool", "bool_yes_no", "bool_on_off",
})


def panels(doc: dict) -> list[dict]:
    return [p for p in iter_panels(doc) if p["type"] != "row"]


def targets(doc: dict) -> list[tuple[dict, int, dict]]:
    return [(p, i, t) for p in panels(doc) for i, t in enumerate(p.get("targets", []))]


def ast(expr: str):
    return parse(substitute(expr, DURATION_ONLY))


# Prometheus' own TSDB metric, read by the SLO Review's retention panel with the pack's prometheusSelector.
PROMETHEUS_SELF = "prometheus_tsdb_lowest_timestamp_seconds"


def is_recording_rule(name: str | None) -> bool:
    return bool(name) and RECORDED.fullmatch(name) is not None


# --- dashboard rules -------------------------------------------------------------------------------
@pytest.mark.parametrize("uid", UIDS)
def test_template_datasource_rule(uid: str) -> None:
    ds = [v for v in DOCS[uid]["templating"]["list"] if v["type"] == "datasource"]
    assert len(ds) == 1
    assert ds[0]["name"] == "datasource" and ds[0]["label"] == "Data source" and ds[0]["query"] == "prometheus"


@pytest.mark.parametrize("uid", UIDS)
def test_template_job_rule(uid: str) -> None:
    job = next(v for v in DOCS[uid]["templating"]["list"] if v["name"] == "job")
    assert job["type"] == "query"
    assert job["datasource"]["uid"] in ("$datasource", "${datasource}")
    assert job["label"] == "Job"
    assert job["multi"] is True and job["allValue"] == ".+"
    assert job["current"]["value"] == [DEFAULT_JOB]


@pytest.mark.parametrize("uid", UIDS)
def test_template_label_promql_rule(uid: str) -> None:
    for var in DOCS[uid]["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = re.fullmatch(r"([a-z_]+)\((.+)\)", var["query"])
        assert m, var["query"]
        assert m.group(1) in ("label_names", "label_values", "metrics", "query_result")
        if m.group(1) == "label_values":
            selector, _, label = m.group(2).rpartition(",")
            assert re.fullmatch(r"\s*[a-zA-Z_]\w*\s*", label), var["query"]
            assert type(ast(selector)).__name__ == "VectorSelector", var["query"]


@pytest.mark.parametrize("uid", UIDS)
def test_template_on_time_change_reload_rule(uid: str) -> None:
    for var in DOCS[uid]["templating"]["list"]:
        if var["type"] == "query":
            assert var["refresh"] == 2, var["name"]


@pytest.mark.parametrize("uid", UIDS)
def test_uneditable_dashboard_rule(uid: str) -> None:
    assert DOCS[uid]["editable"] is False


def test_instance_rules_are_excluded_with_a_reason() -> None:
    """template-instance-rule / target-instance-rule do not apply: the node label identifies a node."""
    for rule in ("template-instance-rule", "target-instance-rule"):
        assert LINT["exclusions"][rule]["reason"].strip()
        assert "entries" not in LINT["exclusions"][rule]
    for doc in DOCS.values():
        assert "instance" not in {v["name"] for v in doc["templating"]["list"]}
        for _, _, t in targets(doc):
            assert all(m.name != "instance" for s in selectors(ast(t["expr"])) for m in s.matchers.matchers)


def test_lint_config_has_only_known_rules() -> None:
    known = {"template-datasource-rule", "template-job-rule", "template-instance-rule",
             "template-label-promql-rule", "template-on-time-change-reload-rule", "panel-datasource-rule",
             "panel-title-description-rule", "panel-units-rule", "panel-no-targets-rule", "target-promql-rule",
             "target-rate-interval-rule", "target-job-rule", "target-instance-rule", "target-counter-agg-rule",
             "target-logql-rule", "target-logql-auto-rule", "uneditable-dashboard"}
    assert set(LINT) == {"exclusions"}
    assert set(LINT["exclusions"]) <= known


# --- panel rules -----------------------------------------------------------------------------------
@pytest.mark.parametrize("uid", UIDS)
def test_panel_datasource_rule(uid: str) -> None:
    for p in panels(DOCS[uid]):
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        for t in p["targets"]:
            assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]


@pytest.mark.parametrize("uid", UIDS)
def test_panel_title_description_rule(uid: str) -> None:
    for p in panels(DOCS[uid]):
        assert p.get("title", "").strip(), p
        assert len(p.get("description", "").strip()) >= 20, p["title"]
    titles = [p["title"] for p in panels(DOCS[uid])]
    assert len(titles) == len(set(titles)), "the linter's exclusions name panels by title"


@pytest.mark.parametrize("uid", UIDS)
def test_panel_units_rule(uid: str) -> None:
    for p in panels(DOCS[uid]):
        assert p["fieldConfig"]["defaults"].get("unit") in VALID_UNITS, p["title"]
        for override in p["fieldConfig"].get("overrides", []):
            for prop in override["properties"]:
                if prop["id"] == "unit":
                    assert prop["value"] in VALID_UNITS, (p["title"], prop)


@pytest.mark.parametrize("uid", UIDS)
def test_panel_no_targets_rule(uid: str) -> None:
    for p in panels(DOCS[uid]):
        assert p.get("targets"), p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert all(refs) and len(refs) == len(set(refs)), p["title"]
        assert all(t["expr"].strip() for t in p["targets"]), p["title"]


# --- target rules ----------------------------------------------------------------------------------
def promtool_errors(exprs: list[str], tmp: Path) -> dict[int, str]:
    """Index -> promtool's parse error, each expression checked as a recording rule in its own group."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (apt-get install prometheus)"
    groups = [{"name": f"q{i}", "rules": [{"record": f"dashboard:query_{i}:check", "expr": e}]}
              for i, e in enumerate(exprs)]
    path = tmp / "dashboard-queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    errors = {int(m.group(1)): line for line in (proc.stdout + proc.stderr).splitlines()
              if (m := re.search(r'group "q(\d+)"', line))}
    assert (proc.returncode == 0) == (not errors), proc.stdout + proc.stderr
    return errors


def test_target_promql_rule(tmp_path: Path) -> None:
    """Every panel target is valid PromQL for Prometheus 2.42 (variables substituted)."""
    exprs = [(uid, p["title"], substitute(t["expr"])) for uid in UIDS for p, _, t in targets(DOCS[uid])]
    errors = promtool_errors([e for _, _, e in exprs], tmp_path)
    assert not errors, [(exprs[i], err) for i, err in errors.items()]


def test_promtool_check_reports_each_invalid_expression(tmp_path: Path) -> None:
    errors = promtool_errors(["rate(x[5m])", "rate(x[5m]", "sum by (a) x", "up"], tmp_path)
    assert sorted(errors) == [1, 2]


@pytest.mark.parametrize("uid", UIDS)
def test_target_rate_interval_rule(uid: str) -> None:
    """rate/irate ranges are `$__rate_interval` (the linter checks rate and irate only); increase() too, or
    `$__range` in an instant query (the count over the time range)."""
    for p, _, t in targets(DOCS[uid]):
        for node, parents in walk(ast(t["expr"])):
            if type(node).__name__ == "MatrixSelector" and parents and type(parents[-1]).__name__ == "Call" \
                    and parents[-1].func.name in ("rate", "irate", "increase"):
                allowed = {RATE_INTERVAL} | ({RANGE} if parents[-1].func.name == "increase" and t.get("instant")
                                             else set())
                assert node.range in allowed, (p["title"], t["expr"])


@pytest.mark.parametrize("uid", UIDS)
def test_target_counter_agg_rule(uid: str) -> None:
    for p, _, t in targets(DOCS[uid]):
        for node, parents in walk(ast(t["expr"])):
            if type(node).__name__ == "VectorSelector" and (node.name or "").endswith("_total"):
                assert len(parents) >= 2, (p["title"], t["expr"])
                assert type(parents[-1]).__name__ == "MatrixSelector", (p["title"], t["expr"])
                call = parents[-2]
                assert type(call).__name__ == "Call" and call.func.name in ("rate", "irate", "increase"), (
                    p["title"], t["expr"])


def _lacks_job(selector) -> bool:
    return not any(m.name == "job" and str(m.op) == "MatchOp.Re" and m.value == "$job"
                   for m in selector.matchers.matchers)


def test_target_job_rule() -> None:
    """Every selector of a raw series has job=~"$job"; only recording rules lack it, and exactly the
    targets using them are excluded in `.lint`."""
    without_job = set()
    for uid in UIDS:
        doc = DOCS[uid]
        for p, i, t in targets(doc):
            missing = [s.name for s in selectors(ast(t["expr"])) if _lacks_job(s)]
            assert all(is_recording_rule(n) or n == PROMETHEUS_SELF for n in missing), (p["title"], t["expr"], missing)
            if missing:
                without_job.add((doc["title"], p["title"], str(i)))
    entries = LINT["exclusions"]["target-job-rule"]["entries"]
    assert {(e["dashboard"], e["panel"], e["targetIdx"]) for e in entries} == without_job
    assert len(entries) == len(without_job)


def test_target_logql_rules_do_not_apply() -> None:
    """target-logql-rule / target-logql-auto-rule: no Loki queries, every target is Prometheus."""
    for doc in DOCS.values():
        for _, _, t in targets(doc):
            assert t["datasource"]["type"] == "prometheus"
            assert "expr" in t


def test_variable_queries_parse_as_promql(tmp_path: Path) -> None:
    exprs = [substitute(variable_promql(v["query"])) for doc in DOCS.values()
             for v in doc["templating"]["list"] if v["type"] == "query"]
    assert len(exprs) >= 9
    assert not promtool_errors(exprs, tmp_path)
