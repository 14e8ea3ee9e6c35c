"""Team conventions and required content of the three dashboards (committed JSON)."""

from __future__ import annotations

import re

import pytest
import yaml

from cilium_node_exporter import contract
from dashboards import promql
from dashboards.queries import (
    DURATION_ONLY,
    all_queries,
    iter_panels,
    load_dashboards,
    parse,
    selectors,
    substitute,
    walk,
)
from tests.support.paths import REPO

DOCS = load_dashboards()
UIDS = sorted(DOCS)
FLEET, DETAIL, SLO = DOCS["cilium-node-fleet"], DOCS["cilium-node-detail"], DOCS["cilium-node-slo"]
CONTRACT = {m.name: m for m in contract.ALL_METRICS}
RATE_INTERVAL = parse(f"x[{DURATION_ONLY['__rate_interval']}]").range
WINDOW = parse(f"x[{DURATION_ONLY['window']}]").range
QUERIES = all_queries(DURATION_ONLY)


def panels(doc: dict) -> list[dict]:
    return [p for p in iter_panels(doc) if p["type"] != "row"]


def by_title(doc: dict, fragment: str) -> dict:
    found = [p for p in panels(doc) if fragment in p["title"]]
    assert len(found) == 1, (fragment, [p["title"] for p in found])
    return found[0]


def variables(doc: dict) -> dict[str, dict]:
    return {v["name"]: v for v in doc["templating"]["list"]}


def matchers(selector) -> dict[str, tuple[str, str]]:
    return {m.name: (str(m.op), m.value) for m in selector.matchers.matchers}


# --- variables -------------------------------------------------------------------------------------
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
    assert re.fullmatch(cluster["allValue"], "")


@pytest.mark.parametrize("uid", UIDS)
def test_node_variable(uid: str) -> None:
    node = variables(DOCS[uid])["node"]
    assert node["type"] == "query" and node["query"].endswith(", node)") and 'cluster=~"$cluster"' in node["query"]
    assert node["refresh"] == 2
    if uid == "cilium-node-detail":
        assert not node.get("multi") and not node.get("includeAll")
    else:
        assert node["multi"] and node["includeAll"] and node["allValue"] == ".*"


def test_slo_window_variable_defaults_to_28d() -> None:
    window = variables(SLO)["window"]
    assert window["type"] == "custom" and window["current"]["value"] == "28d"
    assert "28d" in window["query"].split(",")
    assert all("window" not in variables(d) for d in (FLEET, DETAIL))


def test_every_selector_is_scoped_to_cluster_and_node() -> None:
    """Each series is filtered by the dashboard's cluster/node choice; the SLO objective is global."""
    for q in QUERIES:
        if q.kind == "variable":
            continue
        for s in selectors(parse(q.expr)):
            if s.name == promql.SLO_OBJECTIVE:
                assert set(matchers(s)) == {"slo"}, q
                continue
            m = matchers(s)
            assert m.get("cluster") == ("MatchOp.Re", "$cluster"), (q.panel, q.template)
            assert m.get("node") == ("MatchOp.Re", "$node"), (q.panel, q.template)


# --- PromQL conventions ----------------------------------------------------------------------------
def test_metric_names_exist_in_the_contract_or_the_alert_packs_rules() -> None:
    used = set()
    for q in QUERIES:
        for s in selectors(parse(q.expr)):
            assert s.name, q
            used.add(s.name)
            assert (s.name in CONTRACT or s.name in promql.RECORDING_RULES or s.name == "up"
                    or s.name.startswith("process_")), (s.name, q.dashboard, q.panel)
    # The dashboards show most of the contract; what they leave out is on purpose.
    unused = set(CONTRACT) - used
    on_purpose = {"cilium_node_hubble_info", "cilium_node_agent_memory_usage_bytes", "cilium_node_agent_info"}
    assert unused <= on_purpose, unused


