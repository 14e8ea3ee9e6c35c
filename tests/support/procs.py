"""Subprocess helpers of the tests: the real exporter as a process (from the simulator package, shared with
``bench/``) and polling for a condition."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cilium_node_simulator.exporter_process import FAST_HUBBLE, Exporter, Metrics, free_port, proc_status

__all__ = ["FAST_HUBBLE", "Exporter", "Metrics", "free_port", "proc_status", "wait_until"]


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str | Callable[[], str] = "condition",
               interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy (and return it); AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")
        time.sleep(interval)

