"""The chart's protection of the endpoint (issue 17, row 14): where it listens (IPv4 and IPv6 node IPs),
TLS and basic auth, the kube-rbac-proxy option, the NetworkPolicy, the service-account token, the host
mounts, and the Pod Security Standards level each configuration needs (checked by a small evaluator of
the standard's baseline and restricted rules, Kubernetes 1.30 "Pod Security Standards" page)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from cilium_node_exporter.config import parse_listen
from cilium_node_exporter.exposition.web_config import load as load_web_config
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
    ("pod network, unix socket", {"hostNetwork": False}, "privileged"),  # still the hostPaths of the sockets
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
    # the kubelet leaves $NODE_IP alone; loopback is where `kubectl port-forward` connects
    assert "--listen-address=$NODE_IP:9969,127.0.0.1:9969" in container(objects)["args"]
    assert exporter_config(objects).listen_addresses == [parse_listen(listen), ("127.0.0.1", 9969)]


def test_listen_on_all_interfaces_and_pod_network() -> None:
    assert exporter_config(render({"listenOnAllInterfaces": True})).listen_address == ":9969"
    assert exporter_config(render({"hostNetwork": False})).listen_address == ":9969"


# --- TLS and basic auth -----------------------------------------------------------------------------------

def web_config(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The web configuration file the chart wrote, as the exporter reads it (its path checked against the args)."""
    secret = one(objects, "Secret") if sum(o["kind"] == "Secret" for o in objects) == 1 else \
        next(o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"].endswith("-web-config"))
    assert exporter_config(objects).web_config_file == "/etc/cilium-node-exporter/web-config/web-config.yml"
    return yaml.safe_load(secret["stringData"]["web-config.yml"])


def test_protected_values_wire_tls_client_certificates_and_basic_auth(tmp_path: Path) -> None:
    objects = render(ci_values("protected-values.yaml"))
    config = web_config(objects)
    assert config["tls_server_config"] == {
        "cert_file": "/etc/cilium-node-exporter/tls/tls.crt", "key_file": "/etc/cilium-node-exporter/tls/tls.key",
        "client_auth_type": "RequireAndVerifyClientCert", "client_ca_file": "/etc/cilium-node-exporter/tls/ca.crt"}
    assert set(config["basic_auth_users"]) == {"prometheus"}
    path = tmp_path / "web.yml"  # the exporter's own loader accepts it (TLS files aside)
    path.write_text(yaml.safe_dump({"basic_auth_users": config["basic_auth_users"]}))
    assert set(load_web_config(str(path)).users) == {"prometheus"}
    c, pod = container(objects), pod_spec(objects)
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets[mounts["/etc/cilium-node-exporter/tls"]] == "cne-web-tls"
    assert secrets[mounts["/etc/cilium-node-exporter/web-config"]] == "cne-cilium-node-exporter-web-config"
    # the kubelet has no client certificate and no password: the probes use the plain health listener
    assert exporter_config(objects).health_listen_addresses == [("127.0.0.1", 9971)]
    assert c["livenessProbe"]["httpGet"] == {"host": "127.0.0.1", "path": "/healthz", "port": 9971, "scheme": "HTTP"}
    (ep,) = one(objects, "ServiceMonitor")["spec"]["endpoints"]
    assert ep["scheme"] == "https" and ep["basicAuth"]["password"]["key"] == "password"
    assert ep["tlsConfig"]["cert"]["secret"]["name"] == "prometheus-client-tls"


def test_an_existing_web_configuration_secret_is_mounted_as_is() -> None:
    objects = render({"web": {"existingSecret": "org-web-config", "existingSecretKey": "config.yml"},
                      "hostNetwork": False})
    assert exporter_config(objects).web_config_file == "/etc/cilium-node-exporter/web-config/config.yml"
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod_spec(objects)["volumes"] if "secret" in v}
    assert secrets["web-config"] == "org-web-config"
    assert not [o for o in objects if o["kind"] == "Secret"]  # the chart writes none
    assert exporter_config(objects).health_listen_addresses == [("", 9971)]  # the pod IP: probes reach it
    assert container(objects)["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 9971, "scheme": "HTTP"}


@pytest.mark.parametrize("values", [{"web": {"tls": {"clientAuth": True}}},
                                    {"kubeRBACProxy": {"enabled": True},
                                     "web": {"basicAuth": {"users": {"u": "$2y$10$" + "a" * 53}}}},
                                    {"web": {"existingSecret": "w", "tls": {"secretName": "t"}}}])
def test_contradictory_protection_is_refused(values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmRenderError):
        render(values)


# --- kube-rbac-proxy --------------------------------------------------------------------------------------

def test_kube_rbac_proxy_fronts_a_loopback_exporter_that_only_its_certificate_opens() -> None:
    objects = render(ci_values("kube-rbac-proxy-values.yaml"))
    for obj in objects:
        validate_object(obj)
    cfg = exporter_config(objects)
    assert cfg.listen_address == "127.0.0.1:9970" and "ports" not in container(objects)
    assert web_config(objects)["tls_server_config"]["client_auth_type"] == "RequireAndVerifyClientCert"
    proxy = container(objects, "kube-rbac-proxy")
    args = proxy["args"]
    assert "--secure-listen-address=[$(NODE_IP)]:9969" in args  # Go accepts [v4]:port and [v6]:port
    assert "--upstream=https://127.0.0.1:9970/" in args
    assert {"--upstream-ca-file=/etc/kube-rbac-proxy/upstream/ca.crt",
            "--upstream-client-cert-file=/etc/kube-rbac-proxy/upstream/client.crt",
            "--upstream-client-key-file=/etc/kube-rbac-proxy/upstream/client.key"} <= set(args)
    # kube-rbac-proxy refuses --allow-paths with --ignore-paths (cmd/kube-rbac-proxy/app/options/options.go, v0.19.1)
    assert "--allow-paths=/metrics" in args and not [a for a in args if a.startswith("--ignore-paths")]
    # a hung exporter fails the exporter's probes (its health listener), never the proxy's (its own endpoint)
    assert "--proxy-endpoints-port=9972" in args
    assert proxy["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 9972, "scheme": "HTTPS"}
    assert container(objects)["livenessProbe"]["httpGet"]["port"] == 9971
    assert cfg.health_listen_addresses == [("127.0.0.1", 9971)]
    assert proxy["ports"] == [{"name": "metrics", "containerPort": 9969, "protocol": "TCP"}]
    assert proxy["securityContext"]["runAsNonRoot"] is True
    pod = pod_spec(objects)
    assert pod["automountServiceAccountToken"] is True
    rules = one(objects, "ClusterRole")["rules"]
    assert {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]} in rules
    (ep,) = one(objects, "PodMonitor")["spec"]["podMetricsEndpoints"]
    assert ep["scheme"] == "https" and ep["bearerTokenSecret"]["name"] == "prometheus-scrape-token"


def test_kube_rbac_proxy_upstream_tls_is_the_charts_or_yours() -> None:
    objects = render({"kubeRBACProxy": {"enabled": True}})
    (tls,) = [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"].endswith("-upstream-tls")]
    assert set(tls["data"]) == {"ca.crt", "tls.crt", "tls.key", "client.crt", "client.key"}
    objects = render({"kubeRBACProxy": {"enabled": True, "upstreamTLS": {"secretName": "mine"}}})
    assert not [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"].endswith("-upstream-tls")]
    volumes = {v["name"]: v.get("secret", {}).get("secretName") for v in pod_spec(objects)["volumes"]}
    assert volumes["upstream-tls"] == "mine"


# --- NetworkPolicy, token, mounts ------------------------------------------------------------------------------

def test_network_policy_is_refused_with_host_network_or_without_peers_and_admits_only_the_peers() -> None:
    with pytest.raises(helm.HelmRenderError, match="hostNetwork"):
        render({"networkPolicy": {"enabled": True, "from": [{"podSelector": {}}]}})
    with pytest.raises((helm.HelmRenderError, helm.HelmValuesError), match="from"):  # no `from`: every source in
        render({"networkPolicy": {"enabled": True}, "hostNetwork": False})
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


@pytest.mark.parametrize(("values", "paths"), [
    ({}, ["/var/run/cilium/cilium.sock", "/var/run/cilium/hubble.sock"]),
    ({"settings": {"from": ["configmap"]}}, ["/var/run/cilium/hubble.sock"]),
    ({"sources": ["hubble", "kubelet"]}, ["/var/run/cilium/hubble.sock"]),
    ({"hubble": {"address": "$NODE_IP:4244"}}, []),  # nothing of the host; settings from the ConfigMap
    ({"hubble": {"hostSocketDir": "/run/cilium", "address": "unix:///run/cilium/hubble.sock"}},
     ["/run/cilium/cilium.sock", "/run/cilium/hubble.sock"])])
def test_only_the_socket_files_the_sources_use_are_mounted(values: dict[str, Any], paths: list[str]) -> None:
    objects = render(values)
    hosts = [v["hostPath"] for v in pod_spec(objects)["volumes"] if "hostPath" in v]
    assert sorted(h["path"] for h in hosts) == paths and all(h["type"] == "Socket" for h in hosts)
    cfg = exporter_config(objects)
    if "/run/cilium/cilium.sock" in paths:
        assert cfg.agent_api_socket == "/run/cilium/cilium.sock"


def test_the_directory_mount_is_still_there_on_request() -> None:
    objects = render({"hubble": {"mount": "directory"}})
    (host,) = [v for v in pod_spec(objects)["volumes"] if "hostPath" in v]
    assert host["hostPath"] == {"path": "/var/run/cilium", "type": "Directory"}
    (mount,) = [m for m in container(objects)["volumeMounts"] if m["name"] == host["name"]]
    assert mount["mountPath"] == "/var/run/cilium" and mount["readOnly"] is True
