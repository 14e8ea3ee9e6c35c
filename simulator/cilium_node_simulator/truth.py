"""Ground truth: what the metric contract (``docs/metrics.md``) says the exporter must count for the
flows the simulator produced, computed from the flows themselves with the simulator's own Cilium
tables (:mod:`.cilium_enums`), never from the exporter's constants.

Counters (label tuples use the contract's values):

- ``drops[(reason, direction)]``: type-1 flows; ``reason`` = the DropReason enum name (flow.proto) or
  ``REASON_<n>`` for a number Cilium's enum does not have;
- ``verdicts[(direction, match, action)]``: type-5 flows except host-sourced (identity 1) and
  health (identity 4, either side: ``verdicts_health``), plus one per L7 **REQUEST** flow with
  ``match = l7/<http|dns|kafka>`` (responses are not counted: a denied HTTP request is a DROPPED
  REQUEST plus a FORWARDED 403 RESPONSE, and counts once, as dropped);
- ``l7_requests[(protocol, method, direction, action)]``: L7 REQUEST flows (``method`` ``""`` unless
  HTTP; a Kafka request naming N topics is N REQUEST flows, so N);
- ``*_detail``: the same with the optional labels: drops ``+ (protocol, endpoint_namespace)``,
  verdicts ``+ (endpoint_namespace, policy)``, L7 ``+ (endpoint_namespace,)``;
- ``lost[source]``: ``num_events_lost`` summed: perf/observer losses written into the ring, and
  ``hubble_ring_buffer`` losses actually sent to slow readers (all streams together);
- ``drop_codes[(code, direction)]``: drops by raw reason code and TrafficDirection (for the agent
  metrics fake, which names them with Cilium's monitor strings);
- ``seen_flows_total`` (every flow produced, all server incarnations), ``flows_by_type[event_type]``;
- ``crashes``: times an emulated agent died (a 1.14 field-mask panic): must stay 0 with the exporter.

Not modelled: the exporter's caps (more than 32 unknown reasons, more than ``--label-cap`` values).
"""

from __future__ import annotations

import copy
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from cilium_node_exporter.api.flow import flow_pb2
from cilium_node_simulator import cilium_enums as ce
from cilium_node_simulator.events import TruthEntry

# The contract's label rules, written against Cilium's enums (cilium_enums):
_DIRECTION = {0: "unknown", 1: "ingress", 2: "egress"}  # TrafficDirection
# Verdict -> action; TRACED/TRANSLATED describe no policy decision: "unknown" like VERDICT_UNKNOWN.
_ACTION = {code: name.lower() for name, code in ce.VERDICTS.items() if 1 <= code <= 5}
_MATCH = {code: text.lower() for code, text in ce.POLICY_MATCH_TYPES.items()}
_LOST = {code: name.lower() for name, code in ce.LOST_EVENT_SOURCES.items() if code}
# RFC 9110 section 9 methods plus PATCH (RFC 5789): "the standard nine".
_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})


def direction_label(code: int) -> str:
    return _DIRECTION.get(code, "unknown")


def action_label(verdict: int) -> str:
    return _ACTION.get(verdict, "unknown")


def match_label(code: int) -> str:
    return _MATCH.get(code, "unknown")


def reason_label(code: int) -> str:
    return ce.DROP_REASON_NAMES.get(code) or f"REASON_{code}"


def lost_source_label(code: int) -> str:
    return _LOST.get(code, "unknown")


def method_label(method: str) -> str:
    upper = method.upper()
    return upper if upper in _HTTP_METHODS else "other"


def _namespace(f: flow_pb2.Flow, direction: str) -> str:
    """The local endpoint's namespace: the destination for ingress, the source for egress."""
    if direction == "ingress":
        return f.destination.namespace
    if direction == "egress":
        return f.source.namespace
    return f.destination.namespace or f.source.namespace


def _policy(f: flow_pb2.Flow, direction: str) -> str:
    """``namespace/name`` of the first policy named for the verdict's direction (denies first)."""
    if direction == "egress":
        lists = (f.egress_denied_by, f.egress_allowed_by)
    elif direction == "ingress":
        lists = (f.ingress_denied_by, f.ingress_allowed_by)
    else:
        lists = (f.ingress_denied_by, f.egress_denied_by, f.ingress_allowed_by, f.egress_allowed_by)
    for policies in lists:
        if policies:
            p = policies[0]
            return f"{p.namespace}/{p.name}" if p.namespace else p.name
    return ""


