"""The shipped Alertmanager configuration (alerts/alertmanager/alertmanager.yaml), loaded AS IS into Debian's
real Alertmanager (only the receivers' URLs point at a local webhook): amtool accepts it, its one route takes the
pack's alerts only (scope label and names), also merged into a shared Alertmanager next to another team's
alerts in the same namespace; causes mute their echoes on the same node and per-cluster alerts the per-node
ones of their cluster (never another cluster's, never another team's); page groups keep unrelated alerts
apart and a fleet-wide incident notifies at most three times in its first 15 minutes (played with every
route timer scaled down); kube-prometheus' default severity inhibition cannot mute one node's alert with
another's; the chart's AlertmanagerConfig, converted as prometheus-operator does, routes and mutes alike
inside kube-prometheus-stack's default configuration."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts import generate
from alerts.alerting import NODE_DOWN_ALERTS
from alerts.routing import PAGE_URL, TICKET_URL
from cilium_node_exporter.mixin.config import DEFAULTS, duration_seconds
from cilium_node_simulator.webhook import WebhookReceiver
from tests.support import operator_amcfg
from tests.support.paths import REPO
from tests.support.procs import free_port

SHIPPED = REPO / "alerts" / "alertmanager" / generate.ALERTMANAGER_FILE
SCOPE = {DEFAULTS["scopeLabel"]: DEFAULTS["scopeValue"]}
# kube-prometheus' default inhibition (alertmanager-config in kube-prometheus and kube-prometheus-stack):
# a critical alert mutes warning and info alerts with the same namespace and alert name.
KUBE_PROMETHEUS_SEVERITY_INHIBITION = {"source_matchers": ['severity="critical"'],
                                       "target_matchers": ['severity=~"warning|info"'],
                                       "equal": ["namespace", "alertname"]}
# kube-prometheus-stack 88.5.3 (charts/kube-prometheus-stack/values.yaml, alertmanager.config): the whole
# default configuration the operator merges AlertmanagerConfigs into.
KPS_DEFAULT = {
    "global": {"resolve_timeout": "5m"},
    "inhibit_rules": [
        KUBE_PROMETHEUS_SEVERITY_INHIBITION,
        {"source_matchers": ["severity = warning"], "target_matchers": ["severity = info"],
         "equal": ["namespace", "alertname"]},
        {"source_matchers": ["alertname = InfoInhibitor"], "target_matchers": ["severity = info"],
         "equal": ["namespace"]},
        {"target_matchers": ["alertname = InfoInhibitor"]},
    ],
    "route": {"group_by": ["namespace"], "group_wait": "30s", "group_interval": "5m", "repeat_interval": "12h",
              "receiver": "null", "routes": [{"receiver": "null", "matchers": ['alertname = "Watchdog"']}]},
    "receivers": [{"name": "null"}],
}


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


def amtool_routes(config: Path, *label_sets: str) -> dict[str, str]:
    """The receiver(s) amtool's routing test picks for each label set ("a=b c=d")."""
    return {labels: subprocess.run([binary("amtool"), "config", "routes", "test", f"--config.file={config}",
                                    *labels.split()], capture_output=True, text=True, timeout=60).stdout.strip()
            for labels in label_sets}


