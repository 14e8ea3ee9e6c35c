"""Render ``docs/metrics.md`` from the contract module: ``python -m cilium_node_exporter.contract_doc``.

The committed file is checked against this rendering by the test suite, so the documented
contract and the exporter's registry cannot drift apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cilium_node_exporter import contract as c

SECTIONS = (
    ("Datapath events (source `hubble`)", "hubble"),
    ("Datapath packets (source `agent`, opt-in)", "agent"),
    ("Agent and Envoy memory (source `kubelet`) and envelope", "kubelet"),
    ("Agent and Envoy lifecycle (source `apiserver`)", "apiserver"),
    ("The node's Cilium settings (source `settings`)", "settings"),
    ("The exporter's own health", ""),
)


def _row(m: c.Metric) -> str:
    labels = ", ".join(f"`{x}`" for x in m.labels) or "—"
    if m.optional_labels:
        labels += " (optional: " + ", ".join(f"`{x}`" for x in m.optional_labels) + ")"
    return f"| `{m.name}` | {m.type} | {labels} | {m.help} |"


def render() -> str:
    """The full Markdown text of docs/metrics.md."""
    out = [
        "# Metrics",
        "",
        "Generated from `exporter/cilium_node_exporter/contract.py` by "
        "`python -m cilium_node_exporter.contract_doc`; do not edit by hand.",
        "The counting rules behind these names are summarised in the README (*Metrics*) and applied in "
        "`exporter/cilium_node_exporter/sources/hubble/decode.py`.",
        "",
        "Series carry no `node`, `namespace` or `pod` label from the exporter: the node is a target label "
        "added by the scrape configuration (`__meta_kubernetes_pod_node_name` → `node`).",
        "",
    ]
    for title, source in SECTIONS:
        if source:
            members = [m for m in c.ALL_METRICS if m.source == source]
        else:
            members = [m for m in c.ALL_METRICS if m.name.startswith(c.SELF_PREFIX)]
        if source == "kubelet":
            members += [c.ENVELOPE_LOWER, c.ENVELOPE_UPPER]
        out += [f"## {title}", "", "| metric | type | labels | meaning |", "|---|---|---|---|"]
        out += [_row(m) for m in members]
        out.append("")
    out += [
        "Plus the standard `process_*` and `python_*` collectors of prometheus-client.",
        "",
        "## Label values",
        "",
        f"- `direction`: {', '.join(c.DIRECTIONS)}",
        f"- `action`: {', '.join(c.ACTIONS)}",
        "- `match`: " + ", ".join([*c.MATCH_BY_TYPE.values(), c.MATCH_UNKNOWN, "l7/http", "l7/dns", "l7/kafka"]),
        "- `source` (lost events): " + ", ".join(c.LOST_SOURCE_BY_ENUM.values()),
        f"- `source` (exporter health): {', '.join(c.SOURCES)}",
        f"- `reason` (source errors): {', '.join(c.ERROR_REASONS)}",
        f"- `kind` (events): {', '.join(c.EVENT_KINDS)}",
        "- `reason` (drops): the DropReason enum name; `REASON_<n>` for a number this exporter does not know "
        "(at most 32 distinct, then `REASON_other`).",
        "",
        "## Drop-reason classes",
        "",
        "Alerts and SLOs treat only *unexpected* drops as errors. Everything not listed here, including "
        "`REASON_<n>`, is unexpected; transient start-up reasons count as unexpected when sustained.",
        "",
        "| class | reasons |",
        "|---|---|",
        "| policy | " + ", ".join(f"`{r}`" for r in c.DROP_CLASS_POLICY) + " |",
        "| handled, not a failure | " + ", ".join(f"`{r}`" for r in c.DROP_CLASS_HANDLED) + " |",
        "| by configuration | " + ", ".join(f"`{r}`" for r in c.DROP_CLASS_CONFIGURED) + " |",
        "| transient during start-up | " + ", ".join(f"`{r}`" for r in c.DROP_CLASS_TRANSIENT) + " |",
        "",
        "## DropReason table",
        "",
        "| code | enum name | Cilium's string (`cilium_drop_count_total{reason}`) | class |",
        "|---|---|---|---|",
    ]
    for code, (name, text) in sorted(c.DROP_REASONS.items()):
        out.append(f"| {code} | `{name}` | {text} | {c.drop_class(name)} |")
    out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Write docs/metrics.md (or the path given)."""
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render())
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
