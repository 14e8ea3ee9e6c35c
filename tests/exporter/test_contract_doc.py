"""docs/metrics.md is generated from the contract module and must be current."""

from __future__ import annotations

from pathlib import Path

from cilium_node_exporter import contract as c
from cilium_node_exporter.contract_doc import render


def test_docs_metrics_md_is_current(repo_root: Path) -> None:
    committed = (repo_root / "docs" / "metrics.md").read_text()
    assert committed == render(), "docs/metrics.md is stale: run `python -m cilium_node_exporter.contract_doc`"


def test_every_contract_metric_is_documented_once() -> None:
    text = render()
    for metric in c.ALL_METRICS:
        assert text.count(f"| `{metric.name}` |") == 1, metric.name


def test_reason_strings_map_back_to_enum_names() -> None:
    assert c.DROP_REASON_NAME_BY_STRING["Policy denied"] == "POLICY_DENIED"
    assert c.DROP_REASON_NAME_BY_STRING["CT: Map insertion failed"] == "CT_MAP_INSERTION_FAILED"
    assert c.drop_reason_name(133) == "POLICY_DENIED" and c.drop_reason_name(250) == "REASON_250"
