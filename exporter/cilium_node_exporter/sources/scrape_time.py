"""Base of the sources read synchronously at scrape time (kubelet, agent metrics).

The collector calls ``state.refresh()`` before building families; each such source registers
its :meth:`ScrapeTimeSource.refresh` there. A read happens at most once per
:data:`CACHE_SECONDS` (two scrapes within a second cost one call); a failure — any exception,
expected or not — drops the source's snapshot (nothing stale is served), marks it down and
counts the error; an endpoint nobody listens on makes an optional source unavailable instead
(:meth:`SourceHealth.absent`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.config import Config
from cilium_node_exporter.sources.k8s_http import SourceError

log = logging.getLogger(__name__)

CACHE_SECONDS = 1.0


class ScrapeTimeSource:
    """Subclasses set ``name`` and implement :meth:`read` (fetch, parse, publish) and :meth:`clear`."""

    name = ""

    def __init__(self, config: Config, state: ExporterState, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.state = state
        self.health = state.health[self.name]
        self._clock = clock
        self._last_attempt: float | None = None
        self._lock = threading.Lock()

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

    def refresh(self) -> None:
        """Read the source unless the last attempt is younger than :data:`CACHE_SECONDS`."""
        with self._lock:
            now = self._clock()
            if self._last_attempt is not None and now - self._last_attempt < CACHE_SECONDS:
                return
            try:
                self.read()
            except SourceError as exc:
                self.clear()
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
            finally:
                # The cache runs from the end of the read: scrapes that queued behind a slow read
                # (HA Prometheus pairs, retries) get its result instead of one more timeout each.
                self._last_attempt = self._clock()
            self.health.ok()
