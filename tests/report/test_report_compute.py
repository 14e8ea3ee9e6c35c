"""The report's counting rules on small hand-made hourly answers (no Prometheus): each test pins one rule a
plausible bug would break (issue 22's report mutants, issue 24's verdict and burndown scale).

Expected values are written out by hand from the inputs, never computed with the report's helpers.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import numpy as np
import pytest

from cilium_node_exporter.report import schema as report_schema
from cilium_node_exporter.report.collect import Data
from cilium_node_exporter.report.compute import Builder, Settings
from cilium_node_exporter.report.period import Period
from cilium_node_exporter.report.text import state, summary

START = 1_769_904_000  # 2026-02-01T00:00Z
H = 3600
NAN = float("nan")
N1, N2 = ("c", "n1"), ("c", "n2")


def settings(**kw: Any) -> Settings:
    base = {"drop_objective": 0.999, "memory_objective": 0.999, "min_traffic_rate": 1.0,
            "memory_near_limit_ratio": 0.9, "lost_events_ratio": 0.01, "min_node_hours": 2.0, "top": 10}
    return Settings(**{**base, **kw})


def build(hours: int, node: dict[str, dict[tuple[str, str], list[float]]],
          labelled: dict[str, dict[tuple[tuple[str, str], str], list[float]]] | None = None,
          oldest: float | None = None, **kw: Any) -> Any:
    period = Period(START, START + hours * H, "test")
    data = Data(period, np.array(period.hour_ends(), dtype=np.int64))
    data.node = {k: {n: np.array(v, dtype=float) for n, v in d.items()} for k, d in node.items()}
    data.labelled = {k: {n: np.array(v, dtype=float) for n, v in d.items()} for k, d in (labelled or {}).items()}
    data.oldest_sample = oldest
    return Builder(data, settings(**kw)).clusters()[0]


def slo(cluster: Any, key: str) -> Any:
    return next(s for s in cluster.slos if s.key == key)


def agent(cluster: Any) -> Any:
    return next(m for m in cluster.memory if m.component == "agent")


def test_a_restart_counter_that_resets_is_counted() -> None:
    """3 restarts, then a new pod that restarted once: 1 restart that hour, not 0 (and not a negative)."""
    c = build(4, {"ws_max": {N1: [1, 1, 1, 1]}, "present": {N1: [1, 1, 1, 1]},
                  "restarts": {N1: [3, 3, 1, 1]}, "restarts_min": {N1: [3, 3, 0, 1]}})
    assert agent(c).restarts == 1


def test_restarts_inside_the_first_hour_count() -> None:
    """A one-hour period (the demo's): the counter rose from 0 to 2 inside it."""
    c = build(1, {"ws_max": {N1: [1]}, "present": {N1: [1]}, "restarts": {N1: [2]}, "restarts_min": {N1: [0]}})
    assert agent(c).restarts == 2


def _drop_node(traffic: list[float], errors: list[float]) -> dict[str, list[float]]:
    return {"dp_traffic": traffic, "dp_errors": errors, "present": [1.0] * len(traffic)}


def test_hours_with_the_agent_source_down_are_not_packet_exact() -> None:
    node = {k: {N1: v} for k, v in _drop_node([36000.0] * 4, [0.0, 30.0, 0.0, 0.0]).items()}
    up = {"source_up": {(N1, "agent"): [1.0, 0.0, 1.0, 1.0]}}
    s = slo(build(4, node, up), "drop-ratio")
    assert s.measured_hours == 3 and s.bad == 0 and s.good == 3 * 36000
    assert s.not_measured_hours == 1


def test_the_traffic_floor_is_per_second() -> None:
    """dropSloMinTrafficRate is events per second: 1.5/s is ranked, 0.5/s (1,800 an hour) is not."""
    node = {"dp_traffic": {N1: [5400.0] * 4, N2: [1800.0] * 4}, "dp_errors": {N1: [1.0] * 4, N2: [9.0] * 4},
            "present": {N1: [1.0] * 4, N2: [1.0] * 4}}
    s = slo(build(4, node), "drop-ratio")
    assert {n.node: n.eligible for n in s.per_node} == {"n1": True, "n2": False}
    assert [w.node for w in s.worst] == ["n1"]


def test_the_worst_node_burndown_is_on_the_fleet_scale() -> None:
    """n1 spends its own budget 28 times over, 28 % of the fleet's: its curve is drawn in the fleet's budget."""
    hours = 48
    traffic = {N1: [1e5] * hours, N2: [99e5] * hours}
    errors = {N1: [0.0] * 24 + [134400.0] + [0.0] * 23, N2: [0.0] * hours}
    c = build(hours, {"dp_traffic": traffic, "dp_errors": errors,
                      "present": {N1: [1.0] * hours, N2: [1.0] * hours}}, min_node_hours=1)
    s = slo(c, "drop-ratio")
    # fleet budget 0.001 x 48 x 1e7 = 480,000 packets; n1's own 0.001 x 48 x 1e5 = 4,800
    assert s.budget_spent == pytest.approx(0.28)
    assert s.burndown == pytest.approx([1.0, 0.72])
    assert s.worst[0].node == "n1" and s.worst[0].budget_spent == pytest.approx(28.0)
    assert s.worst_burndown == pytest.approx([1.0, 0.72])


def test_partial_data_overrides_every_card() -> None:
    """Data for the last 5 of 10 hours (retention): partial, whatever the SLO figures say."""
    vals = [NAN] * 5 + [36000.0] * 5
    node = {"dp_traffic": {N1: vals}, "dp_errors": {N1: [NAN] * 5 + [0.0] * 5},
            "present": {N1: [NAN] * 5 + [1.0] * 5}}
    c = build(10, node, oldest=START + 5 * H - 600)
    assert c.verdict.status == "partial" and c.verdict.coverage == pytest.approx(0.5)
    assert any("aged out" in r and "2026-02-01 04:00 UTC" in r for r in c.verdict.reasons), c.verdict.reasons
    s = slo(c, "drop-ratio")
    assert s.achieved == 1.0  # the figures are what the data says ...
    as_dict = json.loads(json.dumps({"verdict": c.verdict.__dict__}))
    assert state({"achieved": 1.0, "objective": 0.999}, as_dict["verdict"]) == "partial"  # ... never "met"
    lines = summary({}, {"slos": [{"title": "drops", "achieved": 1.0, "objective": 0.999, "approximation": False,
                                   "budget_spent": 0.0, "worst": []}], "memory": [], "verdict": as_dict["verdict"],
                         "alerts": {"pages": 0, "tickets": 0}, "versions": {"upgrades": []},
                         "hubble": {"blind_nodes": []}})
    assert lines[0].startswith("PARTIAL DATA: only 50.0 %") and "partial data (no verdict)" in lines[1]
    assert ": met," not in " ".join(lines)


def test_full_data_is_complete() -> None:
    node = {k: {N1: v} for k, v in _drop_node([36000.0] * 10, [0.0] * 10).items()}
    assert build(10, node).verdict.status == "complete"
    gap = {**node, "present": {N1: [1.0] * 4 + [NAN] + [1.0] * 5}, "dp_traffic": {N1: [36000.0] * 4 + [NAN] +
                                                                                      [36000.0] * 5}}
    v = build(10, gap).verdict  # one node-hour in ten missing inside the lifetime
    assert v.status == "partial" and v.coverage == pytest.approx(0.9)
    assert build(10, gap, min_coverage=0.85).verdict.status == "complete"


def test_the_schema_enums_are_the_packs() -> None:
    """The drop classes of the schema are the mixin's (with 'expected'), and the file is up to date."""
    text = report_schema.SCHEMA_PATH.read_text()
    klass = json.loads(text)["$defs"]["Reason"]["properties"]["klass"]["enum"]
    assert set(klass) == {"policy", "expected", "handled", "configured", "transient", "unexpected"}
    assert report_schema.render(report_schema.build(json.loads(text))) == text, \
        "run python -m cilium_node_exporter.report.schema"
    jsonschema.Draft202012Validator.check_schema(json.loads(text))


def test_a_cluster_with_an_expected_drop_class_is_valid() -> None:
    """A month with a Cilium-expected drop reason (issue 24: the schema had no 'expected' class)."""
    node = {k: {N1: v} for k, v in _drop_node([36000.0] * 4, [0.0] * 4).items()}
    period = Period(START, START + 4 * H, "test")
    data = Data(period, np.array(period.hour_ends(), dtype=np.int64))
    data.node = {k: {n: np.array(v) for n, v in d.items()} for k, d in node.items()}
    data.cluster = {"dp_reasons": {("c", "UNSUPPORTED_L2_PROTOCOL"): np.array([5.0, 0, 0, 1])}}
    c = Builder(data, settings()).clusters()[0]
    assert c.drops.class_totals["datapath"] == {"expected": 6.0}
    schema = json.loads(report_schema.SCHEMA_PATH.read_text())
    cluster_schema = {**schema["$defs"]["Cluster"], "$defs": schema["$defs"]}
    from dataclasses import asdict

    from cilium_node_exporter.report.cli import clean

    jsonschema.Draft202012Validator(cluster_schema).validate(clean(asdict(c)))


def test_markdown_passes_no_raw_html_and_json_is_valid() -> None:
    """Node names and reasons come from Prometheus labels: a hostile one is text in the Markdown page."""
    from cilium_node_exporter.report import model
    from cilium_node_exporter.report.cli import render

    evil = ("c", "<script>alert(1)</script>")
    period = Period(START, START + 4 * H, "test")
    data = Data(period, np.array(period.hour_ends(), dtype=np.int64))
    data.node = {"dp_traffic": {evil: np.full(4, 36000.0)}, "dp_errors": {evil: np.full(4, 50.0)},
                 "present": {evil: np.ones(4)}}
    data.cluster = {"dp_reasons": {("c", "<img src=x onerror=alert(2)>"): np.ones(4)}}
    cluster = Builder(data, settings()).clusters()[0]
    rep = model.Report(model.SCHEMA, START, {"url": "http://p:9090/?a=<b>", "version": "", "retention": ""},
                       {"start": period.start, "end": period.end, "label": "test", "hours": 4,
                        "start_iso": period.iso("start"), "end_iso": period.iso("end")},
                       {"objectives_from": {"dropSloObjective": "defaults", "memorySloObjective": "defaults"},
                        "dropSloObjective": 0.999, "memorySloObjective": 0.999, "dropSloMinTrafficRate": 1.0,
                        "memoryNearLimitRatio": 0.9, "hubbleLostEventsRatio": 0.01, "sloPeriod": "28d",
                        "minNodeHours": 2.0, "selector": "", "clusterLabel": "cluster", "nodeLabel": "node",
                        "cluster": None, "groupBy": "zone"},
                       ["2026-02-01"], [cluster], [], [], {"queries": 0, "series": 0, "points": 0,
                                                          "seconds_waiting": 0.0}, cluster.verdict)
    md = render(rep, "markdown")
    assert "<script" not in md and "<img" not in md and "<b>" not in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md and "&lt;img src=x onerror=alert(2)&gt;" in md
    schema = json.loads(report_schema.SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator(schema).validate(json.loads(render(rep, "json")))
    html = render(rep, "html")
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # printed, nothing is collapsed: every <details> is open (a closed one prints as its summary line only)
    import re

    assert "<details" in html and re.findall(r"<details(?![^>]*\bopen\b)", html) == []


def test_the_incident_that_spent_the_budget() -> None:
    """n1 drops 1 % of its packets from 10:00 to 16:00 on day 2 (6 hours): one incident, its cost the share of
    the fleet's budget those drops spent, the alert that fired in it, a link at its time range."""
    from cilium_node_exporter.report.collect import Episode

    hours = 72
    burst = [0.0] * 34 + [1000.0] * 6 + [0.0] * 32  # the hours ending 11:00..16:00 of day 2
    noise = [5.0] * hours  # n2: a steady trickle, half the even-spend rate, never an incident
    period = Period(START, START + hours * H, "test")
    data = Data(period, np.array(period.hour_ends(), dtype=np.int64))
    data.node = {"dp_traffic": {N1: np.full(hours, 1e5), N2: np.full(hours, 1e5)},
                 "dp_errors": {N1: np.array(burst), N2: np.array(noise)},
                 "present": {N1: np.ones(hours), N2: np.ones(hours)}}
    data.cluster = {"dp_reasons": {("c", "CT_MAP_INSERTION_FAILED"): np.array(burst) + np.array(noise),
                                   ("c", "POLICY_DENIED"): np.full(hours, 1e4)}}
    labels = (("alertname", "CiliumNodeDropErrorBudgetBurn"), ("cluster", "c"), ("node", "n1"),
              ("severity", "critical"))
    data.episodes = [Episode(labels, START + 34 * H, first_firing=START + 34 * H + 600)]
    c = Builder(data, settings(grafana_url="https://grafana.example")).clusters()[0]
    assert len(c.incidents) == 1
    i = c.incidents[0]
    # budget: 0.001 x 2 nodes x 72 h x 1e5 = 14,400 packets; the incident's 6,000 drops, plus n2's 30
    assert (i.start, i.end) == (START + 34 * H, START + 40 * H)
    assert i.nodes == ["n1"] and i.errors == 6030.0 and i.budget_cost == pytest.approx(6030 / 14400)
    assert i.cause == "CT_MAP_INSERTION_FAILED (unexpected)"
    assert i.alerts == ["CiliumNodeDropErrorBudgetBurn (critical)"]
    assert i.link == ("https://grafana.example/d/cilium-node-slo?from=1770026400000&to=1770048000000"
                      "&var-cluster=c&var-node=n1")


def test_group_by_a_node_label() -> None:
    """Two zones: each SLO pooled over its own nodes; a node without the label is (none)."""
    n3 = ("c", "n3")
    node = {"dp_traffic": {N1: [1e5] * 4, N2: [1e5] * 4, n3: [2e5] * 4},
            "dp_errors": {N1: [100.0] * 4, N2: [0.0] * 4, n3: [20.0] * 4},
            "present": {N1: [1.0] * 4, N2: [1.0] * 4, n3: [1.0] * 4}}
    period = Period(START, START + 4 * H, "test")
    data = Data(period, np.array(period.hour_ends(), dtype=np.int64))
    data.node = {k: {n: np.array(v) for n, v in d.items()} for k, d in node.items()}
    data.instant = {"groups": [({"cluster": "c", "node": "n1", "zone": "a"}, 1.0),
                               ({"cluster": "c", "node": "n2", "zone": "a"}, 1.0)]}
    groups = Builder(data, settings(group_by="zone")).clusters()[0].groups
    assert [(g.value, g.nodes) for g in groups] == [("(none)", 1), ("a", 2)]
    assert groups[1].slos["drop-ratio"]["achieved"] == pytest.approx(1 - 400 / 8e5)
    assert groups[0].slos["drop-ratio"]["budget_spent"] == pytest.approx(80 / 8e5 / 0.001)


def test_previous_periods_hour_ranges_and_retention() -> None:
    from cilium_node_exporter.report import period as P
    from cilium_node_exporter.report.compute import retention_of
    from cilium_node_exporter.report.text import hour_span, span

    feb = P.month("2026-02")
    assert P.month("2026-02").previous() == P.month("2026-01")
    assert P.month("2026-01").previous() == P.month("2025-12")
    week = Period(START + 14 * 86400, START + 21 * 86400, "x")
    assert (week.previous().start, week.previous().end) == (START + 7 * 86400, START + 14 * 86400)
    assert feb.start == START
    assert hour_span(START + 20 * H) == "2026-02-01 20:00\u201321:00"
    assert hour_span(START + 23 * H) == "2026-02-01 23:00\u201324:00"
    assert span(START + 9 * H, START + 15 * H) == "2026-02-01 09:00\u201315:00"
    assert span(START + 9 * H, START + 24 * H) == "2026-02-01 09:00\u201324:00"
    assert span(START + 9 * H, START + 50 * H) == "2026-02-01 09:00\u20132026-02-03 02:00"
    assert retention_of({"storage.tsdb.retention.time": "0s"}) == "15d (the default)"
    assert retention_of({"storage.tsdb.retention.time": "0s", "storage.tsdb.retention.size": "50GB"}) == \
        "by size (50GB)"
    assert retention_of({"storage.tsdb.retention.time": "30d"}) == "30d"
    assert retention_of({}) == ""


def test_a_node_counting_drops_with_notifications_off_is_named() -> None:
    node = {k: {N1: v, N2: v} for k, v in _drop_node([36000.0] * 4, [0.0] * 4).items()}
    node["drop_events_on"] = {N1: [1.0] * 4, N2: [1.0, 0.0, 0.0, 1.0]}
    c = build(4, node)
    notes = [n for n in c.coverage.notes if "drop notifications off" in n]
    assert len(notes) == 1 and notes[0].startswith("1 node(s) count drops") and "(n2)" in notes[0], c.coverage.notes
    assert slo(c, "drop-ratio").measured_hours == 8  # still measured: the counters do not need notifications
