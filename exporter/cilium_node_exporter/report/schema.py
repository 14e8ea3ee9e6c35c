"""The enums of ``docs/report.schema.json`` that the rule pack and the report define, kept in one place.

The schema is written by hand except for these lists: the drop-reason classes are the monitoring mixin's
(``dropClasses`` plus ``unexpected``), the SLO keys the pack's SLO names (plus the report's two), the verdicts
the report's own. Regenerate with
``python -m cilium_node_exporter.report.schema`` (``--check``: exit 1 when the file is stale).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cilium_node_exporter.mixin.config import DROP_CLASS_NAMES
from cilium_node_exporter.mixin.names import SLO_DROP, SLO_MEMORY

from .verdict import VERDICTS

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "docs" / "report.schema.json"
UNEXPECTED = "unexpected"  # the class of every reason no configured class names (mixin.slo.drop_class)


def enums() -> dict[tuple[str, ...], list[str]]:
    """JSON paths (under ``$defs``) of the generated enums, and their values."""
    return {
        ("Reason", "properties", "klass"): [*DROP_CLASS_NAMES, UNEXPECTED],
        # the pack's SLO names, and the report's own two (the Hubble approximation, cilium-envoy's memory)
        ("Slo", "properties", "key"): [SLO_DROP, "drop-ratio-hubble", SLO_MEMORY, "envoy-memory"],
        ("Incident", "properties", "slo"): [SLO_DROP, SLO_MEMORY],
        ("Verdict", "properties", "status"): list(VERDICTS),
        ("Previous", "properties", "verdict"): list(VERDICTS),
    }


def build(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with every generated enum replaced (the rest untouched)."""
    for path, values in enums().items():
        node = schema["$defs"]
        for part in path:
            node = node.setdefault(part, {})
        node["enum"] = values
    return schema


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--check", action="store_true", help="exit 1 when the schema file is not up to date")
    p.add_argument("--path", type=Path, default=SCHEMA_PATH)
    args = p.parse_args(argv)
    text = args.path.read_text()
    new = render(build(json.loads(text)))
    if args.check:
        if new != text:
            print(f"{args.path} is stale: run python -m cilium_node_exporter.report.schema", file=sys.stderr)
            return 1
        return 0
    args.path.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
