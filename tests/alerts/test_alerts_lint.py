"""Conventions of the rule pack: mixtool's lint rule IDs (``pkg/mixer/lint.go``), recording-rule names, runbooks."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from alerts import generate
from cilium_node_exporter.mixin.config import DEFAULTS
from tests.support.paths import REPO

GROUPS = generate.build_groups()
ALERTS = [r for g in GROUPS for r in g["rules"] if "alert" in r]
RECORDS = [r for g in GROUPS for r in g["rules"] if "record" in r]
TEMPLATE = re.compile(r"\{\{.*?\}\}")


def mixtool_lint(rule: dict) -> list[str]:
    """The rule IDs of mixtool's pkg/mixer/lint.go that an alerting rule violates."""
    problems = []
    annotations = rule.get("annotations", {})
    if not re.fullmatch(r"([A-Z]+[a-z0-9]+)+", rule["alert"]):
        problems.append("alert-name-camelcase")
    if rule.get("labels", {}).get("severity") not in ("warning", "critical", "info"):
        problems.append("alert-severity-rule")
    description, summary = annotations.get("description"), annotations.get("summary")
    if not description:
        problems.append("alert-description-missing-rule")
    elif not TEMPLATE.search(description):
        problems.append("alert-description-templating")
    if not summary:
        problems.append("alert-summary-missing-rule")
    else:
        if TEMPLATE.search(summary):
            problems.append("alert-summary-templating")
        if not (summary[0].isupper() and summary.endswith(".")):
            problems.append("alert-summary-style")
    return problems


@pytest.mark.parametrize("rule", ALERTS, ids=lambda r: f"{r['alert']}-{r['labels'].get('long', '')}")
def test_alert_passes_mixtool_lint_rules(rule: dict) -> None:
    assert mixtool_lint(rule) == []


def test_mixtool_lint_catches_each_violation() -> None:
    good = ALERTS[0]
    bad = {"alert": "cilium_bad", "labels": {"severity": "page"},
           "annotations": {"summary": "{{ $labels.node }} bad", "description": "static"}}
    assert mixtool_lint(good) == []
    assert mixtool_lint(bad) == ["alert-name-camelcase", "alert-severity-rule", "alert-description-templating",
                                 "alert-summary-templating", "alert-summary-style"]
    assert mixtool_lint({"alert": "CiliumTest", "labels": {"severity": "info"}, "annotations": {}}) == [
        "alert-description-missing-rule", "alert-summary-missing-rule"]


def test_alert_conventions_beyond_mixtool() -> None:
    for rule in ALERTS:
        annotations = rule["annotations"]
        assert rule["alert"].startswith(("CiliumAgent", "CiliumNode", "CiliumHubble", "CiliumEnvoy",
                                         "CiliumCluster", "CiliumSlo")), rule["alert"]
        assert "for" in rule
        assert annotations["runbook_url"] == DEFAULTS["runbookUrlPattern"] % rule["alert"].lower()
        description = annotations["description"]
        if rule["alert"] != "CiliumSloRetentionTooShort":  # about Prometheus itself: no node, no cluster
            assert "$labels." in description, rule["alert"]
        if rule["alert"] not in ("CiliumNodeExporterDown", "CiliumNodeExporterSourceDown", "CiliumNodeHubbleBlind",
                                 "CiliumNodeExporterRolloutStuck", "CiliumClusterExportersAbsent",
                                 "CiliumNodeSloUnmeasured"):  # 0/1, counts
            assert re.search(r"\$value \| humanize(1024|Percentage|Duration)?\b|printf \"%\.0f\" \$value",
                             description), rule["alert"]
        if "long" in rule["labels"]:
            assert set(rule["labels"]) == {"severity", "long", "short", "slo", DEFAULTS["scopeLabel"]}
    # summaries are static per alert name (one headline for all instances and window pairs)
    summaries: dict[str, set[str]] = {}
    for rule in ALERTS:
        summaries.setdefault(rule["alert"], set()).add(rule["annotations"]["summary"])
    assert all(len(s) == 1 for s in summaries.values())


def test_recording_rule_names_and_no_recomputation() -> None:
    for rule in RECORDS:
        assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]
    keys = Counter((r["record"], tuple(sorted(r.get("labels", {}).items()))) for r in RECORDS)
    assert [k for k, n in keys.items() if n > 1] == []
    # a chain's snapshot reads the raw counters in its own group, so that its counts never depend on when
    # another group last ran: the one expression recorded twice (the 5m and the review chain)
    exprs = Counter(r["expr"] for r in RECORDS if not re.fullmatch(r"node:\w+_total:sum_every\w+", r["record"]))
    assert [e for e, n in exprs.items() if n > 1] == []
    # a 5m rate of a raw counter is computed in exactly one rule; everything else reads that rule
    raw_5m = Counter(m for r in RECORDS for m in re.findall(r"rate\((cilium_node_\w+)\{[^}]*\}\[5m\]\)", r["expr"]))
    assert [m for m, n in raw_5m.items() if n > 1] == []


def _runbook_sections() -> dict[str, str]:
    text = (REPO / "docs" / "runbooks.md").read_text()
    sections: dict[str, str] = {}
    for block in re.split(r"^## ", text, flags=re.M)[1:]:
        title, _, body = block.partition("\n")
        sections[title.strip().lower()] = body
    return sections


def test_every_alert_has_a_runbook_section() -> None:
    sections = _runbook_sections()
    for name in {r["alert"] for r in ALERTS}:
        body = sections.get(name.lower())
        assert body is not None, f"docs/runbooks.md has no '## {name}' (anchor #{name.lower()})"
        for heading in ("Meaning", "Impact", "Diagnosis", "Mitigation"):
            assert f"**{heading}**" in body, (name, heading)
    general = {"conventions", "fleet triage", "routing and inhibitions"}
    assert set(sections) <= {r["alert"].lower() for r in ALERTS} | general


def test_runbooks_point_to_the_tools_and_dashboards() -> None:
    text = (REPO / "docs" / "runbooks.md").read_text()
    for needle in ("hubble observe", "cilium-dbg status", "kubectl top", "Cilium / Node Fleet",
                   "Cilium / Node Detail", "Cilium / SLO Review", "cilium-dbg bpf metrics list",
                   "rollout history ds/cilium", "rollout undo ds/cilium"):
        assert needle in text
