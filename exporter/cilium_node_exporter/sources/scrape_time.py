"""Base of the sources read synchronously at scrape time (kubelet, agent metrics).

The collector calls ``state.refresh()`` before building families; each such source registers
its :meth:`ScrapeTimeSource.refresh` there, and the sources of one scrape are read at the same time.

- One read at a time: a scrape that arrives while a read is under way waits for that read (until its own
  deadline) instead of starting another, so queued scrapes (HA Prometheus pairs, retries) never stack reads.
- A read starts at most once per :data:`CACHE_SECONDS` after the previous one ended: two scrapes within a
  second cost one call, and scrapes queued behind a slow read (the endpoint's worker threads are busy) get
  its result instead of one more read each.
- A read must finish within its own timeout (``--kubelet-timeout``, ``--agent-timeout``) and within the
  scrape's budget (:data:`~cilium_node_exporter.aggregation.state.SCRAPE_DEADLINE`: the scraper's timeout
  minus ``--scrape-timeout-offset``), whichever ends first: a late source is reported down (``timeout``) by
  its own metrics, and the scrape itself still answers in time.
- A failure - any exception, expected or not - drops the source's snapshot (nothing stale is served),
  marks it down and counts the error; an endpoint nobody listens on makes an optional source unavailable
  instead (:meth:`SourceHealth.absent`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cilium_node_exporter.aggregation.state import SCRAPE_DEADLINE, ExporterState
from cilium_node_exporter.config import Config
from cilium_node_exporter.sources.k8s_http import SourceError

log = logging.getLogger(__name__)

CACHE_SECONDS = 1.0
BUDGET_HINT = "no answer within the scrape's budget (the scraper's timeout minus --scrape-timeout-offset)"


class ScrapeTimeSource:
    """Subclasses set ``name`` and implement :meth:`read` (fetch, parse, publish within
    :meth:`timeout` seconds) and :meth:`clear`."""

    name = ""

    def __init__(self, config: Config, state: ExporterState, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.state = state
        self.health = state.health[self.name]
        self._clock = clock
        self._last_attempt: float | None = None
        self._reading = False
        self._done = threading.Condition()
        self._deadline: float | None = None

    def start(self) -> None:
        self.state.refreshers.append(self.refresh)

    def stop(self) -> None:
        if self.refresh in self.state.refreshers:
            self.state.refreshers.remove(self.refresh)

    def read(self) -> None:
        """Fetch and publish a fresh snapshot; raise :class:`SourceError` on failure."""
        raise NotImplementedError

    def clear(self) -> None:
        """Drop the published snapshot."""
        raise NotImplementedError

    def describe(self, exc: SourceError) -> str:
        """The log message for a failure (subclasses add hints)."""
        return exc.message

    def timeout(self, own: float) -> float:
        """The time a request of this read may take: ``own`` (the source's timeout flag), or less when the
        scrape's budget ends first. Raises a ``timeout`` :class:`SourceError` when nothing is left."""
        if self._deadline is None:
            return own
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise SourceError("timeout", f"{self.name}: {BUDGET_HINT}")
        return min(own, left)

    def refresh(self) -> None:
        """Read the source unless a read ended less than :data:`CACHE_SECONDS` ago; join a read under way."""
        deadline = SCRAPE_DEADLINE.get()
        with self._done:
            if self._reading:
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                self._done.wait_for(lambda: not self._reading, timeout=wait)
                return
            if self._last_attempt is not None and self._clock() - self._last_attempt < CACHE_SECONDS:
                return
            self._reading, self._deadline = True, deadline
        try:
            self._read_once()
        finally:
            with self._done:
                self._reading, self._last_attempt = False, self._clock()
                self._done.notify_all()

    def _read_once(self) -> None:
        try:
            self.read()
        except SourceError as exc:
            self.clear()
            if exc.reason == "timeout" and self._deadline is not None and time.monotonic() >= self._deadline - 0.05:
                exc = SourceError("timeout", f"{self.name}: {BUDGET_HINT}")
            if exc.absent:  # nothing listens: unavailable when optional, a failure when required
                self.health.absent(exc.reason, self.describe(exc))
            else:
                self.health.fail(exc.reason, self.describe(exc))
            return
        except Exception as exc:  # a document of an unexpected shape: down and counted, never frozen
            log.debug("source %s: unexpected error", self.name, exc_info=True)
            self.clear()
            self.health.fail("protocol", f"unexpected {type(exc).__name__} reading the source: "
                                         f"{str(exc)[:200]!r}")
            return
        self.health.ok()
