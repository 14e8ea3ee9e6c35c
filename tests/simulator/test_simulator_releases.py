"""The simulator is each Cilium release (1.14-1.19), not protobuf's idea of one.

Field-mask validation, where each release reads the mask, its copy semantics on a reused destination
(the pre-fix oneof scramble, 1.19's stale branch, 1.14's panic that kills the agent), the version
string and header, and L7 flows as Envoy and the DNS proxy produce them. The facts, with their sources
(``[LABEL path:lines]``, :mod:`cilium_node_simulator.sources`), are in the docstrings of
:mod:`cilium_node_simulator.releases`, :mod:`~cilium_node_simulator.fieldmask`, :mod:`~cilium_node_simulator.getflows`
and :mod:`~cilium_node_simulator.flows`; each test names the module and the item.
"""

from __future__ import annotations

import ast
import random
import re
from collections import Counter
from pathlib import Path

import grpc
import pytest

from cilium_node_exporter.api.flow import flow_pb2
from cilium_node_exporter.api.observer import observer_pb2
from cilium_node_simulator import fieldmask
from cilium_node_simulator.events import EventSpec, SpecError
from cilium_node_simulator.flows import FlowFactory
from cilium_node_simulator.hubble_server import HubbleServer
from cilium_node_simulator.releases import FIELDS_ADDED, FLOW_FIELDS_1_14, RELEASES, parse_version
from cilium_node_simulator.truth import flow_truth
from tests.support.procs import wait_until
from tests.support.simulator_grpc import channel, collect, get_flows, running_server, server_status

SIMULATOR = Path(__file__).resolve().parents[2] / "simulator" / "cilium_node_simulator"
VERSIONS = {14: "1.14.16", 15: "1.15.7", 16: "1.16.15", 17: "1.17.8", 18: "1.18.3", 19: "1.19.4"}
NAIVE_L7_MASK = ["event_type", "l7.type", "l7.http.method", "l7.dns.query", "l7.kafka.api_key"]
L7 = [flow_pb2.FlowFilter(event_type=[flow_pb2.EventTypeFilter(type=129)])]


def fresh_channel(server: HubbleServer) -> grpc.Channel:
    """A channel with its own subchannel (grpcio shares one per target, in backoff after a refusal)."""
    return channel(server, **{"grpc.use_local_subchannel_pool": 1})


def masked_request(minor: int, paths: list[str], **kw: object) -> observer_pb2.GetFlowsRequest:
    """A request carrying ``paths`` where release 1.``minor`` reads a mask."""
    req = observer_pb2.GetFlowsRequest(**kw)  # type: ignore[arg-type]
    (req.experimental.field_mask if minor <= 15 else req.field_mask).paths.extend(paths)
    return req


# The fleet (``simulate --fleet``) plays 200 exporters at once: each node's series ARE the exporter's own
# exposition of a state filled through the exporter's own parsers and counting rules, configured with its
# flags. Its ground truth is which node a scenario makes fail, not the counts; so it may import the exporter.
PLAYS_THE_EXPORTER = {"fleet.py", "fleet_node.py", "fleet_scenario.py"}
# The demo simulates nothing: it narrates what the rule pack does with the simulator's node, so it names the
# pack's alerts and reads its configuration (cilium_node_exporter.mixin) to say what is about to fire.
NARRATES_THE_PACK = {"demo.py"}


def test_the_simulator_imports_nothing_of_the_exporter_but_the_wire_format() -> None:
    """Its ground truth and tables are its own: only the generated protobuf modules and unit parsing."""
    offenders = []
    for path in SIMULATOR.rglob("*.py"):
        if path.name in PLAYS_THE_EXPORTER | NARRATES_THE_PACK:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if name.startswith("cilium_node_exporter") and not name.startswith(
                        ("cilium_node_exporter.api", "cilium_node_exporter.units")):
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []


