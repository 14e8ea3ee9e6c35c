"""``make demo`` (``python -m cilium_node_simulator.demo``): a simulated Cilium node, the exporter, and,
when installed, Prometheus with the alert pack and Alertmanager, all on 127.0.0.1.

It prints where to look and what is about to happen in the scenario, then tells the story as it happens: each
alert going pending, firing and resolved in Prometheus, what Alertmanager holds back (inhibited by a cause) and
what it delivers to the ``page`` and ``ticket`` receivers of the shipped configuration
(``alerts/alertmanager/alertmanager.yaml``, its webhooks pointed at a receiver inside the demo, its timers
shortened), each line with two clocks: *demo time* (``m:ss`` of real time since the simulator started) and, in
brackets, *sim* time (the scenario's own clock, ``--speed`` times faster), its phase and, once it loops, its
pass. Ctrl-C (or ``--duration``) stops every process it started and prints a summary. Prometheus and
Alertmanager are optional (Debian: ``apt-get install prometheus prometheus-alertmanager``); the rule pack is
read from the checkout's ``alerts/`` directory, rendered with its accelerated preset so that alerts fire within
the tour.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from cilium_node_exporter.mixin import names as n
from cilium_node_exporter.mixin import slo
from cilium_node_exporter.mixin.config import duration_seconds, merge
from cilium_node_simulator import stack
from cilium_node_simulator.events import ACTIONS, L7_KINDS, EventSpec
from cilium_node_simulator.quantities import bytes_of
from cilium_node_simulator.scenario import Phase, Scenario, ScenarioError, load_scenario
from cilium_node_simulator.stack import HOST, StackError, Supervisor
from cilium_node_simulator.webhook import Delivery, WebhookReceiver

ENVELOPE = "200Mi-500Mi"
SIMULATOR, EXPORTER = "simulator", "exporter"
PACK = merge(None, "accelerated")  # the configuration the demo renders the pack with
# Labels every alert of the demo's node carries (the pack's scope label included): left out when an alert is named.
COMMON_LABELS = frozenset({"alertname", "alertstate", "severity", "node", "job", "instance", "cluster",
                           PACK["scopeLabel"]})


# --- the rule pack as rendered for the demo ----------------------------------------------------------
@dataclass(frozen=True)
class PackAlert:
    name: str
    severity: str
    summary: str
    receiver: str  # where the shipped routes send it: page, ticket, none
    exprs: tuple[str, ...] = ()  # one per rule of that name (a burn-rate alert has one per window pair)
    held_back_by: tuple[str, ...] = ()  # alerts whose firing makes Alertmanager inhibit this one

    @property
    def route(self) -> str:
        return f"{self.severity} -> {self.receiver}"


def read_pack(rule_files: Iterable[Path], alertmanager: dict[str, Any]) -> dict[str, PackAlert]:
    """The alerts of the rendered rule files, with the receiver the Alertmanager routes pick by severity and the
    alerts its inhibit rules hold them back with."""
    receivers = stack.receivers_by_severity(alertmanager)
    default = alertmanager["route"]["receiver"]
    held = inhibitors(alertmanager)
    out: dict[str, PackAlert] = {}
    for path in rule_files:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    name, severity = rule["alert"], rule.get("labels", {}).get("severity", "")
                    exprs = (out[name].exprs if name in out else ()) + (rule["expr"],)
                    out[name] = PackAlert(name, severity, rule["annotations"]["summary"],
                                          receivers.get(severity, default), exprs, held.get(name, ()))
    return out


def _alertnames(matchers: Iterable[str]) -> list[str]:
    """Alert names an Alertmanager matcher list selects by ``alertname="A"`` or ``alertname=~"A|B"``."""
    names = []
    for matcher in matchers:
        found = re.fullmatch(r'alertname\s*(=~?)\s*"([^"]*)"', matcher.strip())
        if found:
            names += found.group(2).split("|") if found.group(1) == "=~" else [found.group(2)]
    return names


def inhibitors(alertmanager: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """Alert name -> the alert names whose firing inhibits it (the configuration's ``inhibit_rules``)."""
    out: dict[str, list[str]] = defaultdict(list)
    for rule in alertmanager.get("inhibit_rules", ()):
        sources = _alertnames(rule.get("source_matchers", ()))
        for target in _alertnames(rule.get("target_matchers", ())):
            out[target] += [s for s in sources if s not in out[target]]
    return {target: tuple(sources) for target, sources in out.items()}


def envelope_burns(pack: dict[str, PackAlert]) -> list[tuple[str, slo.BurnWindow]]:
    """The pack's budget-burn alerts of the memory-envelope SLO with their window pair, found by the SLIs their
    expressions read (whatever they are called)."""
    out = []
    for pair in slo.burn_windows(PACK, slo.MEMORY):
        reads = [re.compile(re.escape(n.memory_ratio(w)) + r"\b") for w in (pair.long, pair.short)]
        out += [(a.name, pair) for a in pack.values() if any(all(r.search(e) for r in reads) for e in a.exprs)]
    return out


# --- what is about to happen -------------------------------------------------------------------------
def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def _about(seconds: float) -> str:
    return f"in about {round(seconds / 60)} minutes" if seconds >= 90 else f"in about {seconds:.0f} seconds"


def _denials(phase: Phase, l7: bool) -> float:
    """Denials per simulated second in ``phase``: L7 (dropped HTTP, DNS, Kafka requests) or L3/L4 policy."""
    def counts(r: EventSpec) -> bool:
        if l7:
            return r.type in L7_KINDS and r.action == ACTIONS["dropped"]
        return r.type in ("policy_denied", "policy_deny")

    return sum(r.rate for r in phase.rates if counts(r))


def _crossing(w0: int, w1: int, level: float) -> float | None:
    """Where in a phase (0..1) a working set ramping from ``w0`` to ``w1`` crosses ``level`` upwards."""
    return (level - w0) / (w1 - w0) if w0 <= level < w1 else None


def _falls_below(before: int, w0: int, w1: int, level: float) -> float | None:
    """Where in a phase (0..1) the working set goes back to ``level`` or below: at its start (``before`` was the
    end of the previous phase) or during a ramp down."""
    if before > level >= w0:
        return 0.0
    return (w0 - level) / (w0 - w1) if w1 <= level < w0 else None


def surges(scenario: Scenario) -> list[list[tuple[str, float, float]]]:
    """Per phase of one pass, the denial surge alerts it should bring: (alert, denials/s, the previous phase's).
    The pack compares a node's denial rate with a floor and with a factor times the node's own recent average."""
    out: list[list[tuple[str, float, float]]] = []
    previous: Phase | None = None
    for phase in scenario.phases:
        brings = []
        for l7, name in ((False, n.POLICY_DENIAL_SURGE), (True, n.L7_DENIAL_SURGE)):
            rate, before = _denials(phase, l7), _denials(previous, l7) if previous else 0.0
            prefix = "l7DenialSurge" if l7 else "policyDenialSurge"
            if rate > float(PACK[prefix + "Floor"]) and rate > float(PACK[prefix + "Factor"]) * before:
                brings.append((name, rate, before))
        out.append(brings)
        previous = phase
    return out


def timeline(scenario: Scenario, speed: float, upper: int,
             pack: dict[str, PackAlert] | None = None) -> list[tuple[float, str]]:
    """(real seconds from start, what happens) for the first pass through the scenario, with the pack's alert
    (and where the shipped routes send it) that each change brings; ``pack`` None: names without routes."""

    brought: set[str] = set()

    def alert(name: str) -> str:
        brought.add(name)
        if pack is None:
            return name
        return f"{name} ({pack[name].route})" if name in pack else f"{name} (not in the loaded pack)"

    events: list[tuple[float, str]] = []
    sim = 0.0
    ws = scenario.agent.working_set.start if scenario.agent.working_set else 300 * 2**20
    limit = scenario.agent.limit if isinstance(scenario.agent.limit, int) else None
    near = limit * float(PACK["memoryNearLimitRatio"]) if limit else None
    kills: list[float] = []
    above_at: list[float] = []  # when the working set crosses the envelope upwards
    below_at: list[float] = []  # and when it is back inside
    per_phase = surges(scenario)
    for index, phase in enumerate(scenario.phases):
        start, length = sim / speed, phase.duration / speed
        ramp = phase.agent.working_set
        w0, w1 = (ramp.start, ramp.end) if ramp else (ws, ws)
        what, brings = f"phase '{phase.name}' ({length:.0f} s)", []
        if phase.agent.oom_kill:
            what += f": the agent on node {scenario.node} is OOM-killed and restarts"
            brings.append(alert(n.AGENT_OOM_KILLED))
            kills.append(start)
        elif ramp and w1 != w0:
            what += f": agent working set {w0 / 2**20:.0f}Mi -> {w1 / 2**20:.0f}Mi"
            if w0 < w1 and w0 <= upper:  # the forecast warns while the agent is still inside its envelope
                brings.append(alert(n.AGENT_GROWTH_FORECAST))
        for name, rate, before in per_phase[index]:
            what += f": {rate:g} {'L7' if name == n.L7_DENIAL_SURGE else 'policy'} denials/s (from {before:g})"
            brings.append(alert(name))
        events.append((start, what + (f"  -> {', '.join(brings)}" if brings else "")))
        back = _falls_below(ws, w0, w1, upper)
        if back is not None and above_at:
            below_at.append(start + back * length)
        for level, text, name in ((upper, f"crosses its envelope ({upper / 2**20:.0f}Mi)", n.AGENT_ABOVE_ENVELOPE),
                                  (near, f"reaches {float(PACK['memoryNearLimitRatio']):.0%} of its limit",
                                   n.AGENT_NEAR_LIMIT)):
            at = _crossing(w0, w1, level) if level else None
            if at is not None:
                events.append((start + at * length, f"the agent on node {scenario.node} {text}  -> {alert(name)}"))
                if level == upper:
                    above_at.append(start + at * length)
        ws = w1
        sim += phase.duration
    events += _kill_loop(kills, scenario, speed, alert)
    for back in below_at[:1]:
        go_on = _burns_go_on(scenario, speed, pack, back - above_at[0])
        events.append((back, f"the agent on node {scenario.node} is back inside its envelope: "
                             f"{n.AGENT_ABOVE_ENVELOPE} resolves{go_on}"))
    if pack is not None and above_at:
        events += _budget_burn(above_at[0], pack, brought)
    if scenario.loop:
        events.append((scenario.duration / speed, _next_pass(scenario, speed, per_phase)))
    return sorted(events, key=lambda e: e[0])


def _budget_burn(crossing: float, pack: dict[str, PackAlert], brought: set[str]) -> list[tuple[float, str]]:
    """When time above the envelope starts burning the memory-envelope SLO's budget, and what Alertmanager does
    with the burn alerts while an alert of the story that inhibits them fires (real seconds: the accelerated
    windows are real time)."""
    burns = envelope_burns(pack)
    if not burns:
        return []
    budget = 1 - slo.objective(PACK, slo.MEMORY)
    # both windows must hold more bad time than factor x budget: the short one is the last to get there
    after = min(pair.factor * budget * duration_seconds(pair.short) for _, pair in burns)
    names = list(dict.fromkeys(name for name, _ in burns))
    pairs = ", ".join(f"{p.long}/{p.short}" for _, p in burns)
    what = (f"time above the envelope spends the memory-envelope SLO's error budget ({budget:.0%} of the time)"
            f"  -> {', '.join(f'{name} ({pack[name].route}, windows {pairs})' for name in names)}")
    held = sorted({h for name in names for h in pack[name].held_back_by} & brought)
    if held:
        what += f"; Alertmanager holds it back while {' or '.join(held)} fires (one problem, one notification)"
    return [(crossing + after, what)]


def _burns_go_on(scenario: Scenario, speed: float, pack: dict[str, PackAlert] | None, above: float) -> str:
    """What the working set falling back inside the envelope does not resolve: the budget burns (``above``: real
    seconds it spent above)."""
    burns = envelope_burns(pack or {})
    if not burns:
        return ""
    names = ", ".join(dict.fromkeys(name for name, _ in burns))
    text = (f"; {names} does not: the time spent above the envelope stays in its windows, so Alertmanager now "
            "delivers what it held back. A burn resolves once its short window holds no more of that time")
    if not scenario.loop:
        return text + " (" + ", ".join(f"{p.short} later for {p.long}/{p.short}" for _, p in burns) + ")"
    gap = scenario.duration / speed - above  # until the next pass goes above again
    stay = [f"{p.long}/{p.short}" for _, p in burns if duration_seconds(p.short) >= gap]
    text += f": each {_clock(scenario.duration / speed)} pass goes above again"
    return text + (f", so {', '.join(stay)} keep{'s' if len(stay) == 1 else ''} firing while the tour loops"
                   if stay else "")


def _next_pass(scenario: Scenario, speed: float, per_phase: list[list[tuple[str, float, float]]]) -> str:
    """The line for the second pass of a looping scenario: what repeats, and why the surge alerts do not."""
    period = scenario.duration / speed
    text = f"pass 2: the scenario starts again (every {_clock(period)})"
    names = list(dict.fromkeys(name for brings in per_phase for name, _, _ in brings))
    baseline = duration_seconds(PACK["denialBaselineWindow"])
    if names and period < baseline:
        text += (f"; the memory alerts come again, but not {' nor '.join(names)}: they compare the node with "
                 f"{PACK['policyDenialSurgeFactor']:g} times its own average over the last "
                 f"{PACK['denialBaselineWindow']} (denialBaselineWindow), which now holds pass 1's storms. A storm "
                 "that comes back every few minutes is this node's normal, as it would be on a real node")
    return text


def _kill_loop(kills: list[float], scenario: Scenario, speed: float, alert: Any) -> list[tuple[float, str]]:
    """When the OOM kills of a looping scenario come often enough for the pack's kill-loop alert (real seconds:
    the accelerated preset's window is real time, the scenario's is not)."""
    if not kills:
        return []
    window, needed = duration_seconds(PACK["oomKillLoopWindow"]), int(PACK["oomKillLoopThreshold"])
    period = scenario.duration / speed
    times = sorted(k + i * period for k in kills for i in range(needed if scenario.loop else 1))
    at = next((times[i] for i in range(needed - 1, len(times)) if times[i] - times[i - needed + 1] <= window), None)
    if at is None:
        return [(kills[0], f"one OOM kill per {_clock(period)}: {alert(n.AGENT_OOM_KILL_LOOP)} needs {needed} "
                           f"within {PACK['oomKillLoopWindow']}, so no page")]
    return [(at, f"kill number {needed} within {PACK['oomKillLoopWindow']}  -> {alert(n.AGENT_OOM_KILL_LOOP)}")]


# --- the story as it happens -------------------------------------------------------------------------
def _labels_text(labels: dict[str, str]) -> str:
    extra = {k: v for k, v in sorted(labels.items()) if k not in COMMON_LABELS}
    return "{" + ", ".join(f'{k}="{v}"' for k, v in extra.items()) + "}" if extra else ""


@dataclass
class AlertHistory:
    """What happened to one alert (name and distinguishing labels) during the demo: real seconds from start."""

    title: str
    route: str
    pending: list[float] = field(default_factory=list)
    firing: list[float] = field(default_factory=list)
    resolved: list[float] = field(default_factory=list)
    held_back: set[str] = field(default_factory=set)  # inhibited by these alerts
    delivered: list[str] = field(default_factory=list)  # "ticket firing 1:02"


@dataclass(frozen=True)
class Position:
    """Where the scenario is at a moment of demo time: its pass (1 unless it loops), phase and sim time."""

    passes: int
    phase: int
    sim: float  # simulated seconds into the pass


class Story:
    """Turns what Prometheus, Alertmanager and the webhook report into lines on ``out``, and a summary.

    Lines carry *demo time* (``m:ss`` of real time since the simulator started) and, in brackets, *sim* time (the
    scenario's clock, ``speed`` times faster), its phase and pass. Each look's lines are printed in time order."""

    def __init__(self, scenario: Scenario, speed: float, pack: dict[str, PackAlert], started: float,
                 out: TextIO = sys.stdout) -> None:
        self.scenario, self.speed, self.pack, self.started, self.out = scenario, speed, pack, started, out
        self.active: dict[str, str] = {}  # alert key -> state in Prometheus
        self.history: dict[str, AlertHistory] = {}
        self.inhibited: set[tuple[str, str]] = set()  # (alert key, inhibitor title)
        self.seen_deliveries = 0
        self.notifications: dict[str, int] = defaultdict(int)  # receiver -> alerts delivered
        self.lines: list[tuple[float, str]] = []  # said, not printed yet
        self.surges = surges(scenario)
        self.position = self.at(0.0)
        self.phase_started = 0.0

    def now(self) -> float:
        return time.monotonic() - self.started

    def at(self, t: float) -> Position:
        """The scenario's position ``t`` seconds of demo time after it started (a looping scenario wraps)."""
        sim, passes = t * self.speed, 1
        if self.scenario.loop and self.scenario.duration:
            passes += int(sim // self.scenario.duration)
            sim %= self.scenario.duration
        end = 0.0
        for index, p in enumerate(self.scenario.phases):
            end += p.duration
            if sim < end:
                return Position(passes, index, sim)
        return Position(passes, len(self.scenario.phases) - 1, sim)

    def when(self, t: float) -> str:
        """Demo time, then sim time, phase and (from the second) pass."""
        pos = self.at(t)
        pass_text = f", pass {pos.passes}" if pos.passes > 1 else ""
        return f"{_clock(t):>5}  (sim {_clock(pos.sim)} {self.scenario.phases[pos.phase].name}{pass_text})"

    def _entry(self, labels: dict[str, str]) -> tuple[str, AlertHistory]:
        name = labels.get("alertname", "?")
        title = name + _labels_text(labels)
        if title not in self.history:
            alert = self.pack.get(name)
            self.history[title] = AlertHistory(title, alert.route if alert else labels.get("severity", ""))
        return title, self.history[title]

    def say(self, t: float, text: str) -> None:
        self.lines.append((t, f"{self.when(t)}  {text}"))

    def flush(self) -> None:
        """Print what was said since the last flush, in time order (a notification Alertmanager sent a moment ago
        arrives with the next look at Prometheus)."""
        for _, line in sorted(self.lines, key=lambda x: x[0]):
            print(line, file=self.out, flush=True)
        self.lines.clear()

    def tick(self) -> None:
        """Say when a phase ends without the surge alert it brought on the first pass, and when a pass begins."""
        t = self.now()
        pos = self.at(t)
        if (pos.passes, pos.phase) == (self.position.passes, self.position.phase):
            return
        ended, started = self.position, self.phase_started
        self.position, self.phase_started = pos, t
        if ended.passes > 1:
            for name, rate, _ in self.surges[ended.phase]:
                if not any(h.pending or h.firing for title, h in self.history.items()
                           if title.split("{")[0] == name and any(started <= x <= t for x in h.pending + h.firing)):
                    kind = "L7" if name == n.L7_DENIAL_SURGE else "policy"
                    self.say(t, f"phase '{self.scenario.phases[ended.phase].name}' of pass {ended.passes} is over: "
                                f"{rate:g} {kind} denials/s again and no {name}, as expected: the node's "
                                f"{PACK['denialBaselineWindow']} average it compares with holds the earlier passes")
        if pos.passes != ended.passes:
            self.say(t, f"the scenario starts again: pass {pos.passes}")

    def prometheus(self, alerts: list[dict[str, Any]]) -> None:
        """Prometheus' active alerts (/api/v1/alerts): new, pending -> firing, gone (resolved)."""
        t = self.now()
        current: dict[str, str] = {}
        for a in alerts:
            title, entry = self._entry(a["labels"])
            state = a["state"]
            current[title] = state
            before = self.active.get(title)
            if state == before:
                continue
            if state == "pending":
                entry.pending.append(t)
                self.say(t, f"{title} is pending ({entry.route})")
            elif state == "firing":
                entry.firing.append(t)
                known = self.pack.get(a["labels"].get("alertname", ""))
                self.say(t, f"{title} FIRING ({entry.route})" + (f": {known.summary}" if known else ""))
        for title, state in self.active.items():
            if title not in current:
                entry = self.history[title]
                entry.resolved.append(t)
                self.say(t, f"{title} resolved" if state == "firing" else f"{title} is no longer pending "
                                                                            "(it did not last long enough to fire)")
        self.active = current

    def alertmanager(self, alerts: list[dict[str, Any]]) -> None:
        """Alertmanager's alerts (/api/v2/alerts): which ones it holds back, inhibited by which cause."""
        titles = {a["fingerprint"]: self._entry(a["labels"])[0] for a in alerts}
        for a in alerts:
            title = titles[a["fingerprint"]]
            for fingerprint in a["status"].get("inhibitedBy") or ():
                cause = titles.get(fingerprint, "another alert")
                if (title, cause) not in self.inhibited:
                    self.inhibited.add((title, cause))
                    self.history[title].held_back.add(cause)
                    self.say(self.now(), f"Alertmanager holds {title} back: inhibited by {cause}")

    def deliveries(self, received: list[Delivery]) -> None:
        """Notifications the webhook got since the last call: which receiver, which alert, firing or resolved."""
        offset = time.time() - self.now()  # wall clock -> demo time
        for d in received[self.seen_deliveries:]:
            t = d.received - offset
            title, entry = self._entry(d.labels)
            entry.delivered.append(f"{d.receiver} {d.status} {_clock(t)}")
            self.notifications[d.receiver] += 1
            note = ""
            if d.status == "firing" and entry.held_back and not any(self.active.get(c) == "firing"
                                                                     for c in entry.held_back):
                note = f" (held back while {' and '.join(sorted(entry.held_back))} fired; that has resolved)"
            self.say(t, f"delivered to {d.receiver.upper()}: {title} {d.status}{note}")
        self.seen_deliveries = len(received)

    def summary(self) -> list[str]:
        t = self.now()
        lines = ["", f"Summary after {_clock(t)} of demo time (m:ss since the simulator started):"]
        if not self.history:
            return [*lines, "  no alert went pending."]
        width = max(len(h.title) for h in self.history.values())
        lines.append(f"  {'alert':{width}}  {'route':18} {'pending':>10} {'firing':>10} {'resolved':>10}  delivered")
        for h in sorted(self.history.values(), key=lambda h: (h.pending or h.firing or [t])[0]):
            def times(xs: list[float]) -> str:
                return ",".join(_clock(x) for x in xs) or "-"
            delivered = "; ".join(h.delivered) or ("held back: inhibited by " + ", ".join(sorted(h.held_back))
                                                  if h.held_back else "-")
            lines.append(f"  {h.title:{width}}  {h.route:18} {times(h.pending):>10} {times(h.firing):>10} "
                         f"{times(h.resolved):>10}  {delivered}")
        sent = ", ".join(f"{count} to {receiver}" for receiver, count in sorted(self.notifications.items()))
        lines.append(f"  alerts delivered: {sent or 'none yet'}")
        return lines


# --- the demo ----------------------------------------------------------------------------------------
REVIEW_FILE = "cilium-node-exporter-demo-review.html"


def report_hint(prom_url: str, started: float) -> list[str]:
    """How to write the SLO review (``cilium-node-exporter report``) from the demo's Prometheus, into the
    temporary directory (not the checkout the demo runs from)."""
    exe = Path(sys.executable).with_name("cilium-node-exporter")
    with contextlib.suppress(ValueError):
        exe = exe.relative_to(Path.cwd())
    command = exe if exe.exists() else Path("cilium-node-exporter")
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
    output = Path(tempfile.gettempdir()) / REVIEW_FILE
    return ["", "The SLO review of this demo (what a platform team takes to its monthly meeting), once the tour",
            "has run for a few minutes, from another terminal while the demo runs:",
            f"  {command} report --prometheus-url {prom_url} --from {since} --min-node-hours 0 --output {output}",
            f"  then open {output} in a browser (Markdown or JSON: --format markdown|json)."]


def prometheus_page(base: str, page: str) -> str:
    """URL of a Prometheus UI page: Debian's build serves only the classic UI (``/classic/alerts``)."""
    for url in (f"{base}/{page}", f"{base}/classic/{page}"):
        if stack.http_get(url)[0] == 200:
            return url
    return f"{base}/{page}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cilium_node_simulator.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default="showcase", help="built-in scenario or YAML file (default: showcase)")
    p.add_argument("--speed", type=float, default=4.0, help="time compression (default 4: the 12-minute tour in 3)")
    p.add_argument("--port", type=int, default=9969, help="exporter port (default 9969; 0: any free port)")
    p.add_argument("--prometheus-port", type=int, default=9090, help="default 9090; 0: any free port")
    p.add_argument("--alertmanager-port", type=int, default=9093, help="default 9093; 0: any free port")
    p.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus and Alertmanager")
    p.add_argument("--duration", type=float, default=0, help="stop after this many seconds (default: Ctrl-C)")
    return p


class Demo:
    """The processes of one demo, the webhook and the story; ``close()`` stops everything."""

    def __init__(self, args: argparse.Namespace, scenario: Scenario, workdir: Path, stop: threading.Event) -> None:
        self.args, self.scenario, self.workdir, self.stop = args, scenario, workdir, stop
        self.sup = Supervisor(workdir / "logs")
        self.webhook: WebhookReceiver | None = None
        self.story: Story | None = None
        self.prom_url = self.am_url = ""

    def fail(self, name: str, what: str = "did not start") -> int:
        if self.stop.is_set():
            return 0
        print(f"demo: {name} {what}:\n{self.sup.log(name, 15)}", file=sys.stderr, flush=True)
        return 1

    def run(self) -> int:
        """Prometheus and Alertmanager first (when installed), then the simulator, whose start is the scenario's
        0:00, and the exporter; then the story until Ctrl-C or ``--duration``."""
        args, scenario, workdir = self.args, self.scenario, self.workdir
        port = stack.pick_port(args.port)
        pack: dict[str, PackAlert] = {}
        rules_note = ""
        missing = stack.missing_binaries(stack.PROMETHEUS, stack.ALERTMANAGER)
        if missing and not args.no_prometheus:
            print(f"demo: {' and '.join(missing)} not installed, so no alerts in this demo. To see them fire:\n"
                  "        sudo apt-get install prometheus prometheus-alertmanager   (or: make system-deps)\n"
                  "      then run `make demo` again. Running the simulator and the exporter only.", flush=True)
        elif not args.no_prometheus:
            print("demo: starting Prometheus with the rule pack and Alertmanager ...", flush=True)
            try:
                pack, rules_note = self.start_monitoring(port)
            except StackError as exc:
                print(f"demo: {exc}", file=sys.stderr, flush=True)
                return 0 if self.stop.is_set() else 1
            failed = stack.Monitoring(self.prom_url, self.am_url).wait_ready(self.sup, 30, self.stop)
            if failed:
                return self.fail(failed)
        if self.stop.is_set():
            return 0
        exe = [sys.executable, "-m", "cilium_node_exporter"]
        print(f"demo: starting the simulator (scenario {scenario.name}, speed {args.speed:g}) and the exporter ...",
              flush=True)
        self.sup.start(SIMULATOR, [*exe, "simulate", "--scenario", args.scenario, "--speed", str(args.speed),
                                   "--hubble-socket", str(workdir / "hubble.sock"), "--kubelet-port", "0",
                                   "--kubeapi-port", "0", "--agent-api-socket", str(workdir / "cilium.sock"),
                                   "--write-client-config", str(workdir / "client")])
        started = time.monotonic()  # the scenario's clock starts with the simulator
        flags_file = workdir / "client" / "exporter.flags"
        while not flags_file.exists():
            if not self.sup.alive(SIMULATOR) or time.monotonic() - started > 30 or self.stop.wait(0.1):
                return self.fail(SIMULATOR)
        self.sup.start(EXPORTER, [*exe, *flags_file.read_text().split(), f"--listen-address={HOST}:{port}",
                                  f"--memory-envelope={ENVELOPE}", "--hubble-status-interval=2s"])
        metrics = f"http://{HOST}:{port}/metrics"
        if not self.sup.wait_http(EXPORTER, metrics, 30, self.stop):
            return self.fail(EXPORTER)
        self.introduce(metrics, rules_note, pack, time.monotonic() - started)
        if self.prom_url:
            self.story = Story(scenario, args.speed, pack, started)
        while not self.stop.wait(1.0):
            dead = self.sup.dead()
            if dead is not None:
                return self.fail(dead, f"exited with code {self.sup.procs[dead].returncode}")
            self.follow()
            if args.duration and time.monotonic() - started >= args.duration:
                break
        return 0

    def start_monitoring(self, exporter_port: int) -> tuple[dict[str, PackAlert], str]:
        """Render the pack, start Alertmanager (shipped configuration -> the demo's webhook) and Prometheus."""
        rule_files = stack.render_pack(self.workdir / "rules")
        self.webhook = WebhookReceiver().start()
        am_config = stack.alertmanager_config(self.webhook.url, stack.FAST_ROUTE)
        am_port, prom_port = stack.pick_port(self.args.alertmanager_port), stack.pick_port(self.args.prometheus_port)
        targets = self.workdir / "targets"
        stack.write_targets(targets, "demo", [f"{HOST}:{exporter_port}"], {"node": self.scenario.node})
        prom_config = stack.prometheus_config(targets, rule_files, alertmanager=f"{HOST}:{am_port}")
        mon = stack.start_monitoring(self.sup, self.workdir, prom_config, am_config, prom_port=prom_port,
                                     am_port=am_port)
        self.prom_url, self.am_url = mon.prometheus, mon.alertmanager
        note = ("the alert pack, accelerated preset (for: 10s; production defaults: alerts/rules/); Alertmanager "
                "runs alerts/alertmanager/alertmanager.yaml with its receivers pointed at this terminal")
        return read_pack(rule_files, am_config), note

    def introduce(self, metrics: str, rules_note: str, pack: dict[str, PackAlert], now: float) -> None:
        """Where to look, and what the scenario is about to do (``now``: seconds since it started)."""
        args, scenario = self.args, self.scenario
        upper = bytes_of(ENVELOPE.split("-")[1])
        lines = [
            "",
            f"cilium-node-exporter demo: node {scenario.node}, scenario {scenario.name!r} at {args.speed:g}x speed "
            f"({scenario.duration / 60:g} simulated minutes in {scenario.duration / args.speed / 60:.1f}"
            + (", then it loops)" if scenario.loop else ")"),
            "",
            "Where to look:",
            f"  metrics             {metrics}",
        ]
        if self.prom_url:
            lines += [f"  Prometheus alerts   {prometheus_page(self.prom_url, 'alerts')}",
                      f"  a query             {prometheus_page(self.prom_url, 'graph')}"
                      "?g0.expr=cilium_node_agent_memory_working_set_bytes&g0.range_input=15m",
                      f"  Alertmanager        {self.am_url}/#/alerts",
                      f"  ({rules_note})"]
        events = timeline(scenario, args.speed, upper, pack if self.prom_url else None)
        lines += ["", f"What happens, in demo time (m:ss of real time since the simulator started, {now:.0f} s ago; "
                      f"the scenario's own clock, sim time, runs {args.speed:g}x faster):"]
        lines += [f"  {_clock(t):>5}  {what}" for t, what in events]
        crossing = next((t - now for t, what in events if "crosses its envelope" in what and t > now), None)
        if crossing is not None:
            lines += ["", f"{_about(crossing).capitalize()} the agent on node {scenario.node} crosses its envelope "
                          f"({upper / 2**20:.0f}Mi); {n.AGENT_ABOVE_ENVELOPE} fires about 10 s later."]
        lines += ["Alerts go pending, then fire about 10 s after their condition holds. Ctrl-C stops everything."]
        if self.prom_url:
            lines += report_hint(self.prom_url, time.time() - now)
            lines += ["", "What happens, as it happens (demo time; in brackets sim time, the phase and the pass):"]
        print("\n".join([*lines, ""]), flush=True)

    def follow(self) -> None:
        """One look at Prometheus, Alertmanager and the webhook (a component busy for a moment is skipped)."""
        if self.story is None:
            return
        try:
            self.story.prometheus(stack.get_json(self.prom_url + "/api/v1/alerts")["data"]["alerts"])
            self.story.alertmanager(stack.get_json(self.am_url + "/api/v2/alerts"))
        except (StackError, ValueError, KeyError):
            pass
        if self.webhook is not None:
            self.story.deliveries(self.webhook.deliveries())
        self.story.tick()
        self.story.flush()

    def close(self) -> None:
        """Stop every child, then the webhook; print the summary."""
        self.sup.stop_all()
        if self.story is not None and self.webhook is not None:
            self.story.deliveries(self.webhook.deliveries())
        if self.webhook is not None:
            self.webhook.stop()
        if self.story is not None:
            self.story.flush()
            print("\n".join(self.story.summary()), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    if args.speed <= 0:
        print("demo: --speed must be positive", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    workdir = Path(tempfile.mkdtemp(prefix="cne-demo-"))
    demo = Demo(args, scenario, workdir, stop)
    try:
        return demo.run()
    finally:
        print("\ndemo: stopping ...", flush=True)
        demo.close()
        shutil.rmtree(workdir, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("demo: stopped " + ", ".join(demo.sup.procs) + "; nothing left running.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
