"""What prometheus-operator makes of an AlertmanagerConfig, so a real Alertmanager can run the chart's.

Read from prometheus-operator v0.93.0 (commit f8fafd4), pkg/alertmanager/amcfg.go:
``AddAlertmanagerConfigs`` converts each AlertmanagerConfig and puts its route FIRST among the root route's
children; ``convertRoute`` prefixes receiver names with ``<namespace>/<name>/`` and writes every matcher
``{name, matchType, value}`` as ``name<matchType>"value"`` (``Matcher.String``); ``convertInhibitRule`` does the
same for ``sourceMatch``/``targetMatch``. The enforcer of the Alertmanager's
``alertmanagerConfigMatcherStrategy`` (default OnNamespace: ``namespaceEnforcer``) then appends
``namespace="<the AlertmanagerConfig's namespace>"`` to the top route's matchers and to both sides of every
inhibition (unless already there), and ``continueToNextRoute`` sets ``continue: true`` on the top route.
Webhook receivers take ``url``, or the Secret key ``urlSecret`` names, and ``sendResolved``.
Only what the chart renders is converted; anything else fails loudly.
"""

from __future__ import annotations

import copy
from typing import Any

_ROUTE_KEYS = {"groupBy": "group_by", "groupWait": "group_wait", "groupInterval": "group_interval",
               "repeatInterval": "repeat_interval"}
STRATEGIES = ("OnNamespace", "None")


def _matchers(items: list[dict[str, str]]) -> list[str]:
    out = []
    for m in items:
        if not m.get("matchType"):
            raise ValueError(f"the chart writes matchType on every matcher: {m}")
        out.append(f'{m["name"]}{m["matchType"]}"{m["value"]}"')
    return out


def _route(route: dict[str, Any], prefix: str) -> dict[str, Any]:
    unknown = set(route) - {"receiver", "matchers", "routes", *_ROUTE_KEYS}
    if unknown:
        raise ValueError(f"route fields this emulation does not convert: {unknown}")
    out: dict[str, Any] = {"receiver": prefix + route["receiver"]} if route.get("receiver") else {}
    out.update({_ROUTE_KEYS[k]: v for k, v in route.items() if k in _ROUTE_KEYS})
    if route.get("matchers"):
        out["matchers"] = _matchers(route["matchers"])
    if route.get("routes"):
        out["routes"] = [_route(child, prefix) for child in route["routes"]]
    return out


def _receiver(receiver: dict[str, Any], prefix: str, secrets: dict[tuple[str, str], str]) -> dict[str, Any]:
    unknown = set(receiver) - {"name", "webhookConfigs"}
    if unknown:
        raise ValueError(f"receiver fields this emulation does not convert: {unknown}")
    hooks = []
    for hook in receiver.get("webhookConfigs", []):
        url = secrets[(hook["urlSecret"]["name"], hook["urlSecret"]["key"])] if "urlSecret" in hook else hook["url"]
        hooks.append({"url": url, "send_resolved": hook.get("sendResolved", True)})
    return {"name": prefix + receiver["name"], **({"webhook_configs": hooks} if hooks else {})}


def merge(base: dict[str, Any], amc: dict[str, Any], secrets: dict[tuple[str, str], str] | None = None,
          strategy: str = "OnNamespace") -> dict[str, Any]:
    """``base`` (an Alertmanager configuration) with ``amc`` (an AlertmanagerConfig object) added as the operator
    adds it; ``secrets`` maps (Secret name, key) to the value the operator would read."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r} not emulated")
    config = copy.deepcopy(base)
    namespace, name = amc["metadata"]["namespace"], amc["metadata"]["name"]
    prefix = f"{namespace}/{name}/"
    enforced = f'namespace="{namespace}"'
    for rule in amc["spec"].get("inhibitRules", []):
        converted = {"source_matchers": _matchers(rule.get("sourceMatch", [])),
                     "target_matchers": _matchers(rule.get("targetMatch", [])), "equal": rule.get("equal", [])}
        if strategy == "OnNamespace":
            for side in ("source_matchers", "target_matchers"):
                if enforced not in converted[side]:
                    converted[side].append(enforced)
        config.setdefault("inhibit_rules", []).append(converted)
    route = _route(amc["spec"]["route"], prefix)
    if strategy == "OnNamespace":
        route.setdefault("matchers", []).append(enforced)
    route["continue"] = True
    config["route"]["routes"] = [route, *config["route"].get("routes", [])]
    config["receivers"] = [*config["receivers"],
                           *(_receiver(r, prefix, secrets or {}) for r in amc["spec"].get("receivers", []))]
    return config