def check_config(path: Path, config: dict[str, Any] | str) -> str:
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False))
    result = subprocess.run([binary("amtool"), "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


SCOPED = " ".join(f"{k}={v}" for k, v in SCOPE.items())


def test_the_shipped_file_is_what_the_generator_builds_and_amtool_accepts_it(tmp_path: Path) -> None:
    config = yaml.safe_load(SHIPPED.read_text())
    assert config == generate.build_alertmanager()
    inhibit = yaml.safe_load((REPO / "alerts" / "alertmanager" / generate.INHIBIT_FILE).read_text())
    assert config["inhibit_rules"] == inhibit["inhibit_rules"]
    path = tmp_path / "alertmanager.yml"
    out = check_config(path, SHIPPED.read_text())
    assert f"{len(config['inhibit_rules'])} inhibit rules" in out
    routes = amtool_routes(
        path,
        f"{SCOPED} severity=critical alertname=CiliumNodeDropErrorBudgetBurn",
        f"{SCOPED} severity=warning alertname=CiliumNodeUnexpectedDrops",
        f"{SCOPED} severity=info alertname=CiliumAgentMemoryBelowEnvelope",
        # not the pack's: no scope label, or another team's alert that carries the same label value
        "severity=critical alertname=CiliumNodeDropErrorBudgetBurn",
        f"{SCOPED} severity=critical alertname=KubePodCrashLooping",
        "namespace=kube-system severity=critical alertname=CiliumAgentOOMKillLoop")
    assert list(routes.values()) == ["page", "ticket", "none", "none", "none", "none"], routes


def test_every_inhibition_mutes_only_the_packs_alerts_and_keeps_the_cluster_equal() -> None:
    pack = {r["alert"] for g in generate.build_groups() for r in g["rules"] if "alert" in r}
    scope = f'{DEFAULTS["scopeLabel"]}="{DEFAULTS["scopeValue"]}"'
    for rule in generate.build_inhibit_rules():
        assert DEFAULTS["clusterLabel"] in rule["equal"], rule
        assert scope in rule["target_matchers"], rule
        sources = rule["source_matchers"][0].split('"')[1].split("|")
        # a Kubernetes alert (KubeNodeNotReady) mutes the pack's alerts of its node: it carries its own scope
        assert (scope in rule["source_matchers"]) == (not set(sources) <= set(NODE_DOWN_ALERTS)), rule
        assert set(sources) <= pack | set(NODE_DOWN_ALERTS), rule


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

    def groups(self, posted: int) -> list[dict]:
        """Alertmanager's groups once all ``posted`` alerts are dispatched (asynchronously)."""
        deadline = time.monotonic() + 20
        while True:
            groups = self.get("alerts/groups")
            if sum(len(g["alerts"]) for g in groups) >= posted or time.monotonic() > deadline:
                return groups
            time.sleep(0.1)

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
    """An alert of the pack (with its scope label unless ``labels`` replace it)."""
    base = {"alertname": name, "cluster": "c1", "severity": severity, **SCOPE, **labels}
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
                a["labels"].get("long", "") or a["labels"].get("source", "") or a["labels"].get("namespace", ""))
               for a in alerts if a["status"]["inhibitedBy"]}
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
        alert("KubeNodeNotReady", "n6", namespace="monitoring"),  # kubernetes-mixin's, its own namespace
        alert("CiliumEnvoyOOMKilled", "n6"),
    ]
    alertmanager.post(posted)
    expected = {
        ("CiliumNodeUnexpectedDrops", "n1", "c1", "cilium-node-exporter"),
        ("CiliumAgentMemoryAboveEnvelope", "n3", "c1", "cilium-node-exporter"),
        ("CiliumAgentOOMKilled", "n3", "c1", "cilium-node-exporter"),
        ("CiliumNodeDropErrorBudgetSlowBurn", "n4", "c1", "1d"),
        ("CiliumNodePolicyDenialSurge", "n5", "c1", "cilium-node-exporter"),
        ("CiliumEnvoyOOMKilled", "n6", "c1", "cilium-node-exporter"),
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
        # restarts across a cluster also mute its memory roll-up (one page for a leak that kills agents)
        alert("CiliumClusterAgentRestarts", None, "critical", cluster="c3"),
        alert("CiliumClusterAgentMemoryAboveEnvelope", None, "critical", cluster="c3"),
    ]
    alertmanager.post(posted)
    expected = {
        *(("CiliumAgentMemoryAboveEnvelope", f"n{i}", "c1", "cilium-node-exporter") for i in range(5)),
        ("CiliumNodeExporterSourceDown", "n7", "c1", "hubble"),
        ("CiliumNodeDropErrorBudgetBurn", "n8", "c2", "1h"),
        ("CiliumClusterAgentMemoryAboveEnvelope", "", "c3", "cilium-node-exporter"),
    }
    assert muted(alertmanager, expected, len(posted)) == expected


def shared_config(webhook: WebhookReceiver) -> dict[str, Any]:
    """A shared Alertmanager: another team's routes (their criticals page them), and the pack's one route,
    receivers and inhibitions added as alerts/README.md says."""
    pack = yaml.safe_load(shipped_config(webhook.url + "/page", webhook.url + "/ticket"))
    team = {"route": {"receiver": "team-default", "group_by": ["namespace"],
                      "routes": [{"receiver": "team-pager", "matchers": ['severity="critical"']}]},
            "receivers": [{"name": "team-default"}, {"name": "team-pager"}], "inhibit_rules": []}
    team["route"]["routes"].insert(0, pack["route"]["routes"][0])
    team["receivers"] += [r for r in pack["receivers"] if r["name"] != "none"] + [{"name": "none"}]
    team["inhibit_rules"] += pack["inhibit_rules"]
    return team


