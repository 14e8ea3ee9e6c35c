"""Counting rules of the contract: on messages built with our protos, on Hubble JSON lines in tests/data, and on
real captured samples where they are present (an extra cross-check)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from google.protobuf import json_format

from cilium_node_exporter.aggregation.datapath import DatapathCounters
from cilium_node_exporter.api.flow import flow_pb2
from cilium_node_exporter.api.observer import observer_pb2
from cilium_node_exporter.contract import drop_reason_name
from cilium_node_exporter.sources.hubble.decode import (
    MAX_UNKNOWN_REASONS,
    REASON_OVERFLOW,
    FlowCounter,
    MalformedMessage,
)
from tests.support.paths import DATA


def flow(**kw) -> bytes:
    return observer_pb2.GetFlowsResponse(flow=flow_pb2.Flow(**kw)).SerializeToString()


def lost(source: int, n: int, **kw) -> bytes:
    return observer_pb2.GetFlowsResponse(lost_events=flow_pb2.LostEvent(source=source, num_events_lost=n, **kw),
                                         **{k: v for k, v in {}.items()}).SerializeToString()


ET = flow_pb2.CiliumEventType


@pytest.fixture
def counter() -> FlowCounter:
    return FlowCounter(DatapathCounters())


def test_policy_denied_packet_counts_one_drop_and_one_verdict(counter: FlowCounter) -> None:
    # One policy-denied packet: a type-5 verdict and a type-1 drop, both verdict DROPPED.
    counter.handle(flow(verdict=flow_pb2.DROPPED, event_type=ET(type=5), drop_reason_desc=133,
                        traffic_direction=flow_pb2.INGRESS, policy_match_type=0,
                        source=flow_pb2.Endpoint(identity=1234), destination=flow_pb2.Endpoint(identity=5678)))
    counter.handle(flow(verdict=flow_pb2.DROPPED, event_type=ET(type=1, sub_type=133), drop_reason_desc=133,
                        drop_reason=133, traffic_direction=flow_pb2.INGRESS))
    dp = counter.counters
    assert dict(dp.drops) == {(133, "ingress", None, None): 1}
    assert dict(dp.verdicts) == {("ingress", "none", "dropped", None, None): 1}
    assert dp.events["drop"] == 1 and dp.events["policy_verdict"] == 1


def test_drop_reason_falls_back_to_deprecated_field_then_subtype(counter: FlowCounter) -> None:
    counter.handle(flow(event_type=ET(type=1, sub_type=155), drop_reason=155))
    counter.handle(flow(event_type=ET(type=1, sub_type=181)))
    assert set(counter.counters.drops) == {(155, "unknown", None, None), (181, "unknown", None, None)}


def test_unknown_reason_codes_are_kept_then_bounded(counter: FlowCounter) -> None:
    for code in range(1000, 1000 + MAX_UNKNOWN_REASONS + 10):
        counter.handle(flow(event_type=ET(type=1), drop_reason_desc=code, traffic_direction=7))
    codes = Counter(k[0] for k in counter.counters.drops)
    assert codes[1000] == 1 and codes[1000 + MAX_UNKNOWN_REASONS - 1] == 1
    assert counter.counters.drops[(REASON_OVERFLOW, "unknown", None, None)] == 10
    assert counter.counters.label_overflow["reason"] == 10
    assert len(counter.counters.drops) == MAX_UNKNOWN_REASONS + 1


def test_unknown_enum_values_fold_into_unknown(counter: FlowCounter) -> None:
    counter.handle(flow(event_type=ET(type=5), verdict=42, traffic_direction=9, policy_match_type=77,
                        source=flow_pb2.Endpoint(identity=300)))
    assert dict(counter.counters.verdicts) == {("unknown", "unknown", "unknown", None, None): 1}


def test_host_and_health_identities_are_not_policy_decisions() -> None:
    default = FlowCounter(DatapathCounters())
    with_health = FlowCounter(DatapathCounters(), count_health_verdicts=True)
    msgs = [
        flow(event_type=ET(type=5), verdict=1, source=flow_pb2.Endpoint(identity=1)),  # host: never
        flow(event_type=ET(type=5), verdict=1, source=flow_pb2.Endpoint(identity=4)),  # health as source
        flow(event_type=ET(type=5), verdict=1, destination=flow_pb2.Endpoint(identity=4)),  # health as destination
        flow(event_type=ET(type=5), verdict=1, source=flow_pb2.Endpoint(identity=9999)),
    ]
    for m in msgs:
        default.handle(m)
        with_health.handle(m)
    assert sum(default.counters.verdicts.values()) == 1
    assert sum(with_health.counters.verdicts.values()) == 3
    assert default.counters.events["policy_verdict"] == 4  # every message is still an event


def test_l7_requests_counted_once_per_request(counter: FlowCounter) -> None:
    def l7(kind: int, method: str, verdict: int) -> bytes:
        return flow(event_type=ET(type=129), verdict=verdict, traffic_direction=flow_pb2.INGRESS,
                    l7=flow_pb2.Layer7(type=kind, http=flow_pb2.HTTP(method=method, code=403)))

    counter.handle(l7(flow_pb2.REQUEST, "POST", flow_pb2.DROPPED))
    counter.handle(l7(flow_pb2.RESPONSE, "POST", flow_pb2.DROPPED))
    counter.handle(l7(flow_pb2.REQUEST, "get", flow_pb2.FORWARDED))
    counter.handle(l7(flow_pb2.REQUEST, "BREW", flow_pb2.FORWARDED))
    counter.handle(flow(event_type=ET(type=129), verdict=flow_pb2.FORWARDED, traffic_direction=flow_pb2.EGRESS,
                        l7=flow_pb2.Layer7(type=flow_pb2.REQUEST, dns=flow_pb2.DNS(query="example.com."))))
    dp = counter.counters
    assert dict(dp.l7) == {
        ("http", "POST", "ingress", "dropped", None): 1,
        ("http", "GET", "ingress", "forwarded", None): 1,
        ("http", "other", "ingress", "forwarded", None): 1,
        ("dns", "", "egress", "forwarded", None): 1,
    }
    assert dp.verdicts[("ingress", "l7/http", "dropped", None, None)] == 1
    assert dp.verdicts[("egress", "l7/dns", "forwarded", None, None)] == 1
    assert dp.events["l7"] == 5


def test_lost_events_both_forms_sum_num_events_lost(counter: FlowCounter) -> None:
    for _ in range(5):  # pre-1.19: one message per lost event
        counter.handle(lost(flow_pb2.HUBBLE_RING_BUFFER, 1))
    first = {"seconds": 10}
    counter.handle(observer_pb2.GetFlowsResponse(lost_events=flow_pb2.LostEvent(
        source=flow_pb2.HUBBLE_RING_BUFFER, num_events_lost=37, first=first, last={"seconds": 11})).SerializeToString())
    counter.handle(lost(flow_pb2.PERF_EVENT_RING_BUFFER, 3, cpu={"value": 1}))
    counter.handle(lost(flow_pb2.OBSERVER_EVENTS_QUEUE, 4))
    counter.handle(lost(99, 2))
    assert dict(counter.counters.lost) == {"hubble_ring_buffer": 42, "perf_event_ring_buffer": 3,
                                           "observer_events_queue": 4, "unknown": 2}
    assert counter.counters.events["lost"] == 9


def test_traces_node_status_and_unknown_oneofs_are_other(counter: FlowCounter) -> None:
    counter.handle(flow(event_type=ET(type=4), verdict=flow_pb2.FORWARDED))
    counter.handle(observer_pb2.GetFlowsResponse(node_status={"state_change": 2}).SerializeToString())
    counter.handle(b"\xa2\x06\x03abc")  # field 100 (unknown, length-delimited): a future oneof
    dp = counter.counters
    assert dp.events["other"] == 3 and not dp.drops and not dp.verdicts


def test_unknown_fields_in_flow_do_not_break_counting(counter: FlowCounter) -> None:
    body = flow_pb2.Flow(event_type=ET(type=1), drop_reason_desc=155).SerializeToString()
    body += b"\xf8\x85\x0c\x05"  # unknown varint field 25000 inside Flow
    msg = b"\x0a" + bytes([len(body)]) + body
    counter.handle(msg)
    assert counter.counters.drops[(155, "unknown", None, None)] == 1


@pytest.mark.parametrize("data", [b"\x0a\x05\x01", b"\xff\xff\xff", b"\x0a\x80"])
def test_malformed_bytes_raise_clear_error(counter: FlowCounter, data: bytes) -> None:
    with pytest.raises(MalformedMessage):
        counter.handle(data)


def test_optional_labels_are_capped_and_overflow_counted() -> None:
    counter = FlowCounter(DatapathCounters(), extra_labels=("endpoint_namespace", "protocol", "policy"), label_cap=3)
    for i in range(10):
        counter.handle(flow(event_type=ET(type=1), drop_reason_desc=133, traffic_direction=flow_pb2.INGRESS,
                            destination=flow_pb2.Endpoint(namespace=f"ns{i}"), l4=flow_pb2.Layer4(TCP={})))
        counter.handle(flow(event_type=ET(type=5), verdict=flow_pb2.DROPPED, traffic_direction=flow_pb2.EGRESS,
                            source=flow_pb2.Endpoint(identity=300, namespace="ns0"),
                            egress_denied_by=[flow_pb2.Policy(name=f"p{i}", namespace="ns0")]))
    namespaces = {k[3] for k in counter.counters.drops}
    assert namespaces == {"ns0", "ns1", "ns2", "other"}
    assert {k[2] for k in counter.counters.drops} == {"tcp"}
    policies = {k[4] for k in counter.counters.verdicts}
    assert policies == {"ns0/p0", "ns0/p1", "ns0/p2", "other"}
    assert counter.counters.label_overflow["endpoint_namespace"] == 7
    assert counter.counters.label_overflow["policy"] == 7


# --- Hubble JSON lines (hubble observe -o jsonpb): our fixtures, and real samples when present ---------
FIXTURES = sorted((DATA / "hubble").glob("flows-*.json"))
REAL_SAMPLES = ["hubble-otel__basic-sample-10-flows.json", "hubble-otel__basic-sample-400-tcp-flows.json",
                "hubble-otel__basic-sample-400-l7-redirected-flows.json", "hubble-otel__basic-sample-5-dns-flows.json",
                "cilium-docs-export-rst__2-dropped-flows.json"]

DIRS = {"INGRESS": "ingress", "EGRESS": "egress"}
MATCH = {0: "none", 1: "l3-only", 2: "l3-l4", 3: "l4-only", 4: "all", 5: "l3-proto", 6: "proto-only"}
LOST = {"PERF_EVENT_RING_BUFFER": "perf_event_ring_buffer", "OBSERVER_EVENTS_QUEUE": "observer_events_queue",
        "HUBBLE_RING_BUFFER": "hubble_ring_buffer"}


def read_lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def reference_model(lines: list[dict]) -> tuple[Counter, Counter, Counter, Counter]:
    """An independent reading of the contract's counting rules on the JSON form."""
    drops, verdicts, l7, lost = Counter(), Counter(), Counter(), Counter()
    for line in lines:
        if "lost_events" in line:
            le = line["lost_events"]
            lost[LOST.get(le.get("source", ""), "unknown")] += int(le.get("num_events_lost", "0"))
            continue
        f = line.get("flow")
        if f is None:
            continue
        etype = f.get("event_type", {}).get("type", 0)
        direction = DIRS.get(f.get("traffic_direction", ""), "unknown")
        action = f.get("verdict", "VERDICT_UNKNOWN").lower().replace("verdict_unknown", "unknown")
        if etype == 1:
            drops[(f.get("drop_reason_desc", "DROP_REASON_UNKNOWN"), direction)] += 1
        elif etype == 5:
            src, dst = f.get("source", {}).get("identity", 0), f.get("destination", {}).get("identity", 0)
            if src != 1 and 4 not in (src, dst):
                verdicts[(direction, MATCH.get(f.get("policy_match_type", 0), "unknown"), action)] += 1
        elif etype == 129 and f.get("l7", {}).get("type") == "REQUEST":
            rec = next((k for k in ("http", "dns", "kafka") if k in f["l7"]), "unknown")
            method = f["l7"]["http"].get("method", "").upper() if rec == "http" else ""
            l7[(rec, method, direction, action)] += 1
            verdicts[(direction, "l7/" + rec, action)] += 1
    return drops, verdicts, l7, lost


