"""The processes of a local monitoring stack and their configuration, for the demo, the end-to-end tests and the
benchmarks: one supervisor and one writer of ``prometheus.yml`` and ``alertmanager.yml``.

- :class:`Supervisor` starts each child with its own log file, in its own session (a Ctrl-C on the terminal
  reaches only the parent, which stops the rest) and, on Linux, with SIGTERM as its parent-death signal (no
  orphan even when the parent is SIGKILLed); ``stop_all`` sends SIGTERM, then SIGKILL to what is left.
- :func:`render_pack` renders the checkout's rule pack (``python -m alerts.generate``, accelerated preset by
  default: same expressions, short windows and ``for:``), :func:`prometheus_config` scrapes file-discovered
  targets and sends to Alertmanager, :func:`alertmanager_config` is the shipped ``alerts/alertmanager/
  alertmanager.yaml`` (route, receivers, inhibitions) with every webhook pointed at a local receiver and,
  optionally, the routes' timers accelerated.

The rule pack and the shipped Alertmanager file live in the checkout (``alerts/``), not in an installed package:
these helpers serve a development install (``make setup``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cilium_node_simulator.exporter_process import free_port

HOST = "127.0.0.1"
CHECKOUT = Path(__file__).resolve().parents[2]
SHIPPED_ALERTMANAGER = CHECKOUT / "alerts" / "alertmanager" / "alertmanager.yaml"
PROMETHEUS = "prometheus"  # Debian's binaries (apt-get install prometheus prometheus-alertmanager)
ALERTMANAGER = "prometheus-alertmanager"
JOB = "cilium-node-exporter"
# Alertmanager timers for runs of minutes: a group's first notification 5 s after its first alert (a cause and
# its echo reach Alertmanager within a scrape or two; inhibition needs both), changes (resolved included) within
# a second, no repeats.
FAST_ROUTE: Mapping[str, str] = {"group_wait": "5s", "group_interval": "1s", "repeat_interval": "1h"}


class StackError(RuntimeError):
    """A part of the stack could not be rendered or started."""


def pick_port(wanted: int, host: str = HOST) -> int:
    """``wanted`` when it is free on ``host``, else any free port (0 asks for any)."""
    if wanted:
        with contextlib.suppress(OSError), socket.create_server((host, wanted)):
            return wanted
    return free_port(host)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """Status and body of a GET; (0, b"") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def get_json(url: str, timeout: float = 5.0) -> Any:
    """The JSON document at ``url``; StackError when it does not answer 200."""
    status, body = http_get(url, timeout)
    if status != 200:
        raise StackError(f"GET {url}: {status} {body[:300]!r}")
    return json.loads(body)


def missing_binaries(*names: str) -> list[str]:
    """Which of ``names`` are not on PATH."""
    return [n for n in names if not shutil.which(n)]


# --- processes ---------------------------------------------------------------------------------------
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    return None


_PRCTL = _prctl()  # resolved here: between fork and exec the child only calls it
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """The child gets SIGTERM when the thread that started it ends (the parent exiting, even by SIGKILL)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    """Named child processes with logs in ``logdir``; ``stop_all`` leaves none behind.

    Start children from a thread that outlives them (the main thread): Linux delivers the parent-death signal
    when the starting thread ends."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        logdir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        with open(self.log_path(name), "wb") as log:
            proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
                                    preexec_fn=_die_with_parent)
        self.procs[name] = proc
        return proc

    def log_path(self, name: str) -> Path:
        return self.logdir / f"{name}.log"

    def log(self, name: str, tail: int = 40) -> str:
        """The last ``tail`` lines of ``name``'s log."""
        path = self.log_path(name)
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return "\n".join(lines[-tail:])

    def alive(self, name: str) -> bool:
        return self.procs[name].poll() is None

    def dead(self) -> str | None:
        """The name of a child that has exited, if any."""
        return next((n for n, p in self.procs.items() if p.poll() is not None), None)

    def wait_http(self, name: str, url: str, timeout: float, stop: threading.Event | None = None) -> bool:
        """True once ``url`` answers 200; False when ``name`` exits, ``stop`` is set or ``timeout`` s pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive(name) and not (stop and stop.is_set()):
            if http_get(url, timeout=1)[0] == 200:
                return True
            time.sleep(0.1)
        return False

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig``, wait, SIGKILL after ``timeout``; the exit code."""
        proc = self.procs[name]
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            self._reap(proc, time.monotonic() + timeout)
        return int(proc.returncode)

    def stop_all(self, timeout: float = 10.0) -> dict[str, int]:
        """SIGTERM to every live child (last started first), then SIGKILL what is left after ``timeout``."""
        live = [n for n, p in reversed(self.procs.items()) if p.poll() is None]
        for name in live:
            with contextlib.suppress(ProcessLookupError):
                self.procs[name].send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name in live:
            self._reap(self.procs[name], deadline)
        return {name: int(self.procs[name].returncode) for name in live}

    @staticmethod
    def _reap(proc: subprocess.Popen[bytes], deadline: float) -> None:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


# --- configuration -----------------------------------------------------------------------------------
def render_pack(out: Path, preset: str = "accelerated") -> list[Path]:
    """Render the checkout's rule pack into ``out`` (``python -m alerts.generate``); its rule files."""
    if not (CHECKOUT / "alerts" / "generate.py").exists():
        raise StackError(f"no rule pack at {CHECKOUT / 'alerts'}: run from a checkout of cilium-node-exporter")
    done = subprocess.run([sys.executable, "-m", "alerts.generate", "--preset", preset, "--out", str(out)],
                          capture_output=True, text=True, cwd=CHECKOUT, start_new_session=True)
    if done.returncode != 0:
        raise StackError(f"python -m alerts.generate failed: {done.stderr.strip()[-500:]}")
    return sorted(out.glob("*.rules.yaml"))


