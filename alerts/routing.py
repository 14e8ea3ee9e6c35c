"""The pack's Alertmanager routes and inhibitions: one incident, one notification, and only the pack's alerts.

One route holds everything (merged into a shared Alertmanager it is the only thing to add under the root):
it matches the pack's scope label (``scopeLabel="scopeValue"``, on every alert) and the pack's alert names,
so it never routes another team's alert, even one in the same namespace. Below it:

- ``critical`` -> ``page``, grouped by scope, cluster and alert name: a later, unrelated critical alert opens its
  own group instead of joining an incident already acknowledged. ``group_interval`` is 15 minutes, so each
  page group notifies once in its first 15 minutes whatever the number of nodes; a fleet-wide incident notifies
  once per alert name it pages with, and the per-cluster alerts mute the per-node pages of their kind
  (alerting.inhibit_rules), so at most three times (tests/alerts/test_alerts_alertmanager.py plays one through a
  real Alertmanager, tests/e2e/test_fleet.py through the pack).
- ``warning`` -> ``ticket``, grouped the same way: 200 nodes with the same problem are one ticket.
- ``info`` -> ``none`` (not sent).

Everything here is first built as a neutral description (:func:`routing_ir`: matchers as ``[label, op, value]``,
CRD-style camelCase timers) that the plain files (:func:`alertmanager_config`) and the chart's templates
(AlertmanagerConfig and inhibition ConfigMap, from ``files/alerting.tpl.yaml``) render; the shaping keys
(scope, disabled alerts) are applied by alerts/tuning.py and by the chart's ``_alerting.tpl`` alike.
Receiver URLs of the plain file are placeholders (``.invalid``): replace them with your pager and ticket webhooks.
"""

from __future__ import annotations

import re
from typing import Any

from alerts import tuning
from alerts.alerting import all_alerts, inhibit_rules
from cilium_node_exporter.mixin.config import Values, merge

PAGE_URL = "http://page.receiver.invalid/cilium-node-exporter"
TICKET_URL = "http://ticket.receiver.invalid/cilium-node-exporter"
RECEIVERS = ("page", "ticket", "none")
SEVERITY_RECEIVERS = {"critical": "page", "warning": "ticket", "info": "none"}
# Timers of the scoped route (tickets) and of the page route. A ticket waits two rule evaluations (at 1m): a
# per-cluster alert that becomes notifiable one evaluation after its per-node alerts (group evaluation offsets)
# still mutes them before their group is sent (tests/e2e/test_fleet_replay.py).
TICKET_TIMERS = {"groupWait": "2m", "groupInterval": "10m", "repeatInterval": "24h"}
PAGE_TIMERS = {"groupWait": "30s", "groupInterval": "15m", "repeatInterval": "4h"}
_MATCHER = re.compile(r'^([a-zA-Z_][a-zA-Z0-9_]*)(=~|!~|!=|=)"(.*)"$')
_SNAKE = {"groupBy": "group_by", "groupWait": "group_wait", "groupInterval": "group_interval",
          "repeatInterval": "repeat_interval"}


def parse_matcher(text: str) -> tuning.Matcher:
    """``name<op>"value"`` (the form alerting.inhibit_rules writes) as [name, op, value]."""
    match = _MATCHER.match(text)
    if not match:
        raise ValueError(f"not a matcher the pack writes: {text!r}")
    return list(match.groups())


def matcher_text(matcher: tuning.Matcher) -> str:
    """[name, op, value] as Alertmanager's ``name<op>"value"``."""
    name, op, value = matcher
    return f'{name}{op}"{value}"'


def names_matcher(names: list[str]) -> tuning.Matcher:
    """The alertname matcher of ``names``: equality for one, a regex alternation for several."""
    return ["alertname", "=", names[0]] if len(names) == 1 else ["alertname", "=~", "|".join(names)]