def test_release_field_tables_match_the_wire_descriptor() -> None:
    """1.14 + every release's additions = the 1.19.4 descriptor (a proto upgrade must extend the table)."""
    flow = flow_pb2.Flow.DESCRIPTOR
    assert RELEASES[19].fields(flow) == {f.name for f in flow.fields}
    assert RELEASES[14].fields(flow) == set(FLOW_FIELDS_1_14)
    for added in FIELDS_ADDED.values():
        for message, names in added.items():
            pool = flow.file.pool.FindMessageTypeByName(message)
            assert set(names) <= {f.name for f in pool.fields}, message
    # releases.FIELDS_ADDED: *_allowed_by from 1.15, *_denied_by from 1.16, file 1.17, policy_log 1.18, emitter 1.19
    first = {name: min(m for m, r in RELEASES.items() if name in r.fields(flow))
             for name in ("egress_allowed_by", "ingress_denied_by", "file", "policy_log", "emitter", "uuid")}
    assert first == {"egress_allowed_by": 15, "ingress_denied_by": 16, "file": 17, "policy_log": 18,
                     "emitter": 19, "uuid": 14}


@pytest.mark.parametrize(("path", "valid_from"), [  # fieldmask "Validation" (the 1.14 column was verified in Go)
    ("verdict", 14), ("l7", 14), ("l7.http.method", 14), ("l4.TCP.destination_port", 14), ("Summary", 14),
    ("source.identity", 14), ("is_reply.value", 14), ("time.seconds", 14), ("interface.name", 14),
    ("egress_allowed_by", 15), ("extensions", 15), ("ingress_denied_by", 16), ("source.cluster_name", 16),
    ("IP.source_xlated", 16), ("node_labels", 16), ("file", 17), ("tunnel", 18), ("policy_log", 18),
    ("emitter", 19), ("l4.VRRP", 19), ("aggregate", 19),
    ("l7.record", None), ("l4.protocol", None), ("source.workloads.name", None), ("egress_allowed_by.name", None),
    ("type", None), ("ip.source", None), ("", None), ("verdict.", None), ("l7..type", None), ("verdict.x", None),
])
def test_mask_validation_per_release(path: str, valid_from: int | None) -> None:
    for minor, release in RELEASES.items():
        expected = valid_from is not None and minor >= valid_from
        assert fieldmask.is_valid([path], release) == expected, (path, minor)
        assert fieldmask.is_valid(["verdict", path], release) == expected  # one bad path fails the mask


def test_an_invalid_mask_is_unknown_invalid_fieldmask_on_the_wire(tmp_path: Path) -> None:
    """fieldmask "Validation": a plain Go error, so gRPC UNKNOWN 'invalid fieldmask', before any message."""
    with running_server(tmp_path, version=VERSIONS[15]) as server:
        server.emit([(server.compile(EventSpec("policy_deny", direction=1)), 3)])
        server.sync()
        ch = channel(server)
        with pytest.raises(grpc.RpcError) as err:
            collect(ch, masked_request(15, ["verdict", "ingress_denied_by"]))
        assert (err.value.code(), err.value.details()) == (grpc.StatusCode.UNKNOWN, "invalid fieldmask")
        # 1.15 has no top-level field_mask (field 10): an unknown field, ignored, flows unmasked
        req = observer_pb2.GetFlowsRequest()
        req.field_mask.paths.append("ingress_denied_by")
        assert len(collect(ch, req)) == 6 and server.stats["masked_getflows"] == 0


@pytest.mark.parametrize("minor", sorted(VERSIONS))
def test_where_each_release_reads_the_mask(tmp_path: Path, minor: int) -> None:
    """releases "mask_from": 1.14/1.15 experimental only; 1.16-1.18 top-level, else experimental; 1.19 top-level
    only."""
    with running_server(tmp_path, version=VERSIONS[minor]) as server:
        server.emit([(server.compile(EventSpec("drop", reason=155, direction=2)), 1)])
        server.sync()
        ch = channel(server)

        def fields(top: list[str], experimental: list[str]) -> set[str]:
            req = observer_pb2.GetFlowsRequest()
            req.field_mask.paths.extend(top)
            req.experimental.field_mask.paths.extend(experimental)
            return {fd.name for fd, _ in collect(ch, req)[0].flow.ListFields()}

        unmasked = fields([], [])
        assert fields(["verdict"], []) == ({"verdict"} if minor >= 16 else unmasked)
        assert fields([], ["verdict"]) == ({"verdict"} if minor <= 18 else unmasked)
        both = {"verdict"} if minor >= 16 else {"event_type"}  # 1.16-1.18: top-level wins when it has paths
        assert fields(["verdict"], ["event_type"]) == both


