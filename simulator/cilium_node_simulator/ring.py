"""Hubble's event ring buffer, emulated: fixed capacity 2^n-1, one writer, per-reader cursors.

Readers hold an absolute position (``0 .. write``). Events older than ``write - capacity`` were
overwritten: a reader behind that point skips ahead and reports the difference as
HUBBLE_RING_BUFFER lost events (see :mod:`.getflows`). Entries are plain tuples (the producer's hot
path writes millions of them) indexed with :data:`TIME`, :data:`TEMPLATE`, :data:`TS` and
:data:`WIRE`, written by :class:`~.stamper.Stamper`; an unwritten slot holds :data:`EMPTY`.
"""

from __future__ import annotations

from typing import Any

# A ring entry: (event time ns, FlowTemplate, the time's Timestamp bytes or None, framed wire bytes).
Entry = tuple[int, Any, bytes | None, bytes]
TIME, TEMPLATE, TS, WIRE = 0, 1, 2, 3
EMPTY: Entry = (0, None, None, b"")


def check_capacity(capacity: int) -> int:
    """Validate a Hubble ring capacity (2^n - 1, n in 1..16), as the agent does."""
    if capacity < 1 or capacity > 65535 or (capacity + 1) & capacity:
        raise ValueError(f"invalid capacity {capacity}: must be one less than an integer power of two "
                         "(1 to 65535, e.g. 4095)")
    return capacity


class Ring:
    """The ring: ``data[i & mask]`` holds event number ``i`` while ``i >= write - capacity``."""

    __slots__ = ("capacity", "data", "mask", "write")

    def __init__(self, capacity: int = 4095) -> None:
        self.capacity = check_capacity(capacity)
        self.mask = capacity  # array size is capacity + 1: one slot is reserved for the writer
        self.data: list[Entry] = [EMPTY] * (capacity + 1)
        self.write = 0

    def __len__(self) -> int:
        return min(self.write, self.capacity)

    @property
    def oldest(self) -> int:
        """Position of the oldest event still readable."""
        return max(0, self.write - self.capacity)

    def append(self, entry: Entry) -> None:
        self.data[self.write & self.mask] = entry
        self.write += 1

    def get(self, pos: int) -> Entry:
        return self.data[pos & self.mask]

    def clear(self) -> None:
        self.data = [EMPTY] * (self.capacity + 1)
        self.write = 0

    def position_since(self, since_ns: int) -> int:
        """First readable position whose event time is >= ``since_ns`` (``write`` if none)."""
        pos = self.write
        oldest = self.oldest
        while pos > oldest and self.get(pos - 1)[TIME] >= since_ns:
            pos -= 1
        return pos
