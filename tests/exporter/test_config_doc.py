"""The README's configuration table is generated from the flag table and must be current."""

from __future__ import annotations

from cilium_node_exporter.config import FLAGS
from cilium_node_exporter.config_doc import render_readme, render_table
from tests.support.paths import REPO


def test_readme_flag_table_is_current() -> None:
    text = (REPO / "README.md").read_text()
    assert text == render_readme(text), "README.md is stale: run `python -m cilium_node_exporter.config_doc`"


def test_every_flag_appears_once_with_its_default() -> None:
    table = render_table()
    for flag in FLAGS:
        rows = [r for r in table.splitlines() if r.startswith(f"| `--{flag.name}` |")]
        assert len(rows) == 1, flag.name
        assert (f"`{flag.default}`" in rows[0]) if flag.default else "| — |" in rows[0]