def test_rate_interval_in_every_rate_of_a_raw_counter() -> None:
    """rate/irate/increase over raw series use `$__rate_interval`; `[$window]` only over recording rules."""
    for q in QUERIES:
        for node, parents in walk(parse(q.expr)):
            if type(node).__name__ != "MatrixSelector":
                continue
            name = node.vector_selector.name
            func = parents[-1].func.name
            if func in ("rate", "irate", "increase"):
                assert name in CONTRACT and node.range == RATE_INTERVAL, (q.panel, q.template)
            if node.range == WINDOW:
                assert name in promql.RECORDING_RULES, (q.panel, q.template)
                assert func in ("avg_over_time", "sum_over_time"), (q.panel, q.template)


def test_counters_only_under_rate_or_increase() -> None:
    """Panels and variables: rate/irate/increase only; annotations may also count changes()."""
    for q in QUERIES:
        allowed = {"rate", "irate", "increase"} | ({"changes"} if q.kind == "annotation" else set())
        for node, parents in walk(parse(q.expr)):
            if type(node).__name__ == "VectorSelector" and CONTRACT.get(node.name) is not None \
                    and CONTRACT[node.name].type == "counter":
                assert type(parents[-1]).__name__ == "MatrixSelector", (q.panel, q.template)
                assert parents[-2].func.name in allowed, (q.panel, q.template)


def test_recording_rules_are_used_on_fleet_and_slo_and_raw_metrics_on_node_detail() -> None:
    def names(uid: str, kind: str = "panel") -> set[str]:
        return {s.name for q in QUERIES if q.dashboard == uid and q.kind == kind for s in selectors(parse(q.expr))}

    assert not names("cilium-node-detail") & promql.RECORDING_RULES
    assert names("cilium-node-fleet") & promql.RECORDING_RULES >= {
        promql.DROPS_UNEXPECTED, promql.POLICY_DENIED, promql.L7_DENIED, promql.LOST_EVENTS_BY_SOURCE,
        promql.DROPS_BY_REASON, promql.FLOWS_SEEN, promql.MEMORY_ENVELOPE_ERROR, promql.drop_slo_errors("5m")}
    slo = names("cilium-node-slo")
    assert {promql.drop_slo_errors(w) for w in promql.SLO_WINDOWS} <= slo
    assert {promql.memory_slo_errors(w) for w in promql.SLO_WINDOWS} <= slo
    assert {promql.SLO_OBJECTIVE, promql.MEMORY_ENVELOPE_ERROR} <= slo


# --- fleet -----------------------------------------------------------------------------------------
def test_fleet_worst_nodes_table_sorted_and_linked_to_node_detail() -> None:
    table = by_title(FLEET, "worst first")
    assert table["type"] == "table"
    organize = next(t for t in table["transformations"] if t["id"] == "organize")
    columns = set(organize["options"]["renameByName"].values())
    assert {"unexpected drop ratio", "policy denials/s", "working set / envelope", "lost events/s",
            "sources up"} <= columns
    assert table["options"]["sortBy"] == [{"displayName": "unexpected drop ratio", "desc": True}]
    for t in table["targets"]:
        assert t["instant"] and t["format"] == "table"
        assert re.match(r"^(sum|max|avg) by \(cluster, node\)", t["expr"]), t["expr"]  # rows merge on these
    (link,) = table["fieldConfig"]["defaults"]["links"]
    assert link["url"].startswith("/d/cilium-node-detail/")
    assert "var-node=${__data.fields.node}" in link["url"] and "${__url_time_range}" in link["url"]


def test_fleet_working_set_coloured_against_its_own_envelope() -> None:
    table = by_title(FLEET, "worst first")
    override = next(o for o in table["fieldConfig"]["overrides"] if o["matcher"]["options"] == "working set / envelope")
    props = {p["id"]: p["value"] for p in override["properties"]}
    assert props["unit"] == "percentunit" and props["custom.cellOptions"]["type"] == "color-background"
    assert [s["value"] for s in props["thresholds"]["steps"]][-1] == 1  # red at the envelope's upper bound
    trend = by_title(FLEET, "Agent working set / envelope upper bound")
    (t,) = trend["targets"]
    assert "cilium_node_agent_memory_working_set_bytes" in t["expr"]
    assert "/ max by (cluster, node) (cilium_node_agent_memory_envelope_upper_bytes" in t["expr"]


