"""The shipped Alertmanager configuration (alerts/alertmanager/alertmanager.yaml), loaded AS IS into Debian's
real Alertmanager (only the receivers' URLs point at a local webhook): amtool accepts it, causes mute their
echoes on the same node and per-cluster alerts mute the per-node ones of their cluster (never another
cluster's), a fleet-wide incident is one page notification, and kube-prometheus' default severity
inhibition added next to it cannot mute one node's alert with another's."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from alerts import generate
from alerts.routing import PAGE_URL, TICKET_URL
from cilium_node_simulator.webhook import WebhookReceiver
from tests.support.paths import REPO
from tests.support.procs import free_port

SHIPPED = REPO / "alerts" / "alertmanager" / generate.ALERTMANAGER_FILE
# kube-prometheus' default inhibition (alertmanager-config in kube-prometheus and kube-prometheus-stack):
# a critical alert mutes warning and info alerts with the same namespace and alert name.
KUBE_PROMETHEUS_SEVERITY_INHIBITION = {"source_matchers": ['severity="critical"'],
                                       "target_matchers": ['severity=~"warning|info"'],
                                       "equal": ["namespace", "alertname"]}


def binary(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} not found: apt-get install prometheus-alertmanager (make system-deps)")
    return path


def shipped_config(page_url: str, ticket_url: str) -> str:
    """The shipped file, text for text, with the receivers' URLs replaced."""
    text = SHIPPED.read_text()
    assert text.count(PAGE_URL) == 1 and text.count(TICKET_URL) == 1
    return text.replace(PAGE_URL, page_url).replace(TICKET_URL, ticket_url)