def _side(matchers: list[str]) -> dict[str, Any]:
    parsed = [parse_matcher(m) for m in matchers]
    (names,) = [m for m in parsed if m[0] == "alertname"]
    return {"alerts": names[2].split("|") if names[1] == "=~" else [names[2]],
            "matchers": [m for m in parsed if m[0] != "alertname"]}


def routing_ir(v: Values) -> dict[str, Any]:
    """The pack's alert names, scoped route and inhibitions before shaping, label names from ``v`` (Helm tokens
    in Helm mode)."""
    labels = {key: v[key] if v.helm else v.config[key] for key in ("clusterLabel", "nodeLabel", "scopeLabel")}
    # inhibit_rules() reads the label names from the configuration: hand it the tokens in Helm mode
    named = Values(merge({**v.config, "clusterLabel": labels["clusterLabel"], "nodeLabel": labels["nodeLabel"]}))
    routes = [{"receiver": receiver, "matchers": [["severity", "=", severity]],
               **(PAGE_TIMERS if receiver == "page" else {})} for severity, receiver in SEVERITY_RECEIVERS.items()]
    return {
        "alerts": list(dict.fromkeys(a.name for a in all_alerts(v))),
        "receivers": list(RECEIVERS),
        "route": {"receiver": "ticket", "groupBy": [labels["scopeLabel"], labels["clusterLabel"], "alertname"],
                  **TICKET_TIMERS, "routes": routes},
        "inhibitRules": [{"source": _side(r["source_matchers"]), "target": _side(r["target_matchers"]),
                          "equal": r["equal"]} for r in inhibit_rules(named)],
    }


def tune_ir(ir: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The description shaped by the configuration: the scoped route matches the scope and the enabled alert
    names; inhibitions as alerts/tuning.py makes them."""
    tuning.check_names(config, ir["alerts"])
    names = tuning.enabled(ir["alerts"], config)
    route = {**ir["route"], "matchers": [tuning.scope_matcher(config), names_matcher(names)]}
    return {"alerts": names, "receivers": ir["receivers"], "route": route,
            "inhibitRules": tuning.tune_inhibit_rules(ir["inhibitRules"], config, ir["alerts"])}


def plain_route(route: dict[str, Any]) -> dict[str, Any]:
    """A route of the description in Alertmanager's configuration format."""
    out: dict[str, Any] = {"receiver": route["receiver"]}
    if "matchers" in route:
        out["matchers"] = [matcher_text(m) for m in route["matchers"]]
    out.update({_SNAKE[k]: value for k, value in route.items() if k in _SNAKE})
    if "routes" in route:
        out["routes"] = [plain_route(r) for r in route["routes"]]
    return out


def plain_inhibit_rules(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Inhibitions of the description in Alertmanager's configuration format."""
    return [{f"{side}_matchers": [matcher_text(m) for m in (names_matcher(rule[side]["alerts"]),
                                                           *rule[side]["matchers"])]
             for side in ("source", "target")} | {"equal": rule["equal"]} for rule in rules]


def tuned(v: Values) -> dict[str, Any]:
    """The shaped description for a plain configuration."""
    return tune_ir(routing_ir(v), v.config)


def alertmanager_config(v: Values) -> dict[str, Any]:
    """A complete Alertmanager configuration for this pack: the scoped route under a root that sends
    everything else nowhere, the receivers, the inhibitions."""
    ir = tuned(v)
    urls = {"page": PAGE_URL, "ticket": TICKET_URL}
    return {
        "route": {"receiver": "none", "routes": [plain_route(ir["route"])]},
        "receivers": [{"name": name, **({"webhook_configs": [{"url": urls[name], "send_resolved": True}]}
                                        if name in urls else {})} for name in ir["receivers"]],
        "inhibit_rules": plain_inhibit_rules(ir["inhibitRules"]),
    }


def helm_ir() -> dict[str, Any]:
    """The description for the chart: label names as Helm tokens (files/alerting.tpl.yaml)."""
    return routing_ir(Values(merge(None), helm=True))

