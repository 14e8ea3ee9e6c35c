"""Event specs: one line of a scenario's ``rates`` (what kind of event, its labels, its rate).

An :class:`EventSpec` describes one kind of event: a trace, a drop, a policy-denied packet (two
flows: a type-5 verdict and a type-1 drop), an explicit deny, a policy verdict, an HTTP request
through Envoy, a DNS query through the DNS proxy or a Kafka request through proxylib. What flows
each kind produces on which release is :mod:`.flows`; a :class:`CompiledSpec` holds them ready to
produce, with what each occurrence adds to the ground truth (:mod:`.truth`). Names (reasons,
directions, verdicts, match types, identities) come from the simulator's own Cilium tables
(:mod:`.cilium_enums`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from cilium_node_simulator import cilium_enums as ce

if TYPE_CHECKING:
    from cilium_node_simulator.flows import FlowTemplate

EVENT_KINDS = ("trace", "drop", "policy_denied", "policy_deny", "verdict", "http", "dns", "kafka")
L7_KINDS = ("http", "dns", "kafka")
RESERVED_IDENTITIES = ce.RESERVED_IDENTITIES
DIRECTIONS = {"unknown": 0, "ingress": 1, "egress": 2}  # TrafficDirection, lower-case
ACTIONS = {("unknown" if name == "VERDICT_UNKNOWN" else name.lower()): code for name, code in ce.VERDICTS.items()}
MATCHES = {text.lower(): code for code, text in ce.POLICY_MATCH_TYPES.items()}
DROP_CODES = {name: code for code, name in ce.DROP_REASON_NAMES.items()}
LOST_SOURCES = {name.lower(): code for name, code in ce.LOST_EVENT_SOURCES.items() if code}
# Envoy logs an HTTP request as Denied (DROPPED) or Request (FORWARDED), the DNS proxy and proxylib
# likewise ([v1.16.15 pkg/envoy/accesslog.go:75-88]): other verdicts do not describe an L7 request here.
L7_ACTIONS = (ce.VERDICTS["FORWARDED"], ce.VERDICTS["DROPPED"])


class SpecError(ValueError):
    """An event spec (or a scenario) is invalid; the message names the offending key."""


def _enum(value: Any, table: Mapping[str, int], what: str, where: str) -> int:
    if isinstance(value, bool):
        raise SpecError(f"{where}: invalid {what} {value!r}")
    if isinstance(value, int):
        if value < 0 or value > 2**31 - 1:
            raise SpecError(f"{where}: {what} {value} out of range")
        return value
    key = str(value).strip()
    for candidate in (key, key.lower(), key.upper()):
        if candidate in table:
            return table[candidate]
    raise SpecError(f"{where}: unknown {what} {value!r} (one of {', '.join(table)} or a number)")


def _identity(value: Any, where: str, what: str) -> int | None:
    if value is None:
        return None
    return _enum(value, RESERVED_IDENTITIES, what, where)


def _workload(value: Any, where: str, what: str) -> str | None:
    if value is None:
        return None
    text = str(value)
    if text.count("/") != 1 or not all(text.split("/")):
        raise SpecError(f"{where}: {what} must be 'namespace/workload', got {value!r}")
    return text


@dataclass(frozen=True)
class EventSpec:
    """One kind of event and its rate (events per simulated second; a policy-denied event is 2 flows).

    ``direction`` None is the kind's default: egress for DNS (the DNS proxy only observes egress),
    ingress otherwise. L7 kinds take ``action`` forwarded or dropped (denied by L7 policy).
    """

    type: str
    rate: float = 0.0
    reason: int = 0
    direction: int | None = None
    match: int | None = None
    action: int = 1
    method: str = "GET"
    path: str = "/api/v1/items"
    query: str = "api.example.com."
    api_key: str = "fetch"
    topics: tuple[str, ...] = ("orders",)
    protocol: str = "tcp"
    source: str | None = None
    destination: str | None = None
    source_identity: int | None = None
    destination_identity: int | None = None
    policy: str | None = None
    unknown_field: bool = False
    pool: int = 16

    def __post_init__(self) -> None:
        if self.type not in EVENT_KINDS:
            raise SpecError(f"event type must be one of {', '.join(EVENT_KINDS)}, got {self.type!r}")
        if self.type in L7_KINDS and self.action not in L7_ACTIONS:
            raise SpecError(f"{self.type}: 'action' must be forwarded or dropped (the proxy logs a request as "
                            "allowed or denied)")
        if self.type == "dns" and self.direction not in (None, DIRECTIONS["egress"]):
            raise SpecError("dns: the DNS proxy observes queries at egress only (pkg/fqdn/dnsproxy); "
                            "'direction' must be egress")
        if self.type == "kafka" and (not self.topics or not all(self.topics)):
            raise SpecError("kafka: 'topics' must be a non-empty list of topic names")

    @property
    def traffic_direction(self) -> int:
        """The TrafficDirection the flows carry."""
        if self.direction is not None:
            return self.direction
        return DIRECTIONS["egress"] if self.type == "dns" else DIRECTIONS["ingress"]

    @classmethod
    def from_mapping(cls, data: Any, where: str = "event") -> EventSpec:
        """Build and validate a spec from a scenario mapping; errors name ``where`` and the key."""
        if not isinstance(data, Mapping):
            raise SpecError(f"{where}: expected a mapping like {{type: drop, reason: POLICY_DENIED, rate: 5}}")
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise SpecError(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(known))})")
        kind = data.get("type")
        if kind not in EVENT_KINDS:
            raise SpecError(f"{where}: 'type' must be one of {', '.join(EVENT_KINDS)}, got {kind!r}")
        kw: dict[str, Any] = {"type": kind}
        rate = data.get("rate", 0.0)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or rate < 0:
            raise SpecError(f"{where}: 'rate' must be a non-negative number (events per second), got {rate!r}")
        kw["rate"] = float(rate)
        if kind == "drop":
            if "reason" not in data:
                raise SpecError(f"{where}: a drop needs 'reason' (e.g. CT_MAP_INSERTION_FAILED or 250)")
            kw["reason"] = _enum(data["reason"], DROP_CODES, "reason", where)
        elif "reason" in data:
            raise SpecError(f"{where}: 'reason' only applies to type drop "
                            "(policy_denied is 133, policy_deny is 181)")
        if "direction" in data:
            kw["direction"] = _enum(data["direction"], DIRECTIONS, "direction", where)
        if "match" in data:
            kw["match"] = _enum(data["match"], MATCHES, "match", where)
        if "action" in data:
            if kind not in ("verdict", *L7_KINDS):
                raise SpecError(f"{where}: 'action' only applies to verdict, http, dns and kafka")
            kw["action"] = _enum(data["action"], ACTIONS, "action", where)
        for key in ("method", "path", "query", "api_key"):
            if key in data:
                if not isinstance(data[key], str) or not data[key]:
                    raise SpecError(f"{where}: {key!r} must be a non-empty string")
                kw[key] = data[key]
        if "topics" in data:
            topics = data["topics"]
            if not isinstance(topics, list) or not topics or not all(isinstance(t, str) and t for t in topics):
                raise SpecError(f"{where}: 'topics' must be a non-empty list of topic names")
            kw["topics"] = tuple(topics)
        if "protocol" in data:
            proto = str(data["protocol"]).lower()
            if proto not in ("tcp", "udp", "icmp"):
                raise SpecError(f"{where}: 'protocol' must be tcp, udp or icmp, got {data['protocol']!r}")
            kw["protocol"] = proto
        elif kind == "dns":
            kw["protocol"] = "udp"
        kw["source"] = _workload(data.get("source"), where, "source")
        kw["destination"] = _workload(data.get("destination"), where, "destination")
        kw["source_identity"] = _identity(data.get("source_identity"), where, "source_identity")
        kw["destination_identity"] = _identity(data.get("destination_identity"), where, "destination_identity")
        kw["policy"] = _workload(data.get("policy"), where, "policy")
        if "unknown_field" in data:
            if not isinstance(data["unknown_field"], bool):
                raise SpecError(f"{where}: 'unknown_field' must be true or false")
            kw["unknown_field"] = data["unknown_field"]
        if "pool" in data:
            pool = data["pool"]
            if isinstance(pool, bool) or not isinstance(pool, int) or not 1 <= pool <= 10000:
                raise SpecError(f"{where}: 'pool' must be an integer 1..10000")
            kw["pool"] = pool
        try:
            return cls(**kw)
        except SpecError as exc:
            raise SpecError(f"{where}: {exc}") from None


# A ground-truth entry: (counter name, label tuple), see truth.GroundTruth.
TruthEntry = tuple[str, tuple[Any, ...]]


@dataclass
class CompiledSpec:
    """A spec ready to produce: distinct occurrences (flows of one event) and, per occurrence, what it
    adds to the ground truth. Occurrences are produced round-robin from ``next_index``."""

    spec: EventSpec
    occurrences: list[tuple[FlowTemplate, ...]]
    truths: list[list[TruthEntry]] = field(default_factory=list)
    next_index: int = 0

    @property
    def flows_per_occurrence(self) -> int:
        return len(self.occurrences[0])

    def counts(self, count: int, start: int | None = None) -> list[int]:
        """How many times each occurrence is produced by ``count`` events from ``start`` (default next)."""
        n = len(self.occurrences)
        k = self.next_index if start is None else start
        base, extra = divmod(count, n)
        out = [base] * n
        for i in range(extra):
            out[(k + i) % n] += 1
        return out
