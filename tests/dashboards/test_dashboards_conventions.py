"""Conventions and content of the three dashboards, and their single source of truth (the mixin configuration):
for the default and for a custom configuration, every series a dashboard reads is one the rule pack records for
that configuration, with the configured label names, windows and factors."""

from __future__ import annotations

import json
import re

import pytest

from alerts import generate as rules
from cilium_node_exporter import contract
from cilium_node_exporter.mixin import names, slo
from cilium_node_exporter.mixin.config import merge
from dashboards import generate
from dashboards.queries import DURATION_ONLY, all_queries, iter_panels, load_dashboards, parse, selectors, walk

DOCS = load_dashboards()
UIDS = sorted(DOCS)
FLEET, DETAIL, SLO = DOCS["cilium-node-fleet"], DOCS["cilium-node-detail"], DOCS["cilium-node-slo"]
CONTRACT = {m.name: m for m in contract.ALL_METRICS}
RATE_INTERVAL = parse(f"x[{DURATION_ONLY['__rate_interval']}]").range
RANGE = parse(f"x[{DURATION_ONLY['__range']}]").range
QUERIES = all_queries(DURATION_ONLY)
GLOBAL = {names.SLO_OBJECTIVE, "prometheus_tsdb_lowest_timestamp_seconds"}
CUSTOM = {
    "clusterLabel": "k8s_cluster", "nodeLabel": "kubernetes_node", "sloPeriod": "30d", "sloReviewStep": "30m",
    "sloBurnWindows": [
        {"severity": "critical", "long": "2h", "short": "10m", "budgetShare": 0.02, "for": "2m"},
        {"severity": "warning", "long": "4d", "short": "12h", "budgetShare": 0.1, "for": "3h"},
    ],
}


def panels(doc: dict) -> list[dict]:
    return [p for p in iter_panels(doc) if p["type"] != "row"]


def by_title(doc: dict, fragment: str) -> dict:
    exact = [p for p in panels(doc) if p["title"] == fragment]
    found = exact or [p for p in panels(doc) if fragment in p["title"]]
    assert len(found) == 1, (fragment, [p["title"] for p in found])
    return found[0]


def variables(doc: dict) -> dict[str, dict]:
    return {v["name"]: v for v in doc["templating"]["list"]}


def matchers(selector) -> dict[str, tuple[str, str]]:
    return {m.name: (str(m.op), m.value) for m in selector.matchers.matchers}


def recorded(config: dict | None) -> set[str]:
    return {r["record"] for g in rules.build_groups(config) for r in g["rules"] if "record" in r}


# --- one source of truth -----------------------------------------------------------------------------
@pytest.mark.parametrize("config", [None, CUSTOM], ids=["default", "custom"])
def test_every_series_read_is_recorded_by_the_pack_for_the_same_configuration(config: dict | None) -> None:
    docs = generate.build_all(config)
    have = recorded(config)
    cluster, node = merge(config)["clusterLabel"], merge(config)["nodeLabel"]
    used = set()
    for q in all_queries(DURATION_ONLY, dashboards=docs):
        for s in selectors(parse(q.expr)):
            used.add(s.name)
            assert s.name in have or s.name in CONTRACT or s.name in GLOBAL or s.name == "up", (q.panel, s.name)
            if q.kind != "variable" and s.name not in GLOBAL:
                m = matchers(s)
                assert m.get(cluster) == ("MatchOp.Re", "$cluster"), (q.panel, q.template)
                if not s.name.startswith(("cluster:", "cohort:")):  # cohort: cluster and Cilium version
                    assert m.get(node) == ("MatchOp.Re", "$node"), (q.panel, q.template)
        for by in re.findall(r"by \(([^)]*)\)", q.template):
            labels = {x.strip() for x in by.split(",")}
            assert not labels & ({"cluster", "node"} - {cluster, node}), (q.panel, q.template)
    period = merge(config)["sloPeriod"]
    assert names.cluster(names.drop_ratio(period)) in used and names.cluster(names.memory_ratio(period)) in used
    for s in slo.SLOS:
        for pair in slo.burn_windows(merge(config), s):
            for window in (pair.long, pair.short):
                assert s.ratio(window) in used or names.drop_errors(window) in used, window