def test_merged_into_a_shared_alertmanager_it_takes_and_mutes_only_the_packs_alerts(
        tmp_path: Path, webhook: WebhookReceiver) -> None:
    config = shared_config(webhook)
    check_config(tmp_path / "check.yml", config)
    am = Alertmanager(tmp_path, yaml.safe_dump(config))
    try:
        posted = [
            alert("CiliumNodeConntrackMapFull", "n1", "critical"),
            alert("CiliumNodeUnexpectedDrops", "n1"),
            # another team's alerts: a critical in the pack's namespace, and another Cilium pack's alerts with
            # the pack's names on the same node (as a second Cilium mixin would have)
            alert("KubePodCrashLooping", "n1", "critical"),
            alert("CiliumNodeUnexpectedDrops", "n1", namespace="network-team"),
            alert("CiliumNodeConntrackMapFull", "n2", "critical", namespace="network-team"),
            alert("CiliumNodeUnexpectedDrops", "n2"),
        ]
        am.post(posted)
        expected = {("CiliumNodeUnexpectedDrops", "n1", "c1", "cilium-node-exporter")}
        assert muted(am, expected, len(posted)) == expected
        receivers = {(a["labels"]["alertname"], a["labels"]["node"], a["labels"]["namespace"]): g["receiver"]["name"]
                     for g in am.groups(len(posted)) for a in g["alerts"]}
        assert receivers == {
            ("CiliumNodeConntrackMapFull", "n1", "cilium-node-exporter"): "page",
            ("CiliumNodeUnexpectedDrops", "n1", "cilium-node-exporter"): "ticket",
            ("KubePodCrashLooping", "n1", "cilium-node-exporter"): "team-pager",
            ("CiliumNodeUnexpectedDrops", "n1", "network-team"): "team-default",
            ("CiliumNodeConntrackMapFull", "n2", "network-team"): "team-pager",
            ("CiliumNodeUnexpectedDrops", "n2", "cilium-node-exporter"): "ticket",
        }
    finally:
        am.stop()


def test_kube_prometheus_default_inhibition_cannot_mute_another_nodes_alert(tmp_path: Path) -> None:
    """Every alert name has one severity, so `equal: [namespace, alertname]` never pairs a critical alert
    with a warning one, although every alert of the pack carries the same namespace."""
    config = yaml.safe_load(shipped_config("http://127.0.0.1:9/page", "http://127.0.0.1:9/ticket"))
    config["inhibit_rules"].append(KUBE_PROMETHEUS_SEVERITY_INHIBITION)
    am = Alertmanager(tmp_path, yaml.safe_dump(config))
    try:
        posted = [
            alert("CiliumNodeDropErrorBudgetBurn", "n1", "critical", long="1h", short="5m"),
            alert("CiliumNodeDropErrorBudgetSlowBurn", "n2", long="1d", short="2h"),
            alert("CiliumNodeDropErrorBudgetSlowBurn", "n3", cluster="c2", long="3d", short="6h"),
            alert("CiliumAgentOOMKillLoop", "n4", "critical"),
            alert("CiliumAgentOOMKilled", "n5"),
            alert("CiliumAgentMemoryBelowEnvelope", "n6", "info"),
            # the rule itself works: a critical and a warning alert of one (foreign) name are paired
            alert("KubeDaemonSetRolloutStuck", None, "critical", namespace="monitoring"),
            alert("KubeDaemonSetRolloutStuck", None, "warning", namespace="monitoring"),
        ]
        am.post(posted)
        time.sleep(1)  # let the inhibitor learn every source before looking for wrong mutes
        expected = {("KubeDaemonSetRolloutStuck", "", "c1", "monitoring")}
        assert muted(am, expected, len(posted)) == expected
    finally:
        am.stop()


# --- one incident, one page per alert name: the shipped timers, scaled down -------------------------------------

SCALE = 60  # production seconds per real second: the first 15 minutes of an incident take 15 s
WINDOW = 15 * 60


def scaled(config: dict[str, Any], factor: float) -> dict[str, Any]:
    """``config`` with every route timer divided by ``factor`` (Alertmanager takes milliseconds)."""
    def walk(route: dict[str, Any]) -> None:
        for key in ("group_wait", "group_interval", "repeat_interval"):
            if key in route:
                route[key] = f"{round(duration_seconds(route[key]) * 1000 / factor)}ms"
        for child in route.get("routes", []):
            walk(child)
    walk(config["route"])
    return config


