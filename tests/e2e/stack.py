"""The end-to-end stack: Debian's Prometheus and Alertmanager, simulators and exporters on loopback.

Prometheus loads the alert pack rendered with the accelerated preset (same expressions, short windows,
1 s scrape and evaluation) plus the default pack's recording rules that the accelerated one does not
produce (the dashboards read them), scrapes every exporter through ``file_sd`` with a ``node`` target
label, and scrapes itself. Alertmanager runs the shipped configuration (alerts/alertmanager/alertmanager.yaml:
route, receivers, inhibitions) with both receivers pointed at the webhook and its timings accelerated like
the rules (group_wait 5s, group_interval 1s) so that resolved notifications arrive within the run. The processes
and both configurations come from :mod:`cilium_node_simulator.stack`, as in the demo.
"""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from alerts.generate import build_groups
from cilium_node_simulator import stack
from cilium_node_simulator.stack import FAST_ROUTE, JOB, Supervisor, http_get
from tests.support.procs import free_port
from tests.support.procs import wait_until as _wait_until

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str | Callable[[], str],
               interval: float = 0.25) -> T:
    """:func:`tests.support.procs.wait_until` polling a little slower: these predicates query Prometheus."""
    return _wait_until(predicate, timeout, what, interval)


def require_binaries() -> None:
    """Fail (not skip) when Debian's Prometheus or Alertmanager is missing."""
    missing = stack.missing_binaries(stack.PROMETHEUS, stack.ALERTMANAGER)
    assert not missing, (f"{', '.join(missing)} missing: install Debian's prometheus and prometheus-alertmanager "
                         "(make system-deps)")


# A tile skips its evaluation while it has a sample younger than its step ("... unless on (...)
# count_over_time(<tile>[<step - 1s>])"); the default steps (5m, 1h) outlast a run, so a tile taken in the
# first seconds (a rate over two equal samples: zero traffic) would stand for the whole run.
_TILE_GUARD = re.compile(r"(count_over_time\(\S+_every\w+)\[\d+s\]\)")


def default_recording_extras(rule_files: list[Path]) -> list[dict[str, Any]]:
    """Recording rules of the default pack that the rendered (accelerated) ones lack, evaluated at most every
    10s; their tiles are taken at every evaluation."""
    have = {r["record"] for p in rule_files for g in yaml.safe_load(p.read_text())["groups"] for r in g["rules"]
            if "record" in r}
    out = []
    for group in build_groups(None):
        rules = [{**r, "expr": _TILE_GUARD.sub(r"\1[9s])", r["expr"])}
                 for r in group["rules"] if "record" in r and r["record"] not in have]
        if rules:
            out.append({"name": f"defaults-for-dashboards.{group['name']}", "interval": "10s", "rules": rules})
    return out


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
        self.procs = Supervisor(workdir / "logs")
        self.sd_dir = workdir / "sd"
        self.sd_dir.mkdir(parents=True, exist_ok=True)
        self.nodes: dict[str, Node] = {}
        self.prom_url = ""
        self.am_url = ""

    # --- Prometheus and Alertmanager ---------------------------------------------------------------
    def start_monitoring(self, webhook_url: str, alertmanager: dict[str, Any] | None = None,
                         dashboard_rules: bool = True, resend_delay: str = "1s") -> None:
        """Start Alertmanager (``alertmanager``, else the shipped configuration with the receivers pointed at
        ``webhook_url`` and its timers accelerated) and Prometheus with the accelerated pack (and, with
        ``dashboard_rules``, the default pack's recording rules the dashboards read).

        Prometheus tells Alertmanager a firing alert is valid for 4 x max(``resend_delay``, evaluation interval):
        4 s with the defaults, so an evaluation slower than that (a loaded machine, many nodes) lets the alert
        expire in Alertmanager until the next resend."""
        require_binaries()
        rules_dir = self.workdir / "rules"
        rule_files = stack.render_pack(rules_dir)
        if dashboard_rules:
            extras = rules_dir / "default-recording-extras.rules.yaml"
            extras.write_text(yaml.safe_dump({"groups": default_recording_extras(rule_files)}, sort_keys=False))
            rule_files.append(extras)
        am_port, prom_port = free_port(), free_port()
        prometheus = stack.prometheus_config(self.sd_dir, rule_files, alertmanager=f"127.0.0.1:{am_port}",
                                             self_target=f"127.0.0.1:{prom_port}")
        mon = stack.start_monitoring(self.procs, self.workdir, prometheus,
                                     alertmanager or stack.alertmanager_config(webhook_url, FAST_ROUTE),
                                     prom_port=prom_port, am_port=am_port, resend_delay=resend_delay)
        self.am_url, self.prom_url = mon.alertmanager, mon.prometheus
        failed = mon.wait_ready(self.procs, 20)
        assert failed is None, f"{failed} not ready; log:\n{self.procs.log(failed)}"
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
        stack.write_targets(self.sd_dir, node.name, [f"{node.host}:{node.port}"], {"node": node.name})

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