def count(lines: list[dict], **kw) -> FlowCounter:
    """The exporter's counts of ``lines``, fed as the bytes a Hubble server sends."""
    counter = FlowCounter(DatapathCounters(), **kw)
    for raw in lines:
        msg = json_format.ParseDict(raw, observer_pb2.GetFlowsResponse())  # no unknown field may be dropped
        counter.handle(msg.SerializeToString())
    return counter


def assert_counts_like_the_reference_model(lines: list[dict]) -> None:
    counter = count(lines)
    drops, verdicts, l7, lost = reference_model(lines)
    got_drops = Counter({(drop_reason_name(k[0]), k[1]): v for k, v in counter.counters.drops.items()})
    assert got_drops == drops
    assert Counter({k[:3]: v for k, v in counter.counters.verdicts.items()}) == verdicts
    assert Counter({k[:4]: v for k, v in counter.counters.l7.items()}) == l7
    assert Counter(counter.counters.lost) == lost
    assert sum(counter.counters.events.values()) == len(lines)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_fixture_flows_count_like_the_reference_model(path: Path) -> None:
    assert_counts_like_the_reference_model(read_lines(path))


@pytest.mark.parametrize("name", REAL_SAMPLES)
def test_real_samples_count_like_the_reference_model(real_samples: Path, name: str) -> None:
    assert_counts_like_the_reference_model(read_lines(real_samples / "hubble" / name))


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_fixture_lines_are_in_hubbles_json_form(path: Path) -> None:
    # What Hubble's protojson writes (proto names, enum names, 64-bit integers as strings, zeros left out)
    # is exactly what parsing and re-serialising each line gives back.
    for line in read_lines(path):
        msg = json_format.ParseDict(line, observer_pb2.GetFlowsResponse())
        assert json_format.MessageToDict(msg, preserving_proto_field_name=True) == line