def test_fleet_worst_nodes_first_in_trends() -> None:
    for fragment in ("Unexpected drop ratio", "Policy denials, worst", "Agent working set / envelope"):
        panel = by_title(FLEET, fragment)
        assert all(t["expr"].startswith("topk(10, ") for t in panel["targets"]), fragment
        assert "var-node=${__field.labels.node}" in panel["fieldConfig"]["defaults"]["links"][0]["url"]


# --- node detail -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("fragment", "by"), [
    ("Drops by reason", "sum by (reason)"), ("Drops by direction", "sum by (direction)"),
    ("Policy verdicts by action", "sum by (action)"), ("Policy verdicts by match", "sum by (match, action)"),
    ("L7 requests by method and action", "sum by (method, action)"),
    ("Hubble lost events by source", "sum by (source)"),
])
def test_node_detail_breakdowns(fragment: str, by: str) -> None:
    panel = by_title(DETAIL, fragment)
    assert panel["targets"][0]["expr"].startswith(by), panel["targets"][0]["expr"]


def test_node_detail_memory_envelope_band_limit_and_forecast() -> None:
    panel = by_title(DETAIL, "Agent memory against its envelope")
    exprs = {t["legendFormat"]: t["expr"] for t in panel["targets"]}
    assert set(exprs) == {"working set", "RSS", "envelope lower", "envelope upper", "limit", "forecast +24h"}
    forecast = parse(substitute(exprs["forecast +24h"], DURATION_ONLY))
    call = next(n for n, _ in walk(forecast) if type(n).__name__ == "Call" and n.func.name == "predict_linear")
    assert call.args[0].range.total_seconds() == 6 * 3600 and call.args[1].val == 86400
    overrides = {o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
                 for o in panel["fieldConfig"]["overrides"]}
    assert overrides["envelope upper"]["custom.fillBelowTo"] == "envelope lower"  # the band
    assert overrides["envelope upper"]["custom.fillOpacity"] > 0
    assert overrides["limit"]["custom.fillOpacity"] == 0  # a line
    assert overrides["forecast +24h"]["custom.lineStyle"]["fill"] == "dash"


def test_node_detail_restart_and_oom_annotations() -> None:
    anns = {a["name"]: a for a in DETAIL["annotations"]["list"]}
    restarts, ooms = anns["Agent restarts"], anns["Agent OOM kills"]
    assert restarts["expr"].startswith("changes(cilium_node_agent_restarts_total{")
    assert 'cilium_node_agent_last_terminated_reason{' in ooms["expr"] and 'reason="OOMKilled"' in ooms["expr"]
    for a in (restarts, ooms):
        assert a["enable"] and a["datasource"]["uid"] == "${datasource}" and a["step"]
        assert 'node=~"$node"' in a["expr"]


def test_node_detail_hubble_and_exporter_health() -> None:
    fill = by_title(DETAIL, "Hubble buffer fill")
    assert "cilium_node_hubble_buffer_flows" in fill["targets"][0]["expr"]
    assert "cilium_node_hubble_buffer_capacity_flows" in fill["targets"][0]["expr"]
    assert fill["fieldConfig"]["defaults"]["unit"] == "percentunit"
    up = by_title(DETAIL, "Exporter sources up")
    assert up["targets"][0]["expr"].startswith("max by (source) (cilium_node_exporter_source_up{")


def test_l7_panel_shows_denied_posts() -> None:
    panel = by_title(DETAIL, "L7 requests by method and action")
    assert panel["targets"][0]["legendFormat"] == "{{method}} {{action}}"
    assert panel["fieldConfig"]["defaults"]["unit"] == "reqps"


# --- SLO review ------------------------------------------------------------------------------------
DROP_WINDOWED = (f"sum_over_time({promql.DROP_SLO_ERRORS_RATE}{{", f"sum_over_time({promql.DROP_SLO_TRAFFIC_RATE}{{")
MEMORY_WINDOWED = (f"avg_over_time({promql.MEMORY_ENVELOPE_ERROR}{{",)


