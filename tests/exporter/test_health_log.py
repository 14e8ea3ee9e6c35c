"""One log line per distinct problem, whichever thread of a source reports it (the API server source runs one
watch thread per component; a refused connection reaches all of them at once)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from cilium_node_exporter.aggregation.health import SourceHealth


class SlowHandler(logging.Handler):
    """Takes a while per record, as a blocked stderr would: concurrent reporters overlap inside the log call."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        time.sleep(0.05)
        self.messages.append(record.getMessage())


@pytest.fixture
def handler() -> Iterator[SlowHandler]:
    h = SlowHandler()
    logger = logging.getLogger("cilium_node_exporter.health")
    logger.addHandler(h)
    level, disabled = logger.level, logger.disabled
    logger.setLevel(logging.INFO)  # setLevel, not the attribute: it clears the loggers' cached levels
    logger.disabled = False
    yield h
    logger.removeHandler(h)
    logger.setLevel(level)
    logger.disabled = disabled


def report_together(threads: int, call: Callable[[], None]) -> None:
    barrier = threading.Barrier(threads)

    def run() -> None:
        barrier.wait()
        call()

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=10)


def test_the_same_failure_from_eight_threads_is_logged_once_and_counted_eight_times(handler: SlowHandler) -> None:
    health = SourceHealth("apiserver")
    report_together(8, lambda: health.fail("connect", "apiserver pods watch: connection refused"))
    assert len(handler.messages) == 1, handler.messages
    assert health.errors["connect"] == 8 and not health.up


def test_recovery_from_eight_threads_is_logged_once(handler: SlowHandler) -> None:
    health = SourceHealth("apiserver")
    health.fail("connect", "refused")
    report_together(8, health.ok)
    logger = logging.getLogger("cilium_node_exporter.health")
    assert [m for m in handler.messages if "recovered" in m] == ["source apiserver recovered"], \
        (handler.messages, logger.getEffectiveLevel(), logger.disabled, logging.root.manager.disable)
    assert health.up and health.last_problem is None


def test_optional_source_absent_from_eight_threads_is_logged_once(handler: SlowHandler) -> None:
    health = SourceHealth("agent", optional=True)
    report_together(8, lambda: health.absent("connect", "no socket"))
    assert len(handler.messages) == 1 and health.unavailable, handler.messages
