"""The demo (`make demo`): it starts everything, prints URLs that answer, tells what happens as it happens, and
Ctrl-C leaves nothing running."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alerts.generate import build_alertmanager, build_groups
from cilium_node_simulator.stack import receivers_by_severity
from tests.e2e.stack import SCENARIOS, http_get, require_binaries, wait_until
from tests.support.paths import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e"), pytest.mark.timeout(240)]

READY = "Ctrl-C stops everything"


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def start_demo(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], Path]:
    log = tmp_path / "demo.out"
    out = open(log, "w")  # noqa: SIM115 - closed when the process is reaped by the test
    proc = subprocess.Popen([sys.executable, "-u", "-m", "cilium_node_simulator.demo", "--port", "0",
                             "--prometheus-port", "0", "--alertmanager-port", "0", *args],
                            stdout=out, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    return proc, log


def stop_demo(proc: subprocess.Popen[str], children: list[int]) -> None:
    try:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in children:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
    left = [pid for pid in children if not gone(pid)]
    assert not left, f"processes left running after Ctrl-C: {left}"


def routes() -> dict[str, str]:
    """alertname -> "severity -> receiver" from the pack and the shipped Alertmanager routes."""
    by_severity = receivers_by_severity(build_alertmanager())
    return {r["alert"]: f'{r["labels"]["severity"]} -> {by_severity[r["labels"]["severity"]]}'
            for g in build_groups(preset="accelerated") for r in g["rules"] if "alert" in r}


def story_line(text: str, what: str) -> int:
    """Demo time (seconds since the simulator started) of the story line ending in ``what`` (-1: not printed yet);
    the line's second clock is the scenario's sim time, its phase and pass."""
    found = re.search(rf"^ *(\d+):(\d\d)  \(sim \d+:\d\d [\w-]+(?:, pass \d+)?\)  {re.escape(what)}", text, re.M)
    return 60 * int(found.group(1)) + int(found.group(2)) if found else -1


def test_demo_tells_the_story_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    """The demo at 10x speed on a scenario that packs the tour's kinds of transition into half a minute: the
    URLs it prints answer, its timeline names the pack's alerts and their routes, it prints each pending,
    firing and resolved transition and each delivery to the page and ticket receivers as they happen, the
    SLO review command it prints works, and Ctrl-C stops everything and prints the summary."""
    require_binaries()
    proc, log = start_demo(tmp_path, "--speed", "10", "--scenario", str(SCENARIOS / "demo-story.yaml"))
    children: list[int] = []
    try:
        wait_until(lambda: READY in log.read_text() or proc.poll() is not None, 60, "the demo to start")
        text = log.read_text()
        assert proc.poll() is None, text
        children = children_of(proc.pid)
        assert len(children) == 4, f"simulator, exporter, alertmanager, prometheus expected: {children}\n{text}"
        metrics = re.search(r"metrics\s+(http://\S+/metrics)", text).group(1)  # type: ignore[union-attr]
        alerts = re.search(r"Prometheus alerts\s+(http://\S+/alerts)\s", text).group(1)  # type: ignore[union-attr]
        am = re.search(r"Alertmanager\s+(http://\S+)/#/alerts", text).group(1)  # type: ignore[union-attr]
        status, body = http_get(metrics)
        assert status == 200 and b"cilium_node_agent_memory_working_set_bytes" in body
        assert http_get(alerts)[0] == 200
        assert http_get(am + "/-/ready")[0] == 200
        prom = re.match(r"http://[^/]+", alerts).group(0)  # type: ignore[union-attr]
        status, body = http_get(prom + "/api/v1/rules")
        assert status == 200 and b"CiliumAgentMemoryAboveEnvelope" in body, "the rule pack is not loaded"
        assert "accelerated preset" in text
        # what is about to happen: the pack's alerts, routed as the shipped configuration routes them
        route = routes()
        for line in ("the agent on node sim-1 crosses its envelope (500Mi)  -> "
                     f"CiliumAgentMemoryAboveEnvelope ({route['CiliumAgentMemoryAboveEnvelope']})",
                     f"is OOM-killed and restarts  -> CiliumAgentOOMKilled ({route['CiliumAgentOOMKilled']})",
                     f"kill number 2 within 2m  -> CiliumAgentOOMKillLoop ({route['CiliumAgentOOMKillLoop']})"):
            assert line in text, text
        assert route["CiliumAgentOOMKilled"] == "warning -> ticket"
        assert route["CiliumAgentOOMKillLoop"] == "critical -> page"
        # the envelope SLO's budget burn is announced, and why it outlives the envelope alert
        assert "time above the envelope spends the memory-envelope SLO's error budget" in text, text
        assert "CiliumAgentMemoryAboveEnvelope resolves; CiliumAgentMemoryEnvelopeBudgetBurn does not" in text, text
        # the SLO review command it prints works on the demo's data
        hint = re.search(r"^  (\S*cilium-node-exporter report --prometheus-url \S+ .*--output (\S+))$", text, re.M)
        assert hint, text
        assert REPO not in Path(hint.group(2)).parents, "the demo's review would land in the checkout"
        recorded = prom + "/api/v1/query?query=count_over_time(node:cilium_node_agent_memory_envelope_error:bool[1h])"
        wait_until(lambda: b'"value"' in http_get(recorded)[1], 60, "recorded series")
        command = hint.group(1).replace(hint.group(2), str(tmp_path / "review.json")).split()
        done = subprocess.run([*command, "--format", "json", "-q"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        review = json.loads((tmp_path / "review.json").read_text())
        assert review["clusters"][0]["nodes"] == 1
        assert {s["key"] for s in review["clusters"][0]["slos"]} >= {"memory-envelope"}
        # the story, as it happens: transitions in Prometheus, what Alertmanager holds back, what it delivers
        story = ("CiliumAgentMemoryAboveEnvelope is pending", "CiliumAgentMemoryAboveEnvelope FIRING",
                 "CiliumAgentMemoryAboveEnvelope resolved",
                 "delivered to TICKET: CiliumAgentMemoryAboveEnvelope firing",
                 "delivered to TICKET: CiliumAgentMemoryAboveEnvelope resolved",
                 "delivered to TICKET: CiliumAgentOOMKilled firing", "CiliumAgentOOMKillLoop FIRING",
                 "delivered to PAGE: CiliumAgentOOMKillLoop firing",
                 "Alertmanager holds CiliumAgentOOMKilled back: inhibited by CiliumAgentOOMKillLoop")
        wait_until(lambda: all(story_line(log.read_text(), s) >= 0 for s in story) or proc.poll() is not None, 90,
                   lambda: "the story: " + str([s for s in story if story_line(log.read_text(), s) < 0])
                   + "\n" + log.read_text())
        text = log.read_text()
        at = {s: story_line(text, s) for s in story}
        assert min(at.values()) >= 0, text
        assert at[story[0]] <= at[story[1]] <= at[story[2]], text  # pending, firing, resolved in that order
        assert at[story[1]] >= 10, text  # fires only after its for: 10s
    finally:
        stop_demo(proc, children)
    text = log.read_text()
    assert "nothing left running" in text and "Traceback" not in text, text
    summary = text[text.index("Summary after"):]
    above = next(line for line in summary.splitlines() if line.strip().startswith("CiliumAgentMemoryAboveEnvelope "))
    assert "ticket firing" in above and "ticket resolved" in above, summary
    assert re.search(r"alerts delivered: \d+ to page, \d+ to ticket", summary), summary


def test_demo_without_prometheus_says_how_to_install_it(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # no /usr/bin: prometheus not found
    proc, log = start_demo(tmp_path, "--speed", "20", env=env)
    children: list[int] = []
    try:
        wait_until(lambda: READY in log.read_text() or proc.poll() is not None, 60, "the demo to start")
        text = log.read_text()
        assert proc.poll() is None, text
        assert "apt-get install prometheus prometheus-alertmanager" in text
        assert "Prometheus alerts" not in text
        children = children_of(proc.pid)
        assert len(children) == 2, children
        metrics = re.search(r"metrics\s+(http://\S+/metrics)", text).group(1)  # type: ignore[union-attr]
        assert http_get(metrics)[0] == 200
        time.sleep(0.5)
    finally:
        stop_demo(proc, children)
    assert "Traceback" not in log.read_text()
