"""The fleet scenarios decided deterministically: recorded exposition -> promtool -> Alertmanager snapshots.

1. :func:`cilium_node_simulator.fleet_record.record` plays every cluster of :data:`CLUSTERS` in virtual time (scenario
   seconds, the production pack's time) and records what Prometheus would scrape every :data:`STEP` seconds (only
   the metric names the pack reads).
2. Debian's ``promtool test rules`` evaluates the shipped default pack (alerts/rules, production windows) over
   those series every :data:`STEP`, in its own time, and reports the firing ``ALERTS`` series at every step (the
   failure report of an expression test that expects none is how promtool lists them).
3. A real Alertmanager with the shipped configuration receives each step's firing alerts (and the resolution of
   those that stopped); after each step the run reads which groups hold notifiable (not inhibited, not silenced)
   alerts. A group notifies when it still holds notifiable alerts group_wait after they arrived (30 s for pages:
   the same step; 2 m for tickets: two steps later, where an inhibitor firing then counts as arrived).

Nothing here races a wall clock: a loaded machine takes longer and decides the same.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cilium_node_simulator.fleet import ClusterSpec
from cilium_node_simulator.fleet_record import Recording, record
from cilium_node_simulator.fleet_scenario import builtin_fleets, load_fleet
from cilium_node_simulator.stack import Supervisor, http_get
from tests.e2e import fleet_pack
from tests.e2e.fleet_run import CLUSTERS, INCIDENT_WINDOW
from tests.support.procs import free_port

RULES = Path(__file__).resolve().parents[2] / "alerts" / "rules" / "cilium-node-exporter.rules.yaml"
STEP = 60.0  # a production scrape and evaluation interval
# The incidents' first 15 minutes, and 5 more for the slowest cluster alert (for: 15m after a 5m lookback).
DURATION = max(c.incident_at for c in CLUSTERS) + INCIDENT_WINDOW + 300
_GOT = re.compile(r"\{([^{}]*)\} ")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_TIME = re.compile(r"time: ((?:\d+h)?(?:\d+m)?(?:\d+s)?),")


def pack_names(rules: Path = RULES) -> set[str]:
    """Every identifier in the pack's rules: a superset of the metric names it reads."""
    return set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rules.read_text()))


def _values(values: list[float | None]) -> str:
    """promtool's notation: a sample, ``stale`` where a series ends (Prometheus writes a staleness marker when a
    series leaves a scrape or its target fails or goes away), ``_`` while it stays absent."""
    out, before = [], None
    for v in values:
        out.append(_value(v) if v is not None else ("stale" if before is not None else "_"))
        before = v
    return " ".join(out)


def _value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def _series(name: str, labels: tuple[tuple[str, str], ...]) -> str:
    inner = ", ".join(f'{k}="{json.dumps(v)[1:-1]}"' for k, v in labels)
    return f"{name}{{{inner}}}"


def _seconds(text: str) -> int:
    total = 0
    for n, unit in re.findall(r"(\d+)([hms])", text):
        total += int(n) * {"h": 3600, "m": 60, "s": 1}[unit]
    return total


def promtool_file(rec: Recording, workdir: Path, rules: Path = RULES) -> Path:
    """A promtool unit-test file: the recording as input series, one expression test per step listing the
    firing alerts (expecting none, so that promtool prints them)."""
    series = [{"series": _series(name, labels), "values": _values(values)}
              for (name, labels), values in rec.series.items() if any(v is not None for v in values)]
    tests = [{"expr": 'ALERTS{alertstate="firing"}', "eval_time": f"{int(k * rec.step)}s", "exp_samples": []}
             for k in range(1, rec.steps)]
    doc = {"rule_files": [str(rules)], "evaluation_interval": f"{int(rec.step)}s",
           "tests": [{"interval": f"{int(rec.step)}s", "input_series": series, "promql_expr_test": tests}]}
    path = workdir / "fleet.test.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, width=1 << 20))
    return path


