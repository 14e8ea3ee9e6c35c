"""The real Hubble source against the simulator of each Cilium release (real h2 gRPC server, unix socket).

The release matrix: the same scenario through 1.14 to 1.19, with and without every optional label;
what the exporter exposes equals the simulator's ground truth exactly and no emulated agent dies (the
exporter's request must be one every release copies faithfully). Plus the fallback when a server
refuses a mask, a resume after a server restart, and mTLS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trustme
from prometheus_client import generate_latest

from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.app import build_registry
from cilium_node_exporter.config import parse_args
from cilium_node_exporter.sources.hubble import stream as hubble_stream
from cilium_node_exporter.sources.hubble.request import ALLOWED_BY_MASK, BASE_MASK, DENIED_BY_MASK, MaskPlan
from cilium_node_exporter.sources.hubble.stream import HubbleSource
from cilium_node_simulator.events import EventSpec
from cilium_node_simulator.hubble_server import HubbleServer, TLSConfig
from tests.support.procs import Metrics
from tests.support.procs import wait_until as wait_for

RELEASES = {14: "1.14.16", 15: "1.15.7", 16: "1.16.15", 17: "1.17.8", 18: "1.18.3", 19: "1.19.4"}
ALL_LABELS = "policy,endpoint_namespace,protocol"
MIX = [
    EventSpec("policy_denied", direction=1, pool=4),  # one packet: a type-5 verdict AND a type-1 drop
    EventSpec("policy_deny", direction=2, policy="default/deny-all", pool=4),  # explicit deny (POLICY_DENY)
    EventSpec("drop", reason=155, direction=2, pool=4),  # CT_MAP_INSERTION_FAILED
    EventSpec("drop", reason=250, direction=1, protocol="udp", pool=4),  # a reason Cilium does not name
    EventSpec("verdict", action=1, match=2, direction=2, pool=4),  # allowed: *_allowed_by from 1.15
    EventSpec("verdict", action=5, match=4, direction=1, pool=4),
    EventSpec("verdict", action=1, match=2, direction=1, source_identity=1, pool=2),  # host: not counted
    EventSpec("verdict", action=1, match=1, direction=1, source_identity=4, pool=2),  # health: skipped
    EventSpec("http", method="POST", action=2, direction=1, pool=4),  # DROPPED request + FORWARDED 403
    EventSpec("http", method="GET", direction=2, pool=4),
    EventSpec("dns", pool=4),
    EventSpec("dns", action=2, pool=4),  # one DROPPED request, no response
    EventSpec("kafka", api_key="produce", topics=("orders", "audit"), pool=4),  # a request per topic
    EventSpec("kafka", action=2, pool=4),
    EventSpec("trace", pool=4),  # filtered out by the whitelist
]
BASE_KEYS = {"drops": ("reason", "direction"), "verdicts": ("direction", "match", "action"),
             "l7": ("protocol", "method", "direction", "action"), "lost": ("source",)}
DETAIL_KEYS = {"drops": ("reason", "direction", "protocol", "endpoint_namespace"),
               "verdicts": ("direction", "match", "action", "endpoint_namespace", "policy"),
               "l7": ("protocol", "method", "direction", "action", "endpoint_namespace"), "lost": ("source",)}
FAMILIES = {"drops": "cilium_node_drops_total", "verdicts": "cilium_node_policy_verdicts_total",
            "l7": "cilium_node_l7_requests_total", "lost": "cilium_node_hubble_lost_events_total"}


def exported(state: ExporterState, detail: bool) -> dict[str, dict[tuple[str, ...], float]]:
    """What the exporter exposes (its real registry and exposition), keyed by label values."""
    m = Metrics(generate_latest(build_registry(state)).decode())
    keys = DETAIL_KEYS if detail else BASE_KEYS
    return {name: m.table(FAMILIES[name], *keys[name]) for name in FAMILIES}


def truth(server: HubbleServer, detail: bool) -> dict[str, dict[tuple[str, ...], float]]:
    snap = server.truth.snapshot()
    counters = ({"drops": snap.drops_detail, "verdicts": snap.verdicts_detail, "l7": snap.l7_detail}
                if detail else {"drops": snap.drops, "verdicts": snap.verdicts, "l7": snap.l7_requests})
    out = {name: {tuple(k): float(v) for k, v in c.items() if v} for name, c in counters.items()}
    out["lost"] = {(k,): float(v) for k, v in snap.lost.items() if v}
    return out


def wait_exact(state: ExporterState, server: HubbleServer, detail: bool = False) -> dict[str, Any]:
    """Wait until the exposition equals the ground truth; on timeout fail with the difference."""
    try:
        wait_for(lambda: exported(state, detail) == truth(server, detail), timeout=30, interval=0.1)
    except AssertionError:
        want, got = truth(server, detail), exported(state, detail)
        diff = {n: {k: (want[n].get(k), got[n].get(k)) for k in set(want[n]) | set(got[n])
                    if want[n].get(k) != got[n].get(k)} for n in want}
        raise AssertionError(f"exporter differs from the ground truth (truth, exported): {diff}") from None
    return truth(server, detail)


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


@pytest.mark.parametrize("labels", [False, True], ids=["base", "all-labels"])
@pytest.mark.parametrize("minor", sorted(RELEASES))
def test_release_matrix(tmp_path: Path, minor: int, labels: bool) -> None:
    server = HubbleServer(socket_path=str(tmp_path / "hubble.sock"), version=RELEASES[minor],
                          follow_backlog=0).start()
    source, state = start_source(f"unix://{tmp_path}/hubble.sock", *(["--extra-labels", ALL_LABELS] if labels else []))
    try:
        wait_for(lambda: state.hubble_gap.connected)
        for _ in range(2):
            emit_mix(server, 8)
        want = wait_exact(state, server, detail=labels)
        assert server.truth.snapshot().crashes == 0 and server.stats["crashes"] == 0  # no agent died
        assert state.health["hubble"].errors["rejected"] == 0  # every release accepted the request
        assert server.stats["masked_getflows"] == (0 if minor == 14 else server.stats["getflows_calls"])
        assert state.datapath.events["other"] == 0  # the whitelist kept traces away
        base = truth(server, detail=False)
        assert base["l7"][("http", "POST", "ingress", "dropped")] == 16  # the FORWARDED 403 is not a request
        assert base["l7"][("dns", "", "egress", "dropped")] == 16
        assert base["l7"][("kafka", "", "ingress", "forwarded")] == 32  # two topics: two requests
        assert ("REASON_250", "ingress") in base["drops"]
        if labels:
            policies = {k[4] for k in want["verdicts"]}
            allowed = {p for p in policies if "/allow-" in p}
            assert ("default/deny-all" in policies) == (minor >= 16)  # *_denied_by from 1.16
            assert bool(allowed) == (minor >= 15)  # *_allowed_by from 1.15
            assert {k[2] for k in want["drops"]} == {"tcp", "udp"}
    finally:
        source.stop()
        server.stop()


def test_a_refused_mask_falls_back_once_to_no_mask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exporter that sends 1.15 a mask naming *_denied_by (fields 1.15 lacks) gets UNKNOWN 'invalid
    fieldmask' (cilium_node_simulator.fieldmask, "Validation"); it retries once without a mask, says so in
    source_errors_total{reason="rejected"}, never loops on the refused request, and then counts exactly."""
    old_plan = MaskPlan("experimental", BASE_MASK + ALLOWED_BY_MASK + DENIED_BY_MASK)
    monkeypatch.setattr(hubble_stream, "mask_plan", lambda version, labels: old_plan)
    server = HubbleServer(socket_path=str(tmp_path / "hubble.sock"), version=RELEASES[15], follow_backlog=0).start()
    source, state = start_source(f"unix://{tmp_path}/hubble.sock", "--extra-labels", ALL_LABELS)
    try:
        wait_for(lambda: state.hubble_gap.connected)
        emit_mix(server, 6)
        wait_exact(state, server, detail=True)
        calls = server.stats["getflows_calls"]
        emit_mix(server, 6)
        wait_exact(state, server, detail=True)
        health = state.health["hubble"]
        assert health.errors["rejected"] == 1 and sum(health.errors.values()) == 1
        assert server.stats["getflows_calls"] == calls == 2 and server.stats["masked_getflows"] == 0
        assert state.hubble_gap.reconnects == 0 and server.stats["crashes"] == 0
    finally:
        source.stop()
        server.stop()


