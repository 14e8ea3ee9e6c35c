"""``make demo`` (``python -m cilium_node_simulator.demo``): a simulated Cilium node, the exporter, and,
when installed, Prometheus with the alert pack and Alertmanager, all on 127.0.0.1.

It prints where to look and what is about to happen in the scenario, then runs until Ctrl-C, which
stops every process it started. Prometheus and Alertmanager are optional (Debian:
``apt-get install prometheus prometheus-alertmanager``); the rule pack is read from the checkout's
``alerts/`` directory, rendered with its accelerated preset so that alerts fire within the tour.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cilium_node_exporter.units import parse_quantity
from cilium_node_simulator.scenario import Scenario, ScenarioError, load_scenario

HOST = "127.0.0.1"
PROMETHEUS = "prometheus"
ALERTMANAGER = "prometheus-alertmanager"
ENVELOPE = "200Mi-500Mi"
CHECKOUT = Path(__file__).resolve().parents[2]
# What each phase of the showcase makes happen (other scenarios: phase names only).
PHASE_ALERTS = {
    "policy-storm": "CiliumNodePolicyDenialSurge",
    "l7-denials": "CiliumNodeL7DenialSurge",
    "memory-climb": "CiliumAgentMemoryGrowthForecast",
    "memory-high": "CiliumAgentMemoryNearLimit",
    "oom-killed": "CiliumAgentOOMKilled",
}


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def pick_port(wanted: int) -> int:
    """``wanted`` when it is free, else any free port (0 asks for any)."""
    if wanted and _port_free(wanted):
        return wanted
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM when the demo dies, even by SIGKILL (no orphans)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class Demo:
    """The processes of the demo; ``stop()`` ends them all (SIGTERM, then SIGKILL after 10 s)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[Child] = []

    def start(self, name: str, argv: Sequence[str]) -> Child:
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True,  # Ctrl-C reaches the demo only; it stops the rest
                                    preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def dead(self) -> Child | None:
        return next((c for c in self.children if c.proc.poll() is not None), None)

    def stop(self, timeout: float = 10.0) -> None:
        for child in reversed(self.children):
            if child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.terminate()
        deadline = time.monotonic() + timeout
        for child in reversed(self.children):
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait(5)


def wait_http(url: str, timeout: float, child: Child) -> bool:
    """True once ``url`` answers 200; False if ``child`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.proc.poll() is None:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as resp:
            if resp.status == 200:
                return True
        time.sleep(0.2)
    return False


def prometheus_page(base: str, page: str) -> str:
    """URL of a Prometheus UI page: Debian's build serves only the classic UI (``/classic/alerts``)."""
    for url in (f"{base}/{page}", f"{base}/classic/{page}"):
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status == 200:
                return url
    return f"{base}/{page}"


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def _about(seconds: float) -> str:
    return f"in about {round(seconds / 60)} minutes" if seconds >= 90 else f"in about {seconds:.0f} seconds"


def timeline(scenario: Scenario, speed: float, upper: int) -> list[tuple[float, str]]:
    """(real seconds from start, what happens) for the first pass through the scenario."""
    events: list[tuple[float, str]] = []
    sim = 0.0
    ws = scenario.agent.working_set.start if scenario.agent.working_set else 300 * 2**20
    crossed = ws > upper
    node = scenario.node
    for phase in scenario.phases:
        start = sim / speed
        ramp = phase.agent.working_set
        w0, w1 = (ramp.start, ramp.end) if ramp else (ws, ws)
        alert = PHASE_ALERTS.get(phase.name, "")
        what = f"phase '{phase.name}' ({phase.duration / speed:.0f} s)"
        if phase.agent.oom_kill:
            what += f": the agent on node {node} is OOM-killed and restarts"
        elif ramp and w1 != w0:
            what += f": agent working set {w0 / 2**20:.0f}Mi -> {w1 / 2**20:.0f}Mi"
        events.append((start, what + (f"  -> {alert}" if alert else "")))
        if not crossed and w0 <= upper < w1:
            at = start + (upper - w0) / (w1 - w0) * phase.duration / speed
            events.append((at, f"the agent on node {node} crosses its envelope ({upper / 2**20:.0f}Mi)"
                               "  -> CiliumAgentMemoryAboveEnvelope"))
            crossed = True
        ws = w1
        sim += phase.duration
    return sorted(events)