def test_fixtures_hold_every_case_the_counting_rules_tell_apart() -> None:
    assert [p.name for p in FIXTURES] == ["flows-1.16.json", "flows-1.19.json"]
    for path in FIXTURES:
        lines = read_lines(path)
        flows = [x["flow"] for x in lines if "flow" in x]
        drops, verdicts, l7, lost = reference_model(lines)
        assert {d for _, d in drops} >= {"ingress", "egress"}, path.name
        assert {a for *_, a in verdicts} >= {"forwarded", "dropped", "redirected"}, path.name
        assert {(r, a) for r, _, _, a in l7} >= {("http", "forwarded"), ("http", "dropped"), ("dns", "dropped")}
        assert set(lost) == set(LOST.values()), path.name
        http_403 = [f for f in flows if f.get("l7", {}).get("http", {}).get("code") == 403]
        assert [(f["l7"]["type"], f["verdict"]) for f in http_403] == [("RESPONSE", "FORWARDED")]
        assert any(f["source"].get("identity") == 1 and f["event_type"]["type"] == 5 for f in flows)  # host
        assert all(f.get("uuid") and f.get("node_name") and f.get("time") for f in flows)
        assert all(line.get("node_name") and line.get("time") for line in lines)
    modern = read_lines(DATA / "hubble" / "flows-1.19.json")
    flows = [x["flow"] for x in modern if "flow" in x]
    _, verdicts, l7, _ = reference_model(modern)
    assert {a for *_, a in verdicts} >= {"audit"} and {m for _, m, _ in verdicts} >= {
        "none", "l3-only", "l3-l4", "l4-only", "all"}
    assert {r for r, *_ in l7} == {"http", "dns", "kafka"}
    assert any(4 in (f["source"].get("identity"), f["destination"].get("identity")) for f in flows)  # health
    assert any(f["event_type"]["type"] == 4 for f in flows) and any("traffic_direction" not in f for f in flows)
    for field in ("emitter", "egress_allowed_by", "ingress_allowed_by", "egress_denied_by", "ingress_denied_by",
                  "policy_log", "Summary"):
        assert any(field in f for f in flows), field
    assert all("first" in x["lost_events"] for x in modern if "lost_events" in x
               and x["lost_events"]["source"] != "PERF_EVENT_RING_BUFFER")


