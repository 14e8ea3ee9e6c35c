"""Bounded label values: a cap on distinct values, 'other' past it, idle values expire."""

from __future__ import annotations

import time
from collections.abc import Callable

from cilium_node_exporter.contract import OVERFLOW_VALUE


class CappedLabel:
    """Admits at most ``cap`` distinct values of one label; the rest become ``other``.

    A value not seen for ``idle_expiry`` seconds gives its place to a new one; ``on_evict`` is
    called with the evicted value so that the series carrying it can be dropped. Single writer:
    only the thread that counts events calls :meth:`admit`.
    """

    def __init__(self, name: str, cap: int, idle_expiry: float,
                 on_evict: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.cap = cap
        self.idle_expiry = idle_expiry
        self.on_evict = on_evict
        self._clock = clock
        self._last_seen: dict[str, float] = {}
        self._next_expiry = float("inf")
        self.overflow = 0

    def __len__(self) -> int:
        return len(self._last_seen)

    def admit(self, value: str) -> str:
        """The label value to count ``value`` under: itself, or ``other`` past the cap."""
        now = self._clock()
        seen = self._last_seen
        if value in seen:
            seen[value] = now
            return value
        if len(seen) >= self.cap and now >= self._next_expiry:
            self._expire(now)
        if len(seen) < self.cap:
            seen[value] = now
            if len(seen) == self.cap:
                self._next_expiry = min(seen.values()) + self.idle_expiry
            return value
        self.overflow += 1
        return OVERFLOW_VALUE

    def _expire(self, now: float) -> None:
        cutoff = now - self.idle_expiry
        for value in [v for v, t in self._last_seen.items() if t <= cutoff]:
            del self._last_seen[value]
            if self.on_evict is not None:
                self.on_evict(value)
        self._next_expiry = (min(self._last_seen.values()) + self.idle_expiry) if self._last_seen else float("inf")
