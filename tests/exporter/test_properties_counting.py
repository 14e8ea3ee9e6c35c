"""Property-based tests of the counting rules: random valid flows (built with the generated protobuf
classes) count exactly as an independent reference model of the metric contract counts them; random
and mutated bytes never make ``FlowCounter.handle`` raise anything but ``MalformedMessage``.

The reference model below is written from the contract's counting rules (README, *Metrics*) and the
enum numbers of Hubble's ``flow.proto`` (``proto/flow/flow.proto``), not from the exporter's code: it
only shares the generated protobuf classes (for enum *names*) with it.
"""

from __future__ import annotations

import contextlib
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.api.flow import flow_pb2
from cilium_node_exporter.api.observer import observer_pb2
from cilium_node_exporter.app import build_registry
from cilium_node_exporter.sources.hubble.decode import FlowCounter, MalformedMessage

# --- the reference model (metrics.md) ---------------------------------------------------------------
DIRECTION = {1: "ingress", 2: "egress"}  # anything else: "unknown"
ACTION = {1: "forwarded", 2: "dropped", 3: "error", 4: "audit", 5: "redirected"}  # else "unknown"
MATCH = {0: "none", 1: "l3-only", 2: "l3-l4", 3: "l4-only", 4: "all", 5: "l3-proto", 6: "proto-only"}
LOST_SOURCE = {1: "perf_event_ring_buffer", 2: "observer_events_queue", 3: "hubble_ring_buffer"}
STANDARD_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
HOST, HEALTH = 1, 4
REQUEST = 1
DROP_NAMES = {v.number: v.name for v in flow_pb2.DropReason.DESCRIPTOR.values}


class Model:
    """What the contract says the exporter must export for a sequence of GetFlows responses."""

    def __init__(self, count_health: bool = False) -> None:
        self.count_health = count_health
        self.drops: Counter[tuple[str, ...]] = Counter()
        self.verdicts: Counter[tuple[str, ...]] = Counter()
        self.l7: Counter[tuple[str, ...]] = Counter()
        self.lost: Counter[tuple[str, ...]] = Counter()
        self.events: Counter[tuple[str, ...]] = Counter()

    def feed(self, resp: observer_pb2.GetFlowsResponse) -> None:
        if resp.HasField("lost_events"):
            self.events[("lost",)] += 1
            self.lost[(LOST_SOURCE.get(resp.lost_events.source, "unknown"),)] += resp.lost_events.num_events_lost
            return
        if not resp.HasField("flow"):
            self.events[("other",)] += 1  # relay node_status and the like
            return
        f = resp.flow
        direction = DIRECTION.get(f.traffic_direction, "unknown")
        action = ACTION.get(f.verdict, "unknown")
        kind = {1: "drop", 5: "policy_verdict", 129: "l7"}.get(f.event_type.type, "other")
        self.events[(kind,)] += 1
        if kind == "drop":
            code = f.drop_reason_desc
            self.drops[(DROP_NAMES.get(code, f"REASON_{code}"), direction)] += 1
        elif kind == "policy_verdict":
            if f.source.identity == HOST:
                return
            if not self.count_health and HEALTH in (f.source.identity, f.destination.identity):
                return
            self.verdicts[(direction, MATCH.get(f.policy_match_type, "unknown"), action)] += 1
        elif kind == "l7" and f.l7.type == REQUEST:
            protocol = f.l7.WhichOneof("record")
            method = ""
            if protocol == "http":
                method = f.l7.http.method if f.l7.http.method in STANDARD_METHODS else "other"
            self.l7[(protocol, method, direction, action)] += 1
            self.verdicts[(direction, f"l7/{protocol}", action)] += 1  # once per request

    def exported_view(self) -> dict[str, dict[tuple[str, ...], float]]:
        return {name: {k: float(v) for k, v in getattr(self, name).items() if v}
                for name in ("drops", "verdicts", "l7", "lost", "events")}


FAMILIES = {"drops": ("cilium_node_drops_total", ("reason", "direction")),
            "verdicts": ("cilium_node_policy_verdicts_total", ("direction", "match", "action")),
            "l7": ("cilium_node_l7_requests_total", ("protocol", "method", "direction", "action")),
            "lost": ("cilium_node_hubble_lost_events_total", ("source",)),
            "events": ("cilium_node_exporter_events_total", ("kind",))}


