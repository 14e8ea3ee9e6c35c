"""Packet-exact datapath counters from the cilium-agent's own Prometheus endpoint.

Read at scrape time (``--agent-metrics-address``, Cilium's ``prometheus.enabled=true``, port 9962)
with prometheus-client's text parser. Only the families the contract reads are kept;
other lines are dropped while the body streams in (in linear time: one ``bytearray`` and ``find``),
lines longer than :data:`MAX_LINE` are skipped unread, and the kept lines may total at most
:data:`MAX_KEPT`, so whatever the endpoint serves costs at most a few MiB here.
Drop reasons are mapped from Cilium's monitor strings ("Policy denied") to DropReason enum names
(``POLICY_DENIED``) so that they join with the Hubble-derived drops; directions are the metrics
map's own (``service`` included), which are not Hubble's. With ``--sources=auto`` the source is
optional: an endpoint that refuses connections (Cilium's ``prometheus.enabled`` off, the chart
default) makes it unavailable rather than down.

``cilium_bpf_ratelimit_dropped_total{usage="events"}`` (Cilium 1.17+,
``pkg/maps/ratelimitmap/ratelimitmap.go``) counts the monitor notifications the BPF events rate
limiter discarded; its sample exists once the limiter has checked a first event (the metrics map
entry is created then, with 0: ``bpf/lib/ratelimit.h`` ``ratelimit_check_and_take``).

The agent's memory by part and its cluster objects come from a few more families, by exact name
(:mod:`.agent_memory`).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable

from prometheus_client.parser import text_string_to_metric_families

from cilium_node_exporter.aggregation.agent import AgentDatapath
from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.config import Config
from cilium_node_exporter.contract import DROP_REASON_NAME_BY_CODE, DROP_REASON_NAME_BY_STRING, OVERFLOW_VALUE
from cilium_node_exporter.sources import agent_memory, k8s_http
from cilium_node_exporter.sources.k8s_http import Endpoint, SourceError
from cilium_node_exporter.sources.scrape_time import ScrapeTimeSource

log = logging.getLogger(__name__)

NAME = "agent"
# A cilium-agent's /metrics is 1-5 MiB; the four kept families are a few hundred lines (~20-50 KB).
MAX_BYTES = 32 * 2**20
MAX_LINE = 64 * 1024
MAX_KEPT = 2**20
DROP_COUNT = "cilium_drop_count_total"
FORWARD_COUNT = "cilium_forward_count_total"
MAP_PRESSURE = "cilium_bpf_map_pressure"
RATELIMIT_DROPPED = "cilium_bpf_ratelimit_dropped_total"
_WANTED = (b"cilium_drop_count", b"cilium_forward_count", MAP_PRESSURE.encode(), b"cilium_bpf_ratelimit_dropped")
_EXACT = frozenset(name.encode() for name in agent_memory.FAMILIES)
_EXACT_PREFIXES = tuple(_EXACT)
_ENUM_NAMES = frozenset(DROP_REASON_NAME_BY_CODE.values())
ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
# Cilium has a few dozen BPF maps; a cap keeps a broken or hostile endpoint from growing our series.
MAX_MAPS = 256
# The agent's datapath directions; not Hubble's (which has no SERVICE and guesses a drop's direction).
AGENT_DIRECTIONS = ("ingress", "egress", "service", "unknown")
_WITH_EXT = re.compile(r"^(?:(\d{1,3})|(.+?)), -?\d{1,3}$")


def reason_name(text: str) -> str:
    """Cilium's human drop-reason string to the DropReason enum name (bounded).

    ``pkg/monitor/api/drop.go`` ``DropReasonExt`` writes ``"<code>, <ext>"`` for a code the agent has no
    string for (and ``"<string>, <ext>"`` for a known one with an extended error): the code becomes
    its enum name, or ``REASON_<code>`` like on the Hubble side (a ``uint8``: at most 256 values); any
    other unknown string is ``other``.
    """
    name = DROP_REASON_NAME_BY_STRING.get(text)
    if name is not None:
        return name
    if text in _ENUM_NAMES:
        return text
    match = _WITH_EXT.match(text)
    if match is None:
        return OVERFLOW_VALUE
    if match.group(1) is not None:
        code = int(match.group(1))
        return DROP_REASON_NAME_BY_CODE.get(code, f"REASON_{code}") if code <= 255 else OVERFLOW_VALUE
    return DROP_REASON_NAME_BY_STRING.get(match.group(2), OVERFLOW_VALUE)


def direction_label(text: str) -> str:
    """The metrics map's direction lower-cased (``pkg/maps/metricsmap/metricsmap.go``, 1.14-1.19: INGRESS,
    EGRESS, SERVICE for NodePort/ClusterIP service traffic, UNKNOWN); anything else is ``unknown``."""
    lowered = text.lower()
    return lowered if lowered in AGENT_DIRECTIONS else "unknown"


def filter_lines(chunks: Iterable[bytes]) -> str:
    """Keep only the lines (samples and their HELP/TYPE comments) of the families we re-export."""
    kept = bytearray()
    buf = bytearray()
    typed = False  # a Prometheus text body has TYPE comments; an HTML page or garbage has none
    skipping = False  # inside a line longer than MAX_LINE: dropped up to its newline

    def keep(line: bytes) -> None:
        nonlocal typed
        typed = typed or line.startswith(b"# TYPE ")
        if _wanted(line):
            kept.extend(line)
            kept.extend(b"\n")
            if len(kept) > MAX_KEPT:
                raise SourceError("protocol", f"agent metrics: the kept families (drops, forwards, map "
                                              f"pressure, rate limit, memory) exceed {MAX_KEPT} bytes")

    for chunk in chunks:
        buf.extend(chunk)
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            if not skipping:
                keep(bytes(buf[start:end]))
            skipping = False
            start = end + 1
        del buf[:start]
        if len(buf) > MAX_LINE:
            skipping = True
            buf.clear()
    if buf and not skipping:
        keep(bytes(buf))
    if not typed:
        raise SourceError("decode", "agent metrics: response is not Prometheus text format (no TYPE lines)")
    try:
        return kept.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError("decode", "agent metrics: response is not UTF-8") from None


def _wanted(line: bytes) -> bool:
    if line.startswith(b"# "):
        parts = line.split(b" ", 3)
        return len(parts) > 2 and parts[1] in (b"HELP", b"TYPE") and (parts[2].startswith(_WANTED)
                                                                      or parts[2] in _EXACT)
    # a sample of a family read by exact name: its name ends at "{" or " " (startswith first: it is cheap)
    return line.startswith(_WANTED) or (line.startswith(_EXACT_PREFIXES)
                                        and line.split(b" ", 1)[0].split(b"{", 1)[0] in _EXACT)


def parse_metrics(text: str) -> AgentDatapath:
    """Map the agent's families to the contract's; raises :class:`SourceError` (``decode``) on bad text."""
    dropped: defaultdict[tuple[str, str], float] = defaultdict(float)
    forwarded: defaultdict[str, float] = defaultdict(float)
    pressure: dict[str, float] = {}
    ratelimited: float | None = None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if not math.isfinite(sample.value) or sample.value < 0:
                    raise SourceError("protocol", f"agent metrics: {sample.name} has a value that is not a finite, "
                                                  f"non-negative number ({str(sample.value)[:32]})")
                if sample.name == DROP_COUNT:
                    key = (reason_name(labels.get("reason", "")), direction_label(labels.get("direction", "")))
                    dropped[key] += sample.value
                elif sample.name == FORWARD_COUNT:
                    forwarded[direction_label(labels.get("direction", ""))] += sample.value
                elif (sample.name == MAP_PRESSURE and "map_name" in labels
                      and (len(pressure) < MAX_MAPS or labels["map_name"] in pressure)):
                    pressure[labels["map_name"]] = sample.value
                elif sample.name == RATELIMIT_DROPPED and labels.get("usage") == "events":
                    ratelimited = sample.value
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise SourceError("decode", f"agent metrics: not Prometheus text format ({exc})") from None
    return AgentDatapath(dict(dropped), dict(forwarded), pressure, ratelimited)


class AgentMetricsSource(ScrapeTimeSource):
    """Scrape-time reader of the agent's metrics endpoint (registers a refresher in ``state``)."""

    name = NAME

    def __init__(self, config: Config, state: ExporterState, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(config, state, clock)
        self.endpoint = Endpoint(config.agent_metrics_address.rstrip("/"))

    def read(self) -> None:
        chunks = k8s_http.get_chunks(self.endpoint, "", timeout=self.timeout(self.config.agent_timeout),
                                     max_bytes=MAX_BYTES, what=f"agent metrics {self.config.agent_metrics_address}",
                                     accept=ACCEPT)
        text = filter_lines(chunks)
        self.state.agent_datapath = parse_metrics(text)
        self.state.agent_memory = agent_memory.parse_memory(text)

    def clear(self) -> None:
        self.state.agent_datapath = None
        self.state.agent_memory = None

    def describe(self, exc: SourceError) -> str:
        if exc.absent:
            return (f"{exc.message}: the agent serves its metrics only with Cilium's prometheus.enabled=true "
                    "(the datapath packet counters then replace the Hubble approximation)")
        return exc.message
