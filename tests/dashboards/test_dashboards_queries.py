"""`dashboards.queries.all_queries`: every expression, variables substituted, valid for promtool."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from dashboards import generate
from dashboards.queries import DEFAULT_SUBSTITUTIONS, all_queries, substitute, variable_promql


def promtool_check(exprs: list[str], tmp: Path) -> str:
    """promtool's output for the expressions written as recording rules; '' when all are valid."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (apt-get install prometheus)"
    rules = [{"record": f"dashboard:query_{i}:check", "expr": e} for i, e in enumerate(exprs)]
    path = tmp / "queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    return "" if proc.returncode == 0 else proc.stdout + proc.stderr


def test_every_expression_is_valid_promql(tmp_path: Path) -> None:
    queries = all_queries()
    assert promtool_check([q.expr for q in queries], tmp_path) == ""


def test_every_expression_is_valid_with_other_substitutions(tmp_path: Path) -> None:
    subs = {"$__range": "7d", "__range_s": "604800", "node": "(sim-1|sim-2)", "cluster": ".*", "job": ".+",
            "__rate_interval": "1m"}
    assert promtool_check([q.expr for q in all_queries(subs)], tmp_path) == ""


def test_promtool_check_fails_on_an_invalid_expression(tmp_path: Path) -> None:
    out = promtool_check(["sum(rate(up[5m]))", "sum(rate(up[5m])"], tmp_path)
    assert "dashboard:query_1:check" in out and "dashboard:query_0:check" not in out


def test_all_queries_covers_panels_variables_and_annotations() -> None:
    queries = all_queries()
    kinds = {(q.dashboard, q.kind) for q in queries}
    for uid in ("cilium-node-fleet", "cilium-node-detail", "cilium-node-slo"):
        assert (uid, "panel") in kinds and (uid, "variable") in kinds
    assert ("cilium-node-detail", "annotation") in kinds
    panel_targets = sum(len(p.get("targets", [])) for d in generate.build_all().values() for p in d["panels"])
    assert sum(q.kind == "panel" for q in queries) == panel_targets
    for q in queries:
        assert "$" not in q.expr and "[[" not in q.expr, q
        assert q.kind != "panel" or q.ref_id, q


def test_all_queries_of_committed_json_equal_the_generated_ones() -> None:
    assert all_queries() == all_queries(dashboards=generate.build_all())


def test_default_substitutions() -> None:
    q = next(q for q in all_queries() if q.panel == "Drops by reason (Hubble)" and q.dashboard == "cilium-node-detail")
    assert q.expr == ('sum by (reason) (rate(cilium_node_drops_total{job=~"cilium-node-exporter", cluster=~"", '
                      'node=~"sim-1"}[5m])) unless on () node_cause:cilium_node_hubble_blind:bool{cluster=~"", '
                      'node=~"sim-1"}')
    assert DEFAULT_SUBSTITUTIONS["__range_s"] == "3600" and DEFAULT_SUBSTITUTIONS["__range"] == "1h"


def test_substitute_forms_overrides_and_unknown_variables() -> None:
    assert substitute("x[$__range]", {"$__range": "28d"}) == "x[28d]"
    assert substitute('x{node=~"${node:regex}", a="[[cluster]]"}') == 'x{node=~"sim-1", a=""}'
    assert substitute("rate(x[$__rate_interval])") == "rate(x[5m])"
    assert substitute("$node$node", {"node": "n"}) == "nn"
    with pytest.raises(KeyError, match="nodes"):
        substitute("x{a=\"$nodes\"}")


def test_variable_queries_become_promql() -> None:
    assert variable_promql('label_values(m{job=~"$job"}, node)') == 'group by (node) (m{job=~"$job"})'
    assert variable_promql("label_values(cluster)") == 'group by (cluster) ({__name__=~".+"})'
    assert variable_promql("up") == "up"
    variables = [q for q in all_queries() if q.kind == "variable"]
    assert {q.panel for q in variables} == {"job", "cluster", "node"}
    assert all(re.fullmatch(r"group by \((job|cluster|node)\) \(cilium_node_exporter_build_info.*\)", q.expr)
               for q in variables)
