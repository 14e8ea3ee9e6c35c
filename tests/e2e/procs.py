"""Subprocesses of the end-to-end tests: start with a log file, stop for sure, wait for HTTP."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from tests.support.procs import wait_until as _wait_until

T = TypeVar("T")


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """Status and body of a GET; (0, b"") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def wait_until(predicate: Callable[[], T], timeout: float, what: str | Callable[[], str],
               interval: float = 0.25) -> T:
    """:func:`tests.support.procs.wait_until` polling a little slower: these predicates query Prometheus."""
    return _wait_until(predicate, timeout, what, interval)


class Processes:
    """Named subprocesses with logs in ``logdir``; ``stop_all`` leaves none behind."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        logdir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        with open(self.logdir / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
        self.procs[name] = proc
        return proc

    def log(self, name: str, tail: int = 40) -> str:
        path = self.logdir / f"{name}.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return "\n".join(lines[-tail:])

    def alive(self, name: str) -> bool:
        return self.procs[name].poll() is None

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig``, wait, SIGKILL after ``timeout``; the exit code."""
        proc = self.procs[name]
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        return int(proc.returncode)

    def stop_all(self, timeout: float = 10.0) -> dict[str, int]:
        """SIGTERM to every live process (last started first), then SIGKILL what is left."""
        live = [n for n, p in reversed(self.procs.items()) if p.poll() is None]
        for name in live:
            with contextlib.suppress(ProcessLookupError):
                self.procs[name].send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes = {}
        for name in live:
            proc = self.procs[name]
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            codes[name] = int(proc.returncode)
        return codes
