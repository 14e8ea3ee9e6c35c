"""Every PromQL expression of every dashboard, with Grafana variables substituted.

Used by the unit tests (promtool parses each one) and by the end-to-end test, which runs them against a
real Prometheus scraping the exporter:

    from dashboards.queries import all_queries
    for q in all_queries({"node": "sim-1", "__range": "1h", "__range_s": "3600"}):
        ...  # q.dashboard, q.panel, q.kind, q.ref_id, q.expr

Query variables (`label_values(<selector>, <label>)`) are returned as the equivalent PromQL
`group by (<label>) (<selector>)`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

DASHBOARD_DIR: Final = Path(__file__).resolve().parent
DEFAULT_JOB: Final = "cilium-node-exporter"

# Grafana built-ins and dashboard variables -> values that make each expression plain PromQL.
DEFAULT_SUBSTITUTIONS: Final[Mapping[str, str]] = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__from": "1700000000000",
    "__to": "1700003600000",
    "node": "sim-1",
    "cluster": "",
    "job": DEFAULT_JOB,
    "datasource": "prometheus",
}

# The first `job="..."` equality matcher of a selector (the rule pack's configured `selector`).
_SELECTOR_JOB = re.compile(r'(?:^|[\s,{])job\s*=\s*"([^"]*)"')
_VAR = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\[\[(\w+)(?::[\w]+)?\]\]|\$(\w+)")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<sel>.+?)\s*,\s*)?(?P<label>\w+)\s*\)\s*$", re.S)


@dataclass(frozen=True)
class Query:
    """One expression: where it is and what it says (``expr`` substituted, ``template`` as in the JSON)."""

    dashboard: str  # uid
    panel: str  # panel title, variable name or annotation name
    kind: str  # "panel" | "variable" | "annotation"
    ref_id: str
    template: str
    expr: str


def selector_job(selector: str) -> str:
    """The job a selector names with ``job="..."``, else :data:`DEFAULT_JOB`: the dashboards' default job."""
    match = _SELECTOR_JOB.search(selector)
    return match.group(1) if match else DEFAULT_JOB


def substitute(expr: str, substitutions: Mapping[str, str] | None = None) -> str:
    """Replace `$var`, `${var}`, `${var:fmt}` and `[[var]]`; an unknown variable raises KeyError."""
    subs = dict(DEFAULT_SUBSTITUTIONS)
    subs.update({k.lstrip("$"): v for k, v in (substitutions or {}).items()})

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in subs:
            raise KeyError(f"no substitution for Grafana variable ${name} in {expr!r}")
        return subs[name]

    return _VAR.sub(repl, expr)


def variable_promql(query: str) -> str:
    """`label_values(sel, label)` as PromQL (`group by (label) (sel)`); other queries unchanged."""
    m = _LABEL_VALUES.match(query)
    if not m:
        return query
    sel = m.group("sel") or "{__name__=~\".+\"}"
    return f"group by ({m.group('label')}) ({sel})"


def load_dashboards(directory: Path = DASHBOARD_DIR) -> dict[str, dict]:
    """uid -> dashboard JSON model of the committed files."""
    docs = (json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json")))
    return {d["uid"]: d for d in docs}


def iter_panels(doc: dict) -> Iterator[dict]:
    """Every panel, including those nested in collapsed rows."""
    for panel in doc.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def _templates(doc: dict) -> Iterator[tuple[str, str, str, str]]:
    for panel in iter_panels(doc):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield panel["title"], "panel", target.get("refId", ""), target["expr"]
    for var in doc.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var["query"] if isinstance(var["query"], str) else var["query"].get("query", "")
            yield var["name"], "variable", "", variable_promql(query)
    for ann in doc.get("annotations", {}).get("list", []):
        if "expr" in ann:
            yield ann["name"], "annotation", "", ann["expr"]


def all_queries(substitutions: Mapping[str, str] | None = None,
                dashboards: Mapping[str, dict] | None = None) -> list[Query]:
    """Every (dashboard, panel/variable/annotation, expression), variables substituted.

    ``substitutions`` override :data:`DEFAULT_SUBSTITUTIONS` (keys with or without `$`);
    ``dashboards`` defaults to the committed JSON next to this module.
    """
    docs = load_dashboards() if dashboards is None else dashboards
    return [Query(uid, name, kind, ref, template, substitute(template, substitutions))
            for uid, doc in sorted(docs.items()) for name, kind, ref, template in _templates(doc)]


# --- structure (tests, e2e): promql-parser, a dev dependency, imported lazily ------------------------
DURATION_ONLY: Final[Mapping[str, str]] = {
    "__rate_interval": "7m13s",  # a sentinel no literal range uses: identifies `[$__rate_interval]`
    "__interval": "1m",
    "__range": "29d7m",  # another sentinel: identifies `[$__range]`
    "__range_s": "2506020",
    "__from": "1700000000000",
    "__to": "1702506020000",
    "node": "$node",
    "cluster": "$cluster",
    "job": "$job",
    "datasource": "$datasource",
}


def parse(expr: str) -> Any:
    """The promql-parser AST of an expression whose range variables are substituted."""
    import promql_parser  # dev dependency, only for analysis

    return promql_parser.parse(expr)


def walk(node: Any, parents: tuple[Any, ...] = ()) -> Iterator[tuple[Any, tuple[Any, ...]]]:
    """Every node with its ancestors (outermost first), like the Go parser's `parser.Walk`."""
    yield node, parents
    kind = type(node).__name__
    if kind == "BinaryExpr":
        children = [node.lhs, node.rhs]
    elif kind == "AggregateExpr":
        children = [c for c in (node.param, node.expr) if c is not None]
    elif kind == "Call":
        children = list(node.args)
    elif kind == "MatrixSelector":
        children = [node.vector_selector]
    elif kind in ("SubqueryExpr", "ParenExpr", "UnaryExpr"):
        children = [node.expr]
    else:
        children = []
    for child in children:
        yield from walk(child, (*parents, node))


def selectors(node: Any) -> list[Any]:
    """Every VectorSelector of an AST."""
    return [n for n, _ in walk(node) if type(n).__name__ == "VectorSelector"]