@pytest.mark.parametrize("minor", [15, 16, 17, 18])
def test_pre_fix_releases_scramble_a_naive_l7_mask(tmp_path: Path, minor: int) -> None:
    """fieldmask "Copy" (1.15-1.18): Mutable on every named oneof member into one reused Flow, in Go's random
    map order: the last visited member survives, empty. Most HTTP requests come out as kafka or dns
    (6 of 8 kafka, 1 dns, 1 http for this mask). The exporter's mask (l7 as a leaf) stays exact."""
    with running_server(tmp_path, version=VERSIONS[minor]) as server:
        server.emit([(server.compile(EventSpec("http", method="GET", pool=8)), 80)])
        server.sync()
        ch = channel(server)
        naive = collect(ch, masked_request(minor, NAIVE_L7_MASK, whitelist=L7))
        requests = [r.flow for r in naive if r.flow.l7.type == flow_pb2.REQUEST]
        records = Counter(f.l7.WhichOneof("record") for f in requests)
        exact = sum(1 for f in requests if f.l7.http.method == "GET")
        assert len(requests) == 80 and records["http"] >= exact
        assert exact < 30 and records["kafka"] > 40 and records["dns"] > 0, records  # not protobuf's semantics
        leaf = collect(ch, masked_request(minor, ["event_type", "l7"], whitelist=L7))
        assert [r.flow.l7 for r in leaf] == [r.flow.l7 for r in collect(ch, observer_pb2.GetFlowsRequest(
            whitelist=L7))]


def test_1_19_copies_l7_exactly_but_keeps_a_stale_branch_on_flows_without_one(tmp_path: Path) -> None:
    """fieldmask "Copy", 1.19 (PR #43924): a oneof member that is not the source's is skipped, not cleared, so a drop
    after an HTTP GET still carries l7.http.method on the reused destination (l7.type is cleared)."""
    with running_server(tmp_path, version=VERSIONS[19]) as server:
        http = server.compile(EventSpec("http", method="GET", pool=1))
        drop = server.compile(EventSpec("drop", reason=155, pool=1))
        server.emit([(http, 1), (drop, 1)])
        server.sync()
        got = [r.flow for r in collect(channel(server), masked_request(19, NAIVE_L7_MASK))]
        assert [f.event_type.type for f in got] == [129, 129, 1]
        assert got[0].l7.http.method == "GET" and got[1].l7.http.code == 0  # L7 flows exact
        assert got[2].l7.http.method == "GET" and got[2].l7.type == 0  # the drop: stale branch


def test_1_14_agent_dies_on_a_naive_l7_mask_and_comes_back_fresh(tmp_path: Path) -> None:
    """fieldmask "Copy", 1.14: filter.copy writes through the unallocated oneof member (panic: invalid nil
    pointer); Hubble's gRPC server has no recovery, so the agent dies: streams abort, the socket refuses
    connections, then a restarted agent serves an empty ring."""
    sock = tmp_path / "run" / "hubble.sock"
    server = HubbleServer(socket_path=str(sock), version=VERSIONS[14], crash_downtime=None).start()
    try:
        server.emit([(server.compile(EventSpec("http", pool=2)), 3), (server.compile(EventSpec("dns", pool=2)), 3)])
        server.sync()
        with pytest.raises(grpc.RpcError) as err:
            collect(channel(server), masked_request(14, NAIVE_L7_MASK))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert server.stats["crashes"] == 1 and server.truth.snapshot().crashes == 1
        assert sock.exists() and not server.running
        with pytest.raises(grpc.RpcError) as err:
            server_status(channel(server))  # connection refused: nobody listens on the stale socket
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert not server.emit([(server.compile(EventSpec("trace")), 1)])  # a dead agent produces nothing
        server.start()  # kubelet restarts it
        status = server_status(fresh_channel(server))
        assert (status.seen_flows, status.num_flows) == (0, 0)
        # a single nested member cannot meet another member: no panic, non-HTTP flows get l7{http{}}
        server.emit([(server.compile(EventSpec("dns", pool=1)), 1)])
        server.sync()
        (only,) = collect(fresh_channel(server), masked_request(14, ["l7.http.method"], whitelist=L7))[:1]
        assert only.flow.l7.WhichOneof("record") == "http" and not only.flow.l7.http.method
        assert server.stats["crashes"] == 1
    finally:
        server.stop()


