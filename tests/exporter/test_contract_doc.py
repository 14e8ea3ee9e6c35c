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


def test_drop_classes_partition_known_reasons() -> None:
    classes = [c.DROP_CLASS_POLICY, c.DROP_CLASS_HANDLED, c.DROP_CLASS_CONFIGURED, c.DROP_CLASS_TRANSIENT]
    listed = [r for group in classes for r in group]
    assert len(listed) == len(set(listed))
    assert set(listed) <= set(c.DROP_REASON_NAME_BY_CODE.values())
    assert c.drop_class("REASON_250") == "unexpected"
    assert c.drop_class("CT_MAP_INSERTION_FAILED") == "unexpected"
    assert c.drop_class("POLICY_DENY") == "policy"
    regex = c.expected_reasons_regex()
    assert "POLICY_DENIED" in regex.split("|") and "DROP_EP_NOT_READY" not in regex.split("|")


def test_reason_strings_map_back_to_enum_names() -> None:
    assert c.DROP_REASON_NAME_BY_STRING["Policy denied"] == "POLICY_DENIED"
    assert c.DROP_REASON_NAME_BY_STRING["CT: Map insertion failed"] == "CT_MAP_INSERTION_FAILED"
    assert c.drop_reason_name(133) == "POLICY_DENIED" and c.drop_reason_name(250) == "REASON_250"
