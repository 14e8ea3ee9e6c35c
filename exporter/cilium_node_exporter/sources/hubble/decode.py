"""Counting rules of the contract, applied to raw ``GetFlowsResponse`` bytes (the hot path).

One call per gRPC message: decode with our generated class (upb), classify by the monitor
event type — never by verdict — and increment plain dicts in :class:`DatapathCounters`:

- drops: event type 1 only (a policy-denied packet also yields a type-5 verdict: not a drop);
- policy verdicts: type 5, except the host identity as source and, unless configured, the
  health identity on either side; plus L7 requests (type 129, L7 type REQUEST) as ``l7/<proto>``;
- L7 requests: type 129 with L7 type REQUEST, counted once per request;
- lost events: ``num_events_lost`` summed per source (both the per-event and batched forms);
- anything else (traces a server sent despite the whitelist, relay node status, unknown
  oneofs) is only counted in ``events_total{kind="other"}``.

Unknown enum numbers are folded into bounded label values here, so the dict keys stay bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import DecodeError

from cilium_node_exporter import contract as c
from cilium_node_exporter.aggregation.datapath import DatapathCounters
from cilium_node_exporter.aggregation.labels import CappedLabel
from cilium_node_exporter.api.observer.observer_pb2 import GetFlowsResponse

_FromString = GetFlowsResponse.FromString
_DIRECTION = c.DIRECTION_BY_ENUM
_ACTION = c.ACTION_BY_VERDICT
_MATCH = c.MATCH_BY_TYPE
_LOST_SOURCE = c.LOST_SOURCE_BY_ENUM
_HTTP_METHODS = c.HTTP_METHODS
_KNOWN_REASONS = c.DROP_REASON_NAME_BY_CODE
MAX_UNKNOWN_REASONS = 32
REASON_OVERFLOW = -1  # exposed as REASON_other
L7_REQUEST = 1
HUBBLE_RING_BUFFER_SOURCE = 3  # LostEventSource generated per reader
_L4_NAMES = {"TCP": "tcp", "UDP": "udp", "ICMPv4": "icmpv4", "ICMPv6": "icmpv6", "SCTP": "sctp",
             "VRRP": "vrrp", "IGMP": "igmp"}
_L7_PROTOCOL = {"http": "http", "dns": "dns", "kafka": "kafka"}


@dataclass(slots=True)
class Decoded:
    """What the stream needs to resume without double counting."""

    kind: str  # drop | policy_verdict | l7 | lost | other
    time_ns: int  # event time (flow.time, or the response time for lost events), 0 if absent
    uuid: str  # flow uuid ("" when the server does not send one, or for lost events)
    dedupe_key: tuple[object, ...] | None = None  # identity of a lost event, for replays after reconnect


class MalformedMessage(ValueError):
    """The bytes are not a decodable GetFlowsResponse."""


class FlowCounter:
    """Applies the counting rules to each received message; single writer of ``counters``."""

    def __init__(self, counters: DatapathCounters, *, count_health_verdicts: bool = False,
                 extra_labels: tuple[str, ...] = (), label_cap: int = 50,
                 label_idle_expiry: float = 600.0) -> None:
        self.counters = counters
        self.count_health = count_health_verdicts
        self.unknown_reasons: set[int] = set()

        def capped(name: str) -> CappedLabel | None:
            if name not in extra_labels:
                return None
            return CappedLabel(name, label_cap, label_idle_expiry,
                               on_evict=lambda value, n=name: counters.forget(n, value))

        self.protocol = capped("protocol")
        self.namespace = capped("endpoint_namespace")
        self.policy = capped("policy")

    def handle(self, data: bytes) -> Decoded:
        """Decode and count one message; raise :class:`MalformedMessage` on undecodable bytes."""
        try:
            resp = _FromString(data)
        except (DecodeError, RuntimeError) as exc:  # upb raises DecodeError; be defensive
            raise MalformedMessage(str(exc) or "undecodable GetFlowsResponse") from None
        which = resp.WhichOneof("response_types")
        counters = self.counters
        if which == "flow":
            flow = resp.flow
            etype = flow.event_type.type
            ts = flow.time
            time_ns = ts.seconds * 1_000_000_000 + ts.nanos
            if etype == c.EVENT_TYPE_DROP:
                self._drop(flow)
                kind = "drop"
            elif etype == c.EVENT_TYPE_POLICY_VERDICT:
                self._verdict(flow)
                kind = "policy_verdict"
            elif etype == c.EVENT_TYPE_L7:
                self._l7(flow)
                kind = "l7"
            else:
                kind = "other"
            counters.events[kind] += 1
            return Decoded(kind, time_ns, flow.uuid)
        if which == "lost_events":
            lost = resp.lost_events
            counters.lost[_LOST_SOURCE.get(lost.source, "unknown")] += lost.num_events_lost
            counters.events["lost"] += 1
            ts = resp.time
            return Decoded("lost", ts.seconds * 1_000_000_000 + ts.nanos, "", lost_identity(resp))
        counters.events["other"] += 1  # relay node_status, or a oneof this exporter does not know
        return Decoded("other", 0, "")

    # --- per event type ------------------------------------------------------------------
    def _drop(self, flow) -> None:
        code = flow.drop_reason_desc or flow.drop_reason or flow.event_type.sub_type
        if code not in _KNOWN_REASONS:
            code = self._bounded_reason(code)
        direction = _DIRECTION.get(flow.traffic_direction, "unknown")
        protocol = ns = None
        if self.protocol is not None:
            protocol = self._admit(self.protocol, _l4_name(flow))
        if self.namespace is not None:
            ns = self._admit(self.namespace, _local_namespace(flow, direction))
        self.counters.drops[(code, direction, protocol, ns)] += 1

    def _verdict(self, flow) -> None:
        src_id = flow.source.identity
        if src_id == c.IDENTITY_HOST:
            return
        if not self.count_health and (src_id == c.IDENTITY_HEALTH or flow.destination.identity == c.IDENTITY_HEALTH):
            return
        direction = _DIRECTION.get(flow.traffic_direction, "unknown")
        match = _MATCH.get(flow.policy_match_type, c.MATCH_UNKNOWN)
        action = _ACTION.get(flow.verdict, "unknown")
        ns = policy = None
        if self.namespace is not None:
            ns = self._admit(self.namespace, _local_namespace(flow, direction))
        if self.policy is not None:
            policy = self._admit(self.policy, _policy_name(flow, direction))
        self.counters.verdicts[(direction, match, action, ns, policy)] += 1

    def _l7(self, flow) -> None:
        l7 = flow.l7
        if l7.type != L7_REQUEST:
            return
        record = l7.WhichOneof("record")
        protocol = _L7_PROTOCOL.get(record or "", "unknown")
        method = ""
        if record == "http":
            m = l7.http.method.upper()
            method = m if m in _HTTP_METHODS else "other"
        direction = _DIRECTION.get(flow.traffic_direction, "unknown")
        action = _ACTION.get(flow.verdict, "unknown")
        ns = None
        if self.namespace is not None:
            ns = self._admit(self.namespace, _local_namespace(flow, direction))
        self.counters.l7[(protocol, method, direction, action, ns)] += 1
        self.counters.verdicts[(direction, "l7/" + protocol, action, ns, None if self.policy is None else "")] += 1

    # --- bounded values ------------------------------------------------------------------
    def _bounded_reason(self, code: int) -> int:
        if code in self.unknown_reasons:
            return code
        if len(self.unknown_reasons) < MAX_UNKNOWN_REASONS:
            self.unknown_reasons.add(code)
            return code
        self.counters.label_overflow["reason"] += 1
        return REASON_OVERFLOW

    def _admit(self, label: CappedLabel, value: str) -> str:
        admitted = label.admit(value)
        if admitted == c.OVERFLOW_VALUE and value != c.OVERFLOW_VALUE:
            self.counters.label_overflow[label.name] += 1
        return admitted


def lost_identity(resp: GetFlowsResponse) -> tuple[object, ...] | None:
    """Identity of a ring-stored lost event, which a rewinding server replays after a reconnect.

    HUBBLE_RING_BUFFER losses are generated per reader and never replayed: no identity.
    """
    lost, t = resp.lost_events, resp.time
    if lost.source == HUBBLE_RING_BUFFER_SOURCE:
        return None
    return ("lost", t.seconds, t.nanos, lost.source, lost.num_events_lost,
            lost.cpu.value if lost.HasField("cpu") else None, lost.first.seconds, lost.first.nanos)


def _l4_name(flow) -> str:
    which = flow.l4.WhichOneof("protocol")
    return _L4_NAMES.get(which or "", "unknown")


def _local_namespace(flow, direction: str) -> str:
    """Namespace of the endpoint on this node: the destination for ingress, the source for egress."""
    if direction == "ingress":
        return flow.destination.namespace
    if direction == "egress":
        return flow.source.namespace
    return flow.destination.namespace or flow.source.namespace


def _policy_name(flow, direction: str) -> str:
    """``namespace/name`` of the first policy that decided the verdict, '' when none is named."""
    if direction == "egress":
        candidates = (flow.egress_denied_by, flow.egress_allowed_by)
    elif direction == "ingress":
        candidates = (flow.ingress_denied_by, flow.ingress_allowed_by)
    else:
        candidates = (flow.ingress_denied_by, flow.egress_denied_by, flow.ingress_allowed_by, flow.egress_allowed_by)
    for policies in candidates:
        if policies:
            p = policies[0]
            return f"{p.namespace}/{p.name}" if p.namespace else p.name
    return ""