def test_a_crashed_1_14_agent_restarts_by_itself(tmp_path: Path) -> None:
    with running_server(tmp_path, version=VERSIONS[14], crash_downtime=0.3) as server:
        server.emit([(server.compile(EventSpec("http", pool=1)), 1), (server.compile(EventSpec("dns", pool=1)), 1)])
        server.sync()
        with pytest.raises(grpc.RpcError):
            collect(channel(server), masked_request(14, ["l7.http.method", "l7.dns"]))
        wait_until(lambda: server.running, timeout=20, what="the agent back")
        assert server_status(fresh_channel(server)).seen_flows == 0 and server.stats["crashes"] == 1


def test_a_follow_stream_of_a_crashing_agent_is_aborted_without_trailers(tmp_path: Path) -> None:
    with running_server(tmp_path, version=VERSIONS[14], crash_downtime=None) as server:
        stream = get_flows(channel(server))(masked_request(14, NAIVE_L7_MASK, follow=True), timeout=20)
        wait_until(lambda: server.followers, what="follow stream")
        server.emit([(server.compile(EventSpec("http", pool=1)), 1)])
        with pytest.raises(grpc.RpcError) as err:
            list(stream)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE and server.stats["crashes"] == 1


def test_go_map_iteration_is_a_random_rotation_of_eight_slots() -> None:
    rng = random.Random(7)
    keys = ["dns", "http", "kafka", "type"]
    orders = Counter(tuple(fieldmask.go_map_order(keys, rng)) for _ in range(8000))
    assert set(orders) == {tuple(keys[i:] + keys[:i]) for i in range(4)}
    assert 0.58 < orders[tuple(keys)] / 8000 < 0.67  # offsets 0 and 4..7: 5 of 8


def test_version_string_and_header(tmp_path: Path) -> None:
    """releases.ServerVersion: ServerStatus.version = "cilium v" + SemVer(); releases "version_header": from 1.18."""
    assert parse_version("cilium v1.18.12+gcb98de38f6").text == "cilium v1.18.12+gcb98de38f6"
    assert parse_version("1.19.0-rc.1").semver.startswith("1.19.0-rc.1+g")
    for bad in ("1.13.4", "1.20.0", "2.0.0", "garbage"):
        with pytest.raises(SpecError):
            parse_version(bad)
    for minor, header in ((17, False), (18, True)):
        with running_server(tmp_path / str(minor), version=VERSIONS[minor]) as server:
            call = channel(server).unary_unary(
                "/observer.Observer/ServerStatus",
                request_serializer=observer_pb2.ServerStatusRequest.SerializeToString,
                response_deserializer=observer_pb2.ServerStatusResponse.FromString)
            status, info = call.with_call(observer_pb2.ServerStatusRequest(), timeout=5)
            assert re.fullmatch(rf"cilium v{re.escape(VERSIONS[minor])}\+g[0-9a-f]{{8}}", status.version)
            headers = dict(info.initial_metadata())
            assert headers.get("hubble-server-version") == (status.version[len("cilium v"):] if header else None)


def _flows(spec: EventSpec, version: str = "1.16.15") -> tuple[flow_pb2.Flow, ...]:
    return FlowFactory("n1", version).flows(spec, random.Random(3))


