"""The simulator computes the ground truth the exporter is compared with, so it must not borrow the exporter's
units, parsers or counting code for it: a bug there (``Mi`` as 10**6, a misread pod) would then be repeated on
both sides and pass every comparison. This guard reads every simulator module's imports (AST, not a grep)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cilium_node_simulator
from cilium_node_simulator import quantities

PACKAGE = Path(cilium_node_simulator.__file__).resolve().parent
EXPORTER = "cilium_node_exporter"
# Everywhere: the wire format (protobuf classes generated from Cilium's .proto files), not exporter logic.
SHARED = ("cilium_node_exporter.api",)
# Modules whose job is to run the exporter or its rule pack, not to compute expected values (module -> prefixes):
# fleet_node IS the exporter of each fleet node (its state, parsers and registry, in process: the exposition under
# test, never an expected value); the fleet CLI parses its --listen like the exporter; a fleet scenario names
# exporter flags and their defaults; the demo renders the rule pack.
RUNS_THE_EXPORTER = {
    "fleet_node": ("cilium_node_exporter.aggregation", "cilium_node_exporter.app", "cilium_node_exporter.config",
                   "cilium_node_exporter.sources"),
    "fleet": ("cilium_node_exporter.config",),
    "fleet_scenario": ("cilium_node_exporter.config",),
    "demo": ("cilium_node_exporter.mixin",),
}


def exporter_imports(path: Path) -> set[str]:
    """The cilium_node_exporter modules ``path`` imports (``from x import y`` counts as x.y when y is a module)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == EXPORTER)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == EXPORTER:
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def test_simulator_modules_import_no_exporter_logic_for_ground_truth() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 20, modules  # the package was found
    bad = {}
    for path in modules:
        name = path.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
        allowed = SHARED + RUNS_THE_EXPORTER.get(name, ())
        wrong = sorted(m for m in exporter_imports(path) if not m.startswith(allowed))
        if wrong:
            bad[name] = wrong
    assert not bad, f"simulator modules using the exporter's code (compute it in the simulator): {bad}"


def test_nothing_in_the_simulator_reads_the_exporters_units() -> None:
    users = [p.name for p in PACKAGE.rglob("*.py") if any(m.startswith(f"{EXPORTER}.units")
                                                         for m in exporter_imports(p))]
    assert users == []


@pytest.mark.parametrize(("text", "expected"), [
    ("300Mi", 300 * 1024 * 1024), ("1.5Gi", 1610612736), ("500M", 500_000_000), ("2k", 2000), ("1Ki", 1024),
    ("4096", 4096), (4096, 4096),
])
def test_quantities_are_kubernetes_quantities(text: str | int, expected: int) -> None:
    """Literal numbers (resource.Quantity's suffix table), not another parser's output."""
    assert quantities.bytes_of(text) == expected


@pytest.mark.parametrize("text", ["300MB", "Mi", "-1Mi", "1.2.3Gi", ""])
def test_bad_quantities_are_refused(text: str) -> None:
    with pytest.raises(quantities.QuantityError):
        quantities.bytes_of(text)


def test_durations_and_envelopes() -> None:
    assert quantities.seconds_of("1h30m") == 5400 and quantities.seconds_of("250ms") == 0.25
    assert quantities.seconds_of("10") == 10 and quantities.seconds_of(2.5) == 2.5
    assert quantities.envelope_of("200Mi-500Mi") == (209715200, 524288000)
    for bad in ("1x", "5m3", "-5s"):
        with pytest.raises(quantities.QuantityError):
            quantities.seconds_of(bad)
    with pytest.raises(quantities.QuantityError):
        quantities.envelope_of("500Mi-200Mi")