def test_a_custom_configuration_reaches_the_slo_review() -> None:
    custom = generate.build_all(CUSTOM)["cilium-node-slo"]
    assert custom["time"] == {"from": "now-30d", "to": "now"} and SLO["time"] == {"from": "now-28d", "to": "now"}
    burn = by_title(custom, "Drop ratio: burn rate now")
    assert [t["legendFormat"] for t in burn["targets"]] == ["5m", "10m", "2h", "12h", "4d"]
    steps = [s["value"] for s in burn["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert steps == [None, 0.75, 1, 7.2]  # 0.1 x 30d / 4d and 0.02 x 30d / 2h
    assert "30m_every30m" in json.dumps(custom) and "1h_every1h" not in json.dumps(custom)
    table = by_title(custom, "Drop ratio: nodes that spent the most budget")
    assert "var-cluster=${__data.fields.k8s_cluster}" in table["fieldConfig"]["defaults"]["links"][0]["url"]


# --- variables ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("uid", UIDS)
def test_datasource_variable_used_by_every_panel_and_variable(uid: str) -> None:
    doc = DOCS[uid]
    vs = variables(doc)
    assert vs["datasource"]["type"] == "datasource" and vs["datasource"]["query"] == "prometheus"
    for v in vs.values():
        if v["type"] == "query":
            assert v["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, v["name"]
    for p in panels(doc):
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
    for ann in doc.get("annotations", {}).get("list", []):
        assert ann["datasource"]["uid"] == "${datasource}", ann["name"]


@pytest.mark.parametrize("uid", UIDS)
def test_cluster_variable_allows_a_missing_cluster_label(uid: str) -> None:
    cluster = variables(DOCS[uid])["cluster"]
    assert cluster["type"] == "query" and "label_values(cilium_node_exporter_build_info" in cluster["query"]
    assert cluster["query"].endswith(", cluster)")
    assert cluster["includeAll"] is True and cluster["allValue"] == ".*"  # ".*" also matches "" (no label)
    assert cluster["current"]["value"] == "$__all"


@pytest.mark.parametrize("uid", UIDS)
def test_node_variable(uid: str) -> None:
    node = variables(DOCS[uid])["node"]
    assert node["type"] == "query" and node["query"].endswith(", node)") and 'cluster=~"$cluster"' in node["query"]
    assert node["refresh"] == 2
    if uid == "cilium-node-detail":
        assert not node.get("multi") and not node.get("includeAll")
    else:
        assert node["multi"] and node["includeAll"] and node["allValue"] == ".*"


def test_the_review_period_is_the_time_range() -> None:
    assert all("window" not in variables(d) for d in DOCS.values())


# --- PromQL conventions --------------------------------------------------------------------------------
def test_the_dashboards_show_the_contract() -> None:
    used = {s.name for q in QUERIES for s in selectors(parse(q.expr))}
    on_purpose = {"cilium_node_hubble_info", "cilium_node_agent_memory_usage_bytes", "cilium_node_agent_info",
                  "cilium_node_envoy_memory_usage_bytes", "cilium_node_envoy_info",
                  # the endpoint's own defences (issue 23): no panel yet, the dashboards' owner decides
                  "cilium_node_exporter_web_auth_failures_total", "cilium_node_exporter_samples_dropped_total"}
    assert set(CONTRACT) - used <= on_purpose, set(CONTRACT) - used - on_purpose


def test_ranges_of_raw_counters_and_recorded_series() -> None:
    """rate/irate/increase over raw series use `$__rate_interval` (increase: or `$__range` in an instant query);
    `[$__range]` otherwise only sums/averages/counts recorded tiles, never a raw series."""
    instant = {(q.dashboard, q.panel, q.ref_id): q for q in QUERIES}
    for q in QUERIES:
        for node, parents in walk(parse(q.expr)):
            if type(node).__name__ != "MatrixSelector":
                continue
            name, func = node.vector_selector.name, parents[-1].func.name
            if func in ("rate", "irate", "increase"):
                assert name in CONTRACT, (q.panel, q.template)
                assert node.range == RATE_INTERVAL or (func == "increase" and node.range == RANGE), q.template
            elif node.range == RANGE:
                assert "_every" in name and func in ("sum_over_time", "avg_over_time", "count_over_time"), q.template
    assert instant


def test_counters_only_under_rate_or_increase() -> None:
    for q in QUERIES:
        allowed = {"rate", "irate", "increase"} | ({"changes"} if q.kind == "annotation" else set())
        for node, parents in walk(parse(q.expr)):
            if type(node).__name__ == "VectorSelector" and CONTRACT.get(node.name) is not None \
                    and CONTRACT[node.name].type == "counter":
                assert type(parents[-1]).__name__ == "MatrixSelector", (q.panel, q.template)
                assert parents[-2].func.name in allowed, (q.panel, q.template)


def test_no_topk_and_recorded_rates_at_their_own_step() -> None:
    """Range panels at 200 nodes: no topk/bottomk (members change between steps); a panel that reads the
    pack's 5m rates asks for a step of at least 5m."""
    for doc in DOCS.values():
        for p in panels(doc):
            for t in p.get("targets", []):
                assert not re.search(r"\b(topk|bottomk)\b", t["expr"]), (p["title"], t["expr"])
                if doc is not DETAIL and not t.get("instant") and re.search(r":rate5m\b", t["expr"]):
                    assert t.get("interval") == "5m", (p["title"], t["expr"])


# --- fleet -----------------------------------------------------------------------------------------
def test_fleet_distribution_bands_and_node_states() -> None:
    for title in ("Agent working set / envelope upper bound, across nodes",
                  "Unexpected drop ratio (agent counters), across nodes"):
        panel = by_title(FLEET, title)
        assert [t["legendFormat"] for t in panel["targets"]] == ["min", "median", "p90", "max"]
        assert [t["expr"].split("(")[0] for t in panel["targets"]] == ["min", "quantile", "quantile", "max"]
        assert 'quantile(0.9, ' in panel["targets"][2]["expr"]
    states = by_title(FLEET, "Nodes per state")
    legends = [t["legendFormat"] for t in states["targets"]]
    assert {"packet-exact drop SLI", "Hubble approximation only", "Hubble blind", "exporter down"} <= set(legends)
    assert all(t["instant"] and t["expr"].startswith("count(") for t in states["targets"])
    assert [t["legendFormat"] for t in by_title(FLEET, "Nodes per state over time")["targets"]] == legends


def test_fleet_canary_view_compares_cilium_versions() -> None:
    table = by_title(FLEET, "Nodes by Cilium version")
    assert table["type"] == "table"
    for t in table["targets"]:
        assert t["instant"] and re.search(r"\bby \(version\)", t["expr"]), t["expr"]
        assert "cilium_node_cilium_info" in t["expr"]
    organize = next(x for x in table["transformations"] if x["id"] == "organize")
    assert organize["options"]["indexByName"] == {"version": 0}
    trend = by_title(FLEET, "by Cilium version, p90")
    assert trend["targets"][0]["legendFormat"] == "{{version}}"


def test_fleet_worst_nodes_table_shows_not_measured_and_links_keep_the_cluster() -> None:
    table = by_title(FLEET, "worst first")
    organize = next(t for t in table["transformations"] if t["id"] == "organize")
    assert table["options"]["sortBy"] == [{"displayName": "unexpected drop ratio", "desc": True}]
    for t in table["targets"]:
        assert t["instant"] and t["format"] == "table"
        assert re.match(r"^(sum|max|avg|count) by \(cluster, node\)", t["expr"]), t["expr"]
    (link,) = table["fieldConfig"]["defaults"]["links"]
    assert link["url"].startswith("/d/cilium-node-detail/")
    assert "var-node=${__data.fields.node}" in link["url"] and "var-cluster=${__data.fields.cluster}" in link["url"]
    assert "${cluster:queryparam}" not in link["url"] and "${__url_time_range}" in link["url"]
    columns = set(organize["options"]["renameByName"].values())
    mapped = {}
    for override in table["fieldConfig"]["overrides"]:
        for prop in override["properties"]:
            if prop["id"] == "mappings":
                mapped[override["matcher"]["options"]] = prop["value"][0]
    assert {"unexpected drop ratio", "Hubble: unexpected drops/s", "policy denials/s"} <= set(mapped) <= columns
    assert mapped["unexpected drop ratio"] == {"type": "special", "options": {
        "match": "null+nan", "result": {"text": "not measured", "color": "text", "index": 0}}}
    hubble = next(t for t in table["targets"]
                  if "cilium_node_drops_unexpected" in t["expr"])
    assert f"unless on (cluster, node) group by (cluster, node) ({names.BLIND}" in hubble["expr"]


# --- node detail -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("fragment", "by"), [
    ("Drops by reason (Hubble)", "sum by (reason)"), ("Drops by direction", "sum by (direction)"),
    ("Policy verdicts by action", "sum by (action)"), ("Policy verdicts by match", "sum by (match, action)"),
    ("L7 requests by method and action", "sum by (method, action)"),
    ("Hubble lost events by source", "sum by (source)"),
])
def test_node_detail_breakdowns(fragment: str, by: str) -> None:
    panel = by_title(DETAIL, fragment)
    assert panel["targets"][0]["expr"].startswith(by), panel["targets"][0]["expr"]


def test_node_detail_hubble_panels_say_not_measured_on_a_blind_node() -> None:
    for fragment in ("Drops by reason (Hubble)", "Drops by direction", "Policy verdicts by action",
                     "Policy verdicts by match"):
        panel = by_title(DETAIL, fragment)
        assert panel["targets"][0]["expr"].endswith(
            f'unless on () {names.BLIND}{{cluster=~"$cluster", node=~"$node"}}'), fragment
        assert panel["fieldConfig"]["defaults"]["noValue"].startswith("not measured"), fragment
    measurement = by_title(DETAIL, "Drop measurement")
    texts = {m.get("options", {}).get("1", {}).get("text") for m in measurement["fieldConfig"]["defaults"]["mappings"]}
    assert "packet-exact (agent counters)" in texts
    blind = by_title(DETAIL, "Hubble blind")
    assert blind["targets"][0]["legendFormat"] == "{{cause}}"


def test_node_detail_agent_and_envoy_memory_against_the_envelope() -> None:
    panel = by_title(DETAIL, "Agent and Envoy memory against the envelope")
    exprs = {t["legendFormat"]: t["expr"] for t in panel["targets"]}
    assert {"agent working set", "Envoy working set", "agent + Envoy", "envelope lower", "envelope upper",
            "agent limit", "Envoy limit", "forecast +24h"} <= set(exprs)
    assert "cilium_node_envoy_memory_working_set_bytes" in exprs["Envoy working set"]
    assert exprs["agent + Envoy"] == f'{exprs["agent working set"]} + {exprs["Envoy working set"]}'
    overrides = {o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
                 for o in panel["fieldConfig"]["overrides"]}
    assert overrides["envelope upper"]["custom.fillBelowTo"] == "envelope lower"  # the band
    assert overrides["forecast +24h"]["custom.lineStyle"]["fill"] == "dash"
    forecast = parse(exprs["forecast +24h"].replace("$job", "j").replace("$cluster", "c").replace("$node", "n"))
    call = next(n for n, _ in walk(forecast) if type(n).__name__ == "Call" and n.func.name == "predict_linear")
    assert call.args[0].range.total_seconds() == 6 * 3600 and call.args[1].val == 86400


def test_node_detail_restart_and_oom_annotations_for_agent_and_envoy() -> None:
    anns = {a["name"]: a for a in DETAIL["annotations"]["list"]}
    assert set(anns) == {"Agent restarts", "Agent OOM kills", "Envoy restarts", "Envoy OOM kills"}
    assert anns["Envoy restarts"]["expr"].startswith("changes(cilium_node_envoy_restarts_total{")
    assert 'cilium_node_envoy_last_terminated_reason{' in anns["Envoy OOM kills"]["expr"]
    for a in anns.values():
        assert a["enable"] and a["step"] and 'node=~"$node"' in a["expr"]


# --- SLO review ------------------------------------------------------------------------------------
def test_slo_review_reads_the_hourly_tiles_over_the_time_range() -> None:
    for q in QUERIES:
        if q.dashboard != "cilium-node-slo":
            continue
        assert "$window" not in q.template
        for name in re.findall(r"(node:[a-z_]+:[a-z0-9_]+)\[\$__range\]", q.template):
            assert name.endswith("_every1h"), (q.panel, q.template)
        assert not re.search(r"0\.99|13\.44|5\.6\b", q.template), q.template  # objectives and factors not typed


@pytest.mark.parametrize(("title", "s"), [("Drop ratio", slo.DROP), ("Memory envelope", slo.MEMORY)])
def test_slo_review_panels(title: str, s: slo.Slo) -> None:
    objective = f'{names.SLO_OBJECTIVE}{{slo="{s.name}"}}'
    assert by_title(SLO, f"{title}: objective")["targets"][0]["expr"] == f"max({objective})"
    pooled = by_title(SLO, f"{title}: error budget remaining, all selected nodes")
    worst = by_title(SLO, f"{title}: worst node's budget remaining")
    meeting = by_title(SLO, f"{title}: nodes meeting the SLO")
    for panel in (pooled, worst, meeting):
        assert all(t["instant"] for t in panel["targets"]) and objective in panel["targets"][0]["expr"]
    floor = "$__range_s >= " if s is slo.DROP else "$__range_s >= 0.25"
    assert floor in worst["targets"][0]["expr"] and floor in meeting["targets"][0]["expr"]
    burn = by_title(SLO, f"{title}: burn rate now")
    factors = sorted({1, *(w.factor for w in slo.burn_windows(merge(), s))})
    assert [x["value"] for x in burn["fieldConfig"]["defaults"]["thresholds"]["steps"]] == [None, *factors]
    burndown = by_title(SLO, f"{title}: error budget remaining over the trailing 28d")
    assert names.cluster(s.ratio("28d")) in burndown["targets"][0]["expr"]
    table = by_title(SLO, f"{title}: nodes that spent the most budget")
    assert table["options"]["sortBy"] == [{"displayName": "budget spent", "desc": True}]
    assert floor in table["targets"][0]["expr"]


def test_slo_review_coverage_and_retention_note() -> None:
    retained = by_title(SLO, "Data retained for the period")
    assert "prometheus_tsdb_lowest_timestamp_seconds" in retained["targets"][0]["expr"]
    assert "$__to / 1000" in retained["targets"][0]["expr"] and "$__range_s" in retained["targets"][0]["expr"]
    assert "29 days" in retained["description"]
    coverage = by_title(SLO, "Nodes with a drop SLI")
    assert [t["legendFormat"] for t in coverage["targets"]] == ["measured", "above the traffic floor",
                                                                 "Hubble approximation only"]
