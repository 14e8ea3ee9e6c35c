"""The drop SLI the pack records is exact (within 5 % of the true ratio) in every window, across what the world
does to it: exporter gaps while the agent keeps counting, Prometheus down across a burst, agent restarts
(counter resets), a node's birth with start-up drops, lost scrapes, and evaluation intervals that do not
divide the tiles.

Ground truth comes from this file's own per-tick tables of packets (never from the pack's names or rules): the
counters the exporter would serve are their running sums, with the samples Prometheus never got left out. The
pack's recorded counts are read from real promtool (an expression test with no expected samples fails and
prints what promtool got), then compared here with the true counts of each window. Evaluation intervals that
do not divide the 5m step are covered by the long-window test (the chains telescope whatever the interval).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.alerts.test_alerts_promtool import RULES, promtool

LABELS = 'job="cilium-node-exporter",cluster="c1",direction="egress"'
TOLERANCE = 0.05
SHORT_WINDOWS = {"30m": 1800, "1h": 3600, "2h": 7200, "6h": 21600}
LONG_WINDOWS = {"1d": 86400, "3d": 259200, "28d": 28 * 86400}


@dataclass
class Node:
    """Per tick: packets forwarded, dropped for an unexpected reason, dropped for a reason that is no error."""

    name: str
    ticks: int
    forwarded: list[float] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)
    policy: list[float] = field(default_factory=list)
    transient: list[float] = field(default_factory=list)
    seen: list[bool] = field(default_factory=list)  # Prometheus has the sample of this tick
    reset_at: set[int] = field(default_factory=set)  # the agent restarted just before this tick
    born: int = 0  # no counter before this tick

    def __post_init__(self) -> None:
        for name in ("forwarded", "errors", "policy", "transient"):
            setattr(self, name, [0.0] * self.ticks)
        self.seen = [True] * self.ticks

    def set(self, series: str, start: int, end: int, per_tick: float) -> None:
        values = getattr(self, series)
        for i in range(start, end):
            values[i] = per_tick

    def gap(self, start: int, end: int) -> None:
        for i in range(start, end):
            self.seen[i] = False

    def counter(self, series: str) -> str:
        """promtool's values of the counter: running sums since the last reset, '_' where no sample."""
        values, total, out = getattr(self, series), 0.0, []
        for i in range(self.ticks):
            if i < self.born:
                out.append("_")
                continue
            if i in self.reset_at:
                total = 0.0
            total += values[i]
            out.append(f"{total:g}" if self.seen[i] else "_")
        return " ".join(out)

    def start_times(self, step: int) -> str:
        """The agent container's start time (the node's birth, then each restart), as the exporter serves it."""
        start, out = self.born * step, []
        for i in range(self.ticks):
            if i in self.reset_at:
                start = i * step
            out.append("_" if i < self.born or not self.seen[i] else str(start))
        return " ".join(out)

    def true_counts(self, tick: int, window_ticks: int) -> tuple[float, float]:
        """(unexpected drops, all packets) in the ticks (tick - window, tick]."""
        lo = max(self.born, tick - window_ticks + 1)
        span = range(lo, tick + 1)
        errors = sum(self.errors[i] for i in span)
        traffic = sum(self.forwarded[i] + self.errors[i] + self.policy[i] + self.transient[i] for i in span)
        return errors + sum(self.transient[i] for i in span), traffic


def _series(node: Node, step: int) -> list[dict[str, str]]:
    base = f'{LABELS},node="{node.name}",instance="{node.name}:9969",pod="cne-{node.name}"'
    dropped = "cilium_node_datapath_dropped_packets_total"
    return [
        {"series": f"cilium_node_agent_container_start_time_seconds{{{base}}}", "values": node.start_times(step)},
        {"series": f"cilium_node_datapath_forwarded_packets_total{{{base}}}", "values": node.counter("forwarded")},
        {"series": f'{dropped}{{{base},reason="FIB_LOOKUP_FAILED"}}', "values": node.counter("errors")},
        {"series": f'{dropped}{{{base},reason="POLICY_DENIED"}}', "values": node.counter("policy")},
        {"series": f'{dropped}{{{base},reason="DROP_EP_NOT_READY"}}', "values": node.counter("transient")},
    ]