def flow_truth(f: flow_pb2.Flow) -> list[TruthEntry]:
    """What one flow (as the release sends it) adds to the ground truth."""
    etype = f.event_type.type
    direction = direction_label(f.traffic_direction)
    ns = _namespace(f, direction)
    if etype == ce.EVENT_DROP:
        reason = reason_label(f.drop_reason_desc or f.drop_reason)
        l4 = f.l4.WhichOneof("protocol")
        protocol = l4.lower() if l4 else "unknown"
        return [("drops", (reason, direction)), ("drops_detail", (reason, direction, protocol, ns)),
                ("drop_codes", (f.drop_reason_desc or f.drop_reason, f.traffic_direction))]
    if etype == ce.EVENT_POLICY_VERDICT:
        src, dst = f.source.identity, f.destination.identity
        if src == ce.IDENTITY_HOST:
            return []
        key = (direction, match_label(f.policy_match_type), action_label(f.verdict))
        health = ce.IDENTITY_HEALTH in (src, dst)
        return [("verdicts_health" if health else "verdicts", key),
                ("verdicts_health_detail" if health else "verdicts_detail", (*key, ns, _policy(f, direction)))]
    if etype == ce.EVENT_L7 and f.l7.type == ce.L7_REQUEST:
        protocol = f.l7.WhichOneof("record") or "unknown"
        method = method_label(f.l7.http.method) if protocol == "http" else ""
        action = action_label(f.verdict)
        return [("l7_requests", (protocol, method, direction, action)),
                ("l7_detail", (protocol, method, direction, action, ns)),
                ("verdicts", (direction, f"l7/{protocol}", action)),
                ("verdicts_detail", (direction, f"l7/{protocol}", action, ns, ""))]
    return []


_COUNTERS = ("drops", "drops_detail", "drop_codes", "verdicts", "verdicts_detail", "verdicts_health",
             "verdicts_health_detail", "l7_requests", "l7_detail", "lost", "flows_by_type")


@dataclass
class GroundTruth:
    """Thread-safe counters; read them through :meth:`snapshot` while the simulator runs."""

    drops: Counter[tuple[str, str]] = field(default_factory=Counter)
    drops_detail: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    drop_codes: Counter[tuple[int, int]] = field(default_factory=Counter)
    verdicts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    verdicts_detail: Counter[tuple[str, str, str, str, str]] = field(default_factory=Counter)
    verdicts_health: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    verdicts_health_detail: Counter[tuple[str, str, str, str, str]] = field(default_factory=Counter)
    l7_requests: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    l7_detail: Counter[tuple[str, str, str, str, str]] = field(default_factory=Counter)
    lost: Counter[str] = field(default_factory=Counter)
    flows_by_type: Counter[int] = field(default_factory=Counter)
    seen_flows_total: int = 0
    crashes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, truth: list[TruthEntry], occurrences: int, flow_types: list[int]) -> None:
        """Record ``occurrences`` of one occurrence (its truth entries and per-flow event types)."""
        if not occurrences:
            return
        with self._lock:
            for name, key in truth:
                getattr(self, name)[key] += occurrences
            for event_type in flow_types:
                self.flows_by_type[event_type] += occurrences
            self.seen_flows_total += occurrences * len(flow_types)

    def add_lost(self, source_code: int, count: int) -> None:
        with self._lock:
            self.lost[lost_source_label(source_code)] += count

    def add_crash(self) -> None:
        with self._lock:
            self.crashes += 1

    def snapshot(self) -> GroundTruth:
        """A consistent copy (compare two snapshots to get what happened in between)."""
        with self._lock:
            return GroundTruth(**{name: copy.copy(getattr(self, name)) for name in _COUNTERS},
                               seen_flows_total=self.seen_flows_total, crashes=self.crashes)

    def total(self, name: str) -> int:
        with self._lock:
            counter: Counter[Any] = getattr(self, name)
            return sum(counter.values())