def test_the_shipped_file_is_what_the_generator_builds_and_amtool_accepts_it(tmp_path: Path) -> None:
    config = yaml.safe_load(SHIPPED.read_text())
    assert config == generate.build_alertmanager()
    inhibit = yaml.safe_load((REPO / "alerts" / "alertmanager" / generate.INHIBIT_FILE).read_text())
    assert config["inhibit_rules"] == inhibit["inhibit_rules"]
    assert all("cluster" in rule["equal"] for rule in config["inhibit_rules"])
    path = tmp_path / "alertmanager.yml"
    path.write_text(SHIPPED.read_text())
    result = subprocess.run([binary("amtool"), "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(config['inhibit_rules'])} inhibit rules" in result.stdout
    routes = {labels: subprocess.run([binary("amtool"), "config", "routes", "test", f"--config.file={path}",
                                      *labels.split()], capture_output=True, text=True, timeout=60).stdout.strip()
              for labels in ("severity=critical alertname=CiliumNodeDropErrorBudgetBurn",
                             "severity=warning alertname=CiliumNodeUnexpectedDrops", "severity=info")}
    assert routes == {"severity=critical alertname=CiliumNodeDropErrorBudgetBurn": "page",
                      "severity=warning alertname=CiliumNodeUnexpectedDrops": "ticket", "severity=info": "none"}


class Alertmanager:
    """Debian's Alertmanager on a free port with a configuration file."""

    def __init__(self, tmp_path: Path, config: str) -> None:
        self.tmp_path = tmp_path
        (tmp_path / "alertmanager.yml").write_text(config)
        self.url = f"http://127.0.0.1:{free_port()}"
        self.proc = subprocess.Popen(
            [binary("prometheus-alertmanager"), f"--config.file={tmp_path / 'alertmanager.yml'}",
             f"--storage.path={tmp_path / 'data'}", f"--web.listen-address={self.url.removeprefix('http://')}",
             "--cluster.listen-address="], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail("alertmanager did not start: " + (self.proc.stderr.read().decode()
                                                                   if self.proc.stderr else ""))
                time.sleep(0.05)

    def post(self, alerts: list[dict]) -> None:
        request = urllib.request.Request(f"{self.url}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200

    def get(self, path: str) -> list[dict]:
        with urllib.request.urlopen(f"{self.url}/api/v2/{path}", timeout=5) as response:
            return json.load(response)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def alertmanager(tmp_path: Path, webhook: WebhookReceiver) -> Iterator[Alertmanager]:
    am = Alertmanager(tmp_path, shipped_config(webhook.url + "/page", webhook.url + "/ticket"))
    try:
        yield am
    finally:
        am.stop()


def alert(name: str, node: str | None = "n1", severity: str = "warning", **labels: str) -> dict:
    base = {"alertname": name, "cluster": "c1", "severity": severity, **labels}
    if node:
        base["node"] = node
    return {"labels": base, "startsAt": datetime.now(UTC).isoformat()}


def muted(am: Alertmanager, expected: set, posted: int) -> set[tuple[str, str, str, str]]:
    """The muted alerts once all ``posted`` are in and the inhibitor (which learns sources asynchronously)
    gives ``expected`` or 5 s have passed."""
    deadline = time.monotonic() + 5
    while True:
        alerts = am.get("alerts")
        got = {(a["labels"]["alertname"], a["labels"].get("node", ""), a["labels"]["cluster"],
                a["labels"].get("long", "") or a["labels"].get("source", "")) for a in alerts
               if a["status"]["inhibitedBy"]}
        if (len(alerts) == posted and got == expected) or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_causes_mute_their_echoes_on_the_same_node(alertmanager: Alertmanager) -> None:
    posted = [
        alert("CiliumNodeConntrackMapFull", "n1", "critical"),
        alert("CiliumNodeUnexpectedDrops", "n1"),
        alert("CiliumNodeUnexpectedDrops", "n2"),
        alert("CiliumNodeExporterSourceDown", "n3", source="kubelet"),
        alert("CiliumAgentMemoryAboveEnvelope", "n3"),
        alert("CiliumAgentOOMKillLoop", "n3", "critical"),
        alert("CiliumAgentOOMKilled", "n3"),
        alert("CiliumNodeDropErrorBudgetBurn", "n4", "critical", long="1h", short="5m"),
        alert("CiliumNodeDropErrorBudgetSlowBurn", "n4", long="1d", short="2h"),
        alert("CiliumNodeExporterDown", "n5"),
        alert("CiliumNodePolicyDenialSurge", "n5"),
        alert("CiliumNodePolicyDenialSurge", "n5", cluster="c2"),
        alert("KubeNodeNotReady", "n6"),
        alert("CiliumEnvoyOOMKilled", "n6"),
    ]
    alertmanager.post(posted)
    expected = {
        ("CiliumNodeUnexpectedDrops", "n1", "c1", ""),
        ("CiliumAgentMemoryAboveEnvelope", "n3", "c1", ""),
        ("CiliumAgentOOMKilled", "n3", "c1", ""),
        ("CiliumNodeDropErrorBudgetSlowBurn", "n4", "c1", "1d"),
        ("CiliumNodePolicyDenialSurge", "n5", "c1", ""),
        ("CiliumEnvoyOOMKilled", "n6", "c1", ""),
    }
    assert muted(alertmanager, expected, len(posted)) == expected


def test_cluster_alerts_mute_the_per_node_alerts_of_their_cluster_only(alertmanager: Alertmanager) -> None:
    posted = [
        alert("CiliumClusterAgentMemoryAboveEnvelope", None, "critical"),
        *(alert("CiliumAgentMemoryAboveEnvelope", f"n{i}") for i in range(5)),
        alert("CiliumAgentMemoryAboveEnvelope", "n1", cluster="c2"),
        alert("CiliumClusterExporterSourceDown", None, "critical", source="hubble"),
        alert("CiliumNodeExporterSourceDown", "n7", source="hubble"),
        alert("CiliumNodeExporterSourceDown", "n7", source="kubelet"),
        alert("CiliumClusterUnexpectedDrops", None, "critical", cluster="c2"),
        alert("CiliumNodeDropErrorBudgetBurn", "n8", "critical", cluster="c2", long="1h", short="5m"),
        alert("CiliumNodeDropErrorBudgetBurn", "n8", "critical", long="1h", short="5m"),
    ]
    alertmanager.post(posted)
    expected = {
        *(("CiliumAgentMemoryAboveEnvelope", f"n{i}", "c1", "") for i in range(5)),
        ("CiliumNodeExporterSourceDown", "n7", "c1", "hubble"),
        ("CiliumNodeDropErrorBudgetBurn", "n8", "c2", "1h"),
    }
    assert muted(alertmanager, expected, len(posted)) == expected


def test_kube_prometheus_default_inhibition_cannot_mute_another_nodes_alert(tmp_path: Path) -> None:
    """Every alert name has one severity, so `equal: [namespace, alertname]` never pairs a critical alert
    with a warning one, with or without a namespace label."""
    config = yaml.safe_load(shipped_config("http://127.0.0.1:9/page", "http://127.0.0.1:9/ticket"))
    config["inhibit_rules"].append(KUBE_PROMETHEUS_SEVERITY_INHIBITION)
    am = Alertmanager(tmp_path, yaml.safe_dump(config))
    try:
        posted = [
            alert("CiliumNodeDropErrorBudgetBurn", "n1", "critical", long="1h", short="5m"),
            alert("CiliumNodeDropErrorBudgetSlowBurn", "n2", long="1d", short="2h"),
            alert("CiliumNodeDropErrorBudgetSlowBurn", "n3", cluster="c2", long="3d", short="6h"),
            alert("CiliumAgentOOMKillLoop", "n4", "critical", namespace="monitoring"),
            alert("CiliumAgentOOMKilled", "n5", namespace="monitoring"),
            alert("CiliumAgentMemoryBelowEnvelope", "n6", "info", namespace="monitoring"),
            # the rule itself works: a critical and a warning alert of one (foreign) name are paired
            alert("KubeDaemonSetRolloutStuck", None, "critical", namespace="monitoring"),
            alert("KubeDaemonSetRolloutStuck", None, "warning", namespace="monitoring"),
        ]
        am.post(posted)
        time.sleep(1)  # let the inhibitor learn every source before looking for wrong mutes
        expected = {("KubeDaemonSetRolloutStuck", "", "c1", "")}
        assert muted(am, expected, len(posted)) == expected
    finally:
        am.stop()


def test_a_fleet_wide_incident_is_one_page_notification(alertmanager: Alertmanager, webhook: WebhookReceiver) -> None:
    """200 nodes of c1 fail together (bad rollout): per-node pages, warnings and the cluster alert arrive
    within a second; the page receiver gets one notification for the cluster, the ticket receiver one per
    alert name; c2's single failing node gets its own page."""
    nodes = [f"node-{i:03d}" for i in range(200)]
    posted = [alert("CiliumClusterAgentRestarts", None, "critical"),
              alert("CiliumClusterUnexpectedDrops", None, "critical")]
    posted += [alert("CiliumAgentOOMKillLoop", n, "critical") for n in nodes]
    posted += [alert("CiliumNodeDropErrorBudgetBurn", n, "critical", long="1h", short="5m") for n in nodes]
    posted += [alert("CiliumAgentMemoryAboveEnvelope", n) for n in nodes]
    posted += [alert("CiliumNodeConntrackMapFull", "node-007", "critical", cluster="c2")]
    alertmanager.post(posted)
    deadline = time.monotonic() + 20  # the dispatcher groups posted alerts asynchronously
    while time.monotonic() < deadline:
        groups = alertmanager.get("alerts/groups")
        if sum(len(g["alerts"]) for g in groups) == len(posted):
            break
        time.sleep(0.2)
    pages = [g for g in groups if g["receiver"]["name"] == "page"]
    assert sorted(g["labels"]["cluster"] for g in pages) == ["c1", "c2"]
    tickets = [g for g in groups if g["receiver"]["name"] == "ticket"]
    assert [(g["labels"]["cluster"], g["labels"]["alertname"]) for g in tickets] == \
        [("c1", "CiliumAgentMemoryAboveEnvelope")]
    assert len(tickets[0]["alerts"]) == 200  # one ticket group (group_wait 1m: not waited for here)
    # The page route's group_wait (30s): one notification per cluster, without the inhibited per-node pages.
    deadline = time.monotonic() + 90
    while len(webhook.payloads) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)  # nothing else may arrive
    pages_sent = [p for p in webhook.payloads if p["receiver"] == "page"]
    assert len(pages_sent) == len(webhook.payloads) == 2, [(p["receiver"], p["groupLabels"]) for p in webhook.payloads]
    c1 = next(p for p in pages_sent if p["groupLabels"]["cluster"] == "c1")
    assert sorted(a["labels"]["alertname"] for a in c1["alerts"]) == \
        ["CiliumClusterAgentRestarts", "CiliumClusterUnexpectedDrops"]
    c2 = next(p for p in pages_sent if p["groupLabels"]["cluster"] == "c2")
    assert [a["labels"]["node"] for a in c2["alerts"]] == ["node-007"]
