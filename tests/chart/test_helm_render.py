"""The Helm chart rendered and linted by the real Helm engine (helm-python-sdk), for the default values and
every ``ci/*.yaml``: Kubernetes objects validated with kubernetes-validate, operator objects against the
vendored prometheus-operator CRD schemas, the DaemonSet's args parsed by the exporter's own CLI parser.

The helpers at the top are shared by the other ``test_helm_*`` modules.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from cilium_node_exporter.config import FLAGS, ConfigError, parse_args, resolve_value
from cilium_node_exporter.config_doc import render_helm
from tests.support.paths import DATA, REPO

CHART = REPO / "helm" / "cilium-node-exporter"
CRD_SCHEMAS = DATA / "schemas" / "monitoring.coreos.com"
RELEASE, NAMESPACE = "cne", "monitoring"
KUBE_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
CRD_KINDS = {"ServiceMonitor": "servicemonitor_v1.json", "PodMonitor": "podmonitor_v1.json",
             "PrometheusRule": "prometheusrule_v1.json", "AlertmanagerConfig": "alertmanagerconfig_v1alpha1.json"}
CI_FILES = sorted((CHART / "ci").glob("*.yaml"))
VALUE_SETS = ["default", *(p.name for p in CI_FILES)]
NODE_ENV = {"NODE_NAME": "node-a", "NODE_IP": "10.0.0.5"}


@functools.cache
def chart() -> helm.Chart:
    """The chart, loaded once per process (charts are immutable)."""
    return helm.Chart.load(CHART)


def ci_values(name: str) -> dict[str, Any]:
    """Values of a value set: ``default`` is ``{}``, anything else a file under ``ci/``."""
    if name == "default":
        return {}
    return helm.values_from_yaml((CHART / "ci" / name).read_text())


def render_raw(values: dict[str, Any]) -> dict[str, str]:
    return chart().render(values, name=RELEASE, namespace=NAMESPACE)


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object the chart renders for ``values`` (NOTES.txt excluded)."""
    objects = []
    for path, text in sorted(render_raw(values).items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def _closed(schema: Any) -> Any:
    """Close every object schema that lists properties: the API server prunes unknown fields of a
    structural CRD schema silently, so a misspelled field must fail here instead."""
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


@functools.cache
def crd_validator(kind: str) -> jsonschema.Draft7Validator:
    schema = _closed(json.loads((CRD_SCHEMAS / CRD_KINDS[kind]).read_text()))
    return jsonschema.Draft7Validator(schema)


def _child_routes(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """An AlertmanagerConfig's child routes, which its CRD leaves open (x-kubernetes-preserve-unknown-fields)
    and the operator parses as routes (validation/v1alpha1 validateRoute): checked against the route schema."""
    def walk(route: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for i, child in enumerate(route.get("routes", [])):
            yield f"{path}/routes/{i}", child
            yield from walk(child, f"{path}/routes/{i}")
    yield from walk(obj["spec"].get("route") or {}, "spec/route")


def validate_object(obj: dict[str, Any]) -> None:
    """kubernetes-validate (strict) for built-in kinds at 1.30 and the newest schema; CRD schema otherwise."""
    if obj["kind"] in CRD_KINDS:
        version = CRD_KINDS[obj["kind"]].rsplit("_", 1)[1].removesuffix(".json")
        assert obj["apiVersion"] == f"monitoring.coreos.com/{version}"
        validator = crd_validator(obj["kind"])
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]
        if obj["kind"] == "AlertmanagerConfig":
            route = validator.schema["properties"]["spec"]["properties"]["route"]
            errors += [f"{path}/{'/'.join(map(str, e.absolute_path))}: {e.message}"
                       for path, child in _child_routes(obj) for e in validator.evolve(schema=route).iter_errors(child)]
        assert not errors, f"{obj['kind']} {obj['metadata']['name']}: {errors}"
        return
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def container(objects: list[dict[str, Any]], name: str = "exporter") -> dict[str, Any]:
    (c,) = [c for c in one(objects, "DaemonSet")["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return c


def _expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of container args."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), arg)


def exporter_config(objects: list[dict[str, Any]]):
    """Run the rendered container's args and plain env through the exporter's CLI parser."""
    c = container(objects)
    env = dict(NODE_ENV)
    env.update({e["name"]: e["value"] for e in c.get("env", []) if "value" in e})
    assert "command" not in c, "the image's ENTRYPOINT is the exporter; args only"
    return parse_args([_expand(a, env) for a in c["args"]], environ=env)


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


# --- engine-level checks for every value set ---------------------------------------------------------------

EXPECTED_KINDS = {
    "default": ["ClusterRole", "ClusterRoleBinding", "DaemonSet", "Role", "RoleBinding", "Service",
                "ServiceAccount"],
    "podmonitor-values.yaml": ["ClusterRole", "ClusterRoleBinding", "DaemonSet", "PodMonitor", "Role",
                               "RoleBinding", "ServiceAccount"],
    "agent-metrics-values.yaml": ["ClusterRole", "ClusterRoleBinding", "DaemonSet", "Role", "RoleBinding",
                                  "Service", "ServiceAccount", "ServiceMonitor"],
}


def test_ci_values_files_exist() -> None:
    names = {p.name for p in CI_FILES}
    assert {"operator-values.yaml", "nonroot-socket-group-values.yaml", "no-hostnetwork-values.yaml",
            "podmonitor-values.yaml", "agent-metrics-values.yaml"} <= names


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_lint_strict(value_set: str) -> None:
    for kube in ("v1.30.0", f"v{KUBE_VERSIONS[1]}"):
        report = helm.lint(CHART, ci_values(value_set), strict=True, kube_version=kube, namespace=NAMESPACE)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not report["errors"] and not problems, report


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_object_validates(value_set: str) -> None:
    objects = render(ci_values(value_set))
    assert objects
    for obj in objects:
        validate_object(obj)
    if value_set in EXPECTED_KINDS:
        assert kinds(objects) == EXPECTED_KINDS[value_set]


def test_crd_validation_catches_misspelled_fields() -> None:
    objects = render({"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}})
    for kind, path in (("ServiceMonitor", ("endpoints", 0)), ("PodMonitor", ("podMetricsEndpoints", 0))):
        bad = copy.deepcopy(one(objects, kind))
        validate_object(bad)
        endpoint = bad["spec"][path[0]][path[1]]
        endpoint["intervall"] = endpoint.pop("interval")
        with pytest.raises(AssertionError, match="intervall"):
            validate_object(bad)
        bad = copy.deepcopy(one(objects, kind))
        bad["spec"][path[0]][path[1]]["interval"] = "30 seconds"
        with pytest.raises(AssertionError, match="interval"):
            validate_object(bad)


def test_kubernetes_validate_catches_bad_daemonset() -> None:
    ds = copy.deepcopy(one(render({}), "DaemonSet"))
    ds["spec"]["template"]["spec"]["hostNetwrok"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_object(ds)


# --- the DaemonSet's args are flags the exporter accepts --------------------------------------------------

def _value_at(values: dict, path: str) -> object:
    for part in path.split("."):
        if not isinstance(values, dict) or part not in values:
            return None
        values = values[part]
    return values


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_args_parse_with_the_exporter_cli(value_set: str) -> None:
    values = chart().merge_values(ci_values(value_set))
    cfg = exporter_config(render(values))
    listed = list(values["sources"]) + (["agent"] if values["agentMetrics"]["enabled"] else [])
    assert cfg.sources == parse_args([f"--sources={','.join(listed)}"], environ={}).sources
    listen = values["port"] if not values["hostNetwork"] or values["listenOnAllInterfaces"] else None
    proxy = values["kubeRBACProxy"]["enabled"]
    port = values["port"]
    assert cfg.listen_address == (f"127.0.0.1:{values['kubeRBACProxy']['upstreamPort']}" if proxy
                                  else f":{listen}" if listen else f"10.0.0.5:{port},127.0.0.1:{port}")
    assert cfg.node_name == "node-a"
    # every chart value mapped to a flag: set -> that value, unset -> the exporter's own default
    defaults = parse_args([], environ={"NODE_NAME": "node-a", "NODE_IP": "10.0.0.5"})
    for flag in FLAGS:
        if not flag.helm:
            continue
        value = _value_at(values, flag.helm)
        if value is None or value == []:
            expected = getattr(defaults, flag.attr)
        else:
            text = ",".join(value) if isinstance(value, list) else str(value).lower() if isinstance(value, bool) \
                else str(value)
            expected = flag.parse(resolve_value(flag, text.replace("$(NODE_IP)", "10.0.0.5"), NODE_ENV))
        assert getattr(cfg, flag.attr) == expected, (value_set, flag.name)


def test_values_restate_no_exporter_default() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for flag in FLAGS:
        if flag.helm:
            assert _value_at(values, flag.helm) in (None, []), f"{flag.helm} restates --{flag.name}'s default"


def test_flags_template_is_current() -> None:
    assert (CHART / "templates" / "_flags.tpl").read_text() == render_helm(), \
        "run `python -m cilium_node_exporter.config_doc`"


def test_args_defaults_and_overrides() -> None:
    cfg = exporter_config(render({}))
    assert cfg.sources.names == ("hubble", "kubelet", "apiserver", "agent", "settings")
    assert cfg.sources.optional == {"agent", "settings"}  # auto: unavailable on a node, not down
    assert cfg.memory_envelope == (200 * 2**20, 500 * 2**20)
    cfg = exporter_config(render(ci_values("agent-metrics-values.yaml")))
    assert cfg.sources.names == ("hubble", "kubelet", "apiserver", "agent", "settings")
    assert cfg.sources.optional == {"settings"}  # agentMetrics.enabled: the agent source is required
    assert cfg.agent_metrics_address == "http://10.0.0.5:9962/metrics"
    assert cfg.memory_envelope == (2**30, 3 * 2**30)
    cfg = exporter_config(render({"extraArgs": ["--hubble-stall-timeout=10m"], "sources": ["hubble"]}))
    assert cfg.hubble_stall_timeout == 600.0 and cfg.sources.names == ("hubble",)


def test_args_check_can_fail() -> None:
    with pytest.raises(ConfigError):
        exporter_config(render({"extraArgs": ["--no-such-flag=1"]}))


# --- the DaemonSet ---------------------------------------------------------------------------------------

def test_daemonset_defaults() -> None:
    objects = render({})
    pod = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    c = container(objects)
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsUser"] == 0  # see hubble.socketGroup in values.yaml
    assert pod["serviceAccountName"] == one(objects, "ServiceAccount")["metadata"]["name"]
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]} and not sc.get("privileged")
    hosts = {v["name"]: v["hostPath"] for v in pod["volumes"] if "hostPath" in v}
    # the two sockets the sources use, one file each: not the run directory (Envoy's sockets, the debug shell)
    assert sorted(h["path"] for h in hosts.values()) == ["/var/run/cilium/cilium.sock", "/var/run/cilium/hubble.sock"]
    assert {h["type"] for h in hosts.values()} == {"Socket"}
    mounts = {m["name"]: m for m in c["volumeMounts"] if m["name"] in hosts}
    assert {m["mountPath"] for m in mounts.values()} == {h["path"] for h in hosts.values()}
    assert all(m["readOnly"] for m in mounts.values())
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"]}
    assert env == {"NODE_NAME": "spec.nodeName", "NODE_IP": "status.hostIP"}
    assert c["ports"] == [{"name": "metrics", "containerPort": 9969, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics", "scheme": "HTTP"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics", "scheme": "HTTP"}
    assert pod["automountServiceAccountToken"] is True  # the kubelet and API server sources need the token
    assert c["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "192Mi"}}
    assert c["image"] == "ghcr.io/cilium-node-exporter/cilium-node-exporter:" + chart().metadata["appVersion"]
    assert "priorityClassName" not in pod and pod["nodeSelector"] == {"kubernetes.io/os": "linux"}


def test_daemonset_nonroot_with_socket_group() -> None:
    objects = render(ci_values("nonroot-socket-group-values.yaml"))
    pod = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534, "fsGroup": 65534,
        "supplementalGroups": [1337], "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert container(objects)["image"].endswith("@sha256:" + "0123456789abcdef" * 4)


def test_daemonset_without_host_network() -> None:
    objects = render(ci_values("no-hostnetwork-values.yaml"))
    ds = one(objects, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is False and pod["dnsPolicy"] == "ClusterFirst"
    assert ds["spec"]["updateStrategy"]["rollingUpdate"] == {"maxUnavailable": "10%"}
    assert "nodeAffinity" in pod["affinity"]
    assert {"name": "CNE_HUBBLE_BACKOFF_MAX", "value": "1m"} in container(objects)["env"]
    assert exporter_config(objects).hubble_backoff_max == 60.0


def test_hubble_over_tcp_needs_no_host_path() -> None:
    objects = render({"hubble": {"address": "hubble-peer.kube-system.svc:4244"}})
    pod = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    assert not [v for v in pod["volumes"] if "hostPath" in v]


def test_common_labels_and_priority_class() -> None:
    objects = render({"commonLabels": {"team": "platform"}, "priorityClassName": "system-node-critical"})
    assert all(o["metadata"]["labels"]["team"] == "platform" for o in objects)
    assert one(objects, "DaemonSet")["spec"]["template"]["spec"]["priorityClassName"] == "system-node-critical"


# --- RBAC -------------------------------------------------------------------------------------------------

READ_VERBS = {"get", "list", "watch"}
NODE_STATS = {"apiGroups": [""], "resources": ["nodes/stats"], "verbs": ["get"]}
NODES = {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}
PODS = {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}
CONFIGMAP = {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cilium-config"], "verbs": ["get"]}

RBAC_CASES = [
    ({}, [NODE_STATS], [PODS, CONFIGMAP], "kube-system"),
    (ci_values("nonroot-socket-group-values.yaml"), [NODE_STATS, NODES], [PODS, CONFIGMAP], "kube-system"),
    (ci_values("no-hostnetwork-values.yaml"), [NODE_STATS], [PODS, CONFIGMAP], "cilium"),
    (ci_values("agent-metrics-values.yaml"), [NODE_STATS], [PODS, CONFIGMAP], "kube-system"),
    ({"sources": ["hubble"]}, None, None, None),
    ({"sources": ["hubble", "apiserver"], "envelopeFromNodeAnnotation": True}, [NODES], [PODS], "kube-system"),
    ({"sources": ["hubble", "settings"]}, None, [CONFIGMAP], "kube-system"),
    ({"sources": ["hubble", "settings"], "settings": {"from": ["agent-api"]}}, None, None, None),
    ({"sources": ["auto"], "settings": {"from": ["configmap"], "configMapName": "cilium-cfg"}},
     [NODE_STATS], [PODS, {**CONFIGMAP, "resourceNames": ["cilium-cfg"]}], "kube-system"),
    ({"rbac": {"create": False}}, None, None, None),
]


@pytest.mark.parametrize(("values", "cluster_rules", "role_rules", "role_namespace"), RBAC_CASES)
def test_rbac_rules_exactly(values, cluster_rules, role_rules, role_namespace) -> None:
    objects = render(values)
    assert len([o for o in objects if o["kind"] == "Role"]) <= 1  # Envoy in Cilium's namespace: no second Role
    by_kind = {o["kind"]: o for o in objects}
    assert by_kind.get("ClusterRole", {}).get("rules") == cluster_rules
    assert by_kind.get("Role", {}).get("rules") == role_rules
    sa = by_kind["ServiceAccount"]["metadata"]
    for role_kind, binding_kind in (("ClusterRole", "ClusterRoleBinding"), ("Role", "RoleBinding")):
        if role_kind not in by_kind:
            assert binding_kind not in by_kind
            continue
        binding = by_kind[binding_kind]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind,
                                      "name": by_kind[role_kind]["metadata"]["name"]}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["name"],
                                        "namespace": sa["namespace"]}]
    if role_rules:
        assert by_kind["Role"]["metadata"]["namespace"] == role_namespace
        assert by_kind["RoleBinding"]["metadata"]["namespace"] == role_namespace


def test_envoy_in_its_own_namespace_gets_a_second_role() -> None:
    objects = render({"envoy": {"namespace": "cilium-envoy"}})
    roles = {o["metadata"]["namespace"]: o for o in objects if o["kind"] == "Role"}
    bindings = {o["metadata"]["namespace"]: o for o in objects if o["kind"] == "RoleBinding"}
    assert set(roles) == set(bindings) == {"kube-system", "cilium-envoy"}
    assert roles["cilium-envoy"]["rules"] == [PODS]
    assert bindings["cilium-envoy"]["roleRef"]["name"] == roles["cilium-envoy"]["metadata"]["name"]
    cfg = exporter_config(objects)
    assert cfg.envoy_namespace == "cilium-envoy" and cfg.cilium_namespace == "kube-system"
    # Envoy not reported: no Role for its namespace
    objects = render({"envoy": {"namespace": "cilium-envoy", "enabled": False}})
    assert [o["metadata"]["namespace"] for o in objects if o["kind"] == "Role"] == ["kube-system"]
    assert exporter_config(objects).envoy is False


# kube-rbac-proxy's questions to the API server: "create" on these read nothing and change nothing.
REVIEWS = [{"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
           {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]}]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_rbac_never_proxy_wildcards_or_writes(value_set: str) -> None:
    proxy = chart().merge_values(ci_values(value_set))["kubeRBACProxy"]["enabled"]
    for obj in render(ci_values(value_set)):
        if obj["kind"] not in ("ClusterRole", "Role"):
            continue
        for rule in obj["rules"]:
            if rule in REVIEWS:
                assert proxy and obj["kind"] == "ClusterRole"
                continue
            # a ConfigMap may only be read by name
            assert set(rule) == ({"apiGroups", "resources", "resourceNames", "verbs"}
                                 if "configmaps" in rule["resources"] else {"apiGroups", "resources", "verbs"})
            assert set(rule["verbs"]) <= READ_VERBS
            assert rule["apiGroups"] == [""]
            assert "*" not in json.dumps(rule)
            assert not {"nodes/proxy", "secrets", "pods/exec"} & set(rule["resources"])


# --- Service, ServiceMonitor, PodMonitor -------------------------------------------------------------------

def _relabel(monitor_endpoint: dict[str, Any], target: str) -> dict[str, Any]:
    (rule,) = [r for r in monitor_endpoint["relabelings"] if r.get("targetLabel") == target]
    return rule


def test_service_monitor_targets_the_headless_service() -> None:
    objects = render(ci_values("operator-values.yaml"))
    svc, sm = one(objects, "Service"), one(objects, "ServiceMonitor")
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 9969, "targetPort": "metrics", "protocol": "TCP"}]
    pod_labels = one(objects, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["sampleLimit"] == 20000
    (ep,) = sm["spec"]["endpoints"]
    assert (ep["port"], ep["path"], ep["interval"], ep["scrapeTimeout"]) == ("metrics", "/metrics", "15s", "10s")
    assert _relabel(ep, "node") == {"action": "replace", "sourceLabels": ["__meta_kubernetes_pod_node_name"],
                                    "targetLabel": "node"}
    assert _relabel(ep, "job") == {"action": "replace", "replacement": "cilium-node-exporter",
                                   "targetLabel": "job"}
    assert _relabel(ep, "cluster") == {"action": "replace", "replacement": "prod-eu-1", "targetLabel": "cluster"}
    assert ep["metricRelabelings"][0]["action"] == "drop"


def test_pod_monitor_instead_of_service_monitor() -> None:
    objects = render(ci_values("podmonitor-values.yaml"))
    pm = one(objects, "PodMonitor")
    pod_labels = one(objects, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert pm["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (ep,) = pm["spec"]["podMetricsEndpoints"]
    assert ep["port"] in [p["name"] for p in container(objects)["ports"]]
    assert (ep["interval"], ep["scrapeTimeout"]) == ("1m", "20s")
    targets = [r["targetLabel"] for r in ep["relabelings"]]
    assert targets == ["node", "job", "k8s_cluster", "node_short"]  # chart's first, then the user's


def test_no_cluster_label_by_default() -> None:
    (ep,) = one(render({"serviceMonitor": {"enabled": True}}), "ServiceMonitor")["spec"]["endpoints"]
    assert [r["targetLabel"] for r in ep["relabelings"]] == ["node", "job"]


# --- values.schema.json ------------------------------------------------------------------------------------

SCHEMA = json.loads((CHART / "values.schema.json").read_text())

BAD_VALUES = {
    "unknown top-level key": "hostnetwork: false\n",
    "unknown nested key": "serviceMonitor:\n  enabled: true\n  intervall: 30s\n",
    "wrong type bool": "hostNetwork: \"yes\"\n",
    "wrong type int": "port: \"9969\"\n",
    "socket group as a name": "hubble:\n  socketGroup: cilium\n",
    "envelope without upper bound": "memoryEnvelope: 500Mi\n",
    "unknown envelope mode": "memoryEnvelopeMode: dynamic\n",
    "unknown source": "sources: [hubble, cadvisor]\n",
    "bad duration": "podMonitor:\n  interval: 30 seconds\n",
    "unknown extra label": "extraLabels: [pod]\n",
    "relabeling typo": "serviceMonitor:\n  relabelings:\n    - source_labels: [a]\n",
    "label values must be strings": "commonLabels:\n  tier: 1\n",
    "extraArgs must be flags": "extraArgs: [\"-v\"]\n",
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_schema_rejects_bad_values_files(case: str, tmp_path: Path) -> None:
    path = tmp_path / "bad-values.yaml"
    path.write_text(BAD_VALUES[case])
    values = helm.values_from_yaml(path.read_text())
    with pytest.raises(helm.HelmValuesError):
        render(values)
    report = helm.lint(CHART, values, strict=True, kube_version="v1.30.0")
    assert report["errors"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(chart().merge_values(values), SCHEMA)


# Kubernetes types the schema lists the fields of, but values.yaml sets only some of.
KUBERNETES_TYPES = {"podSecurityContext", "containerSecurityContext", "resources", "livenessProbe",
                    "readinessProbe", "updateStrategy"}


def test_schema_is_strict_everywhere_and_matches_values_yaml() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    for node in walk(SCHEMA):
        # Helm's global values are shared with every chart of a parent: only their keys read here are checked
        if isinstance(node, dict) and "properties" in node and node is not SCHEMA["properties"]["global"]:
            assert node.get("additionalProperties") is False, sorted(node["properties"])
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(defaults, SCHEMA)

    def resolve(s: dict[str, Any]) -> dict[str, Any]:
        return SCHEMA["definitions"][s["$ref"].rsplit("/", 1)[1]] if "$ref" in s else s

    def same_keys(value: dict[str, Any], schema: dict[str, Any], where: str) -> None:
        schema = resolve(schema)
        if "properties" not in schema:
            return
        if where.rsplit(".", 1)[-1] in KUBERNETES_TYPES:
            return
        documented = set(schema["properties"])
        assert set(value) == documented, f"{where}: values.yaml and the schema differ"
        for key, sub in value.items():
            if isinstance(sub, dict) and sub:
                same_keys(sub, schema["properties"][key], f"{where}.{key}")

    same_keys(defaults, SCHEMA, "values")


# --- NOTES.txt ---------------------------------------------------------------------------------------------

def test_notes_cover_the_install_day_surprises() -> None:
    notes = render_raw({})["cilium-node-exporter/templates/NOTES.txt"]
    assert f"rollout status daemonset/{RELEASE}-cilium-node-exporter" in notes
    assert "kubelet.insecureSkipVerify=true" in notes  # self-signed kubelet certificates
    assert "no memory limit" in notes  # Cilium's chart default: the near-limit alert is inert
    assert "15k pods" in notes and "memoryEnvelope=200Mi-500Mi" in notes
    notes = render_raw(ci_values("nonroot-socket-group-values.yaml"))["cilium-node-exporter/templates/NOTES.txt"]
    assert "kubelet.insecureSkipVerify is true" in notes and "supplemental group 1337" in notes


# --- the packaged chart ------------------------------------------------------------------------------------

def test_packaged_chart_renders_the_same(tmp_path: Path) -> None:
    """.helmignore keeps files/ (rules, dashboards) in the package and drops ci/."""
    archive = helm.package(CHART, destination=tmp_path)
    values = {"prometheusRule": {"enabled": True}, "dashboards": {"enabled": True},
              "alertmanagerInhibitRules": {"enabled": True}, "serviceMonitor": {"enabled": True}}
    with helm.Chart.load(archive) as packaged:
        assert packaged.metadata["version"] == chart().metadata["version"]
        assert not [f for f in packaged.files if f["name"].startswith("ci/")]
        assert packaged.render(values, name=RELEASE, namespace=NAMESPACE) == render_raw(values)