def test_http_flows_as_envoy_logs_them() -> None:
    """flows (L7), HTTP: a denied request is a DROPPED REQUEST plus Envoy's local 403 as a FORWARDED RESPONSE with
    source and destination swapped and the request's direction; counted once, as dropped."""
    req, resp = _flows(EventSpec("http", method="POST", action=2, direction=2))
    assert (req.l7.type, req.verdict, req.traffic_direction, req.is_reply.value) == (1, 2, 2, False)
    assert (resp.l7.type, resp.verdict, resp.traffic_direction, resp.is_reply.value) == (2, 1, 2, True)
    assert resp.l7.http.code == 403 and (resp.IP.source, resp.source.identity) == (req.IP.destination,
                                                                                    req.destination.identity)
    assert resp.l4.TCP.destination_port == req.l4.TCP.source_port
    for f in (req, resp):
        assert (f.event_type.type, f.event_type.sub_type, f.Type, f.drop_reason_desc) == (129, 0, flow_pb2.L7, 0)
    truth = [e for f in (req, resp) for e in flow_truth(f)]
    assert ("l7_requests", ("http", "POST", "egress", "dropped")) in truth
    assert [e for e in truth if e[0] == "verdicts"] == [("verdicts", ("egress", "l7/http", "dropped"))]
    ok_req, ok_resp = _flows(EventSpec("http", method="GET"))
    assert (ok_req.verdict, ok_resp.verdict, ok_resp.l7.http.code) == (1, 1, 200)


def test_dns_flows_as_the_dns_proxy_logs_them() -> None:
    """flows (L7), DNS: always egress; a denied query is one DROPPED REQUEST and no response flow."""
    (denied,) = _flows(EventSpec("dns", action=2))
    assert (denied.l7.type, denied.verdict, denied.traffic_direction, denied.l7.dns.query) == (
        1, 2, 2, "api.example.com.")
    req, resp = _flows(EventSpec("dns"))
    assert (req.verdict, resp.verdict, req.traffic_direction, resp.traffic_direction) == (1, 1, 2, 2)
    assert (resp.l7.type, resp.l7.dns.rcode, resp.destination.identity) == (2, 0, req.source.identity)
    with pytest.raises(SpecError, match="egress only"):
        EventSpec("dns", direction=1)
    with pytest.raises(SpecError, match="forwarded or dropped"):
        EventSpec("http", action=3)


def test_kafka_flows_one_request_per_topic() -> None:
    """flows (L7), Kafka: accesslog_server.go logs a request once per topic; the reply carries only the
    correlation id (api_key "produce"); a denied request gets error_code 29 and no response flow."""
    flows = _flows(EventSpec("kafka", api_key="fetch", topics=("orders", "payments")))
    assert [(f.l7.type, f.l7.kafka.topic, f.verdict) for f in flows] == [(1, "orders", 1), (1, "payments", 1),
                                                                        (2, "", 1)]
    reply = flows[2].l7.kafka
    assert reply.api_key == "produce" and reply.correlation_id == flows[0].l7.kafka.correlation_id
    denied = _flows(EventSpec("kafka", action=2, topics=("orders", "payments")))
    assert [(f.l7.type, f.verdict, f.l7.kafka.error_code) for f in denied] == [(1, 2, 29), (1, 2, 29)]
    truth = Counter(e for f in denied for e in flow_truth(f))
    assert truth[("l7_requests", ("kafka", "", "ingress", "dropped"))] == 2


def test_flows_carry_only_their_release_fields() -> None:
    verdict = _flows(EventSpec("policy_deny", direction=1, policy="default/deny-all"), VERSIONS[15])[0]
    assert not verdict.ingress_denied_by and not verdict.source.cluster_name and verdict.uuid == ""
    verdict = _flows(EventSpec("policy_deny", direction=1, policy="default/deny-all"), VERSIONS[16])[0]
    assert verdict.ingress_denied_by[0].name == "deny-all" and not verdict.ingress_denied_by[0].kind
    allowed = _flows(EventSpec("verdict", action=1, match=2, direction=2), VERSIONS[14])[0]
    assert not allowed.egress_allowed_by and not allowed.node_labels and not allowed.HasField("emitter")
    assert _flows(EventSpec("trace"), VERSIONS[19])[0].emitter.version == VERSIONS[19]
