"""Durations and Kubernetes memory quantities, as flags, scenarios and annotations write them."""

from __future__ import annotations

import re


class UnitError(ValueError):
    """A duration or quantity that cannot be parsed; the message says what is accepted."""


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Parse ``1h30m``, ``10s``, ``250ms`` or plain seconds into seconds."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        if not _DURATION.match(text):
            raise UnitError(f"invalid duration {text!r} (use e.g. 10s, 5m, 1h30m)") from None
        value = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    if value < 0:
        raise UnitError(f"invalid duration {text!r}: must not be negative")
    return value


_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|k|K|M|G|T)?\s*$")
_QUANTITY_FACTOR = {None: 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
                    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def parse_quantity(text: str) -> int:
    """Parse a Kubernetes memory quantity (``500Mi``, ``1G``, ``1.5Gi``, plain bytes) into bytes."""
    match = _QUANTITY.match(text)
    if not match:
        raise UnitError(f"invalid memory quantity {text!r} (use e.g. 200Mi, 1Gi, 500M or bytes)")
    return int(float(match.group(1)) * _QUANTITY_FACTOR[match.group(2)])


def parse_envelope(text: str) -> tuple[int, int]:
    """Parse ``LOWER-UPPER`` (e.g. ``200Mi-500Mi``) into bytes; lower must be below upper."""
    parts = text.split("-")
    if len(parts) != 2:
        raise UnitError(f"invalid memory envelope {text!r} (use LOWER-UPPER, e.g. 200Mi-500Mi)")
    lower, upper = parse_quantity(parts[0]), parse_quantity(parts[1])
    if lower >= upper:
        raise UnitError(f"invalid memory envelope {text!r}: lower bound must be below upper bound")
    return lower, upper
