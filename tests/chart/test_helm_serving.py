"""The exporter run with the arguments and files the chart renders, reached the way Kubernetes reaches it:
``kubectl port-forward`` (the container runtime dials localhost in the pod's network namespace, the node's with
hostNetwork) and kube-rbac-proxy (mutual TLS on loopback with the upstream certificate the chart makes)."""

from __future__ import annotations

import base64
import os
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.test_helm_render import container, one, render
from tests.support.procs import free_port, wait_until
from tests.support.protected import ProtectedExporter

pytestmark = pytest.mark.xdist_group("chart-serving")


def rendered_args(objects: list[dict[str, Any]]) -> list[str]:
    return [a for a in container(objects)["args"] if not a.startswith("--agent-api-socket")]


def port_forward_get(port: int, path: str) -> tuple[int, str]:
    """What containerd's portForward does (pkg/cri/server/sandbox_portforward_linux.go): dial "localhost:<port>"
    over tcp4, then tcp6, in the pod's network namespace; then the HTTP request kubectl sends through it."""
    errors = []
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            address = socket.getaddrinfo("localhost", port, family, socket.SOCK_STREAM)[0][4]
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(10)
                s.connect(address)
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            return int(head.split()[1]), body.decode(errors="replace")
        except OSError as exc:
            errors.append(exc)
    raise ConnectionRefusedError(f"localhost:{port}: {errors}")


def test_the_documented_port_forward_check_reaches_the_chart_default(tmp_path: Path) -> None:
    """Issue 21 item 1: with hostNetwork the chart binds $NODE_IP; the port-forward check connects to localhost.
    NODE_IP here is 127.0.0.2, an address of this host that "localhost" does not resolve to."""
    port = free_port()
    listen = next(a for a in rendered_args(render({"port": port})) if a.startswith("--listen-address="))
    assert listen == f"--listen-address=$NODE_IP:{port},127.0.0.1:{port}"
    log = tmp_path / "exporter.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cilium_node_exporter", listen, "--sources=hubble",
                                 f"--hubble-address=unix://{tmp_path}/absent.sock"], stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, "NODE_IP": "127.0.0.2"})
    try:
        wait_until(lambda: "listening on" in log.read_text() or proc.poll() is not None, 20, "the exporter")
        assert f"listening on 127.0.0.2:{port}, 127.0.0.1:{port}" in log.read_text(), log.read_text()
        assert port_forward_get(port, "/readyz")[0] == 200
        status, body = port_forward_get(port, "/metrics")
        assert status == 200 and "cilium_node_exporter_source_up" in body
        with urllib.request.urlopen(f"http://127.0.0.2:{port}/readyz", timeout=10) as r:  # and on the node IP
            assert r.status == 200
    finally:
        proc.terminate()
        proc.wait(10)


def test_behind_kube_rbac_proxy_only_the_proxys_certificate_opens_the_exporter(tmp_path: Path) -> None:
    """The upstream Secret the chart makes: the exporter's loopback listener refuses a client without the proxy's
    certificate (any process on the node, hostNetwork or not) and serves the proxy, which verifies the
    exporter's certificate for 127.0.0.1 against the same CA, as kube-rbac-proxy's --upstream-ca-file does."""
    objects = render({"kubeRBACProxy": {"enabled": True}})
    (secret,) = [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"].endswith("-upstream-tls")]
    tls_dir = tmp_path / "upstream-tls"
    tls_dir.mkdir()
    for key, value in secret["data"].items():
        (tls_dir / key).write_bytes(base64.b64decode(value))
    (web,) = [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"].endswith("-web-config")]
    config = web["stringData"]["web-config.yml"].replace("/etc/cilium-node-exporter/upstream-tls", str(tls_dir))
    (tmp_path / "web-config.yml").write_text(config)
    assert yaml.safe_load(config)["tls_server_config"]["client_auth_type"] == "RequireAndVerifyClientCert"
    args = [a for a in rendered_args(objects) if not a.startswith(("--listen-address", "--web-config-file",
                                                                     "--health-listen-address"))]
    with ProtectedExporter(tmp_path, *args, f"--web-config-file={tmp_path / 'web-config.yml'}", "--sources=hubble",
                           f"--hubble-address=unix://{tmp_path}/absent.sock") as exp:
        url = f"https://127.0.0.1:{exp.port}/metrics"
        proxy = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))  # verifies 127.0.0.1's certificate
        proxy.load_cert_chain(str(tls_dir / "client.crt"), str(tls_dir / "client.key"))
        with urllib.request.urlopen(url, timeout=10, context=proxy) as r:
            assert r.status == 200 and "cilium_node_exporter_build_info" in r.read().decode()
        neighbour = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))
        with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
            urllib.request.urlopen(url, timeout=10, context=neighbour)
        assert urllib.request.urlopen(exp.health_url + "/healthz", timeout=10).status == 200  # the kubelet's probe
    assert one(objects, "DaemonSet")