def prometheus_config(targets_dir: Path, rule_files: Sequence[Path], *, interval: str = "1s",
                      alertmanager: str = "", self_target: str = "") -> dict[str, Any]:
    """Scrape the targets in ``targets_dir/*.json`` (file_sd) as job ``cilium-node-exporter`` every ``interval``,
    evaluate ``rule_files`` as often; send alerts to ``alertmanager`` (host:port) and scrape ``self_target``
    (Prometheus itself) when given."""
    scrape: list[dict[str, Any]] = [{"job_name": JOB, "file_sd_configs": [
        {"files": [str(targets_dir / "*.json")], "refresh_interval": "1s"}]}]
    if self_target:
        scrape.append({"job_name": "prometheus", "static_configs": [{"targets": [self_target]}]})
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": scrape,
    }
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return config


def write_targets(targets_dir: Path, name: str, targets: Sequence[str], labels: Mapping[str, str]) -> None:
    """One file_sd file, replaced atomically (Prometheus never reads half of it)."""
    targets_dir.mkdir(parents=True, exist_ok=True)
    tmp = targets_dir / f".{name}.tmp"
    tmp.write_text(json.dumps([{"targets": list(targets), "labels": dict(labels)}]))
    tmp.rename(targets_dir / f"{name}.json")


def alertmanager_config(webhook: str, timings: Mapping[str, str] | None = None,
                        shipped: Path = SHIPPED_ALERTMANAGER) -> dict[str, Any]:
    """The shipped configuration with every receiver's webhook at ``webhook/<receiver name>``; ``timings``
    (e.g. :data:`FAST_ROUTE`) replace the timers of the root route and of every route that sets its own."""
    if not shipped.exists():
        raise StackError(f"no Alertmanager configuration at {shipped}: run from a checkout of cilium-node-exporter")
    config: dict[str, Any] = yaml.safe_load(shipped.read_text())
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"{webhook.rstrip('/')}/{receiver['name']}"

    def accelerate(route: dict[str, Any], root: bool) -> None:
        for key, value in (timings or {}).items():
            if root or key in route:
                route[key] = value
        for child in route.get("routes", []):
            accelerate(child, False)

    accelerate(config["route"], True)
    return config


def receivers_by_severity(config: Mapping[str, Any]) -> dict[str, str]:
    """severity -> receiver from the routes, at any depth (the pack's scoped route holds them), that match
    one ``severity="..."``."""
    out: dict[str, str] = {}

    def walk(routes: list[dict[str, Any]]) -> None:
        for route in routes:
            for matcher in route.get("matchers", []):
                name, _, value = matcher.partition("=")
                if name.strip() == "severity" and value.startswith('"'):
                    out.setdefault(value.strip('"'), route["receiver"])
            walk(route.get("routes", []))

    walk(config["route"].get("routes", []))
    return out


@dataclass(frozen=True)
class Monitoring:
    """Base URLs of a started Prometheus and Alertmanager ('' when not started)."""

    prometheus: str
    alertmanager: str

    def wait_ready(self, sup: Supervisor, timeout: float, stop: threading.Event | None = None) -> str | None:
        """None once both answer ``/-/ready``; else the name of the one that did not (exited or too slow)."""
        for name, url in (("alertmanager", self.alertmanager), ("prometheus", self.prometheus)):
            if url and not sup.wait_http(name, url + "/-/ready", timeout, stop):
                return name
        return None


def start_monitoring(sup: Supervisor, workdir: Path, prometheus: Mapping[str, Any],
                     alertmanager: Mapping[str, Any] | None, *, prom_port: int, am_port: int,
                     resend_delay: str = "1s", host: str = HOST, log_level: str = "warn") -> Monitoring:
    """Write ``alertmanager.yml`` and ``prometheus.yml`` into ``workdir`` and start Alertmanager (when
    ``alertmanager`` is given) and Prometheus on ``host`` as children ``alertmanager`` and ``prometheus``;
    :meth:`Monitoring.wait_ready` waits for them."""
    am_url = ""
    if alertmanager is not None:
        am_cfg = workdir / "alertmanager.yml"
        am_cfg.write_text(yaml.safe_dump(dict(alertmanager), sort_keys=False))
        sup.start("alertmanager", [shutil.which(ALERTMANAGER) or ALERTMANAGER, f"--config.file={am_cfg}",
                                 f"--storage.path={workdir / 'am-data'}", f"--web.listen-address={host}:{am_port}",
                                 "--cluster.listen-address=", f"--log.level={log_level}"])
        am_url = f"http://{host}:{am_port}"
    prom_cfg = workdir / "prometheus.yml"
    prom_cfg.write_text(yaml.safe_dump(dict(prometheus), sort_keys=False))
    sup.start(PROMETHEUS, [shutil.which(PROMETHEUS) or PROMETHEUS, f"--config.file={prom_cfg}",
                           f"--storage.tsdb.path={workdir / 'prom-data'}", f"--web.listen-address={host}:{prom_port}",
                           f"--rules.alert.resend-delay={resend_delay}", f"--log.level={log_level}"])
    return Monitoring(f"http://{host}:{prom_port}", am_url)