def report_hint(prom_url: str, started: float) -> list[str]:
    """How to write the SLO review (``cilium-node-exporter report``) from the demo's Prometheus."""
    exe = Path(sys.executable).with_name("cilium-node-exporter")
    with contextlib.suppress(ValueError):
        exe = exe.relative_to(Path.cwd())
    command = exe if exe.exists() else Path("cilium-node-exporter")
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
    return ["", "The SLO review of this demo (what a platform team takes to its monthly meeting), once the tour",
            "has run for a few minutes, from another terminal while the demo runs:",
            f"  {command} report --prometheus-url {prom_url} --from {since} --min-node-hours 0 "
            "--output demo-review.html",
            "  then open demo-review.html in a browser (Markdown or JSON: --format markdown|json)."]


def _write_prometheus(workdir: Path, exporter_port: int, node: str, am_port: int | None) -> tuple[Path, str]:
    """prometheus.yml (JSON is valid YAML) and a note on the rule pack."""
    rules: list[str] = []
    generator = CHECKOUT / "alerts" / "generate.py"
    note = "no alert rules: run the demo from a checkout to load the rule pack (alerts/)"
    if generator.exists():
        out = workdir / "rules"
        done = subprocess.run([sys.executable, "-m", "alerts.generate", "--preset", "accelerated", "--out", str(out)],
                              capture_output=True, text=True, cwd=CHECKOUT)
        if done.returncode == 0:
            rules = [str(p) for p in sorted(out.glob("*.rules.yaml"))]
            note = "the alert pack, accelerated preset (for: 10s; production defaults: alerts/rules/)"
        else:
            note = f"no alert rules: python -m alerts.generate failed: {done.stderr.strip()[-300:]}"
    config: dict[str, object] = {
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
        "rule_files": rules,
        "scrape_configs": [{"job_name": "cilium-node-exporter",
                            "static_configs": [{"targets": [f"{HOST}:{exporter_port}"], "labels": {"node": node}}]}],
    }
    if am_port:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [f"{HOST}:{am_port}"]}]}]}
    path = workdir / "prometheus.yml"
    path.write_text(json.dumps(config, indent=2))
    return path, note


def _write_alertmanager(workdir: Path) -> Path:
    inhibit: list[object] = []
    shipped = CHECKOUT / "alerts" / "alertmanager" / "inhibit-rules.yaml"
    if shipped.exists():
        import yaml

        inhibit = (yaml.safe_load(shipped.read_text()) or {}).get("inhibit_rules", [])
    config = {"route": {"receiver": "demo", "group_by": ["alertname", "node"], "group_wait": "5s",
                        "group_interval": "10s", "repeat_interval": "1h"},
              "receivers": [{"name": "demo"}], "inhibit_rules": inhibit}
    path = workdir / "alertmanager.yml"
    path.write_text(json.dumps(config, indent=2))
    return path


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
    stop_requested = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    workdir = Path(tempfile.mkdtemp(prefix="cne-demo-"))
    demo = Demo(workdir)
    try:
        return _run(args, scenario, demo, workdir, lambda: stop_requested)
    finally:
        demo.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("demo: stopped " + ", ".join(c.name for c in demo.children) + "; nothing left running.", flush=True)


