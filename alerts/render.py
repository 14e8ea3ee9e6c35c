"""YAML output of the rule pack: plain rule files and the Helm template of the same groups."""

from __future__ import annotations

import re
from typing import Any

import yaml

HELM_CONFIG = ".Values.prometheusRule.config"
_RUNBOOK_TOKEN = re.compile(r'"HELMRUNBOOK_([a-z0-9]+)_END"')
_VALUE_TOKEN = re.compile(r"HELMVALUE_([A-Za-z0-9]+)_END")


class _Literal(str):
    """A string emitted as a YAML literal block (PromQL expressions)."""


class _Quoted(str):
    """A string emitted double-quoted (URLs)."""


class Flow(list):  # type: ignore[type-arg]
    """A list emitted in flow style (``[label, "=", value]`` matchers)."""


class _Dumper(yaml.SafeDumper):
    """Block style, sequences indented under their key, no line folding."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)

    def ignore_aliases(self, data: Any) -> bool:
        return True


_Dumper.add_representer(_Literal, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|"))
_Dumper.add_representer(_Quoted, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style='"'))
_Dumper.add_representer(Flow, lambda d, s: d.represent_sequence("tag:yaml.org,2002:seq", s, flow_style=True))


def _styled(rule: dict[str, Any]) -> dict[str, Any]:
    out = dict(rule)
    out["expr"] = _Literal(rule["expr"])
    if "annotations" in rule:
        out["annotations"] = {**rule["annotations"], "runbook_url": _Quoted(rule["annotations"]["runbook_url"])}
    return out


def dump(document: dict[str, Any], header: str) -> str:
    """``document`` as YAML under a comment ``header``."""
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1_000_000,
                     allow_unicode=True)
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comment + body


def rule_file(groups: list[dict[str, Any]], header: str) -> str:
    """A Prometheus rule file (``groups:``)."""
    styled = [{**g, "rules": [_styled(rule) for rule in g["rules"]]} for g in groups]
    return dump({"groups": styled}, header)


def helm_template(tokenised_rule_file: str) -> str:
    """Turn a rule file rendered with Helm tokens into a template for ``tpl``.

    Prometheus templates are escaped first (``{{`` -> ``{{ "{{" }}``), then tokens become Helm actions.
    """
    text = tokenised_rule_file.replace("{{", '{{ "{{" }}')
    text = text.replace("{HELMVALUE_", '{{ "{" }}HELMVALUE_')  # `{{{` would open an action one brace early
    text = _RUNBOOK_TOKEN.sub(
        lambda m: f'{{{{ printf {HELM_CONFIG}.runbookUrlPattern "{m.group(1)}" | quote }}}}', text)
    text = _VALUE_TOKEN.sub(lambda m: f"{{{{ {HELM_CONFIG}.{m.group(1)} }}}}", text)
    if "HELMVALUE_" in text or "HELMRUNBOOK_" in text:
        raise ValueError("a Helm token survived in an unexpected place")
    return text
