"""The chart's AlertmanagerConfig (monitoring.coreos.com/v1alpha1), rendered by the real Helm engine: valid for
prometheus-operator v0.93.0's CRD (child routes included), the generator's route and inhibitions for the same
values (scope, label names, disabled alerts), receivers from values that never render a placeholder, and the
namespace rules of the operator's OnNamespace matcher strategy. How the operator merges it into
kube-prometheus-stack's Alertmanager, run by a real Alertmanager: tests/alerts/test_alerts_alertmanager.py."""

from __future__ import annotations

import copy
from typing import Any

import helm_python as helm
import pytest

from alerts import generate
from alerts.routing import plain_route, tuned
from cilium_node_exporter.mixin.config import Values, merge
from tests.chart.test_helm_render import NAMESPACE, one, render, validate_object

RECEIVERS = {"page": {"webhookUrl": "https://pager.example.com/hooks/cilium"},
             "ticket": {"webhookUrlSecret": {"name": "ticket-hook", "key": "url"}}}


def amc(values: dict[str, Any] | None = None, **config: Any) -> dict[str, Any]:
    obj = one(render({"alertmanagerConfig": {"enabled": True, "receivers": RECEIVERS, **(values or {})},
                      "prometheusRule": {"config": config}}), "AlertmanagerConfig")
    validate_object(obj)
    return obj


def matcher_text(m: dict[str, str]) -> str:
    return f'{m["name"]}{m["matchType"]}"{m["value"]}"'


def as_ir_route(route: dict[str, Any]) -> dict[str, Any]:
    """An AlertmanagerConfig route back in alerts/routing.py's form (matchers as [label, op, value])."""
    out = dict(route)
    if "matchers" in route:
        out["matchers"] = [[m["name"], m["matchType"], m["value"]] for m in route["matchers"]]
    if "routes" in route:
        out["routes"] = [as_ir_route(r) for r in route["routes"]]
    return out


def as_plain_inhibit(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"source_matchers": [matcher_text(m) for m in r["sourceMatch"]],
             "target_matchers": [matcher_text(m) for m in r["targetMatch"]], "equal": r["equal"]} for r in rules]


def expected(config: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The generator's scoped route and inhibitions for what the chart renders with ``config``."""
    plain = {**config, "scopeValue": config.get("scopeValue") or NAMESPACE}
    return plain_route(tuned(Values(merge(plain)))["route"]), generate.build_inhibit_rules(plain)


@pytest.mark.parametrize("config", [
    {},
    {"clusterLabel": "k8s_cluster", "nodeLabel": "kubernetes_node"},
    {"disabled": {"CiliumClusterUnexpectedDrops": True, "CiliumNodeExporterSourceDown": True}},
], ids=["default", "labels", "disabled"])
def test_the_generators_route_and_inhibitions(config: dict[str, Any]) -> None:
    obj = amc(**config)
    assert obj["metadata"]["namespace"] == NAMESPACE
    route, inhibit = expected(config)
    assert plain_route(as_ir_route(obj["spec"]["route"])) == route
    assert as_plain_inhibit(obj["spec"]["inhibitRules"]) == inhibit
    assert {"namespace", "alertname"} == {m["name"] for m in obj["spec"]["route"]["matchers"]}
    assert [r["receiver"] for r in obj["spec"]["route"]["routes"]] == ["page", "ticket", "none"]


def test_receivers_come_from_values_only() -> None:
    receivers = {r["name"]: r for r in amc()["spec"]["receivers"]}
    assert receivers == {
        "page": {"name": "page", "webhookConfigs": [{"url": RECEIVERS["page"]["webhookUrl"], "sendResolved": True}]},
        "ticket": {"name": "ticket", "webhookConfigs": [{"urlSecret": {"name": "ticket-hook", "key": "url"},
                                                          "sendResolved": True}]},
        "none": {"name": "none"},
    }
    pagerduty = {"pagerdutyConfigs": [{"routingKey": {"name": "pagerduty", "key": "routing-key"},
                                       "sendResolved": True}]}
    obj = amc({"receivers": {"page": {"configs": pagerduty}, "ticket": {**RECEIVERS["ticket"], "sendResolved": False}}})
    receivers = {r["name"]: r for r in obj["spec"]["receivers"]}
    assert receivers["page"] == {"name": "page", **pagerduty}
    assert receivers["ticket"]["webhookConfigs"][0]["sendResolved"] is False


@pytest.mark.parametrize(("receivers", "error"), [
    ({}, "alertmanagerConfig.receivers.page: set webhookUrl, webhookUrlSecret or configs"),
    ({"page": RECEIVERS["page"]}, "alertmanagerConfig.receivers.ticket: set webhookUrl"),
    ({**RECEIVERS, "ticket": {"webhookUrlSecret": {"name": "ticket-hook"}}}, "set both name and key"),
    ({**RECEIVERS, "page": {"webhookUrl": "pager.example.com"}}, "webhookUrl"),
    ({**RECEIVERS, "page": {"configs": {"pagerduty": []}}}, "'pagerduty' does not match"),
])
def test_no_receiver_no_alertmanagerconfig(receivers: dict[str, Any], error: str) -> None:
    """Pages are never sent nowhere: a receiver without a destination fails the install."""
    values = {"alertmanagerConfig": {"enabled": True, "receivers": receivers}}
    with pytest.raises(helm.HelmError, match=error):
        render(values)


def test_the_scope_follows_the_alertmanagerconfigs_namespace() -> None:
    """The operator (OnNamespace, its default) matches namespace="<the AlertmanagerConfig's namespace>": the
    alerts carry that value, and a scope that cannot match is refused."""
    objects = render({"prometheusRule": {"enabled": True},
                      "alertmanagerConfig": {"enabled": True, "namespace": "alerting", "receivers": RECEIVERS}})
    obj = one(objects, "AlertmanagerConfig")
    assert obj["metadata"]["namespace"] == "alerting"
    assert {"name": "namespace", "matchType": "=", "value": "alerting"} in obj["spec"]["route"]["matchers"]
    alerts = [r for g in one(objects, "PrometheusRule")["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert {r["labels"]["namespace"] for r in alerts} == {"alerting"}
    for config, error in (({"scopeValue": "elsewhere"}, 'scopeValue is "elsewhere"'),
                          ({"scopeLabel": "team"}, 'scopeLabel is "team"')):
        with pytest.raises(helm.HelmError, match=error):
            render({"alertmanagerConfig": {"enabled": True, "receivers": RECEIVERS},
                    "prometheusRule": {"config": config}})
    # without the operator's namespace matcher any scope goes
    obj = amc({"matcherStrategy": "None"}, scopeLabel="team", scopeValue="network")
    assert {"name": "team", "matchType": "=", "value": "network"} in obj["spec"]["route"]["matchers"]


def test_crd_validation_reaches_the_child_routes() -> None:
    """The CRD leaves child routes open; validate_object checks them as the operator parses them."""
    obj = amc()
    bad = copy.deepcopy(obj)
    bad["spec"]["route"]["routes"][0]["groupWiat"] = "30s"
    with pytest.raises(AssertionError, match="groupWiat"):
        validate_object(bad)
    bad = copy.deepcopy(obj)
    bad["spec"]["inhibitRules"][0]["sourceMatch"][0]["matchType"] = "=="
    with pytest.raises(AssertionError, match="matchType"):
        validate_object(bad)


def test_not_rendered_by_default() -> None:
    assert not [o for o in render({}) if o["kind"] == "AlertmanagerConfig"]