def _run(args: argparse.Namespace, scenario: Scenario, demo: Demo, workdir: Path, stopping: object) -> int:
    node = scenario.node
    exe = [sys.executable, "-m", "cilium_node_exporter"]
    print(f"demo: starting the simulator (scenario {scenario.name}, speed {args.speed:g}) and the exporter ...",
          flush=True)
    sim = demo.start("simulator", [*exe, "simulate", "--scenario", args.scenario, "--speed", str(args.speed),
                                   "--hubble-socket", str(workdir / "hubble.sock"), "--kubelet-port", "0",
                                   "--kubeapi-port", "0", "--agent-api-socket", str(workdir / "cilium.sock"),
                                   "--write-client-config", str(workdir / "client")])
    flags_file = workdir / "client" / "exporter.flags"
    deadline = time.monotonic() + 30
    while not flags_file.exists():
        if sim.proc.poll() is not None or time.monotonic() > deadline:
            print(f"demo: the simulator did not start:\n{sim.tail()}", file=sys.stderr)
            return 1
        time.sleep(0.1)
    port = pick_port(args.port)
    exporter = demo.start("exporter", [*exe, *flags_file.read_text().split(), f"--listen-address={HOST}:{port}",
                                       f"--memory-envelope={ENVELOPE}", "--hubble-status-interval=2s"])
    metrics = f"http://{HOST}:{port}/metrics"
    if not wait_http(metrics, 30, exporter):
        print(f"demo: the exporter did not start:\n{exporter.tail()}", file=sys.stderr)
        return 1

    prom_url = am_url = ""
    rules_note = ""
    missing = [b for b in (PROMETHEUS, ALERTMANAGER) if not shutil.which(b)]
    if args.no_prometheus:
        pass
    elif missing:
        print(f"demo: {' and '.join(missing)} not installed, so no alerts in this demo. To see them fire:\n"
              "        sudo apt-get install prometheus prometheus-alertmanager   (or: make system-deps)\n"
              "      then run `make demo` again. Running the simulator and the exporter only.", flush=True)
    else:
        am_port, prom_port = pick_port(args.alertmanager_port), pick_port(args.prometheus_port)
        am = demo.start("alertmanager", [shutil.which(ALERTMANAGER) or ALERTMANAGER,
                                         f"--config.file={_write_alertmanager(workdir)}",
                                         f"--storage.path={workdir / 'am-data'}",
                                         f"--web.listen-address={HOST}:{am_port}", "--cluster.listen-address="])
        prom_cfg, rules_note = _write_prometheus(workdir, port, node, am_port)
        prom = demo.start("prometheus", [shutil.which(PROMETHEUS) or PROMETHEUS, f"--config.file={prom_cfg}",
                                         f"--storage.tsdb.path={workdir / 'prom-data'}",
                                         f"--web.listen-address={HOST}:{prom_port}",
                                         "--rules.alert.resend-delay=2s"])
        for child, url in ((am, f"http://{HOST}:{am_port}/-/ready"), (prom, f"http://{HOST}:{prom_port}/-/ready")):
            if not wait_http(url, 30, child):
                print(f"demo: {child.name} did not start:\n{child.tail()}", file=sys.stderr)
                return 1
        prom_url, am_url = f"http://{HOST}:{prom_port}", f"http://{HOST}:{am_port}"

    upper = parse_quantity(ENVELOPE.split("-")[1])
    lines = [
        "",
        f"cilium-node-exporter demo: node {node}, scenario {scenario.name!r} at {args.speed:g}x speed "
        f"({scenario.duration / 60:g} simulated minutes in {scenario.duration / args.speed / 60:.1f}"
        + (", then it loops)" if scenario.loop else ")"),
        "",
        "Where to look:",
        f"  metrics             {metrics}",
    ]
    if prom_url:
        lines += [f"  Prometheus alerts   {prometheus_page(prom_url, 'alerts')}   ({rules_note})",
                  f"  a query             {prometheus_page(prom_url, 'graph')}"
                  "?g0.expr=cilium_node_agent_memory_working_set_bytes&g0.range_input=15m",
                  f"  Alertmanager        {am_url}/#/alerts"]
    events = timeline(scenario, args.speed, upper)
    lines += ["", "What is about to happen (minutes:seconds from now):"]
    lines += [f"  {_clock(t):>5}  {what}" for t, what in events]
    crossing = next((t for t, what in events if "crosses its envelope" in what), None)
    if crossing is not None:
        lines += ["", f"{_about(crossing).capitalize()} the agent on node {node} crosses its envelope "
                      f"({upper / 2**20:.0f}Mi); CiliumAgentMemoryAboveEnvelope fires about 10 s later."]
    lines += ["Alerts go pending, then fire about 10 s after their condition holds. Ctrl-C stops everything."]
    if prom_url:
        lines += report_hint(prom_url, time.time())
    print("\n".join([*lines, ""]), flush=True)

    started = time.monotonic()
    while not stopping():  # type: ignore[operator]
        dead = demo.dead()
        if dead is not None:
            print(f"demo: {dead.name} exited with code {dead.proc.returncode}:\n{dead.tail()}", file=sys.stderr)
            return 1
        if args.duration and time.monotonic() - started >= args.duration:
            break
        time.sleep(0.2)
    print("\ndemo: stopping ...", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
