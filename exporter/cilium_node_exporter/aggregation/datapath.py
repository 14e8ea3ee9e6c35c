"""Counters of datapath events, kept in plain dicts keyed by small tuples (the hot path).

Sources increment them from one thread; the exposition copies them at scrape time
(``dict.copy`` holds the GIL, so a copy is consistent). Keys hold enum numbers already
normalised to bounded sets, and optional label values already passed through their caps.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

# Key layouts (None where an optional dimension is off):
#   drops:    (reason_code, direction, protocol, endpoint_namespace)
#   verdicts: (direction, match, action, endpoint_namespace, policy)
#   l7:       (protocol, method, direction, action, endpoint_namespace)
DropKey = tuple[int, str, str | None, str | None]
VerdictKey = tuple[str, str, str, str | None, str | None]
L7Key = tuple[str, str, str, str, str | None]


@dataclass
class DatapathCounters:
    """Event counts derived from the Hubble stream (see ``sources.hubble.decode``)."""

    drops: defaultdict[DropKey, int] = field(default_factory=lambda: defaultdict(int))
    verdicts: defaultdict[VerdictKey, int] = field(default_factory=lambda: defaultdict(int))
    l7: defaultdict[L7Key, int] = field(default_factory=lambda: defaultdict(int))
    lost: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    events: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    label_overflow: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))

    def forget(self, position: str, value: str) -> None:
        """Drop every series whose optional label at ``position`` equals ``value`` (cap eviction)."""
        layouts = {"protocol": ((self.drops, 2),),
                   "endpoint_namespace": ((self.drops, 3), (self.verdicts, 3), (self.l7, 4)),
                   "policy": ((self.verdicts, 4),)}
        for table, index in layouts[position]:
            for key in [k for k in table if k[index] == value]:
                del table[key]
