"""Our contract's metric names must never shadow a metric Cilium itself documents.

`tests/data/cilium_documented_metrics.txt` lists the full Prometheus names from Cilium's
Documentation/observability/metrics.rst (see its header for source commit and derivation).
"""

from __future__ import annotations

import re

import pytest

from cilium_node_exporter import contract
from tests.support.paths import DATA as DATA_DIR

DATA = DATA_DIR / "cilium_documented_metrics.txt"
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
SERIES_SUFFIXES = ("_bucket", "_sum", "_count")  # series a documented histogram/summary also exposes


def _documented() -> list[str]:
    lines = DATA.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _exposed_names(metric: contract.Metric) -> set[str]:
    """Every name under which prometheus_client may expose this metric family."""
    names = {metric.name, metric.family}
    if metric.type == "counter":
        names.add(metric.family + "_created")
    return names


@pytest.fixture(scope="module")
def documented() -> list[str]:
    return _documented()


def test_documented_list_is_well_formed(documented: list[str]) -> None:
    assert DATA.read_text().startswith("#"), "header comment with the source is missing"
    bad = [n for n in documented if not METRIC_NAME.fullmatch(n)]
    assert not bad, f"not metric names: {bad}"
    assert documented == sorted(set(documented)), "list must be sorted and unique"


def test_documented_list_sanity(documented: list[str]) -> None:
    assert len(documented) >= 150
    for name in ("cilium_drop_count_total", "hubble_drop_total", "cilium_node_connectivity_status"):
        assert name in documented


def test_no_contract_name_equals_a_documented_cilium_name(documented: list[str]) -> None:
    taken = set(documented)
    taken |= {name + suffix for name in documented for suffix in SERIES_SUFFIXES}
    clashes = {
        m.name: sorted(_exposed_names(m) & taken) for m in contract.ALL_METRICS if _exposed_names(m) & taken
    }
    assert not clashes, f"contract metrics shadow Cilium's own: {clashes}"


def test_contract_names_are_unique_across_exposed_names() -> None:
    seen: dict[str, str] = {}
    for metric in contract.ALL_METRICS:
        for exposed in _exposed_names(metric):
            assert seen.setdefault(exposed, metric.name) == metric.name, (
                f"{exposed} exposed by both {seen[exposed]} and {metric.name}")


def test_contract_names_use_our_prefix() -> None:
    wrong = [m.name for m in contract.ALL_METRICS if not m.name.startswith(contract.PREFIX)]
    assert contract.PREFIX == "cilium_node_"
    assert not wrong, f"names outside cilium_node_: {wrong}"


def test_contract_avoids_reserved_target_labels() -> None:
    used = {
        m.name: sorted(set(m.labels + m.optional_labels) & contract.RESERVED_TARGET_LABELS)
        for m in contract.ALL_METRICS
        if set(m.labels + m.optional_labels) & contract.RESERVED_TARGET_LABELS
    }
    assert not used, f"labels a Prometheus Operator sets on targets: {used}"
