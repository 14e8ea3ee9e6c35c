"""The simulator's own units: Kubernetes memory quantities and Go-style durations, as scenarios write them.

Written apart from the exporter's parsers on purpose: the simulator computes the ground truth the exporter is
compared with, so a unit bug in the exporter (``Mi`` as 10**6, say) must show as a difference, not be repeated
on both sides. Semantics from the sources of what the scenarios imitate:

- quantities: Kubernetes ``resource.Quantity`` suffixes (k8s.io/apimachinery ``pkg/api/resource/suffix.go``):
  binary ``Ki Mi Gi Ti Pi Ei`` are powers of 1024, decimal ``k M G T P E`` powers of 1000 (``K`` is accepted
  too, as kubectl users write it);
- durations: Go's ``time.ParseDuration`` units ``ns us ms s m h`` (``1h30m``), or plain seconds.
"""

from __future__ import annotations

import re

BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}  # suffix -> power of 1024
DECIMAL = {"k": 1, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}  # suffix -> power of 1000
SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

_QUANTITY = re.compile(r"\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<suffix>[A-Za-z]*)\s*")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")


class QuantityError(ValueError):
    """A quantity or duration a scenario cannot use; the message says what is accepted."""


def bytes_of(text: str | int) -> int:
    """A memory quantity (``300Mi``, ``1.5Gi``, ``500M``, plain bytes) in bytes."""
    if isinstance(text, int):
        return text
    match = _QUANTITY.fullmatch(str(text))
    suffix = match["suffix"] if match else ""
    if not match or (suffix and suffix not in BINARY and suffix not in DECIMAL):
        raise QuantityError(f"invalid memory quantity {text!r} (use e.g. 300Mi, 1Gi, 500M or bytes)")
    factor = 1024 ** BINARY[suffix] if suffix in BINARY else 1000 ** DECIMAL.get(suffix, 0)
    return int(float(match["number"]) * factor)


def seconds_of(text: str | float) -> float:
    """A duration (``1h30m``, ``10s``, ``250ms``, plain seconds) in seconds."""
    if isinstance(text, int | float):
        value = float(text)
    else:
        raw = str(text).strip()
        try:
            value = float(raw)
        except ValueError:
            parts = _DURATION_PART.findall(raw)
            if not parts or "".join(n + u for n, u in parts) != raw:
                raise QuantityError(f"invalid duration {text!r} (use e.g. 10s, 5m, 1h30m)") from None
            value = sum(float(n) * SECONDS[u] for n, u in parts)
    if value < 0:
        raise QuantityError(f"invalid duration {text!r}: must not be negative")
    return value


def envelope_of(text: str) -> tuple[int, int]:
    """A memory envelope ``LOWER-UPPER`` (``200Mi-500Mi``) in bytes; the lower bound below the upper."""
    parts = text.split("-")
    if len(parts) != 2:
        raise QuantityError(f"invalid memory envelope {text!r} (use LOWER-UPPER, e.g. 200Mi-500Mi)")
    lower, upper = bytes_of(parts[0]), bytes_of(parts[1])
    if lower >= upper:
        raise QuantityError(f"invalid memory envelope {text!r}: lower bound must be below upper bound")
    return lower, upper