def exported(state: ExporterState) -> dict[str, dict[tuple[str, ...], float]]:
    """The exporter's /metrics text for ``state``, read back per family."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(build_registry(state)).decode()):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    out: dict[str, dict[tuple[str, ...], float]] = {}
    for key, (name, labels) in FAMILIES.items():
        table: dict[tuple[str, ...], float] = {}
        for lbl, value in samples.get(name, []):
            k = tuple(lbl.get(x, "") for x in labels)
            table[k] = table.get(k, 0.0) + value
        out[key] = {k: v for k, v in table.items() if v}
    return out


# --- random valid messages ----------------------------------------------------------------------------
KNOWN_REASONS = sorted(DROP_NAMES)
UNKNOWN_REASONS = [0, 1, 7, 99, 127, 209, 250, 400, 1000, 65535]  # < the exporter's 32 remembered unknowns
ints = st.integers
direction = st.sampled_from([0, 1, 2, 3, 77])
verdict = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 42])
identity = st.one_of(st.sampled_from([0, 1, 2, 4, 6, 7]), ints(256, 2**24))
namespace = st.sampled_from(["", "default", "shop", "kube-system", "payments"])


@st.composite
def endpoint(draw: st.DrawFn) -> flow_pb2.Endpoint:
    return flow_pb2.Endpoint(identity=draw(identity), namespace=draw(namespace),
                             pod_name=draw(st.sampled_from(["", "a-1", "b-2"])))


def _time(draw: st.DrawFn, f: flow_pb2.Flow) -> None:
    f.time.seconds = draw(ints(1_600_000_000, 1_900_000_000))
    f.time.nanos = draw(ints(0, 999_999_999))
    if draw(st.booleans()):
        f.uuid = draw(st.uuids()).hex


@st.composite
def drop_flow(draw: st.DrawFn) -> flow_pb2.Flow:
    code = draw(st.one_of(st.sampled_from(KNOWN_REASONS), st.sampled_from(UNKNOWN_REASONS)))
    f = flow_pb2.Flow(verdict=flow_pb2.DROPPED, drop_reason=code, traffic_direction=draw(direction),
                      source=draw(endpoint()), destination=draw(endpoint()))
    f.drop_reason_desc = code  # open enum: unknown numbers are kept
    f.event_type.type, f.event_type.sub_type = 1, code
    if draw(st.booleans()):
        f.l4.TCP.destination_port = draw(ints(1, 65535))
    _time(draw, f)
    return f


@st.composite
def verdict_flow(draw: st.DrawFn) -> flow_pb2.Flow:
    f = flow_pb2.Flow(verdict=draw(verdict), traffic_direction=draw(direction), source=draw(endpoint()),
                      destination=draw(endpoint()),
                      policy_match_type=draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 99])))
    f.event_type.type = 5
    if f.verdict == flow_pb2.DROPPED:
        f.drop_reason_desc = draw(st.sampled_from([133, 181]))
    if draw(st.booleans()):
        f.ingress_allowed_by.append(flow_pb2.Policy(name=draw(st.sampled_from(["allow-a", "allow-b"])),
                                                    namespace=draw(namespace)))
    _time(draw, f)
    return f


@st.composite
def l7_flow(draw: st.DrawFn) -> flow_pb2.Flow:
    f = flow_pb2.Flow(verdict=draw(verdict), traffic_direction=draw(direction), source=draw(endpoint()),
                      destination=draw(endpoint()), Type=flow_pb2.L7)
    f.event_type.type = 129
    f.l7.type = draw(st.sampled_from([0, 1, 1, 1, 2, 3]))
    record = draw(st.sampled_from(["http", "dns", "kafka"]))
    if record == "http":
        f.l7.http.method = draw(st.sampled_from([*sorted(STANDARD_METHODS), "PROPFIND", "BREW", ""]))
        f.l7.http.url = "http://x/y"
    elif record == "dns":
        f.l7.dns.query = "example.com."
    else:
        f.l7.kafka.api_key = "produce"
    _time(draw, f)
    return f


@st.composite
def other_flow(draw: st.DrawFn) -> flow_pb2.Flow:
    f = flow_pb2.Flow(verdict=draw(verdict), traffic_direction=draw(direction), source=draw(endpoint()))
    f.event_type.type = draw(st.sampled_from([0, 2, 3, 4, 6, 7, 8, 9, 128, 130, 200]))
    _time(draw, f)
    return f


@st.composite
def response(draw: st.DrawFn) -> observer_pb2.GetFlowsResponse:
    which = draw(st.sampled_from(["drop", "drop", "verdict", "verdict", "l7", "l7", "other", "lost", "node"]))
    resp = observer_pb2.GetFlowsResponse(node_name="n1")
    if which == "lost":
        resp.lost_events.source = draw(st.sampled_from([0, 1, 2, 3, 9]))
        resp.lost_events.num_events_lost = draw(ints(0, 2**40))
        if draw(st.booleans()):
            resp.lost_events.cpu.value = draw(ints(0, 63))
        resp.time.seconds = draw(ints(1_600_000_000, 1_900_000_000))
    elif which == "node":
        resp.node_status.state_change = draw(ints(0, 3))
        resp.node_status.node_names.append("n2")
    else:
        strategy = {"drop": drop_flow, "verdict": verdict_flow, "l7": l7_flow, "other": other_flow}[which]
        resp.flow.CopyFrom(draw(strategy()))
        resp.time.CopyFrom(resp.flow.time)
    return resp


def counter_for(count_health: bool = False) -> tuple[FlowCounter, ExporterState]:
    state = ExporterState(sources=("hubble",), envelope=(1, 2))
    return FlowCounter(state.datapath, count_health_verdicts=count_health), state


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(response(), min_size=1, max_size=60), st.booleans())
def test_random_valid_flows_count_exactly_as_the_reference_model(responses: list[observer_pb2.GetFlowsResponse],
                                                                 count_health: bool) -> None:
    counter, state = counter_for(count_health)
    model = Model(count_health)
    for resp in responses:
        counter.handle(resp.SerializeToString())
        model.feed(resp)
    assert exported(state) == model.exported_view()


@settings(max_examples=150, deadline=None)
@given(st.lists(response(), min_size=1, max_size=40), st.lists(st.sampled_from(["protocol", "endpoint_namespace",
                                                                                 "policy"]), unique=True),
       ints(1, 3))
def test_optional_dimensions_never_change_totals_and_stay_capped(responses: list[observer_pb2.GetFlowsResponse],
                                                                 extra: list[str], cap: int) -> None:
    state = ExporterState(sources=("hubble",), envelope=(1, 2))
    counter = FlowCounter(state.datapath, extra_labels=tuple(extra), label_cap=cap)
    model = Model()
    for resp in responses:
        counter.handle(resp.SerializeToString())
        model.feed(resp)
    assert exported(state) == model.exported_view()  # summed over the optional labels
    text = generate_latest(build_registry(state)).decode()
    optional_on = {"protocol": {"cilium_node_drops_total"},
                   "endpoint_namespace": {"cilium_node_drops_total", "cilium_node_policy_verdicts_total",
                                          "cilium_node_l7_requests_total"},
                   "policy": {"cilium_node_policy_verdicts_total"}}
    for label in extra:
        values = {s.labels[label] for fam in text_string_to_metric_families(text) for s in fam.samples
                  if s.name in optional_on[label] and s.labels.get(label, "") != ""}
        assert len(values - {"other"}) <= cap, (label, values)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_only_ever_raise_malformed_message(data: bytes) -> None:
    counter, state = counter_for()
    with contextlib.suppress(MalformedMessage):
        counter.handle(data)
    generate_latest(build_registry(state))  # and whatever was counted still renders


@settings(max_examples=500, deadline=None)
@given(response(), st.data())
def test_mutated_valid_messages_only_ever_raise_malformed_message(resp: observer_pb2.GetFlowsResponse,
                                                                  data: st.DataObject) -> None:
    raw = bytearray(resp.SerializeToString())
    for _ in range(data.draw(ints(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(ints(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[pos] ^= data.draw(ints(1, 255))
        elif op == "cut":
            del raw[pos:]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    counter, state = counter_for()
    with contextlib.suppress(MalformedMessage):
        counter.handle(bytes(raw))
    generate_latest(build_registry(state))
