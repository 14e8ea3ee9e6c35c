"""The simulator's Cilium facts are checkable from the repository: every table of Cilium behaviour cites its
source as ``[LABEL path:lines]``, every label names a release and a commit (or tag) in
``cilium_node_simulator.sources``, and nothing points at notes outside the repository any more."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from cilium_node_simulator.sources import CITATION, SOURCES, citations
from tests.support.paths import REPO

SIMULATOR = REPO / "simulator" / "cilium_node_simulator"
# The modules whose tables are Cilium's behaviour per release (the rest of the simulator is our own scenario
# machinery): every public module-level table here must cite its source.
TABLE_MODULES = ("releases", "cilium_settings", "cilium_enums")
# Tables that are not facts about Cilium.
NOT_FACTS = {("cilium_settings", "ALL"): "the 'every release' range sentinel",
             ("cilium_settings", "ENVOY_MODES"): "the simulator's own scenario vocabulary"}


def test_every_label_names_a_release_and_a_commit_or_tag() -> None:
    for label, source in SOURCES.items():
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", source.repo), label
        assert re.fullmatch(r"\d+\.\d+\.\d+(-[\w.]+)?", source.release), label
        tag_only = source.commit == "" and source.ref.startswith("v")
        assert re.fullmatch(r"[0-9a-f]{12}", source.commit) or tag_only, label
    # main is named for what it is: the 1.20 development branch, not 1.19
    assert SOURCES["main"].release == "1.20.0-dev" and SOURCES["main"].ref == "main"
    assert not any(s.release.startswith("1.19") and s.ref == "main" for s in SOURCES.values())


def test_citation_form() -> None:
    assert citations("x [v1.16.15 pkg/hubble/observer/local_observer.go:298-303] y [main a/b.go] "
                     "[hubble-v1.19.4 api/v1/flow/flow.proto:14-158,251-261]") == [
        ("v1.16.15", "pkg/hubble/observer/local_observer.go", "298-303"), ("main", "a/b.go", None),
        ("hubble-v1.19.4", "api/v1/flow/flow.proto", "14-158,251-261")]
    assert citations("[1.16b local_observer.go line 60] (F-1.16 :298) [x]") == []


@pytest.mark.parametrize("path", sorted(set(SIMULATOR.glob("*.py")) - {SIMULATOR / "sources.py"}),
                         ids=lambda p: p.name)
def test_every_citation_uses_a_known_label_and_a_file_path(path: Path) -> None:
    for label, cited, lines in citations(path.read_text()):
        assert label in SOURCES, (path.name, label, cited)
        assert re.search(r"\.(go|proto|h|c|cc|yaml|tpl|md)$", cited), (path.name, cited)
        for part in (lines or "").split(","):
            if "-" in part:
                first, last = map(int, part.split("-"))
                assert first < last, (path.name, cited, lines)


def test_no_reference_to_notes_outside_the_repository() -> None:
    stale = re.compile(r"/work/notes|cilium-release-facts|\bF-(?:1\.\d+|main)\b|facts §|★")
    for root in ("simulator", "tests", "docs", "exporter"):
        for path in (REPO / root).rglob("*"):
            if path.suffix in (".py", ".md") and "egg-info" not in str(path) and path != Path(__file__):
                assert not stale.search(path.read_text()), path


def _tables(module: str) -> list[tuple[str, ast.expr, int]]:
    """(name, value, line of the assignment) of the module's public module-level table displays."""
    tree = ast.parse((SIMULATOR / f"{module}.py").read_text())
    out = []
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else (
            node.target if isinstance(node, ast.AnnAssign) else None)
        if not isinstance(target, ast.Name) or not re.fullmatch(r"[A-Z][A-Z0-9_]*", target.id) or node.value is None:
            continue
        value = node.value
        if isinstance(value, ast.Call) and value.args:  # frozenset({...})
            value = value.args[0]
        if isinstance(value, ast.Dict | ast.Tuple | ast.List | ast.Set) and (module, target.id) not in NOT_FACTS:
            out.append((target.id, value, node.lineno))
    return out


def _comment_above(lines: list[str], lineno: int) -> str:
    """The comment lines directly above line ``lineno`` (1-based), joined."""
    out, i = [], lineno - 2
    while i >= 0 and lines[i].strip().startswith("#"):
        out.append(lines[i])
        i -= 1
    return "\n".join(reversed(out))


def _per_entry(value: ast.expr) -> bool:
    """A table whose entries differ by release must cite each entry: keyed by minor release (14..19), or valued
    with a release range (``((1, 14), (1, 16))`` or ``ALL``)."""
    if not isinstance(value, ast.Dict):
        return False
    keys = [k.value for k in value.keys if isinstance(k, ast.Constant)]
    if keys and all(isinstance(k, int) and 14 <= k <= 19 for k in keys):
        return True
    return any((isinstance(v, ast.Name) and v.id == "ALL") or (isinstance(v, ast.Tuple) and len(v.elts) == 2 and all(
        isinstance(e, ast.Tuple) for e in v.elts)) for v in value.values)


@pytest.mark.parametrize("module", TABLE_MODULES)
def test_every_table_entry_carries_a_citation(module: str) -> None:
    """A table cites its source in the comment directly above it (or on its first line); a table whose entries
    differ by release cites every entry (on the entry's line or the comment directly above it), so that the
    release where a field, key or behaviour starts or stops can be checked."""
    lines = (SIMULATOR / f"{module}.py").read_text().splitlines()
    tables = _tables(module)
    assert tables, module
    for name, value, lineno in tables:
        if _per_entry(value):
            assert isinstance(value, ast.Dict)
            for key in value.keys:
                assert key is not None
                here = lines[key.lineno - 1] + "\n" + _comment_above(lines, key.lineno)
                assert CITATION.search(here), f"{module}.{name}: entry at line {key.lineno} cites no source"
        else:
            here = _comment_above(lines, lineno) + "\n" + lines[lineno - 1]
            assert CITATION.search(here), f"{module}.{name} (line {lineno}) cites no source"


def test_per_entry_tables_are_recognised() -> None:
    """The rule above applies where it should (a broken detector would pass every table)."""
    per_entry = {(m, name) for m in TABLE_MODULES for name, value, _ in _tables(m) if _per_entry(value)}
    assert {("releases", "RELEASES"), ("releases", "FIELDS_ADDED"), ("cilium_settings", "DCM_FIELDS"),
            ("cilium_settings", "OPTION_KEYS"), ("cilium_settings", "HEALTHZ_KEYS"),
            ("cilium_settings", "MONITOR_TYPE_NAMES"), ("cilium_settings", "KPR_VALUES")} <= per_entry