def test_fixture_1_19_counts() -> None:
    """The counting rules on the 1.19 fixture, as read off the file by hand."""
    counter = count(read_lines(DATA / "hubble" / "flows-1.19.json"))
    dp = counter.counters
    assert dict(dp.drops) == {(133, "ingress", None, None): 1, (181, "egress", None, None): 1,
                              (181, "ingress", None, None): 1, (155, "egress", None, None): 1,
                              (158, "egress", None, None): 1, (151, "ingress", None, None): 1,
                              (132, "unknown", None, None): 1}
    # denied HTTP: one dropped request; Envoy's 403 response is neither a request nor a verdict
    assert dict(dp.l7) == {("http", "GET", "ingress", "forwarded", None): 1,
                           ("http", "POST", "ingress", "dropped", None): 1,
                           ("http", "PUT", "egress", "forwarded", None): 1,
                           ("dns", "", "egress", "forwarded", None): 2, ("dns", "", "egress", "dropped", None): 1,
                           ("kafka", "", "egress", "forwarded", None): 1, ("kafka", "", "egress", "dropped", None): 1}
    l3l4 = {k[:3]: v for k, v in dp.verdicts.items() if not k[1].startswith("l7/")}
    assert l3l4 == {("ingress", "l3-l4", "forwarded"): 1, ("ingress", "l3-l4", "redirected"): 1,
                    ("egress", "l3-l4", "redirected"): 1, ("ingress", "none", "dropped"): 1,
                    ("egress", "l3-only", "dropped"): 1, ("ingress", "l3-l4", "dropped"): 1,
                    ("ingress", "none", "audit"): 1, ("ingress", "l4-only", "forwarded"): 1,
                    ("egress", "all", "forwarded"): 1}  # the host's and the two health verdicts left out
    assert dict(dp.lost) == {"hubble_ring_buffer": 37, "perf_event_ring_buffer": 212, "observer_events_queue": 1530}
    assert dict(dp.events) == {"drop": 7, "policy_verdict": 12, "l7": 14, "lost": 3, "other": 6}
    with_health = count(read_lines(DATA / "hubble" / "flows-1.19.json"), count_health_verdicts=True).counters
    assert sum(with_health.verdicts.values()) - sum(dp.verdicts.values()) == 2
