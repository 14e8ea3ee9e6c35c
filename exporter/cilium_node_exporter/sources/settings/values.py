"""Cilium's setting values as the agent reads them, normalised to the contract's bounded label values.

Each function returns ``None`` for "unknown" (absent or not understood): the exposition then leaves the
series out. Nothing here guesses a value Cilium's source does not define.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from cilium_node_exporter.contract import (
    KUBE_PROXY_REPLACEMENT_MODES,
    MONITOR_AGGREGATION_LEVELS,
    MONITOR_EVENTS,
    OVERFLOW_VALUE,
)

Version = tuple[int, int, int]
MAX_VERSION_LEN = 64
_VERSION = re.compile(r"v?(\d{1,4})\.(\d{1,4})\.(\d{1,4})([-+][0-9A-Za-z.+-]*)?")

# Monitor message type names (pkg/monitor/api/types.go MessageTypeNames, 1.14-1.19); "recorder" is
# gone in 1.19 (the 1.19.4 vendored types.go has no MessageTypeNameRecCapture).
_MONITOR_TYPE_NAMES = frozenset({"drop", "debug", "capture", "trace", "l7", "agent", "policy-verdict",
                                 "recorder", "trace-sock"})


def version_of(text: Any) -> tuple[str, Version | None] | None:
    """The Cilium version from ``GET /v1/healthz`` ``cilium.msg`` (``"1.16.6 (v1.16.6-8d4ce1f6)"``, followed
    by a reason when the state is not Ok: 1.16b ``daemon/cmd/status.go`` line 710, 1.18b
    ``pkg/status/status_collector.go`` line 598). ``("other", None)`` for a message that does not start with
    a version; None when absent."""
    if not isinstance(text, str) or not text.strip():
        return None
    match = _VERSION.match(text.split()[0])
    if match is None:
        return OVERFLOW_VALUE, None
    label = match.group(0).lstrip("v")
    if len(label) > MAX_VERSION_LEN:
        return OVERFLOW_VALUE, None
    return label, (int(match.group(1)), int(match.group(2)), int(match.group(3)))


def monitor_aggregation(text: Any) -> str | None:
    """A monitor aggregation level: the runtime option's ``None``/``Lowest``/``Low``/``Medium``/``Max``
    (``FormatMonitorAggregationLevel``) or the flag's text, parsed like ``ParseMonitorAggregationLevel``
    (``pkg/option/monitor.go``, every release: case-insensitive; ``""``/``none``/``disabled`` = none,
    ``max``/``maximum``, or the digits 0-4). None when not understood (the agent would refuse it)."""
    if not isinstance(text, str):
        return None
    value = text.strip().lower()
    if value in ("", "none", "disabled"):
        return "none"
    if value == "maximum":
        return "max"
    if value in MONITOR_AGGREGATION_LEVELS:
        return value
    if value.isdigit() and int(value) < len(MONITOR_AGGREGATION_LEVELS):
        return MONITOR_AGGREGATION_LEVELS[int(value)]
    return None


def kube_proxy_replacement(value: Any) -> str | None:
    """``kube-proxy-replacement`` lower-cased into the contract's set: the flag (``true``/``false``/``strict``/
    ``partial``/``probe``/``disabled`` up to 1.15, ``true``/``false`` from 1.16; a bool in 1.19) or the
    ``GET /v1/healthz`` mode (``True``, ``Strict``...). ``other`` for anything else, None when absent."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str) or not value.strip():
        return None
    lowered = value.strip().lower()
    return lowered if lowered in KUBE_PROXY_REPLACEMENT_MODES else OVERFLOW_VALUE


def go_bool(text: Any) -> bool | None:
    """A ConfigMap boolean as Go's ``strconv.ParseBool`` reads it; None when it is not one."""
    if isinstance(text, bool):
        return text
    if not isinstance(text, str):
        return None
    value = text.strip()
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if value in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    return None


SPLITS_COMMAS = (1, 17, 0)


def string_slice(text: str, version: Version | None) -> list[str] | None:
    """A ``[]string`` ConfigMap value (``hubble-monitor-events``) as the agent of ``version`` reads it.

    - 1.17+: ``cilium/hive`` ``cell/config.go`` (vendored at Hubble's v1.17.0 and v1.19.4 tags, lines 114-121):
      ``mapstructure.StringToSliceHookFunc(",")`` (``strings.Split``, nothing trimmed: ``"drop, agent"`` holds
      the unknown name ``" agent"``), then a single element split again by whitespace;
    - 1.14-1.16: ``pkg/option/config.go`` ``c.HubbleMonitorEvents = vp.GetStringSlice(HubbleMonitorEvents)``
      (Cilium v1.14.2 line 3443, v1.15.4 line 3505, v1.16.6 line 3502, as vendored at Hubble's v0.12.3, v0.13.6
      and v1.16.6 tags) reads the ConfigMap's string with ``spf13/cast`` ``ToStringSliceE`` (v1.5.1, v1.6.0:
      ``case string: return strings.Fields(v)``): whitespace only, so ``"trace,agent"`` is one unknown name.

    Either way the agent first trims the whole value (``ReadDirConfig``: ``bytes.TrimSpace``).

    With no release known (the ConfigMap alone says none), a list with a comma is read differently by the
    releases: None (unknown). A whitespace list reads the same everywhere."""
    text = text.strip()
    if "," not in text:
        return text.split()
    if version is None:
        return None
    if version < SPLITS_COMMAS:
        return text.split()
    return text.split(",")


def hubble_monitor_events(names: Iterable[Any] | None, version: Version | None) -> dict[str, bool] | None:
    """Which monitor events Hubble observes for ``hubble-monitor-events`` = ``names``.

    Cilium (``pkg/hubble/monitor/filter.go``, 1.14b-main): an empty list installs no filter (everything
    is observed); an unknown name makes ``NewMonitorFilter`` fail, which the agent only logs ("Failed to
    initialize Hubble monitor event filter", 1.16 ``daemon/cmd/hubble.go``, 1.17+
    ``pkg/hubble/cell/hubbleintegration.go``) and runs without a filter. L7 records reach Hubble as
    *agent* events (``pkg/monitor/agent/agent.go`` ``SendEvent`` -> ``notifyAgentEvent``), which the filter
    passes only when ``agent`` is listed: the ``l7`` entry never matches them. None for a value that is
    not a list.
    """
    if names is None:
        names = []
    if isinstance(names, str | bytes) or not isinstance(names, Iterable):
        return None
    listed = [n for n in names]
    if not all(isinstance(n, str) for n in listed):
        return None
    known = _MONITOR_TYPE_NAMES - ({"recorder"} if version is not None and version >= (1, 19, 0) else set())
    if not listed or any(n not in known for n in listed):
        return dict.fromkeys(MONITOR_EVENTS, True)
    return {"drop": "drop" in listed, "policy_verdict": "policy-verdict" in listed, "trace": "trace" in listed,
            "l7": "agent" in listed}


UINT32_MAX = 2**32 - 1


def uint(value: Any) -> int | None:
    """A uint32 DaemonConfig field (a JSON integer in [0, 2**32)); None otherwise (absent, another type, or a
    value no uint32 holds: the caller decides whether a present but unreadable field is an error)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= UINT32_MAX:
        return None
    return value


def mapping(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None
