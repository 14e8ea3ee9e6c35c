"""The review period: a calendar month, an explicit range, or the last SLO period; whole hours, UTC."""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

HOUR = 3600
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class PeriodError(ValueError):
    """A period the report cannot use."""


@dataclass(frozen=True)
class Period:
    """``[start, end)`` in Unix seconds, both on a whole hour; ``label`` names it for people."""

    start: int
    end: int
    label: str

    @property
    def hours(self) -> int:
        return (self.end - self.start) // HOUR

    @property
    def range(self) -> str:
        """The period as a PromQL range (``[<seconds>s]``)."""
        return f"{self.end - self.start}s"

    def hour_ends(self) -> list[int]:
        """The end of every hour of the period (where hourly queries are evaluated)."""
        return list(range(self.start + HOUR, self.end + 1, HOUR))

    def previous(self) -> Period:
        """The period before: the previous calendar month for a month, else as long, ending at our start."""
        begin = datetime.fromtimestamp(self.start, UTC)
        whole = month(begin.strftime("%Y-%m"))
        if (whole.start, whole.end) == (self.start, self.end) or (
                whole.start == self.start and self.label.endswith("so far")):
            return month((begin - timedelta(days=1)).strftime("%Y-%m"))
        length = self.end - self.start
        prev = Period(self.start - length, self.start, "")
        return Period(prev.start, prev.end, f"{prev.iso('start')} to {prev.iso('end')}")

    def iso(self, which: str) -> str:
        return datetime.fromtimestamp(getattr(self, which), UTC).strftime("%Y-%m-%dT%H:%MZ")


def duration_seconds(text: str) -> int:
    """Seconds in a Prometheus-style duration of d/h/m/s parts (``28d``, ``1h30m``)."""
    match = _DURATION.match(text or "")
    if not text or not match:
        raise PeriodError(f"invalid duration {text!r} (use e.g. 28d, 7d, 36h)")
    return sum(int(p or 0) * u for p, u in zip(match.groups(), (86400, 3600, 60, 1), strict=True))


def parse_time(text: str) -> int:
    """A date (``2026-10-01``, midnight UTC), an RFC 3339 time, or Unix seconds."""
    text = text.strip()
    if re.fullmatch(r"\d{9,11}(\.\d+)?", text):
        return int(float(text))
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PeriodError(f"invalid time {text!r} (use 2026-10-01, 2026-10-01T12:00:00Z or Unix seconds)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp())


def _floor_hour(t: int) -> int:
    return t - t % HOUR


def month(text: str) -> Period:
    """The calendar month ``YYYY-MM`` in UTC."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise PeriodError(f"invalid month {text!r} (use YYYY-MM, e.g. 2026-10)")
    year, mon = int(match.group(1)), int(match.group(2))
    start = datetime(year, mon, 1, tzinfo=UTC)
    end = start + timedelta(days=calendar.monthrange(year, mon)[1])
    return Period(int(start.timestamp()), int(end.timestamp()), start.strftime("%B %Y"))


def resolve(month_text: str | None, from_text: str | None, to_text: str | None, default_length: str,
            now: float | None = None) -> Period:
    """The period from the flags: ``--month``, or ``--from``/``--to``, else the last ``default_length``.

    Hourly figures need whole hours: ``--from``/``--to`` are rounded down to the hour, and a period that
    runs into the future (the default, a month in progress) ends at the next whole hour, its last hour
    holding the data so far.
    """
    now_s = int(time.time() if now is None else now)
    now_hour = _floor_hour(now_s) + (HOUR if now_s % HOUR else 0)
    if month_text and (from_text or to_text):
        raise PeriodError("use either --month or --from/--to")
    if month_text in ("last", "previous"):
        first = datetime.fromtimestamp(now_s, UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        period = month((first - timedelta(days=1)).strftime("%Y-%m"))
    elif month_text:
        period = month(month_text)
    else:
        end = _floor_hour(parse_time(to_text)) if to_text else now_hour
        if from_text:
            start = _floor_hour(parse_time(from_text))
            label = ""
        else:
            start = end - duration_seconds(default_length)
            label = f"the last {default_length}"
        period = Period(start, end, label)
    if period.start >= now_s:
        raise PeriodError(f"the period starts in the future ({period.iso('start')})")
    if period.end > now_hour:
        period = Period(period.start, now_hour, (period.label + " so far").strip())
    if period.end - period.start < HOUR:
        raise PeriodError("the period must be at least one hour long")
    if not period.label:
        period = Period(period.start, period.end, f"{period.iso('start')} to {period.iso('end')}")
    return period
