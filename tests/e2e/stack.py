"""The end-to-end stack: Debian's Prometheus and Alertmanager, simulators and exporters on loopback.

Prometheus loads the alert pack rendered with the accelerated preset (same expressions, short windows,
1 s scrape and evaluation) plus the default pack's recording rules that the accelerated one does not
produce (the dashboards read them), scrapes every exporter through ``file_sd`` with a ``node`` target
label, and scrapes itself. Alertmanager runs the shipped configuration (alerts/alertmanager/alertmanager.yaml:
route, receivers, inhibitions) with both receivers pointed at the webhook and its timings accelerated like
the rules (group_wait 5s, group_interval 1s) so that resolved notifications arrive within the run.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from alerts.generate import build_alertmanager, build_groups, render_rules
from alerts.routing import PAGE_URL, TICKET_URL
from tests.e2e.procs import Processes, http_get, wait_until
from tests.support.paths import REPO
from tests.support.procs import free_port

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
JOB = "cilium-node-exporter"
GROUP_WAIT = "5s"  # a cause and its echo reach Alertmanager within a scrape or two; inhibition needs both


def require_binaries() -> None:
    """Fail (not skip) when Debian's Prometheus or Alertmanager is missing."""
    missing = [b for b in (PROMETHEUS, ALERTMANAGER) if not Path(b).exists() and not shutil.which(Path(b).name)]
    assert not missing, (f"{', '.join(missing)} missing: install Debian's prometheus and prometheus-alertmanager "
                         "(make system-deps)")