@pytest.mark.parametrize(("title", "slo", "rule", "windowed"), [
    ("Drop ratio", "drop-ratio", promql.drop_slo_errors, DROP_WINDOWED),
    ("Memory envelope", "memory-envelope", promql.memory_slo_errors, MEMORY_WINDOWED),
])
def test_slo_review_panels(title: str, slo: str, rule, windowed: tuple[str, ...]) -> None:
    objective = by_title(SLO, f"{title}: objective")
    assert objective["targets"][0]["expr"] == f'max({promql.SLO_OBJECTIVE}{{slo="{slo}"}})'
    sli = by_title(SLO, f"{title}: SLI over $window")
    budget = by_title(SLO, f"{title}: error budget remaining")
    burn = by_title(SLO, f"{title}: burn rate")
    spent = by_title(SLO, f"{title}: nodes that spent the most budget")
    for panel in (sli, budget, spent):
        assert windowed[0].split("(")[0] in panel["description"] and "$window" in panel["description"]
        for t in panel["targets"][:2]:  # SLI/budget: worst node and pooled; table: budget spent and SLI
            assert all(w in t["expr"] for w in windowed) and "[$window])" in t["expr"], t["expr"]
    # The budget comes from the objective series, never from a hard-coded number.
    spent_and_burn_columns = [t for t in spent["targets"] if t["refId"] in ("A", "C")]
    for t in budget["targets"] + burn["targets"] + spent_and_burn_columns:
        assert f'{promql.SLO_OBJECTIVE}{{slo="{slo}"}}' in t["expr"], t["expr"]
    assert [t["expr"].split("{")[0] for t in burn["targets"]] == [f"max({rule(w)}" for w in promql.SLO_WINDOWS]
    assert [t["legendFormat"] for t in burn["targets"]] == list(promql.SLO_WINDOWS)
    assert spent["options"]["sortBy"] == [{"displayName": "budget spent", "desc": True}]
    assert spent["fieldConfig"]["defaults"]["links"][0]["url"].startswith("/d/cilium-node-detail/")
    for panel in (objective, sli, budget):
        assert all(t["instant"] for t in panel["targets"])  # a [$window] range per step would be costly


def test_slo_objectives_are_not_hard_coded() -> None:
    for q in QUERIES:
        if q.dashboard == "cilium-node-slo":
            assert not re.search(r"0\.99", q.template), q.template


def test_memory_time_in_envelope_per_node() -> None:
    table = by_title(SLO, "time in envelope per node")
    assert table["targets"][0]["expr"] == (
        f'1 - max by (cluster, node) (avg_over_time({promql.MEMORY_ENVELOPE_ERROR}'
        '{cluster=~"$cluster", node=~"$node"}[$window]))')
    assert table["options"]["sortBy"] == [{"displayName": "time in envelope", "desc": False}]  # worst first


# --- the alert pack's recording rules (alerts/rules/cilium-node-exporter.rules.yaml) ------------------
RULES_FILE = REPO / "alerts" / "rules" / "cilium-node-exporter.rules.yaml"


def _recorded() -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for group in yaml.safe_load(RULES_FILE.read_text())["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                out.setdefault(rule["record"], []).append(rule)
    return out


def test_recording_rules_used_exist_in_the_alert_pack() -> None:
    recorded = _recorded()
    assert promql.RECORDING_RULES - set(recorded) == set()
    objectives = {r["labels"]["slo"] for r in recorded[promql.SLO_OBJECTIVE]}
    assert objectives == {promql.SLO_DROP, promql.SLO_MEMORY}


def test_windowed_sli_uses_the_alert_packs_28d_formula() -> None:
    """At $window=28d the review shows what the pack's 28d rules record."""
    recorded = _recorded()
    drop28 = " ".join(recorded[promql.drop_slo_errors("28d")][0]["expr"].split())
    assert f"sum_over_time({promql.DROP_SLO_ERRORS_RATE}[28d])" in drop28
    assert f"sum_over_time({promql.DROP_SLO_TRAFFIC_RATE}[28d])" in drop28
    mem28 = " ".join(recorded[promql.memory_slo_errors("28d")][0]["expr"].split())
    assert mem28 == f"avg_over_time({promql.MEMORY_ENVELOPE_ERROR}[28d])"


def test_burn_rate_thresholds_are_the_alert_packs_factors() -> None:
    from dashboards.slo_review import BURN_FACTORS

    text = RULES_FILE.read_text()
    for factor in BURN_FACTORS:
        assert f"> ({factor} * (1 - " in text, factor