def fleet_incident() -> list[tuple[float, dict]]:
    """(production second, alert) of a bad rollout on 200 nodes of c1, from the pack's own `for` durations: the
    release reaches a node every 1.5 s (5 minutes for the fleet, as simulator scenario fleet/bad-rollout); every
    new agent drops all its packets (a total outage: the 1h and 5m burn windows pass their threshold within a
    minute) and is OOM-killed 3 minutes after its upgrade, again 3 minutes later; its working set passes the
    envelope a minute after the upgrade. The restart roll-up fires once 10 % of the nodes (20) restarted, the
    drop roll-up unexpectedDropsFor after 10 % of the nodes drop, the memory roll-up memoryAboveEnvelopeFor
    after 10 % are above the envelope (past the first 15 minutes); an unrelated conntrack table fills on one
    node of the cluster at minute 6."""
    burn = next(w for w in DEFAULTS["sloBurnWindows"] if w["severity"] == "critical")
    events = []
    for i in range(200):
        upgraded = 1.5 * i
        events.append((upgraded + 60 + duration_seconds(burn["for"]),
                       alert("CiliumNodeDropErrorBudgetBurn", f"node-{i:03d}", "critical",
                             long=burn["long"], short=burn["short"])))
        events.append((upgraded + 360 + duration_seconds(DEFAULTS["oomKillLoopFor"]),
                       alert("CiliumAgentOOMKillLoop", f"node-{i:03d}", "critical")))
    events.append((1.5 * 20 + 180 + duration_seconds(DEFAULTS["oomKilledFor"]),
                   alert("CiliumClusterAgentRestarts", None, "critical")))
    events.append((1.5 * 20 + duration_seconds(DEFAULTS["unexpectedDropsFor"]),
                   alert("CiliumClusterUnexpectedDrops", None, "critical")))
    events.append((1.5 * 20 + 60 + duration_seconds(DEFAULTS["memoryAboveEnvelopeFor"]),
                   alert("CiliumClusterAgentMemoryAboveEnvelope", None, "critical")))
    events.append((360, alert("CiliumNodeConntrackMapFull", "node-150", "critical")))
    return sorted(events, key=lambda e: e[0])


def test_a_fleet_wide_incident_notifies_at_most_three_times_in_its_first_15_minutes(
        tmp_path: Path, webhook: WebhookReceiver) -> None:
    """The shipped configuration with its timers 60 times faster; the incident plays 60 times faster too. Page
    groups are per alert name: the per-node burn pages (before the drop roll-up mutes them), the restart
    roll-up (the OOM loops it mutes never notify) and the drop roll-up notify once each; the conntrack page,
    unrelated, arrives alone in its own group instead of joining the incident."""
    config = scaled(yaml.safe_load(shipped_config(webhook.url + "/page", webhook.url + "/ticket")), SCALE)
    am = Alertmanager(tmp_path, yaml.safe_dump(config))
    try:
        events = fleet_incident()
        start = time.monotonic()
        sent = 0
        while time.monotonic() - start < WINDOW / SCALE:
            now = (time.monotonic() - start) * SCALE
            due = [a for t, a in events[sent:] if t <= now]
            if due:
                am.post(due)
                sent += len(due)
            time.sleep(0.05)
        pages = [p for p in list(webhook.payloads) if p["receiver"] == "page"]
    finally:
        am.stop()
    summary = [(p["groupLabels"], len(p["alerts"])) for p in pages]
    assert all(set(p["groupLabels"]) == {*SCOPE, "cluster", "alertname"} for p in pages), summary
    unrelated = [p for p in pages if any(a["labels"]["alertname"] == "CiliumNodeConntrackMapFull" for a in p["alerts"])]
    assert len(unrelated) == 1 and [a["labels"]["node"] for a in unrelated[0]["alerts"]] == ["node-150"], summary
    incident = [p for p in pages if p not in unrelated]
    assert 2 <= len(incident) <= 3, summary
    names = [p["groupLabels"]["alertname"] for p in incident]
    assert len(set(names)) == len(names), summary  # no group notified twice within 15 minutes
    assert {"CiliumNodeDropErrorBudgetBurn", "CiliumClusterAgentRestarts"} <= set(names), summary
    assert "CiliumAgentOOMKillLoop" not in names, summary  # muted by the restart roll-up from the start


# --- tuning keeps routes and inhibitions coherent ---------------------------------------------------------------