def default_recording_extras(accelerated: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Recording rules of the default pack that the accelerated one lacks, evaluated at most every 10s."""
    have = {r["record"] for g in accelerated for r in g["rules"] if "record" in r}
    out = []
    for group in build_groups(None):
        rules = [r for r in group["rules"] if "record" in r and r["record"] not in have]
        if rules:
            out.append({"name": f"defaults-for-dashboards.{group['name']}", "interval": "10s", "rules": rules})
    return out


def prometheus_config(am_port: int, prom_port: int, sd_dir: Path, rule_files: list[Path]) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "scrape_configs": [{"job_name": JOB, "file_sd_configs": [{"files": [str(sd_dir / "*.json")],
                                                                   "refresh_interval": "1s"}]},
                           {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{prom_port}"]}]}],
    }


def alertmanager_config(webhook_url: str) -> dict[str, Any]:
    """The shipped configuration, receivers pointed at the webhook, timings accelerated."""
    text = (REPO / "alerts" / "alertmanager" / "alertmanager.yaml").read_text()
    assert yaml.safe_load(text) == build_alertmanager(), "alerts/alertmanager/alertmanager.yaml is stale"
    config = yaml.safe_load(text.replace(PAGE_URL, webhook_url).replace(TICKET_URL, webhook_url))

    def accelerate(route: dict[str, Any]) -> None:
        for key, value in (("group_wait", GROUP_WAIT), ("group_interval", "1s"), ("repeat_interval", "1h")):
            if key in route or route is config["route"]:
                route[key] = value
        for child in route.get("routes", []):
            accelerate(child)

    accelerate(config["route"])
    return config


@dataclass
class NodeSpec:
    """One simulated node: a scenario played by a simulator, read by an exporter."""

    name: str
    scenario: str  # built-in name or path
    speed: float = 1.0
    sources: str = "hubble,kubelet,apiserver"
    exporter_args: tuple[str, ...] = ()
    ipv6: bool = False  # everything over ::1: Hubble over TCP, the fakes, the exporter, Prometheus' scrape


@dataclass
class Node:
    spec: NodeSpec
    port: int
    config_dir: Path
    started: float = field(default_factory=time.time)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def host(self) -> str:
        """The loopback address in URL form."""
        return "[::1]" if self.spec.ipv6 else "127.0.0.1"


    @property
    def sim(self) -> str:
        return f"sim-{self.name}"

    @property
    def exporter(self) -> str:
        return f"exporter-{self.name}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"


class Stack:
    """Processes, Prometheus API and Alertmanager API of one end-to-end run."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs = Processes(workdir / "logs")
        self.sd_dir = workdir / "sd"
        self.sd_dir.mkdir(parents=True, exist_ok=True)
        self.nodes: dict[str, Node] = {}
        self.prom_url = ""
        self.am_url = ""

    # --- Prometheus and Alertmanager ---------------------------------------------------------------
    def start_monitoring(self, webhook_url: str, alertmanager: dict[str, Any] | None = None,
                         dashboard_rules: bool = True, resend_delay: str = "1s") -> None:
        """Start Alertmanager (``alertmanager``, else :func:`alertmanager_config`) and Prometheus with the pack
        (and, with ``dashboard_rules``, the default pack's recording rules the dashboards read).

        Prometheus tells Alertmanager a firing alert is valid for 4 x max(``resend_delay``, evaluation interval):
        4 s with the defaults, so an evaluation slower than that (a loaded machine, many nodes) lets the alert
        expire in Alertmanager until the next resend."""
        require_binaries()
        rules_dir = self.workdir / "rules"
        rules_dir.mkdir()
        accelerated = build_groups(preset="accelerated")
        (rules_dir / "accelerated.rules.yaml").write_text(render_rules(preset="accelerated"))
        if dashboard_rules:
            extras = {"groups": default_recording_extras(accelerated)}
            (rules_dir / "default-recording-extras.rules.yaml").write_text(yaml.safe_dump(extras, sort_keys=False))
        am_port, prom_port = free_port(), free_port()
        am_cfg = self.workdir / "alertmanager.yml"
        am_cfg.write_text(yaml.safe_dump(alertmanager or alertmanager_config(webhook_url), sort_keys=False))
        self.procs.start("alertmanager", [
            ALERTMANAGER, f"--config.file={am_cfg}", f"--storage.path={self.workdir / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=", "--log.level=warn"])
        prom_cfg = self.workdir / "prometheus.yml"
        prom_cfg.write_text(yaml.safe_dump(prometheus_config(am_port, prom_port, self.sd_dir,
                                                             sorted(rules_dir.glob("*.yaml"))), sort_keys=False))
        self.procs.start("prometheus", [
            PROMETHEUS, f"--config.file={prom_cfg}", f"--storage.tsdb.path={self.workdir / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}", f"--rules.alert.resend-delay={resend_delay}",
            "--log.level=warn"])
        self.am_url = f"http://127.0.0.1:{am_port}"
        self.prom_url = f"http://127.0.0.1:{prom_port}"
        for name, url in (("alertmanager", self.am_url + "/-/ready"), ("prometheus", self.prom_url + "/-/ready")):
            wait_until(lambda u=url: http_get(u)[0] == 200, 20,
                       lambda n=name: f"{n} ready; log:\n{self.procs.log(n)}")
        groups = self.api("/api/v1/rules")["groups"]
        assert len(groups) >= 5, f"rules not loaded: {groups}\n{self.procs.log('prometheus')}"

    # --- nodes -------------------------------------------------------------------------------------
    def start_simulator(self, spec: NodeSpec) -> Node:
        """Start the simulator of ``spec`` (kubelet, API, agent-metrics and cilium.sock fakes included)."""
        cfg = self.workdir / "nodes" / spec.name
        cfg.mkdir(parents=True)
        node = Node(spec, free_port("::1" if spec.ipv6 else "127.0.0.1"), cfg)
        hubble = ["--hubble-socket=", "--hubble-tcp=[::1]:0", "--bind-address=::1"] if spec.ipv6 else \
            ["--hubble-socket", str(cfg / "hubble.sock")]
        argv = [sys.executable, "-m", "cilium_node_exporter", "simulate", "--scenario", spec.scenario,
                "--speed", str(spec.speed), *hubble, "--kubelet-port", "0",
                "--kubeapi-port", "0", "--agent-metrics-port", "0", "--agent-api-socket", str(cfg / "cilium.sock"),
                "--sim-node-name", spec.name,
                "--write-client-config", str(cfg / "client")]
        self.procs.start(node.sim, argv)
        self.nodes[spec.name] = node
        return node

    def start_exporter(self, node: Node) -> None:
        """Start the exporter of ``node`` once its simulator wrote the client config; add the scrape target."""
        flags_file = node.config_dir / "client" / "exporter.flags"
        wait_until(flags_file.exists, 30, lambda: f"{flags_file}; simulator log:\n{self.procs.log(node.sim)}")
        flags = flags_file.read_text().split()
        argv = [sys.executable, "-m", "cilium_node_exporter", *flags, f"--sources={node.spec.sources}",
                f"--listen-address={node.host}:{node.port}", "--hubble-status-interval=1s",
                "--hubble-backoff-max=2s", *node.spec.exporter_args]
        self.procs.start(node.exporter, argv)
        target = [{"targets": [f"{node.host}:{node.port}"], "labels": {"node": node.name}}]
        tmp = self.sd_dir / f".{node.name}.tmp"
        tmp.write_text(json.dumps(target))
        tmp.rename(self.sd_dir / f"{node.name}.json")

    def wait_scraped(self, node: Node, timeout: float = 40) -> None:
        wait_until(lambda: self.query(f'up{{job="{JOB}", node="{node.name}"}} == 1'), timeout,
                   lambda: f"Prometheus scraping {node.name}; exporter log:\n{self.procs.log(node.exporter)}")

    # --- APIs --------------------------------------------------------------------------------------
    def api(self, path: str, params: dict[str, str] | None = None, base: str | None = None) -> Any:
        url = (base or self.prom_url) + path + ("?" + urllib.parse.urlencode(params) if params else "")
        status, body = http_get(url, timeout=10)
        assert status == 200, f"GET {url}: {status} {body[:500]!r}"
        doc = json.loads(body)
        return doc["data"] if isinstance(doc, dict) and "data" in doc else doc

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr} | ({"time": f"{at:.3f}"} if at else {})
        return self.api("/api/v1/query", params)["result"]

    def try_query(self, expr: str) -> tuple[str | None, list[dict[str, Any]]]:
        """(error or None, result) without raising: for the dashboard sweep."""
        url = self.prom_url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        status, body = http_get(url, timeout=10)
        try:
            doc = json.loads(body)
        except ValueError:
            return f"HTTP {status}: {body[:200]!r}", []
        if doc.get("status") != "success":
            return f"{doc.get('errorType')}: {doc.get('error')}", []
        return None, doc["data"]["result"]

    def alert_states(self, node: str, since: float) -> dict[str, set[str]]:
        """alertname -> states ("pending"/"firing") Prometheus had for ``node`` since ``since``."""
        window = max(1, int(time.time() - since) + 1)
        out: dict[str, set[str]] = {}
        for s in self.query(f'max_over_time(ALERTS{{node="{node}"}}[{window}s])'):
            out.setdefault(s["metric"]["alertname"], set()).add(s["metric"]["alertstate"])
        return out

    def am_alerts(self, **labels: str) -> list[dict[str, Any]]:
        """Alertmanager's current alerts (inhibited ones included) with these label values."""
        params = [("filter", f'{k}="{v}"') for k, v in labels.items()]
        url = self.am_url + "/api/v2/alerts?" + urllib.parse.urlencode(params)
        status, body = http_get(url, timeout=10)
        assert status == 200, f"GET {url}: {status} {body[:300]!r}"
        return json.loads(body)
