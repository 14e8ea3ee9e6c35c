"""Shaping the generated alerts as kube-prometheus-stack users do: a layer around the pack, never inside it.

The alert definitions (alerting.py) stay as they are; this module rewrites the rendered groups and the
inhibitions for the configuration's shaping keys (mixin/config.py, "shaping the alerts" block):

- ``scopeLabel``/``scopeValue``: every alert carries the scope label, which the shipped routes match and
  every inhibition of the pack's own alerts requires on both sides;
- ``disabled``: the alert is not rendered; an inhibition left without a source or a target is dropped;
- ``additionalRuleLabels``/``additionalRuleAnnotations``: added to every alert;
- ``keepFiringFor``: ``keep_firing_for`` of every alert (emitted only when set: promtool < 2.42 rejects it);
- ``customRules.<Alert>``: ``severity``, ``for``, ``keepFiringFor``, ``labels``, ``annotations`` of one alert
  (every rule of that name, so an alert name keeps one severity).

Recording rules are never touched. The chart applies the same shaping to the same generated text in
``templates/prometheusrule.yaml`` and ``templates/_alerting.tpl``; tests/chart/test_helm_rules.py holds the
two to the same output. With the defaults, the rules are the pack's own plus the scope label.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from cilium_node_exporter.mixin.config import ConfigError

Matcher = list[str]  # [label, operator, value]


def alert_names(groups: list[dict[str, Any]]) -> list[str]:
    """The alert names of rendered groups, once each, in order."""
    return list(dict.fromkeys(r["alert"] for g in groups for r in g["rules"] if "alert" in r))


def check_names(config: dict[str, Any], names: Iterable[str]) -> None:
    """ConfigError for a ``disabled`` or ``customRules`` entry that names no alert of the pack."""
    known = list(names)
    for key in ("disabled", "customRules"):
        for name in config[key]:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ConfigError(f"{key}: the pack has no alert {name!r}{hint}")


def scope_matcher(config: dict[str, Any]) -> Matcher:
    """The matcher every alert of the pack satisfies: [scopeLabel, "=", scopeValue]."""
    return [config["scopeLabel"], "=", config["scopeValue"]]


def enabled(names: Iterable[str], config: dict[str, Any]) -> list[str]:
    """``names`` without the disabled alerts."""
    return [name for name in names if not config["disabled"].get(name)]


def _merge(kind: str, name: str, base: dict[str, str], extra: dict[str, str], fixed: Iterable[str]) -> dict[str, str]:
    """``base`` plus ``extra``; a label the pack sets on this alert cannot be replaced."""
    clash = sorted(set(extra) & set(fixed))
    if clash:
        raise ConfigError(f"{kind} of {name}: {', '.join(clash)} set by the pack on this alert")
    return {**base, **extra}


def tune_rule(rule: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """One alerting rule shaped by the configuration (a new dict; key order as Prometheus documents it)."""
    name = rule["alert"]
    custom = config["customRules"].get(name, {})
    own = rule.get("labels", {})
    labels = _merge("additionalRuleLabels", name, own, config["additionalRuleLabels"], own)
    labels = _merge(f"customRules.{name}.labels", name, labels, custom.get("labels", {}), own)
    if "severity" in custom:
        labels["severity"] = custom["severity"]
    labels[config["scopeLabel"]] = config["scopeValue"]
    out: dict[str, Any] = {"alert": name, "expr": rule["expr"]}
    if "for" in rule or "for" in custom:
        out["for"] = custom.get("for", rule.get("for"))
    keep = custom.get("keepFiringFor") or config["keepFiringFor"] or rule.get("keep_firing_for")
    if keep:
        out["keep_firing_for"] = keep
    out["labels"] = labels
    annotations = {**rule.get("annotations", {}), **config["additionalRuleAnnotations"],
                   **custom.get("annotations", {})}
    if annotations:
        out["annotations"] = annotations
    return out


def tune_groups(groups: list[dict[str, Any]], config: dict[str, Any]) -> list[dict[str, Any]]:
    """The rule groups shaped by the configuration; a group left without rules is dropped."""
    check_names(config, alert_names(groups))
    out = []
    for group in groups:
        rules = [r if "alert" not in r else tune_rule(r, config) for r in group["rules"]
                 if "alert" not in r or not config["disabled"].get(r["alert"])]
        if rules:
            out.append({**group, "rules": rules})
    return out


def tune_inhibit_rules(rules: list[dict[str, Any]], config: dict[str, Any],
                       pack: Iterable[str]) -> list[dict[str, Any]]:
    """Inhibitions (routing.routing_ir form) for the configuration: disabled alerts left out, a rule without a
    source or target alert dropped, the scope matcher on every target and on sources of the pack's own alerts
    (a Kubernetes alert such as KubeNodeNotReady carries another scope)."""
    own = set(pack)
    scope = scope_matcher(config)
    out = []
    for rule in rules:
        sides = {}
        for side in ("source", "target"):
            names = enabled(rule[side]["alerts"], config)
            if not names:
                break
            mine = all(name in own for name in rule[side]["alerts"])
            sides[side] = {"alerts": names, "matchers": [*rule[side]["matchers"], *([scope] if mine else [])]}
        else:
            out.append({**sides, "equal": list(rule["equal"])})
    return out
