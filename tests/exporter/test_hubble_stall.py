"""The Hubble stream's stall check on a scripted clock: a stall is suspected on one ServerStatus poll and confirmed
only on a later on-time poll, so a process that resumes after a pause (SIGSTOP, CPU throttling) reads its backlog
instead of reconnecting, while a stream that really delivers nothing is still reconnected."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.api.observer import observer_pb2
from cilium_node_exporter.config import parse_args
from cilium_node_exporter.sources.hubble import stream
from cilium_node_exporter.sources.hubble.stream import HubbleSource

INTERVAL, STALL = 0.2, 2.0  # the process tests' --hubble-status-interval and --hubble-stall-timeout


@dataclass
class Clock:
    now: float = 0.0

    def monotonic(self) -> float:
        return self.now


@dataclass
class Script:
    """A source whose clock, stream messages and server counter the test moves; records reconnects."""

    source: HubbleSource
    clock: Clock
    seen: int = 0
    cancelled: list[float] = field(default_factory=list)

    def message(self, at: float) -> None:
        """The stream thread hands the exporter one message at ``at``."""
        self.clock.now = at
        self.source._last_message = at

    def poll(self, at: float) -> None:
        """The status thread's ServerStatus poll at ``at``."""
        self.clock.now = at
        self.source._check_stall(observer_pb2.ServerStatusResponse(seen_flows=self.seen, version="1.19.4"))


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Script:
    clock = Clock()
    monkeypatch.setattr(stream, "time", clock)  # the module's clock only (stream.py reads time.monotonic())
    cfg = parse_args(["--sources", "hubble", "--hubble-address", "unix:///nonexistent.sock",
                      "--hubble-status-interval", f"{INTERVAL}s", "--hubble-stall-timeout", f"{STALL}s"], environ={})
    state = ExporterState(sources=cfg.sources, envelope=cfg.memory_envelope)
    state.hubble_gap.clock = clock.monotonic
    state.hubble_gap.stream_up(reconnect=False)
    source = HubbleSource(cfg, state)
    s = Script(source, clock)
    monkeypatch.setattr(source, "_probe_has_events", lambda: True)  # the server has events we did not get
    monkeypatch.setattr(source, "_cancel_call", lambda: s.cancelled.append(clock.now))
    return s


def steady(s: Script, until: float) -> float:
    """Messages and on-time polls every interval up to ``until``; returns the last poll's time."""
    t = 0.0
    while t + INTERVAL <= until + 1e-9:
        s.seen += 5
        s.message(t + INTERVAL / 2)
        t = round(t + INTERVAL, 6)
        s.poll(t)
    return t


def test_resumed_process_reads_its_backlog_without_a_reconnect(script: Script) -> None:
    """Frozen for 3 s (longer than the stall timeout) while the server saw flows: the first poll after the resume
    comes before the stream thread read the backlog. The old check reconnected right there."""
    t = steady(script, 1.0)
    script.seen += 20  # seen by the server while the process was stopped
    script.poll(t + 3.0)  # SIGCONT: the status thread runs first
    script.message(t + 3.05)  # the stream thread reads the backlog
    script.poll(t + 3.2)
    steady_end = t + 3.2
    for k in range(1, 20):  # and keeps streaming
        script.seen += 5
        script.message(steady_end + k * INTERVAL - INTERVAL / 2)
        script.poll(steady_end + k * INTERVAL)
    assert script.cancelled == []
    assert script.source.health.errors["timeout"] == 0


def test_quiet_node_first_event_polled_before_delivery_is_no_stall(script: Script) -> None:
    """A node quiet for longer than the stall timeout gets one flow; the poll lands between the server counting it
    and the stream delivering it."""
    t = steady(script, 0.4)
    for _ in range(20):  # 4 s quiet: nothing seen, nothing delivered
        t = round(t + INTERVAL, 6)
        script.poll(t)
    script.seen += 1
    script.poll(t + INTERVAL)
    script.message(t + INTERVAL + 0.01)
    script.poll(t + 2 * INTERVAL)
    assert script.cancelled == []


def test_stream_that_delivers_nothing_is_reconnected_one_interval_after_the_timeout(script: Script) -> None:
    t = steady(script, 1.0)
    last_message = script.source._last_message
    while not script.cancelled and t < 10:
        script.seen += 5  # the server sees flows, the stream hands over nothing
        t = round(t + INTERVAL, 6)
        script.poll(t)
    assert script.cancelled, "a stalled stream was never reconnected"
    # suspected on the first poll at least STALL after the last message, confirmed on the next one
    assert STALL <= script.cancelled[0] - last_message <= STALL + 2 * INTERVAL + 1e-6, script.cancelled
    assert script.source.health.errors["timeout"] == 1


def test_stall_after_a_pause_is_confirmed_by_the_next_on_time_poll(script: Script) -> None:
    """A late poll only suspects; a stream still silent at the next on-time poll is reconnected."""
    t = steady(script, 1.0)
    script.seen += 20
    script.poll(t + 3.0)
    assert script.cancelled == []
    script.seen += 5
    script.poll(t + 3.0 + INTERVAL)
    assert script.cancelled == [pytest.approx(t + 3.0 + INTERVAL)]
