"""Hubble's event ring buffer, emulated: fixed capacity 2^n-1, one writer, per-reader cursors.

Readers hold an absolute position (``0 .. write``). Events older than ``write - capacity`` were
overwritten: a reader behind that point skips ahead and reports the difference as
HUBBLE_RING_BUFFER lost events (see ``hubble_server``). Entries are tuples
``(time_ns, template, ts_bytes, wire_bytes)``, written by :class:`~.events.Stamper`.
"""

from __future__ import annotations

from typing import Any

Entry = tuple[int, Any, bytes | None, bytes]


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
        self.data: list[Entry | None] = [None] * (capacity + 1)
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
        entry = self.data[pos & self.mask]
        assert entry is not None
        return entry

    def clear(self) -> None:
        self.data = [None] * (self.capacity + 1)
        self.write = 0

    def position_since(self, since_ns: int) -> int:
        """First readable position whose event time is >= ``since_ns`` (``write`` if none)."""
        pos = self.write
        oldest = self.oldest
        while pos > oldest and self.get(pos - 1)[0] >= since_ns:
            pos -= 1
        return pos
