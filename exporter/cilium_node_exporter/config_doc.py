"""Render what the flag table (`config.FLAGS`) defines elsewhere: `python -m cilium_node_exporter.config_doc`.

- the README's configuration table (between the ``BEGIN FLAGS`` / ``END FLAGS`` markers);
- the chart's ``templates/_flags.tpl``: the arguments set from chart values (a flag is passed only when
  its value is set, so the exporter's own default applies otherwise) and each mapped flag's default as a
  named template, for the chart's other uses of a value (the Role's namespace, the socket mount).

The test suite checks both committed files against this rendering.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cilium_node_exporter.config import FLAGS, Flag

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
HELM_FLAGS = REPO / "helm" / "cilium-node-exporter" / "templates" / "_flags.tpl"
BEGIN = "<!-- BEGIN FLAGS: generated from exporter/cilium_node_exporter/config.py by " \
        "`python -m cilium_node_exporter.config_doc`; do not edit -->"
END = "<!-- END FLAGS -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_table() -> str:
    """The Markdown table of every flag, grouped by section."""
    out = ["| flag | default | chart value | meaning |", "|---|---|---|---|"]
    section = ""
    for flag in FLAGS:
        if flag.section != section:
            section = flag.section
            out.append(f"| **{_cell(section)}** | | | |")
        default = f"`{flag.default}`" if flag.default else "—"
        helm = f"`{flag.helm}`" if flag.helm else "—"
        also = "".join(f" Also `--{alias}`." for alias in flag.aliases)
        out.append(f"| `--{flag.name}` | {_cell(default)} | {helm} | {_cell(flag.help)}{also} |")
    return "\n".join(out)


def render_readme(text: str) -> str:
    """``text`` (the README) with the table between the markers replaced."""
    head, sep, rest = text.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise ValueError("README.md lacks the BEGIN FLAGS / END FLAGS markers")
    return f"{head}{BEGIN}\n{render_table()}\n{END}{tail}"


def _value(flag: Flag) -> str:
    return "$.Values." + flag.helm


def render_helm() -> str:
    """``templates/_flags.tpl``."""
    out = [
        "{{/* Generated from exporter/cilium_node_exporter/config.py by "
        "`python -m cilium_node_exporter.config_doc`; do not edit. */}}",
        "{{/* Exporter arguments from chart values: each flag is passed only when its value is set, so the",
        "     exporter's own default (defined once, in FLAGS) applies otherwise. */}}",
        '{{- define "cne.flagArgs" -}}',
    ]
    for flag in FLAGS:
        if not flag.helm:
            continue
        value = _value(flag)
        if flag.boolean:
            out += [f'{{{{- if not (kindIs "invalid" {value}) }}}}',
                    f"- --{flag.name}={{{{ {value} }}}}", "{{- end }}"]
        elif flag.metavar == "LIST":
            out += [f"{{{{- with {value} }}}}", f'- --{flag.name}={{{{ join "," . }}}}', "{{- end }}"]
        else:
            out += [f"{{{{- with {value} }}}}", f"- --{flag.name}={{{{ . }}}}", "{{- end }}"]
    out.append("{{- end }}")
    for flag in FLAGS:
        if flag.helm:
            out.append(f'{{{{- define "cne.flagDefault.{flag.name}" -}}}}{flag.default}{{{{- end }}}}')
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Rewrite the README table and the chart template in the checkout."""
    del argv
    README.write_text(render_readme(README.read_text()))
    HELM_FLAGS.write_text(render_helm())
    print(README)
    print(HELM_FLAGS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
