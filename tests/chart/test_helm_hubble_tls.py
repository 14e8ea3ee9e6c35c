"""Hubble over TCP with mutual TLS, end to end: the chart's ``hubble.tls`` values rendered by the real Helm
engine, the exporter process started with exactly the rendered arguments (the Secret's mount point mapped to
a directory of files), and the simulator's Hubble server on TCP requiring client certificates.

The server certificate is issued the way Cilium issues Hubble's (certgen, and the Helm chart's
``hubble.tls.auto``): for ``*.<cluster.name>.hubble-grpc.cilium.io``; Hubble Relay verifies it with the
node's name in place of the ``*``, the chart with the wildcard name itself, which gRPC's host check accepts.
"""

from __future__ import annotations

import copy
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from cilium_node_simulator.events import EventSpec
from cilium_node_simulator.hubble_server import HubbleServer, TLSConfig
from tests.chart.test_helm_render import ci_values, container, render
from tests.support.deploy_guide import blocks
from tests.support.procs import Exporter

MOUNT = "/etc/cilium-node-exporter/hubble-tls/"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Cilium's Hubble CA, its server certificate, and a client certificate the same CA signed: the Secret's
    ``ca.crt``, ``tls.crt`` and ``tls.key`` in ``secret/``."""
    root = tmp_path_factory.mktemp("hubble-pki")
    ca = trustme.CA()
    server = ca.issue_cert("*.default.hubble-grpc.cilium.io")
    client = ca.issue_cert("cilium-node-exporter.hubble-grpc.cilium.io")
    (root / "secret").mkdir()
    files = {"ca": root / "secret" / "ca.crt", "client_cert": root / "secret" / "tls.crt",
             "client_key": root / "secret" / "tls.key", "server_cert": root / "server.crt",
             "server_key": root / "server.key"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    client.cert_chain_pems[0].write_to_path(str(files["client_cert"]))
    client.private_key_pem.write_to_path(str(files["client_key"]))
    server.cert_chain_pems[0].write_to_path(str(files["server_cert"]))
    server.private_key_pem.write_to_path(str(files["server_key"]))
    return files


@pytest.fixture
def hubble(pki: dict[str, Path]) -> Iterator[HubbleServer]:
    tls = TLSConfig(cert=str(pki["server_cert"]), key=str(pki["server_key"]), client_ca=str(pki["ca"]))
    server = HubbleServer(tcp=("127.0.0.1", 0), tls=tls, follow_backlog=0).start()
    try:
        yield server
    finally:
        server.stop()


def rendered_args(port: int, secret_dir: Path, **tls: str) -> list[str]:
    """The exporter's arguments from the chart's restricted values (Hubble over TCP with mTLS) on ``port``,
    with the Secret's mount point replaced by ``secret_dir``; the listen address is the test's."""
    values: dict[str, Any] = copy.deepcopy(ci_values("restricted-values.yaml"))
    values["hubble"]["address"] = f"$NODE_IP:{port}"
    values["hubble"]["tls"].update(tls)
    args = container(render(values))["args"]
    assert f"--hubble-tls-ca={MOUNT}ca.crt" in args and f"--hubble-tls-cert={MOUNT}tls.crt" in args
    return [re.sub(re.escape(MOUNT), f"{secret_dir}/", a) for a in args if not a.startswith("--listen-address=")]


def test_the_rendered_chart_reads_hubble_over_mutual_tls(hubble: HubbleServer, pki: dict[str, Path],
                                                         tmp_path: Path) -> None:
    args = rendered_args(hubble.tcp_port, pki["ca"].parent)
    assert "--hubble-tls-server-name=*.default.hubble-grpc.cilium.io" in args
    with Exporter(tmp_path, *args, env={"NODE_IP": "127.0.0.1"}) as exporter:
        exporter.wait_metrics(lambda m: m.value("cilium_node_exporter_source_up", 0, source="hubble") == 1,
                              what="hubble up over mTLS")
        hubble.emit([(hubble.compile(EventSpec("policy_deny", direction=1)), 5)])
        hubble.sync()
        m = exporter.wait_metrics(lambda m: m.sum("cilium_node_drops_total") == 5, what="5 drops counted")
        assert m.sum("cilium_node_exporter_source_errors_total", source="hubble") == 0


def test_a_server_name_of_another_cluster_is_refused(hubble: HubbleServer, pki: dict[str, Path],
                                                     tmp_path: Path) -> None:
    """The certificate check is real: Cilium's certificate for cluster "default" does not pass for "prod"."""
    args = rendered_args(hubble.tcp_port, pki["ca"].parent, serverName="*.prod.hubble-grpc.cilium.io")
    with Exporter(tmp_path, *args, env={"NODE_IP": "127.0.0.1"}) as exporter:
        m = exporter.wait_metrics(lambda m: m.sum("cilium_node_exporter_source_errors_total", source="hubble") >= 1,
                                  what="a hubble connection error")
        assert m.value("cilium_node_exporter_source_up", source="hubble") == 0
        assert hubble.stats["getflows_calls"] == 0


def test_tls_over_the_unix_socket_is_refused_at_render() -> None:
    with pytest.raises(Exception, match=re.escape("hubble.tls.secretName is for Hubble over TCP")):
        render({"hubble": {"tls": {"secretName": "cne-hubble-client"}}})


def test_the_deploy_guide_block_renders_the_same_arguments() -> None:
    """docs/deploy.md's Hubble mTLS values, as written, give the arguments the tests above run."""
    (block,) = [b for b in blocks("yaml") if "hubble-grpc.cilium.io" in b]
    def hubble_args(values: dict[str, Any]) -> list[str]:
        return [a for a in container(render(values))["args"] if a.startswith("--hubble-")]

    assert hubble_args(yaml.safe_load(textwrap.dedent(block))) == hubble_args(ci_values("restricted-values.yaml"))
