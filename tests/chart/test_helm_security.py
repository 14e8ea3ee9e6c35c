"""The chart's protection of the endpoint (issue 17, row 14): where it listens (IPv4 and IPv6 node IPs),
TLS and basic auth, the kube-rbac-proxy option, the NetworkPolicy, the service-account token, the host
mounts, and the Pod Security Standards level each configuration needs (checked by a small evaluator of
the standard's baseline and restricted rules, Kubernetes 1.30 "Pod Security Standards" page)."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest

from tests.chart.test_helm_render import ci_values, container, exporter_config, one, render, validate_object

ALLOWED_RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                              "projected", "secret"}
BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
                 "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}


def pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "DaemonSet")["spec"]["template"]["spec"]


def pss_level(pod: dict[str, Any]) -> str:
    """The strictest Pod Security Standards level ``pod`` meets: restricted, baseline or privileged."""
    containers = pod["containers"] + pod.get("initContainers", [])
    psc = pod.get("securityContext", {})

    def csc(c: dict[str, Any], key: str) -> Any:
        return c.get("securityContext", {}).get(key, psc.get(key))

    baseline = not (pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"))
    baseline &= not any("hostPath" in v for v in pod.get("volumes", []))
    baseline &= not any(c.get("securityContext", {}).get("privileged") for c in containers)
    baseline &= all(set(c.get("securityContext", {}).get("capabilities", {}).get("add", [])) <= BASELINE_CAPS
                    for c in containers)
    baseline &= not any(p.get("hostPort") for c in containers for p in c.get("ports", []))
    if not baseline:
        return "privileged"
    restricted = all(set(v) - {"name"} <= ALLOWED_RESTRICTED_VOLUMES for v in pod.get("volumes", []))
    for c in containers:
        sc = c.get("securityContext", {})
        restricted &= sc.get("allowPrivilegeEscalation") is False
        restricted &= csc(c, "runAsNonRoot") is True and csc(c, "runAsUser") != 0
        restricted &= (csc(c, "seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost")
        restricted &= "ALL" in sc.get("capabilities", {}).get("drop", [])
        restricted &= set(sc.get("capabilities", {}).get("add", [])) <= {"NET_BIND_SERVICE"}
    return "restricted" if restricted else "baseline"


def test_pss_evaluator_can_fail() -> None:
    pod = pod_spec(render(ci_values("restricted-values.yaml")))
    assert pss_level(pod) == "restricted"
    pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    assert pss_level(pod) == "baseline"
    pod["hostNetwork"] = True
    assert pss_level(pod) == "privileged"


# The level each documented configuration needs (docs/deploy.md, "Security": the same table).
LEVELS = [
    ("default", {}, "privileged"),  # hostNetwork, the /var/run/cilium hostPath, uid 0
    ("non-root with the socket group", ci_values("nonroot-socket-group-values.yaml"), "privileged"),
    ("pod network, unix socket", {"hostNetwork": False}, "privileged"),  # still the hostPath
    ("pod network, Hubble over TCP", {"hostNetwork": False, "hubble": {"address": "$NODE_IP:4244"}}, "restricted"),
    ("restricted ci values", ci_values("restricted-values.yaml"), "restricted"),
]


@pytest.mark.parametrize(("name", "values", "level"), LEVELS, ids=[x[0] for x in LEVELS])
def test_pod_security_level_of_each_configuration(name: str, values: dict[str, Any], level: str) -> None:
    assert pss_level(pod_spec(render(values))) == level


# --- where it listens -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("node_ip", "listen"), [("10.0.0.5", "10.0.0.5:9969"), ("fd00:10::5", "[fd00:10::5]:9969")])
def test_binds_the_node_ip_ipv4_and_ipv6(node_ip: str, listen: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.chart.test_helm_render as r

    monkeypatch.setattr(r, "NODE_ENV", {"NODE_NAME": "node-a", "NODE_IP": node_ip})
    objects = render({})
    assert "--listen-address=$NODE_IP:9969" in container(objects)["args"]  # the kubelet leaves $NODE_IP alone
    assert exporter_config(objects).listen_address == listen


def test_listen_on_all_interfaces_and_pod_network() -> None:
    assert exporter_config(render({"listenOnAllInterfaces": True})).listen_address == ":9969"
    assert exporter_config(render({"hostNetwork": False})).listen_address == ":9969"


# --- TLS and basic auth -----------------------------------------------------------------------------------

def test_protected_values_wire_tls_client_certificates_and_basic_auth() -> None:
    objects = render(ci_values("protected-values.yaml"))
    cfg = exporter_config(objects)
    assert cfg.web_tls_cert_file == "/etc/cilium-node-exporter/tls/tls.crt"
    assert cfg.web_tls_client_ca_file == "/etc/cilium-node-exporter/tls/ca.crt"
    assert cfg.web_basic_auth_users_file == "/etc/cilium-node-exporter/basic-auth/users"
    c, pod = container(objects), pod_spec(objects)
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets[mounts["/etc/cilium-node-exporter/tls"]] == "cne-web-tls"
    assert secrets[mounts["/etc/cilium-node-exporter/basic-auth"]] == "cne-web-users"
    assert c["livenessProbe"]["tcpSocket"] == {"port": 9969}  # the kubelet has no client certificate
    (ep,) = one(objects, "ServiceMonitor")["spec"]["endpoints"]
    assert ep["scheme"] == "https" and ep["basicAuth"]["password"]["key"] == "password"
    assert ep["tlsConfig"]["cert"]["secret"]["name"] == "prometheus-client-tls"


def test_tls_without_client_certificates_probes_https() -> None:
    c = container(render({"web": {"tls": {"secretName": "t"}}}))
    assert c["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"


@pytest.mark.parametrize("values", [{"web": {"tls": {"clientAuth": True}}},
                                    {"kubeRBACProxy": {"enabled": True}, "web": {"basicAuth": {"secretName": "u"}}}])
def test_contradictory_protection_is_refused(values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmRenderError):
        render(values)


# --- kube-rbac-proxy --------------------------------------------------------------------------------------

def test_kube_rbac_proxy_fronts_a_loopback_exporter() -> None:
    objects = render(ci_values("kube-rbac-proxy-values.yaml"))
    for obj in objects:
        validate_object(obj)
    assert exporter_config(objects).listen_address == "127.0.0.1:9970"
    assert "ports" not in container(objects)
    proxy = container(objects, "kube-rbac-proxy")
    assert "--secure-listen-address=[$(NODE_IP)]:9969" in proxy["args"]  # Go accepts [v4]:port and [v6]:port
    assert "--upstream=http://127.0.0.1:9970/" in proxy["args"]
    assert proxy["ports"] == [{"name": "metrics", "containerPort": 9969, "protocol": "TCP"}]
    assert proxy["securityContext"]["runAsNonRoot"] is True
    pod = pod_spec(objects)
    assert pod["automountServiceAccountToken"] is True
    rules = one(objects, "ClusterRole")["rules"]
    assert {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]} in rules
    (ep,) = one(objects, "PodMonitor")["spec"]["podMetricsEndpoints"]
    assert ep["scheme"] == "https" and ep["bearerTokenSecret"]["name"] == "prometheus-scrape-token"


# --- NetworkPolicy, token, mounts ------------------------------------------------------------------------------

def test_network_policy_is_refused_with_host_network_and_admits_only_the_peers_otherwise() -> None:
    with pytest.raises(helm.HelmRenderError, match="hostNetwork"):
        render({"networkPolicy": {"enabled": True}})
    objects = render(ci_values("restricted-values.yaml"))
    np = one(objects, "NetworkPolicy")
    validate_object(np)
    (rule,) = np["spec"]["ingress"]
    assert rule["ports"] == [{"port": 9969, "protocol": "TCP"}]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


@pytest.mark.parametrize(("values", "mounted"), [({}, True), ({"sources": ["hubble"]}, False),
                                                 ({"sources": ["hubble", "apiserver"]}, True),
                                                 ({"sources": ["hubble"], "kubeRBACProxy": {"enabled": True}}, True),
                                                 ({"serviceAccount": {"automountServiceAccountToken": False}}, False)])
def test_service_account_token_only_when_needed(values: dict[str, Any], mounted: bool) -> None:
    objects = render(values)
    assert pod_spec(objects)["automountServiceAccountToken"] is mounted
    assert one(objects, "ServiceAccount")["automountServiceAccountToken"] is mounted


def test_socket_only_mount() -> None:
    objects = render({"hubble": {"mount": "socket"}})
    (host,) = [v for v in pod_spec(objects)["volumes"] if "hostPath" in v]
    assert host["hostPath"] == {"path": "/var/run/cilium/hubble.sock", "type": "Socket"}
    (mount,) = [m for m in container(objects)["volumeMounts"] if m["name"] == host["name"]]
    assert mount["mountPath"] == "/var/run/cilium/hubble.sock" and mount["readOnly"] is True
    assert exporter_config(objects).hubble_address == "unix:///var/run/cilium/hubble.sock"
