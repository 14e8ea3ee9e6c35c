"""The Hubble source against the product's simulator (real h2 gRPC server): exact counts, masks, mTLS."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.config import parse_args
from cilium_node_exporter.contract import drop_reason_name
from cilium_node_exporter.sources.hubble.stream import HubbleSource
from cilium_node_simulator.events import EventSpec
from cilium_node_simulator.hubble_server import HubbleServer, TLSConfig
from tests.support.procs import wait_until as wait_for

MIX = [
    EventSpec("policy_denied", direction=1),  # one packet: a type-5 verdict AND a type-1 drop (POLICY_DENIED)
    EventSpec("policy_deny", direction=2, policy="default/deny-all"),  # explicit deny rule (POLICY_DENY)
    EventSpec("drop", reason=155, direction=2),  # CT_MAP_INSERTION_FAILED
    EventSpec("drop", reason=250, direction=1),  # a reason this exporter does not know
    EventSpec("verdict", action=1, match=2, direction=2),
    EventSpec("verdict", action=1, match=2, direction=1, source_identity=1),  # host: not a policy decision
    EventSpec("verdict", action=1, match=1, direction=1, source_identity=4),  # health: skipped by default
    EventSpec("http", method="POST", action=2, direction=1),
    EventSpec("http", method="GET", action=1, direction=1),
    EventSpec("dns", action=1, direction=2),
    EventSpec("trace"),  # filtered out by the whitelist
]


def exporter_view(state: ExporterState) -> dict[str, dict]:
    dp = state.datapath
    return {"drops": {(drop_reason_name(k[0]), k[1]): v for k, v in dp.drops.items()},
            "verdicts": {k[:3]: v for k, v in dp.verdicts.items()},
            "l7_requests": {k[:4]: v for k, v in dp.l7.items()},
            "lost": dict(dp.lost)}


def truth_view(server: HubbleServer) -> dict[str, dict]:
    snap = server.truth.snapshot()
    return {"drops": dict(snap.drops), "verdicts": dict(snap.verdicts), "l7_requests": dict(snap.l7_requests),
            "lost": {k: v for k, v in snap.lost.items() if v}}


def start_source(address: str, *flags: str) -> tuple[HubbleSource, ExporterState]:
    cfg = parse_args(["--sources", "hubble", "--hubble-address", address, "--hubble-backoff-max", "0.2",
                      "--hubble-status-interval", "0.2", *flags], environ={})
    state = ExporterState(sources=cfg.sources, envelope=cfg.memory_envelope)
    source = HubbleSource(cfg, state)
    source.start()
    return source, state


def emit_mix(server: HubbleServer, times: int) -> None:
    server.emit([(server.compile(spec, i), times) for i, spec in enumerate(MIX)])
    server.emit_lost("perf_event_ring_buffer", 7, cpu=1)
    server.emit_lost("observer_events_queue", 3)
    server.sync()


@pytest.mark.parametrize("version", ["1.19.4", "1.16.5", "1.15.3", "1.14.0"])
def test_counts_equal_ground_truth(tmp_path: Path, version: str) -> None:
    server = HubbleServer(socket_path=str(tmp_path / "hubble.sock"), version=version, follow_backlog=0).start()
    source, state = start_source(f"unix://{tmp_path}/hubble.sock")
    try:
        wait_for(lambda: state.hubble_gap.connected)
        for _ in range(3):
            emit_mix(server, 40)
        expected = truth_view(server)
        wait_for(lambda: exporter_view(state) == expected)
        assert ("REASON_250", "ingress") in expected["drops"]
        assert ("ingress", "l7/http", "dropped") in expected["verdicts"]
        assert state.datapath.events["other"] == 0  # the whitelist kept traces away
    finally:
        source.stop()
        server.stop()


def test_server_restart_mid_stream_resumes_without_double_count(tmp_path: Path) -> None:
    sock = tmp_path / "hubble.sock"
    server = HubbleServer(socket_path=str(sock), follow_backlog=0).start()
    source, state = start_source(f"unix://{sock}")
    try:
        wait_for(lambda: state.hubble_gap.connected)
        emit_mix(server, 50)
        wait_for(lambda: exporter_view(state) == truth_view(server))
        server.stop()  # graceful: UNAVAILABLE trailers, like an agent shutting down
        wait_for(lambda: not state.hubble_gap.connected)
        server.start()
        wait_for(lambda: state.hubble_gap.connected and state.hubble_gap.reconnects == 1)
        emit_mix(server, 20)
        wait_for(lambda: exporter_view(state) == truth_view(server))
        assert state.hubble_gap.disconnected_seconds() > 0
    finally:
        source.stop()
        server.stop()


def test_field_mask_follows_server_version(tmp_path: Path) -> None:
    for version, where in (("1.19.4", "top"), ("1.16.5", "top"), ("1.15.3", "experimental"), ("1.14.16", None),
                           ("1.13.2", None)):
        sock = tmp_path / f"{version}.sock"
        server = HubbleServer(socket_path=str(sock), version=version).start()
        source, state = start_source(f"unix://{sock}")
        try:
            wait_for(lambda s=state: s.hubble_gap.connected)
            req = source_request(source)
            assert bool(req.field_mask.paths) == (where == "top"), version
            assert bool(req.experimental.field_mask.paths) == (where == "experimental"), version
        finally:
            source.stop()
            server.stop()


def source_request(source: HubbleSource):
    from cilium_node_exporter.sources.hubble.request import build_request, mask_plan

    return build_request(plan=mask_plan(source.version, source.config.extra_labels))


def test_mtls_over_tcp(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_cert = ca.issue_cert("sim-1.default.hubble-grpc.cilium.io")
    client_cert = ca.issue_cert("cilium-node-exporter")
    paths = {}
    for name, blob in (("ca.pem", ca.cert_pem), ("server.pem", server_cert.cert_chain_pems[0]),
                       ("server.key", server_cert.private_key_pem), ("client.pem", client_cert.cert_chain_pems[0]),
                       ("client.key", client_cert.private_key_pem)):
        blob.write_to_path(str(tmp_path / name))
        paths[name] = str(tmp_path / name)
    tls = TLSConfig(cert=paths["server.pem"], key=paths["server.key"], client_ca=paths["ca.pem"])
    server = HubbleServer(tcp=("127.0.0.1", 0), tls=tls, follow_backlog=0).start()
    address = f"127.0.0.1:{server.tcp_port}"
    good, good_state = start_source(address, "--hubble-tls-ca", paths["ca.pem"], "--hubble-tls-cert",
                                    paths["client.pem"], "--hubble-tls-key", paths["client.key"],
                                    "--hubble-tls-server-name", "sim-1.default.hubble-grpc.cilium.io")
    no_client_cert, bad_state = start_source(address, "--hubble-tls-ca", paths["ca.pem"],
                                             "--hubble-tls-server-name", "sim-1.default.hubble-grpc.cilium.io")
    try:
        wait_for(lambda: good_state.hubble_gap.connected)
        emit_mix(server, 10)
        wait_for(lambda: exporter_view(good_state) == truth_view(server))
        wait_for(lambda: sum(bad_state.health["hubble"].errors.values()) >= 1)
        assert not bad_state.hubble_gap.connected and not bad_state.health["hubble"].up
    finally:
        good.stop()
        no_client_cert.stop()
        server.stop()


def test_missing_tls_files_are_reported_as_tls(tmp_path: Path) -> None:
    source, state = start_source("127.0.0.1:1", "--hubble-tls-ca", str(tmp_path / "absent-ca.pem"))
    try:
        wait_for(lambda: state.health["hubble"].errors["tls"] >= 1)
        assert "TLS file" in state.health["hubble"].last_problem[1]
        assert not state.health["hubble"].up
    finally:
        source.stop()
