"""Wire-level tests of the simulator's Hubble server with a real grpcio client on a unix socket."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import grpc
import pytest
import trustme
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from cilium_node_exporter.api.flow import flow_pb2
from cilium_node_exporter.api.observer import observer_pb2
from cilium_node_simulator.events import EventSpec
from cilium_node_simulator.grpc_wire import tag
from cilium_node_simulator.hubble_server import HubbleServer, TLSConfig
from tests.support.procs import wait_until
from tests.support.simulator_grpc import channel, collect, get_flows, running_server, server_status

DROP, TRACE, VERDICT, L7 = 1, 4, 5, 129


def only(*types: int) -> list[flow_pb2.FlowFilter]:
    return [flow_pb2.FlowFilter(event_type=[flow_pb2.EventTypeFilter(type=t) for t in types])]


def test_status_headers_and_trailers(tmp_path: Path) -> None:
    with running_server(tmp_path, version="1.18.2") as server:
        server.emit([(server.compile(EventSpec("policy_denied")), 5), (server.compile(EventSpec("trace")), 10)])
        server.sync()
        ch = channel(server)
        call = ch.unary_unary("/observer.Observer/ServerStatus",
                              request_serializer=observer_pb2.ServerStatusRequest.SerializeToString,
                              response_deserializer=observer_pb2.ServerStatusResponse.FromString)
        status, info = call.with_call(observer_pb2.ServerStatusRequest(), timeout=5)
        assert (status.num_flows, status.max_flows, status.seen_flows) == (20, 4095, 20)
        # pkg/hubble/build/version.go: "cilium v" + SemVer(), SemVer = core + "+g" + the git short SHA
        assert re.fullmatch(r"cilium v1\.18\.2\+g[0-9a-f]{8}", status.version) and status.uptime_ns > 0
        assert ("hubble-server-version", status.version.removeprefix("cilium v")) in tuple(info.initial_metadata())
        assert info.code() == grpc.StatusCode.OK
        stream = get_flows(ch)(observer_pb2.GetFlowsRequest(number=100, whitelist=only(DROP)), timeout=5)
        got = [observer_pb2.GetFlowsResponse.FromString(b) for b in stream]
        assert stream.code() == grpc.StatusCode.OK
        assert ("hubble-server-version", status.version.removeprefix("cilium v")) in tuple(stream.initial_metadata())
        assert len(got) == 5
        assert all(r.node_name == "sim-1" and r.flow.node_name == "sim-1" and r.time == r.flow.time for r in got)


def test_status_codes(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        ch = channel(server)
        with pytest.raises(grpc.RpcError) as err:
            ch.unary_unary("/observer.Observer/GetNodes")(b"", timeout=5)
        assert (err.value.code(), err.value.details()) == (grpc.StatusCode.UNIMPLEMENTED, "GetNodes not implemented")
        with pytest.raises(grpc.RpcError) as err:
            ch.unary_unary("/observer.Observer/Nope")(b"", timeout=5)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.RpcError) as err:
            ch.unary_unary("/other.Service/Method")(b"", timeout=5)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert err.value.details() == "unknown service other.Service"
        with pytest.raises(grpc.RpcError) as err:
            list(get_flows(ch)(observer_pb2.GetFlowsRequest(first=True, follow=True), timeout=5))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details() == "first cannot be specified with follow"
        # standard health service, as registered by the agent
        health = ch.unary_unary("/grpc.health.v1.Health/Check")
        assert health(b"\x0a\x16hubble.server.Observer", timeout=5) == b"\x08\x01"
        with pytest.raises(grpc.RpcError) as err:
            health(b"\x0a\x03foo", timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        # fault injection: every GetFlows answered with a status (and a message needing %-encoding)
        for code, status in ((12, grpc.StatusCode.UNIMPLEMENTED), (14, grpc.StatusCode.UNAVAILABLE),
                             (8, grpc.StatusCode.RESOURCE_EXHAUSTED)):
            server.faults.getflows_status, server.faults.getflows_message = code, "100% busy: ünïcode"
            with pytest.raises(grpc.RpcError) as err:
                list(get_flows(ch)(observer_pb2.GetFlowsRequest(follow=True), timeout=5))
            assert (err.value.code(), err.value.details()) == (status, "100% busy: ünïcode")
        # ServerStatus still works while GetFlows is failing
        assert server_status(ch).max_flows == 4095


def test_whitelist_blacklist_number_first(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        ct = server.compile(EventSpec("drop", reason=155, direction=2))
        server.emit([(server.compile(EventSpec("trace")), 50), (ct, 4),
                     (server.compile(EventSpec("verdict", action=1)), 7),
                     (server.compile(EventSpec("http", method="GET")), 3), (ct, 4)])
        server.sync()
        ch = channel(server)
        drops = collect(ch, observer_pb2.GetFlowsRequest(whitelist=only(DROP)))
        assert len(drops) == 8 and {r.flow.event_type.type for r in drops} == {DROP}
        assert [r.flow.drop_reason_desc for r in drops] == [155] * 8
        assert len(collect(ch, observer_pb2.GetFlowsRequest(whitelist=only(VERDICT, L7)))) == 7 + 6
        assert len(collect(ch, observer_pb2.GetFlowsRequest(blacklist=only(TRACE)))) == 8 + 7 + 6
        assert len(collect(ch, observer_pb2.GetFlowsRequest())) == 50 + 8 + 7 + 6
        # match_sub_type: sub_type 133 matches nothing, 155 all drops
        sub = [flow_pb2.FlowFilter(event_type=[flow_pb2.EventTypeFilter(type=1, match_sub_type=True)])]
        for s, n in ((133, 0), (155, 8)):
            sub[0].event_type[0].sub_type = s
            assert len(collect(ch, observer_pb2.GetFlowsRequest(whitelist=sub))) == n
        verdict = [flow_pb2.FlowFilter(verdict=[flow_pb2.DROPPED])]
        assert len(collect(ch, observer_pb2.GetFlowsRequest(whitelist=verdict))) == 8
        # number: the last N, in order; first: the earliest N
        last3 = collect(ch, observer_pb2.GetFlowsRequest(number=3, whitelist=only(DROP)))
        first3 = collect(ch, observer_pb2.GetFlowsRequest(number=3, first=True, whitelist=only(DROP)))
        assert [r.flow.uuid for r in last3] == [r.flow.uuid for r in drops[-3:]]
        assert [r.flow.uuid for r in first3] == [r.flow.uuid for r in drops[:3]]
        assert len({r.flow.uuid for r in drops}) == 8


def test_follow_starts_at_newest_then_streams_live(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        drop = server.compile(EventSpec("drop", reason=133))
        server.emit([(drop, 100)])
        server.sync()
        ch = channel(server)
        stream = get_flows(ch)(observer_pb2.GetFlowsRequest(follow=True), timeout=10)
        wait_until(lambda: server.followers, what="follow stream")
        server.emit([(server.compile(EventSpec("drop", reason=181)), 10)])
        got = []
        for raw in stream:
            got.append(observer_pb2.GetFlowsResponse.FromString(raw).flow.drop_reason_desc)
            if got.count(181) == 10:
                break
        stream.cancel()
        # the stream starts at the newest buffered events (Hubble's LastWriteParallel: 2), then live
        assert got[:2] == [133, 133] and got[2:] == [181] * 10


def test_since_rewinds_the_ring_and_until_bounds(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        server.emit([(server.compile(EventSpec("drop", reason=133)), 20)])
        server.sync()
        time.sleep(0.02)
        since = Timestamp()
        since.GetCurrentTime()
        time.sleep(0.02)
        server.emit([(server.compile(EventSpec("drop", reason=155)), 15)])
        server.sync()
        ch = channel(server)
        got = collect(ch, observer_pb2.GetFlowsRequest(since=since))
        assert [r.flow.drop_reason_desc for r in got] == [155] * 15
        before = collect(ch, observer_pb2.GetFlowsRequest(until=since, whitelist=only(DROP)))
        assert {r.flow.drop_reason_desc for r in before} == {133}
        assert len(collect(ch, observer_pb2.GetFlowsRequest(until=since))) == 20
        # follow + since: the rewound events, then live ones
        stream = get_flows(ch)(observer_pb2.GetFlowsRequest(follow=True, since=since), timeout=10)
        reasons = []
        for raw in stream:
            reasons.append(observer_pb2.GetFlowsResponse.FromString(raw).flow.drop_reason_desc)
            if len(reasons) == 15:
                server.emit([(server.compile(EventSpec("drop", reason=181)), 1)])
            if len(reasons) == 16:
                break
        stream.cancel()
        assert reasons == [155] * 15 + [181]


def _masked_flow(server: HubbleServer, req: observer_pb2.GetFlowsRequest) -> flow_pb2.Flow:
    got = collect(channel(server), req)
    assert len(got) == 1
    return got[0].flow


@pytest.mark.parametrize(("version", "top_level", "experimental"), [
    ("1.19.4", True, False), ("1.16.5", True, True), ("1.15.3", False, True), ("1.14.16", False, True)])
def test_field_masks_per_version(tmp_path: Path, version: str, top_level: bool, experimental: bool) -> None:
    with running_server(tmp_path, version=version) as server:
        server.emit([(server.compile(EventSpec("drop", reason=155, direction=2)), 1)])
        server.sync()
        paths = ["event_type", "drop_reason_desc", "source.namespace", "time"]
        unmasked = _masked_flow(server, observer_pb2.GetFlowsRequest())
        assert unmasked.source.labels and unmasked.IP.source
        expected = flow_pb2.Flow()  # for these paths (no oneof below a path) every release copies like protobuf
        FieldMask(paths=paths).MergeMessage(unmasked, expected)
        req = observer_pb2.GetFlowsRequest()
        req.field_mask.paths.extend(paths)
        assert (_masked_flow(server, req) == expected) == top_level
        req = observer_pb2.GetFlowsRequest()
        req.experimental.field_mask.paths.extend(paths)
        assert (_masked_flow(server, req) == expected) == experimental
        assert expected.drop_reason_desc == 155 and expected.time == unmasked.time and not expected.IP.source
        with_uuid = observer_pb2.GetFlowsRequest()
        with_uuid.field_mask.paths.extend(["uuid"])
        if top_level:
            assert _masked_flow(server, with_uuid).uuid == unmasked.uuid


def _flows_of(server: HubbleServer, spec: EventSpec) -> list[flow_pb2.Flow]:
    server.emit([(server.compile(spec), 1)])
    server.sync()
    return [r.flow for r in collect(channel(server), observer_pb2.GetFlowsRequest(number=1 + (spec.type in (
        "policy_denied", "policy_deny", "http"))))]


@pytest.mark.parametrize(("version", "uuid", "allowed", "denied", "kind"), [
    ("1.14.0", True, False, False, False),
    ("1.15.3", True, True, False, False), ("1.16.5", True, True, True, False), ("1.19.4", True, True, True, True)])
def test_fields_per_version(tmp_path: Path, version: str, uuid: bool, allowed: bool, denied: bool,
                            kind: bool) -> None:
    with running_server(tmp_path, version=version) as server:
        fwd = _flows_of(server, EventSpec("verdict", action=1, match=2, direction=2))[0]
        assert bool(fwd.uuid) == uuid and bool(fwd.egress_allowed_by) == allowed
        verdict, drop = _flows_of(server, EventSpec("policy_deny", direction=1, policy="default/deny-all"))
        assert bool(verdict.ingress_denied_by) == denied
        if denied:
            assert (verdict.ingress_denied_by[0].namespace, verdict.ingress_denied_by[0].name) == (
                "default", "deny-all")
            assert bool(verdict.ingress_denied_by[0].kind) == kind
        assert (drop.event_type.type, drop.event_type.sub_type, drop.drop_reason_desc) == (1, 181, 181)
        assert (verdict.event_type.type, verdict.verdict, verdict.drop_reason_desc) == (5, 2, 181)


def test_realistic_event_shapes(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        verdict, drop = _flows_of(server, EventSpec("policy_denied", direction=1, source="default/xwing",
                                                    destination="default/deathstar"))
        assert (verdict.event_type.type, verdict.verdict, verdict.policy_match_type) == (5, 2, 0)
        assert verdict.drop_reason_desc == flow_pb2.POLICY_DENIED and not verdict.ingress_denied_by
        assert (drop.event_type.type, drop.event_type.sub_type, drop.traffic_direction) == (1, 133, 1)
        assert not drop.HasField("is_reply") and drop.l4.TCP.flags.SYN
        assert drop.source.pod_name.startswith("xwing-") and drop.destination.namespace == "default"
        assert drop.source.identity >= 256 and drop.source.workloads[0].kind == "Deployment"
        req, resp = _flows_of(server, EventSpec("http", method="POST", action=2, path="/items"))
        assert (req.event_type.type, req.Type, req.l7.type, req.verdict) == (129, flow_pb2.L7, flow_pb2.REQUEST, 2)
        assert req.l7.http.method == "POST" and req.l7.http.url.endswith("/items")
        assert (resp.l7.type, resp.l7.http.code, resp.is_reply.value) == (flow_pb2.RESPONSE, 403, True)
        host = _flows_of(server, EventSpec("verdict", action=1, source_identity=1))[0]
        assert host.source.identity == 1 and host.source.labels == ["reserved:host"]
        odd = _flows_of(server, EventSpec("drop", reason=250, direction=7, unknown_field=True))[0]
        assert (odd.drop_reason_desc, odd.traffic_direction, odd.event_type.sub_type) == (250, 7, 250)
        assert tag(9999, 0) + b"\x01" in odd.SerializeToString()  # field 9999 kept as an unknown field


@pytest.mark.parametrize("version", ["1.19.4", "1.16.5"])
def test_slow_reader_gets_ring_buffer_lost_events(tmp_path: Path, version: str) -> None:
    with running_server(tmp_path, version=version, ring_capacity=255) as server:
        drop = server.compile(EventSpec("drop", reason=155))
        ch = channel(server, **{"grpc.http2.bdp_probe": 0})
        stream = get_flows(ch)(observer_pb2.GetFlowsRequest(follow=True, whitelist=only(DROP)), timeout=20)
        wait_until(lambda: server.followers, what="follow stream")
        for _ in range(10):  # the client does not read meanwhile: its window fills, the ring laps it
            server.emit([(drop, 500)])
            time.sleep(0.01)
        server.sync()
        time.sleep(0.2)
        flows = lost = 0
        lost_msgs = []
        for raw in stream:
            resp = observer_pb2.GetFlowsResponse.FromString(raw)
            if resp.HasField("lost_events"):
                lost += resp.lost_events.num_events_lost
                lost_msgs.append(resp.lost_events)
            else:
                flows += 1
            if flows + lost >= 5000:
                break
        stream.cancel()
        assert flows + lost == 5000 and lost > 4000
        assert {m.source for m in lost_msgs} == {flow_pb2.HUBBLE_RING_BUFFER}
        assert server.truth.lost["hubble_ring_buffer"] == lost
        if version == "1.19.4":  # aggregated, at most one per second, with first/last
            assert len(lost_msgs) <= 3 and all(m.HasField("first") and m.HasField("last") for m in lost_msgs)
        else:  # one message per lost event
            assert len(lost_msgs) == lost and {m.num_events_lost for m in lost_msgs} == {1}
            assert not any(m.HasField("first") for m in lost_msgs)


def test_agent_lost_events_reach_filtered_clients(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        ch = channel(server)
        stream = get_flows(ch)(observer_pb2.GetFlowsRequest(follow=True, whitelist=only(DROP)), timeout=10)
        wait_until(lambda: server.followers, what="follow stream")
        server.emit([(server.compile(EventSpec("trace")), 30)])
        server.emit_lost("perf_event_ring_buffer", 42, cpu=3)
        server.emit_lost("observer_events_queue", 7)
        got = [observer_pb2.GetFlowsResponse.FromString(next(stream)).lost_events for _ in range(2)]
        stream.cancel()
        assert [(e.source, e.num_events_lost) for e in got] == [(1, 42), (2, 7)]
        assert got[0].cpu.value == 3 and not got[1].HasField("cpu")
        assert server.status()["num_flows"] == 32 and server.status()["seen_flows"] == 30
        assert dict(server.truth.lost) == {"perf_event_ring_buffer": 42, "observer_events_queue": 7}


def test_restart_resets_seen_flows_and_ends_streams(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        drop = server.compile(EventSpec("drop", reason=155))
        server.emit([(drop, 30)])
        server.sync()
        ch = channel(server)
        assert server_status(ch).seen_flows == 30
        stream = get_flows(ch)(observer_pb2.GetFlowsRequest(follow=True), timeout=10)
        next(stream)
        server.restart()
        with pytest.raises(grpc.RpcError) as err:
            list(stream)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        status = server_status(channel(server))
        assert (status.seen_flows, status.num_flows) == (0, 0)
        server.emit([(drop, 5)])
        server.sync()
        assert server_status(channel(server)).seen_flows == 5
        assert server.truth.seen_flows_total == 35


def test_kill_leaves_a_stale_socket_that_start_replaces(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        assert server.socket_path is not None
        server.kill()
        assert os.path.exists(server.socket_path)
        assert not server.emit([(server.compile(EventSpec("trace")), 1)])  # a down agent produces nothing
        with pytest.raises(grpc.RpcError):
            server_status(channel(server))
        server.reset()
        server.start()
        assert server_status(channel(server)).seen_flows == 0
        server.kill()
        server.stop()  # stop after a kill cleans up the stale socket
        assert not os.path.exists(server.socket_path)


def test_faults_stall_corrupt_close(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        server.emit([(server.compile(EventSpec("drop", reason=155)), 20)])
        server.sync()
        ch = channel(server)
        server.faults.stall_after = 0  # nothing at all, connection stays up
        with pytest.raises(grpc.RpcError) as err:
            list(get_flows(ch)(observer_pb2.GetFlowsRequest(), timeout=0.5))
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        server.faults.stall_after = None
        server.faults.corrupt_after, server.faults.corrupt_kind = 3, "protobuf"
        raw = list(get_flows(ch)(observer_pb2.GetFlowsRequest(), timeout=5))
        assert len(raw) == 21
        with pytest.raises(Exception):  # noqa: B017 - any protobuf decode error
            observer_pb2.GetFlowsResponse.FromString(raw[3])
        assert all(observer_pb2.GetFlowsResponse.FromString(r).flow.uuid for r in raw[:3] + raw[4:])
        server.faults.corrupt_after, server.faults.corrupt_kind = 2, "length"
        with pytest.raises(grpc.RpcError) as err:
            list(get_flows(ch)(observer_pb2.GetFlowsRequest(), timeout=5))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        server.faults.corrupt_after, server.faults.corrupt_kind = 2, "truncated"
        assert len(list(get_flows(ch)(observer_pb2.GetFlowsRequest(), timeout=5))) == 2  # grpcio hides it
        server.faults.close_after = 5
        got = []
        with pytest.raises(grpc.RpcError) as err:
            for raw_msg in get_flows(channel(server))(observer_pb2.GetFlowsRequest(), timeout=5):
                got.append(raw_msg)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE and len(got) <= 5


def test_tls_and_mtls(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("sim-1.default.hubble-grpc.cilium.io", "127.0.0.1")
    client_ca = trustme.CA()
    client = client_ca.issue_cert("exporter")
    for name, blob in (("srv.pem", cert.cert_chain_pems[0]), ("srv.key", cert.private_key_pem),
                       ("client-ca.pem", client_ca.cert_pem)):
        blob.write_to_path(str(tmp_path / name))
    server = HubbleServer(tcp="127.0.0.1:0", tls=TLSConfig(str(tmp_path / "srv.pem"), str(tmp_path / "srv.key"),
                                                            str(tmp_path / "client-ca.pem"))).start()
    try:
        target = f"127.0.0.1:{server.tcp_port}"
        options = [("grpc.ssl_target_name_override", "sim-1.default.hubble-grpc.cilium.io")]
        good = grpc.ssl_channel_credentials(ca.cert_pem.bytes(), client.private_key_pem.bytes(),
                                            client.cert_chain_pems[0].bytes())
        assert server_status(grpc.secure_channel(target, good, options)).max_flows == 4095
        no_client_cert = grpc.ssl_channel_credentials(ca.cert_pem.bytes())
        with pytest.raises(grpc.RpcError) as err:
            server_status(grpc.secure_channel(target, no_client_cert, options))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop()