def test_overridden_severity_routes_by_its_new_severity_and_keeps_its_inhibitions(tmp_path: Path) -> None:
    config = {"customRules": {"CiliumNodeUnexpectedDrops": {"severity": "critical"},
                              "CiliumAgentOOMKillLoop": {"severity": "warning"}},
              "disabled": {"CiliumClusterUnexpectedDrops": True, "CiliumNodeConntrackMapFull": True}}
    am_config = generate.build_alertmanager(config)
    path = tmp_path / "alertmanager.yml"
    check_config(path, am_config)
    routes = amtool_routes(path, f"{SCOPED} severity=critical alertname=CiliumNodeUnexpectedDrops",
                           f"{SCOPED} severity=warning alertname=CiliumAgentOOMKillLoop",
                           f"{SCOPED} severity=critical alertname=CiliumClusterUnexpectedDrops")
    assert list(routes.values()) == ["page", "ticket", "none"], routes
    rules = {tuple(r["source_matchers"]): r for r in am_config["inhibit_rules"]}
    names = " ".join(m for r in am_config["inhibit_rules"] for m in r["source_matchers"] + r["target_matchers"])
    named = set(re.findall(r'alertname=~?"([^"]+)"', names))
    named = {n for m in named for n in m.split("|")}
    assert "CiliumClusterUnexpectedDrops" not in named and "CiliumNodeConntrackMapFull" not in named
    assert "CiliumClusterUnexpectedDropsHubble" in named
    assert len(rules) == len(generate.build_inhibit_rules()) - 2  # the rules with only disabled sources
    scope = f'{DEFAULTS["scopeLabel"]}="{DEFAULTS["scopeValue"]}"'
    assert rules[('alertname="CiliumAgentOOMKillLoop"', scope)]["target_matchers"] == \
        ['alertname=~"CiliumAgentOOMKilled|CiliumAgentRestartingFrequently"', scope]
    groups = generate.build_groups(config)
    severities = {r["alert"]: r["labels"]["severity"] for g in groups for r in g["rules"] if "alert" in r}
    assert severities["CiliumNodeUnexpectedDrops"] == "critical" and severities["CiliumAgentOOMKillLoop"] == "warning"


# --- the chart's AlertmanagerConfig inside kube-prometheus-stack's Alertmanager ---------------------------------

def test_the_charts_alertmanagerconfig_routes_and_mutes_only_the_packs_alerts_in_kube_prometheus_stack(
        tmp_path: Path, webhook: WebhookReceiver) -> None:
    """Installed in the stack's own namespace (monitoring), next to the stack's alerts there."""
    from tests.chart.test_helm_render import one, render

    amc = one(render({"prometheusRule": {"enabled": True}, "alertmanagerConfig": {
        "enabled": True, "receivers": {"page": {"webhookUrl": webhook.url + "/page"},
                                       "ticket": {"webhookUrlSecret": {"name": "tickets", "key": "url"}}}}}),
              "AlertmanagerConfig")
    config = operator_amcfg.merge(KPS_DEFAULT, amc, {("tickets", "url"): webhook.url + "/ticket"})
    path = tmp_path / "alertmanager.yml"
    check_config(path, config)
    prefix = "monitoring/cne-cilium-node-exporter/"
    routes = amtool_routes(path, "namespace=monitoring severity=critical alertname=CiliumNodeConntrackMapFull",
                           "namespace=monitoring severity=warning alertname=CiliumNodeUnexpectedDrops",
                           "namespace=monitoring severity=critical alertname=PrometheusRuleFailures",
                           "namespace=cilium-node-exporter severity=critical alertname=CiliumNodeConntrackMapFull",
                           "alertname=Watchdog")
    assert list(routes.values()) == [prefix + "page", prefix + "ticket", "null", "null", "null"], routes
    am = Alertmanager(tmp_path, yaml.safe_dump(config))
    try:
        ns = {"namespace": "monitoring"}
        posted = [alert("CiliumNodeConntrackMapFull", "n1", "critical", **ns),
                  alert("CiliumNodeUnexpectedDrops", "n1", **ns),
                  alert("CiliumNodeUnexpectedDrops", "n1", namespace="network-team"),
                  alert("PrometheusRuleFailures", None, "critical", **ns)]
        am.post(posted)
        expected = {("CiliumNodeUnexpectedDrops", "n1", "c1", "monitoring")}
        assert muted(am, expected, len(posted)) == expected
        receivers = {(a["labels"]["alertname"], a["labels"]["namespace"]): g["receiver"]["name"]
                     for g in am.groups(len(posted)) for a in g["alerts"]}
        assert receivers[("CiliumNodeConntrackMapFull", "monitoring")] == prefix + "page"
        assert receivers[("PrometheusRuleFailures", "monitoring")] == "null"
        assert receivers[("CiliumNodeUnexpectedDrops", "network-team")] == "null"
    finally:
        am.stop()
