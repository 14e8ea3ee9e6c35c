"""The exporter's own health: per-source up/errors, Hubble reconnects and time without a stream.

Logging follows "one line per distinct problem": a source logs a warning when its problem
changes (a new reason or message), stays quiet while the same problem repeats, and logs once
when it recovers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from cilium_node_exporter.contract import ERROR_REASONS

log = logging.getLogger("cilium_node_exporter.health")


@dataclass
class SourceHealth:
    """Health of one enabled source.

    An ``optional`` source (``--sources=auto``: agent, settings) may find that its endpoint does not
    exist on this node (:meth:`absent`): it is then *unavailable*, which is reported instead of
    ``source_up`` and is not an error. A required source never is: for it the same finding is a failure.
    """

    name: str
    optional: bool = False
    up: bool = False
    unavailable: bool = False
    attempted: bool = False  # a first attempt has completed (until then source_up is not reported)
    errors: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    last_problem: tuple[str, str] | None = None
    # A source's threads (the API server's watch per component) report concurrently: one line per problem
    # needs the compare-and-log to be atomic.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def _changed(self, problem: tuple[str, str] | None) -> bool:
        """Whether ``problem`` differs from the last one seen, which it becomes."""
        with self._lock:
            if problem == self.last_problem:
                return False
            self.last_problem = problem
            return True

    def ok(self) -> None:
        """The source delivered data."""
        unavailable = self.unavailable
        if self._changed(None):
            log.info("source %s %s", self.name, "is available" if unavailable else "recovered",
                     extra={"source": self.name})
        self.up = True
        self.unavailable = False
        self.attempted = True

    def absent(self, reason: str, message: str) -> None:
        """Nothing answers where the source's endpoint would be (refused, no socket).

        Optional source: unavailable, logged once (info), no error counted. Required: a failure.
        """
        if not self.optional:
            self.fail(reason, message)
            return
        self.up = False
        self.unavailable = True
        self.attempted = True
        if self._changed(("unavailable", message)):
            log.info("source %s is not available on this node, skipped (not an error): %s", self.name, message,
                     extra={"source": self.name})

    def fail(self, reason: str, message: str, *, count: bool = True) -> None:
        """The source failed with a bounded ``reason`` (see contract.ERROR_REASONS)."""
        if reason not in ERROR_REASONS:
            raise ValueError(f"unknown error reason {reason!r}")
        self.up = False
        self.unavailable = False
        self.attempted = True
        if self._changed((reason, message)):
            log.warning("source %s: %s (%s)", self.name, message, reason,
                        extra={"source": self.name, "reason": reason})
        if count:  # last: whoever sees the count sees the state and the problem too
            self.errors[reason] += 1


@dataclass
class StreamGap:
    """Accounts the time without a live Hubble stream (starts disconnected)."""

    clock: Callable[[], float] = time.monotonic
    reconnects: int = 0
    _accumulated: float = 0.0
    _down_since: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._down_since = self.clock()

    @property
    def connected(self) -> bool:
        return self._down_since is None

    def stream_up(self, *, reconnect: bool, since: float | None = None) -> None:
        """A GetFlows stream is live (since the ``clock`` time ``since``, default now); ``reconnect`` when
        it replaces a broken one."""
        with self._lock:
            if self._down_since is not None:
                up_at = self.clock() if since is None else min(self.clock(), max(since, self._down_since))
                self._accumulated += up_at - self._down_since
                self._down_since = None
            if reconnect:
                self.reconnects += 1

    def stream_down(self) -> None:
        """The stream broke or could not be opened."""
        with self._lock:
            if self._down_since is None:
                self._down_since = self.clock()

    def disconnected_seconds(self) -> float:
        """Total time without a stream, including the current gap."""
        with self._lock:
            extra = 0.0 if self._down_since is None else self.clock() - self._down_since
            return self._accumulated + extra
