"""Clocks for the simulator's timelines: the real one, and a virtual one that a recorder advances.

A :class:`~cilium_node_simulator.scenario.ScenarioRuntime` reads time and sleeps only through its clock. With
the :class:`VirtualClock` nothing depends on how fast the machine is: the recorder advances the time, waits until
every runtime has played up to it (each is then asleep until a later instant), and reads the exporters' state,
so a loaded machine records the same series, only later (:mod:`cilium_node_simulator.fleet_record`).
"""

from __future__ import annotations

import threading
import time as _time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    def time_ns(self) -> int: ...

    def wait(self, stop: threading.Event, timeout: float) -> bool:
        """Sleep ``timeout`` seconds of this clock, or until ``stop`` is set (returns whether it is)."""
        ...


class RealClock:
    """The machine's clocks."""

    monotonic = staticmethod(_time.monotonic)
    time = staticmethod(_time.time)
    time_ns = staticmethod(_time.time_ns)

    def wait(self, stop: threading.Event, timeout: float) -> bool:
        return stop.wait(timeout)


REAL = RealClock()


class VirtualClock:
    """Time that moves only by :meth:`advance`; ``epoch`` is its wall-clock (Unix) time at 0."""

    def __init__(self, epoch: float) -> None:
        self.epoch = epoch
        self.now = 0.0
        self._cond = threading.Condition()
        self._sleepers: dict[int, float] = {}  # thread id -> the instant it sleeps until

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.epoch + self.now

    def time_ns(self) -> int:
        return round(self.time() * 1e9)

    def wait(self, stop: threading.Event, timeout: float) -> bool:
        me = threading.get_ident()
        with self._cond:
            until = self.now + max(timeout, 0.0)
            self._sleepers[me] = until
            self._cond.notify_all()
            while self.now < until and not stop.is_set():
                self._cond.wait(1.0)
            del self._sleepers[me]
        return stop.is_set()

    def advance(self, to: float) -> None:
        """Move the time forward to ``to`` and wake the sleepers that are due."""
        with self._cond:
            self.now = max(self.now, to)
            self._cond.notify_all()

    def wait_idle(self, threads: list[threading.Thread], timeout: float = 600.0) -> None:
        """Until every live thread of ``threads`` sleeps past the current time (it played up to now)."""
        deadline = _time.monotonic() + timeout
        with self._cond:
            while True:
                busy = [t for t in threads if t.is_alive() and self._sleepers.get(t.ident or -1, -1.0) <= self.now]
                if not busy:
                    return
                if _time.monotonic() > deadline:
                    raise TimeoutError(f"{len(busy)} timelines did not reach t={self.now:g}")
                self._cond.wait(0.05)

    def release(self) -> None:
        """Wake every sleeper: those whose stop event is set return."""
        with self._cond:
            self._cond.notify_all()