def _window_expr(windows: dict[str, int]) -> str:
    parts = []
    for kind in ("errors", "traffic"):
        for w in windows:
            name = f"node:cilium_node_drop_slo_{kind}:increase{w}"
            parts.append(f'label_replace({name}, "w", "{kind} {w}", "", "")')
    return "\nor ".join(parts)


GOT = re.compile(r'node="(\w+)", w="(\w+) (\w+)"\} ([-+0-9.eE]+)')


def _promtool_counts(tmp_path: Path, nodes: list[Node], step: int, eval_step: int, times: list[int],
                     windows: dict[str, int]) -> dict[tuple[int, str, str, str], float]:
    """What the pack records at each tick of ``times``: {(tick, node, kind, window): count}."""
    expr = _window_expr(windows)
    # the recording rules only (the alerts read them; evaluating them here would only cost time)
    groups = yaml.safe_load(RULES.read_text())["groups"]
    recording = [{**g, "rules": [r for r in g["rules"] if "record" in r]} for g in groups]
    (tmp_path / "recording.rules.yaml").write_text(yaml.safe_dump({"groups": [g for g in recording if g["rules"]]}))
    test = {
        "rule_files": ["recording.rules.yaml"],
        "evaluation_interval": f"{eval_step}s",
        "tests": [{
            "interval": f"{step}s",
            "input_series": [s for node in nodes for s in _series(node, step)],
            "promql_expr_test": [{"expr": expr, "eval_time": f"{t * step}s", "exp_samples": []} for t in times],
        }],
    }
    path = tmp_path / "exactness.yaml"
    path.write_text(yaml.safe_dump(test, width=1 << 20))
    result = subprocess.run([promtool(), "test", "rules", path.name], cwd=tmp_path, capture_output=True,
                            text=True, timeout=900)
    out = result.stdout + result.stderr
    counts: dict[tuple[int, str, str, str], float] = {}
    for block in re.split(r"\n\s*expr: ", out)[1:]:
        time_match = re.search(r"time: (\w+),", block)
        got = block.split("got:", 1)[1] if "got:" in block else ""
        assert time_match, out[-2000:]
        seconds = _seconds(time_match.group(1))
        for node, kind, window, value in GOT.findall(got):
            counts[(seconds // step, node, kind, window)] = float(value)
    assert counts, out[-3000:]
    return counts


def _seconds(text: str) -> int:
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([dhms])", text))


def _compare(nodes: list[Node], counts: dict[tuple[int, str, str, str], float], step: int, times: list[int],
             windows: dict[str, int]) -> list[str]:
    """Every (time, node, window) whose recorded ratio is off by more than the tolerance, with its figures."""
    bad = []
    for t in times:
        for node in nodes:
            if t < node.born or not node.seen[t]:
                continue
            for w, seconds in windows.items():
                start = t - seconds // step
                if node.born <= start < node.ticks and not node.seen[start]:
                    continue  # the window starts in a gap: no counter tells how the gap's packets split there
                true_err, true_traffic = node.true_counts(t, seconds // step)
                got_err = counts.get((t, node.name, "errors", w))
                got_traffic = counts.get((t, node.name, "traffic", w))
                if got_err is None or got_traffic is None or got_traffic == 0 or true_traffic == 0:
                    bad.append(f"{node.name} t={t * step}s {w}: no count (got {got_err}/{got_traffic})")
                    continue
                true_ratio, got_ratio = true_err / true_traffic, got_err / got_traffic
                off = (got_ratio - true_ratio) / true_ratio if true_ratio else got_ratio
                if abs(off) > TOLERANCE:
                    bad.append(f"{node.name} t={t * step}s {w}: ratio {got_ratio:.6f} vs true {true_ratio:.6f} "
                               f"({off:+.1%}); errors {got_err:g} vs {true_err:g}, traffic {got_traffic:g} vs "
                               f"{true_traffic:g}")
    return bad


def _short_fleet(ticks: int) -> list[Node]:
    """30 s ticks over 10 h; each node one situation of the issue's table."""
    nodes = []
    # n1: the exporter unreachable for 20 min while the node drops 5 % (the agent keeps counting)
    n1 = Node("n1", ticks)
    n1.set("forwarded", 0, ticks, 3000)
    n1.set("errors", 0, ticks, 3)
    n1.set("errors", 200, 320, 158)
    n1.gap(240, 280)
    nodes.append(n1)
    # n2: Prometheus down 14.5 min with a 10 min burst across it
    n2 = Node("n2", ticks)
    n2.set("forwarded", 0, ticks, 3000)
    n2.set("errors", 0, ticks, 1)
    n2.set("errors", 300, 320, 600)
    n2.gap(305, 334)
    nodes.append(n2)
    # n3: born at 100 min with 2 min of DROP_EP_NOT_READY at 20 %, then 0.005 % unexpected drops
    n3 = Node("n3", ticks, born=200)
    n3.set("forwarded", 200, ticks, 3000)
    n3.set("transient", 200, 204, 750)
    n3.set("errors", 204, ticks, 0.15)
    nodes.append(n3)
    # n4: the agent restarts twice (counters reset), one restart in a burst
    n4 = Node("n4", ticks, reset_at={300, 500})
    n4.set("forwarded", 0, ticks, 3000)
    n4.set("policy", 0, ticks, 30)
    n4.set("errors", 0, ticks, 6)
    n4.set("errors", 490, 520, 300)
    nodes.append(n4)
    # n5: Prometheus down 45 min, then a 15 min burst within the same hour
    n5 = Node("n5", ticks)
    n5.set("forwarded", 0, ticks, 3000)
    n5.set("errors", 0, ticks, 0.6)
    n5.set("errors", 690, 720, 450)
    n5.gap(600, 690)
    nodes.append(n5)
    # n6: one scrape in seven lost, traffic varying
    n6 = Node("n6", ticks)
    for i in range(ticks):
        n6.forwarded[i] = 1500 + 1000 * ((i // 40) % 3)
        n6.errors[i] = 2 + (i // 100) % 4
        n6.seen[i] = i % 7 != 3
    nodes.append(n6)
    return nodes


SHORT_TIMES = [330, 340, 360, 400, 480, 560, 700, 720, 760, 840, 1000, 1199]


@pytest.mark.parametrize("eval_step", [30])
def test_short_windows_are_exact_across_gaps_restarts_and_births(tmp_path: Path, eval_step: int) -> None:
    """30m to 6h (and the long windows over the data there is), rules evaluated every 30 s (the scrape
    interval). Evaluated less often than scraped, a counter reset loses what the node counted
    between the last evaluation and the reset (the per-node sum is recorded at each evaluation)."""
    step, ticks = 30, 1200
    nodes = _short_fleet(ticks)
    times = [t for t in SHORT_TIMES if (t * step) % eval_step == 0]
    windows = SHORT_WINDOWS | LONG_WINDOWS
    counts = _promtool_counts(tmp_path, nodes, step, eval_step, times, windows)
    assert _compare(nodes, counts, step, times, windows) == []


def _long_fleet(ticks: int) -> list[Node]:
    """5 min ticks over 4.5 days: bursts and gaps the 1d and 3d windows cut through."""
    a = Node("n1", ticks, reset_at={400, 900})
    a.set("forwarded", 0, ticks, 900_000)
    a.set("errors", 0, ticks, 90)
    a.set("errors", 250, 262, 30_000)
    a.set("errors", 700, 730, 5_000)
    a.gap(255, 270)
    a.gap(1000, 1012)
    b = Node("n2", ticks, born=300)
    b.set("forwarded", 300, ticks, 300_000)
    b.set("transient", 300, 301, 60_000)
    b.set("errors", 301, ticks, 15)
    b.set("errors", 800, 820, 9_000)
    b.gap(810, 822)
    return [a, b]


def test_long_windows_are_exact_across_gaps_restarts_and_births(tmp_path: Path) -> None:
    """1d, 3d and the 28d period, with windows whose start cuts through the data, scraped every 5 min and
    evaluated every 7 min."""
    step, ticks = 300, 1300
    nodes = _long_fleet(ticks)
    times = [294, 420, 602, 763, 833, 1029, 1148, 1295]  # multiples of 7 ticks: evaluated there
    counts = _promtool_counts(tmp_path, nodes, step, 420, times, LONG_WINDOWS)
    assert _compare(nodes, counts, step, times, LONG_WINDOWS) == []