def firing_by_step(path: Path) -> dict[int, list[dict[str, str]]]:
    """Run ``promtool test rules`` on ``path``: the firing alerts' labels by scenario second."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: install Debian's prometheus (make system-deps)"
    res = subprocess.run([promtool, "test", "rules", path.name], cwd=path.parent, capture_output=True, text=True,
                         timeout=900)
    out = res.stdout + res.stderr
    if res.returncode == 0:
        return {}
    assert "got:" in out or "exp:" in out, f"promtool failed, not on the expression tests:\n{out[-3000:]}"
    firing: dict[int, list[dict[str, str]]] = defaultdict(list)
    at = -1
    for line in out.splitlines():
        when = _TIME.search(line)
        if when:
            at = _seconds(when.group(1))
        elif line.strip().startswith("got:"):
            for m in _GOT.finditer(line):
                labels = {k: json.loads(f'"{v}"') for k, v in _LABEL.findall(m.group(1))}
                labels.pop("__name__", None)
                labels.pop("alertstate", None)
                firing[at].append(labels)
    return dict(firing)


@dataclass
class GroupSeen:
    """One Alertmanager group key: the notifiable alerts it held, the steps it held any, and the first."""

    receiver: str
    labels: dict[str, str]
    first_step: int
    alerts: set[tuple[tuple[str, str], ...]] = field(default_factory=set)
    steps: set[int] = field(default_factory=set)

    def notifies(self, group_wait: float, step: float) -> bool:
        """Whether Alertmanager sends this group a notification: it flushes group_wait after the group's first
        alert and sends only what is notifiable then. Alerts arrive at evaluation steps, so the state at a flush
        is that of the last step at or before it; an inhibitor that fires at the very step of the flush counts
        as arrived (the ticket route's group_wait of two evaluations is there to let the cluster alert in)."""
        return any(s + int(group_wait // step * step) in self.steps for s in self.steps)


class Alertmanager:
    """Debian's Alertmanager with the shipped configuration, fed snapshots through its v2 API."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs = Supervisor(workdir / "logs")
        self.config = fleet_pack.alertmanager_config("http://127.0.0.1:9/unused")
        self.url = ""

    def start(self) -> Alertmanager:
        binary = shutil.which("prometheus-alertmanager")
        assert binary, "prometheus-alertmanager missing: install Debian's prometheus-alertmanager (make system-deps)"
        port = free_port()
        cfg = self.workdir / "alertmanager.yaml"
        cfg.write_text(yaml.safe_dump(self.config))
        self.procs.start("alertmanager", [binary, f"--config.file={cfg}", f"--storage.path={self.workdir / 'am'}",
                                          f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="])
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if http_get(self.url + "/-/ready", timeout=2)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"alertmanager not ready:\n{self.procs.log('alertmanager')}")

    def stop(self) -> None:
        self.procs.stop_all()

    def post(self, alerts: list[dict[str, Any]]) -> None:
        req = urllib.request.Request(self.url + "/api/v2/alerts", data=json.dumps(alerts).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 200, resp.status

    def get(self, path: str, params: list[tuple[str, str]] | None = None) -> Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        status, body = http_get(url, timeout=30)
        assert status == 200, f"GET {url}: {status} {body[:300]!r}"
        return json.loads(body)

    def settled(self, active: int) -> list[dict[str, Any]]:
        """The notifiable groups once Alertmanager holds exactly ``active`` active alerts (its dispatcher and
        inhibitor read new alerts asynchronously: read until two answers agree)."""
        deadline = time.monotonic() + 30
        last: Any = None
        while time.monotonic() < deadline:
            alerts = self.get("/api/v2/alerts", [("active", "true"), ("inhibited", "true"), ("silenced", "true")])
            groups = self.get("/api/v2/alerts/groups", [("inhibited", "false"), ("silenced", "false")])
            now = (len(alerts), json.dumps(groups, sort_keys=True))
            if len(alerts) == active and now == last:
                return groups
            last = now
            time.sleep(0.2)
        raise AssertionError(f"alertmanager did not settle on {active} alerts: {last and last[0]}")


@dataclass
class Replay:
    """What the pack fired at each step, and what Alertmanager would notify, per cluster."""

    recording: Recording
    firing: dict[int, list[dict[str, str]]]
    groups: dict[str, GroupSeen]
    inhibited: list[tuple[dict[str, str], list[dict[str, str]]]]
    receivers: dict[str, str]
    timings: dict[str, float]

    def fired(self, cluster: str, start: float = 0.0, end: float = math.inf) -> dict[str, set[str]]:
        """alertname -> nodes ('' for a cluster alert) firing in ``cluster`` at a step in [start, end]."""
        out: dict[str, set[str]] = defaultdict(set)
        for at, alerts in self.firing.items():
            if start <= at <= end:
                for a in alerts:
                    if a.get("cluster") == cluster:
                        out[a["alertname"]].add(a.get("node", ""))
        return dict(out)

    def groups_of(self, receiver: str, cluster: str, before: float = math.inf) -> list[GroupSeen]:
        """Groups of ``receiver`` in ``cluster`` that send a notification (:meth:`GroupSeen.notifies`), first
        notifiable at or before ``before``."""
        wait = fleet_pack.route_timers(fleet_pack.alertmanager_config("http://x"), receiver)[0]
        return [g for g in self.groups.values() if g.receiver == receiver and g.first_step <= before
                and any(dict(a).get("cluster") == cluster for a in g.alerts)
                and g.notifies(wait, self.recording.step)]

    def summary(self, cluster: str) -> str:
        lines = [f"cluster {cluster} (replayed, deterministic):",
                 f"  fired: { {k: sorted(v)[:5] for k, v in sorted(self.fired(cluster).items())} }"]
        config = fleet_pack.alertmanager_config("http://x")
        for g in self.groups.values():
            if any(dict(a).get("cluster") == cluster for a in g.alerts):
                names = sorted({dict(a)["alertname"] + ("/" + dict(a)["node"] if "node" in dict(a) else "")
                                for a in g.alerts})
                sends = g.notifies(fleet_pack.route_timers(config, g.receiver)[0], self.recording.step)
                lines.append(f"  group {g.receiver} {g.labels} notifiable at {sorted(g.steps)[:4]}s "
                             f"({'notifies' if sends else 'inhibited before its flush'}): {len(names)} alerts "
                             f"{names[:6]}{' ...' if len(names) > 6 else ''}")
        return "\n".join(lines)


def clusters() -> list[ClusterSpec]:
    fleets = builtin_fleets()
    return [ClusterSpec(c.name, load_fleet(fleets[c.scenario]), c.nodes) for c in CLUSTERS]


def replay(workdir: Path) -> Replay:
    """Record, evaluate with promtool, and feed Alertmanager step by step."""
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    rec = record(clusters(), DURATION, STEP, keep=pack_names())
    timings |= {f"record {k}": v for k, v in rec.timings.items()}
    t1 = time.monotonic()
    firing = firing_by_step(promtool_file(rec, workdir))
    timings["promtool"] = time.monotonic() - t1
    t1 = time.monotonic()
    am = Alertmanager(workdir).start()
    receivers = fleet_pack.receivers(am.config, _static_labels())
    groups: dict[str, GroupSeen] = {}
    inhibited: dict[str, tuple[dict[str, str], list[dict[str, str]]]] = {}
    try:
        active: dict[tuple[tuple[str, str], ...], str] = {}
        for k in range(1, rec.steps):
            at = int(k * rec.step)
            now = {tuple(sorted(a.items())) for a in firing.get(at, [])}
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
            posts = [{"labels": dict(a), "startsAt": active.setdefault(a, stamp), "endsAt": later} for a in now]
            posts += [{"labels": dict(a), "startsAt": active.pop(a), "endsAt": stamp} for a in list(active)
                      if a not in now]
            if posts:
                am.post(posts)
            for g in am.settled(len(now)):
                notifiable = [a for a in g["alerts"] if a["status"]["state"] == "active"]
                if not notifiable:
                    continue
                key = g["receiver"]["name"] + json.dumps(g["labels"], sort_keys=True)
                seen = groups.setdefault(key, GroupSeen(g["receiver"]["name"], dict(g["labels"]), at))
                seen.steps.add(at)
                seen.alerts.update(tuple(sorted(a["labels"].items())) for a in notifiable)
            by_fp = {a["fingerprint"]: a["labels"] for a in am.get("/api/v2/alerts")}
            for a in by_fp and am.get("/api/v2/alerts", [("inhibited", "true"), ("active", "false")]):
                sources = [by_fp[f] for f in a["status"]["inhibitedBy"] if f in by_fp]
                if sources:
                    inhibited.setdefault(a["fingerprint"], (a["labels"], sources))
    finally:
        am.stop()
    timings["alertmanager"] = time.monotonic() - t1
    timings["total"] = time.monotonic() - t0
    return Replay(rec, firing, groups, list(inhibited.values()), receivers, timings)


def _static_labels() -> dict[str, dict[str, str]]:
    """Each alert's static labels as the shipped default pack writes them."""
    doc = yaml.safe_load(RULES.read_text())
    return {r["alert"]: {**r.get("labels", {}), "alertname": r["alert"]}
            for g in doc["groups"] for r in g["rules"] if "alert" in r}