def test_server_restart_mid_stream_resumes_without_double_count(tmp_path: Path) -> None:
    sock = tmp_path / "hubble.sock"
    server = HubbleServer(socket_path=str(sock), follow_backlog=0).start()
    source, state = start_source(f"unix://{sock}")
    try:
        wait_for(lambda: state.hubble_gap.connected)
        emit_mix(server, 10)
        wait_exact(state, server)
        server.stop()  # graceful: UNAVAILABLE trailers, like an agent shutting down
        wait_for(lambda: not state.hubble_gap.connected)
        server.start()
        wait_for(lambda: state.hubble_gap.connected and state.hubble_gap.reconnects == 1)
        emit_mix(server, 5)
        wait_exact(state, server)
        assert state.hubble_gap.disconnected_seconds() > 0
    finally:
        source.stop()
        server.stop()


def _tls_files(tmp_path: Path) -> dict[str, str]:
    ca = trustme.CA()
    server_cert = ca.issue_cert("sim-1.default.hubble-grpc.cilium.io")
    client_cert = ca.issue_cert("cilium-node-exporter")
    paths = {}
    for name, blob in (("ca.pem", ca.cert_pem), ("server.pem", server_cert.cert_chain_pems[0]),
                       ("server.key", server_cert.private_key_pem), ("client.pem", client_cert.cert_chain_pems[0]),
                       ("client.key", client_cert.private_key_pem)):
        blob.write_to_path(str(tmp_path / name))
        paths[name] = str(tmp_path / name)
    return paths


def test_mtls_over_tcp(tmp_path: Path) -> None:
    paths = _tls_files(tmp_path)
    tls = TLSConfig(cert=paths["server.pem"], key=paths["server.key"], client_ca=paths["ca.pem"])
    server = HubbleServer(tcp=("127.0.0.1", 0), tls=tls, follow_backlog=0).start()
    address = f"127.0.0.1:{server.tcp_port}"
    name = ("--hubble-tls-server-name", "sim-1.default.hubble-grpc.cilium.io")
    good, good_state = start_source(address, "--hubble-tls-ca", paths["ca.pem"], "--hubble-tls-cert",
                                    paths["client.pem"], "--hubble-tls-key", paths["client.key"], *name)
    no_client_cert, bad_state = start_source(address, "--hubble-tls-ca", paths["ca.pem"], *name)
    try:
        wait_for(lambda: good_state.hubble_gap.connected)
        emit_mix(server, 3)
        wait_exact(good_state, server)
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


