"""Abuse by the peers the exporter reads (issue 17, rows 1 and 6-11): a kubelet, API server or agent
endpoint (or whatever answers at their address) sending what no real one would, against the real
exporter process. The bound: a counted error, nothing stale served, peak RSS under the chart's 192Mi,
every scrape within its source timeout (plus scheduling slack), no secret in the logs.
"""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.config import parse_args
from cilium_node_exporter.sources import apiserver
from cilium_node_exporter.sources.apiserver import ApiServerSource
from cilium_node_exporter.sources.k8s_http import Endpoint, bearer_from_file
from tests.support.cluster import Cluster
from tests.support.evil import EvilServer, answer, dripping
from tests.support.paths import DATA
from tests.support.procs import Exporter, Metrics

LIMIT = 192 * 2**20
MiB = 2**20
UP, ERRORS = "cilium_node_exporter_source_up", "cilium_node_exporter_source_errors_total"
WORKING_SET = "cilium_node_agent_memory_working_set_bytes"
CACHE = 1.05


def summary(node: str = "node-a", working_set: int = 300 * MiB) -> bytes:
    return json.dumps({"node": {"nodeName": node}, "pods": [{
        "podRef": {"name": "cilium-x", "namespace": "kube-system", "uid": "u1"},
        "containers": [{"name": "cilium-agent", "startTime": "2026-06-26T10:14:32Z",
                        "memory": {"workingSetBytes": working_set, "availableBytes": MiB}}]}]}).encode()


class Switchable:
    """A responder the test changes between scrapes."""

    def __init__(self, respond) -> None:  # type: ignore[no-untyped-def]
        self.respond = respond

    def __call__(self, sock) -> None:  # type: ignore[no-untyped-def]
        self.respond(sock)


@pytest.fixture
def kubelet() -> Iterator[tuple[EvilServer, Switchable]]:
    switch = Switchable(answer(summary()))
    server = EvilServer(switch)
    yield server, switch
    server.close()


def kubelet_exporter(tmp: Path, server: EvilServer, *flags: str) -> Exporter:
    return Exporter(tmp, "--sources=kubelet", f"--kubelet-address={server.url()}", "--kubelet-token-file=",
                    "--kubelet-timeout=1s", *flags)


def report(row: str, **figures: object) -> None:
    print(f"\nABUSE {row}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def errors(m: Metrics, source: str) -> dict[str, float]:
    return {dict(k)["reason"]: v for k, v in m.series(ERRORS, source=source).items() if v}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


# --- row 1: IPv6 node addresses -----------------------------------------------------------------------

def test_row1_ipv6_node_ip_reaches_kubelet_and_agent_over_ipv6(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "c", agent=True, host="::1")
    try:
        port_k, port_a = cluster.kubelet.port, cluster.agent.port
        flags = [f for f in cluster.flags if not f.startswith(("--kubelet-address", "--agent-metrics-address"))]
        with Exporter(tmp_path, *flags, "--sources=kubelet,agent", f"--kubelet-address=https://$NODE_IP:{port_k}",
                      f"--agent-metrics-address=http://$NODE_IP:{port_a}/metrics", env={"NODE_IP": "::1"},
                      host="::1") as exp:
            m = exp.wait_metrics(lambda m: m.value(UP, source="kubelet") == 1 and m.value(UP, source="agent") == 1,
                                 what="kubelet and agent up over IPv6")
            assert m.value(WORKING_SET) > 0
            assert "https://[::1]:" in exp.log() or cluster.kubelet.requests > 0
    finally:
        cluster.close()


def test_row1_an_unusable_url_is_a_counted_connect_error(tmp_path: Path) -> None:
    with Exporter(tmp_path, "--sources=kubelet,agent", "--kubelet-address=https://fd00::5:10250",
                  "--kubelet-insecure-skip-verify", "--kubelet-token-file=",
                  "--agent-metrics-address=http://fd00::5:9962/metrics") as exp:
        m = exp.wait_metrics(lambda m: m.value(UP, source="kubelet") == 0 and m.value(UP, source="agent") == 0)
        time.sleep(CACHE)
        m = exp.scrape()
        assert errors(m, "kubelet") == {"connect": 2} and errors(m, "agent") == {"connect": 2}
        assert "Traceback" not in exp.log() and exp.log_count("invalid URL") == 2  # one line per problem


# --- rows 6, 7, 11: kubelet documents ----------------------------------------------------------------

NESTED = b"[" * 200_000 + b"]" * 200_000
WRONG_SHAPE = json.dumps({"node": {"nodeName": "node-a"}, "pods": [{"podRef": {"namespace": "kube-system"},
                                                                     "containers": 5}]}).encode()


@pytest.mark.parametrize(("body", "reason"), [(NESTED, "decode"), (WRONG_SHAPE, "protocol"),
                                              (summary(node="some-other-node", working_set=999 * MiB), "protocol")],
                         ids=["row6-nested", "row6-containers-5", "row11-other-node"])
def test_rows_6_11_a_bad_summary_drops_the_value_and_counts(tmp_path: Path, kubelet, body: bytes,
                                                            reason: str) -> None:
    server, switch = kubelet
    with kubelet_exporter(tmp_path, server) as exp:
        m = exp.wait_metrics(lambda m: m.value(UP, source="kubelet") == 1, what="a good summary first")
        assert m.value(WORKING_SET) == 300 * MiB
        switch.respond = answer(body)
        time.sleep(CACHE)
        m = exp.scrape()
        assert m.value(UP, source="kubelet") == 0
        assert errors(m, "kubelet") == {reason: 1}
        assert not m.has(WORKING_SET), "a stale or foreign value is served"
        assert "Traceback" not in exp.log()
        if b"some-other-node" in body:
            assert exp.log_count("'some-other-node', not this node 'node-a'") == 1


@pytest.mark.parametrize(("size", "what"), [(16 * MiB, "larger than"), (4 * MiB - 4096, "JSON values")],
                         ids=["16MiB", "under-the-byte-cap"])
def test_row7_amplifying_kubelet_body_is_refused_within_memory(tmp_path: Path, kubelet, size: int,
                                                               what: str) -> None:
    server, switch = kubelet
    body = b"[" + b"{}," * (size // 3 - 1) + b"{}]"
    switch.respond = answer(body, chunked=True)
    with kubelet_exporter(tmp_path, server) as exp:
        m = exp.wait_metrics(lambda m: m.value(UP, source="kubelet") == 0)
        assert sum(errors(m, "kubelet").values()) >= 1 and exp.log_count(what) == 1
        peak = exp.peak_rss_bytes()
    report(f"row 7 (kubelet: {size / MiB:.0f} MiB of {{}})", peak_rss_mib=round(peak / MiB, 1))
    assert peak < LIMIT


def test_row7_amplifying_api_server_list_is_refused_within_memory(tmp_path: Path) -> None:
    body = b'{"kind":"PodList","items":[' + b"{}," * (8 * MiB // 3) + b'{}]}'
    server = EvilServer(answer(body, chunked=True))
    try:
        with Exporter(tmp_path, "--sources=apiserver", f"--apiserver-address={server.url()}",
                      "--apiserver-token-file=", "--envoy=false") as exp:  # one list to watch
            m = exp.wait_metrics(lambda m: m.value(UP, source="apiserver") == 0)
            assert set(errors(m, "apiserver")) == {"protocol"} and exp.log_count("larger than") == 1  # retries: >= 1
            time.sleep(2.5)  # a retry or two (backoff 1 s, 2 s): memory does not grow per retry
            peak = exp.peak_rss_bytes()
            retries = sum(errors(exp.scrape(), "apiserver").values())
    finally:
        server.close()
    report("row 7 (API server: 8 MiB list of {})", peak_rss_mib=round(peak / MiB, 1), failed_lists=retries)
    assert peak < LIMIT


# --- row 8: the agent endpoint ----------------------------------------------------------------------

def _wanted_lines(total: int) -> Iterator[bytes]:
    yield b"# TYPE cilium_drop_count_total counter\n"
    line = b'cilium_drop_count_total{direction="INGRESS",reason="Policy denied"} 1\n'
    block = line * (65536 // len(line))
    for _ in range(total // len(block)):
        yield block


def _one_long_line(total: int) -> Iterator[bytes]:
    yield b"# TYPE cilium_drop_count_total counter\ncilium_drop_count_total{reason=\""
    block = b"a" * 65536
    for _ in range(total // len(block)):
        yield block


@pytest.mark.parametrize(("body", "label"), [(_wanted_lines, "60 MiB of wanted lines"),
                                             (_one_long_line, "one 30 MiB line")], ids=["wanted", "long-line"])
def test_row8_agent_endpoint_cannot_exhaust_memory_or_cpu(tmp_path: Path, body, label: str) -> None:
    size = 60 * MiB if body is _wanted_lines else 30 * MiB
    server = EvilServer(answer(body(size), content_type="text/plain", close=True))
    try:
        with Exporter(tmp_path, "--sources=agent", f"--agent-metrics-address={server.url(path='/metrics')}",
                      "--agent-timeout=5s") as exp:
            cpu0 = cpu_seconds(exp.pid)
            start = time.monotonic()
            m = exp.scrape(timeout=20)
            took = time.monotonic() - start
            cpu = cpu_seconds(exp.pid) - cpu0
            peak = exp.peak_rss_bytes()
    finally:
        server.close()
    report(f"row 8 (agent: {label})", peak_rss_mib=round(peak / MiB, 1), scrape_s=round(took, 2),
           cpu_s=round(cpu, 2), up=m.value(UP, source="agent"), errors=errors(m, "agent"))
    assert peak < LIMIT and took < 5 + 2
    if body is _wanted_lines:
        assert m.value(UP, source="agent") == 0 and errors(m, "agent") == {"protocol": 1}
    else:  # the long line is skipped unread; the body has nothing else: no samples, but valid text
        assert m.value(UP, source="agent") == 1


# --- row 9: dripping peers ---------------------------------------------------------------------------

DRIPS = {
    "headers": dripping(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: " + b"a" * 100, 0.3),
    "chunk-size": lambda s: (s.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
                             dripping(b"1" * 100, 0.3)(s)),
    "close-body": lambda s: (s.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"),
                             dripping(summary()[:100] + b" " * 100, 0.3)(s)),
}


@pytest.mark.parametrize("kind", sorted(DRIPS))
@pytest.mark.parametrize("source", ["kubelet", "agent"])
def test_row9_a_dripping_peer_cannot_stretch_the_deadline(tmp_path: Path, kind: str, source: str) -> None:
    server = EvilServer(DRIPS[kind])
    flags = (["--sources=kubelet", f"--kubelet-address={server.url()}", "--kubelet-token-file=", "--kubelet-timeout=1s"]
             if source == "kubelet" else
             ["--sources=agent", f"--agent-metrics-address={server.url(path='/metrics')}", "--agent-timeout=1s"])
    try:
        with Exporter(tmp_path, *flags) as exp:
            start = time.monotonic()
            m = exp.scrape(timeout=30)
            took = time.monotonic() - start
    finally:
        server.close()
    report(f"row 9 ({source}, {kind} dripped 1 byte / 0.3 s, 1 s timeout)", scrape_s=round(took, 2))
    assert m.value(UP, source=source) == 0 and errors(m, source) == {"timeout": 1}
    assert took < 3.0, f"a 1 s timeout held the scrape {took:.1f} s"


# --- row 10: tokens -------------------------------------------------------------------------------------

def test_row10_a_token_with_an_inner_newline_is_refused_without_logging_it(tmp_path: Path, kubelet) -> None:
    server, _ = kubelet
    token = tmp_path / "token"
    token.write_text("first-half-SECRET\nsecond-half-SECRET\n")
    with Exporter(tmp_path, "--sources=kubelet", f"--kubelet-address={server.url()}", f"--kubelet-token-file={token}",
                  "--log-format=json", "--log-level=debug") as exp:
        m = exp.wait_metrics(lambda m: m.value(UP, source="kubelet") == 0)
        assert errors(m, "kubelet") == {"auth": 1}
        assert exp.log_count(f"token file {token} holds whitespace") == 1
        assert "SECRET" not in exp.log()
    assert server.connections == 0  # refused before connecting


def test_row10_a_bearer_token_never_goes_over_plain_http_to_another_host(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("abc")
    auth = bearer_from_file(str(token))
    assert Endpoint("http://10.1.2.3:10255", authorization=auth).cleartext_token_risk()
    assert Endpoint("http://[fd00::5]:10255", authorization=auth).cleartext_token_risk()
    assert Endpoint("http://kubelet.example:10255", authorization=auth).cleartext_token_risk()
    assert not Endpoint("http://127.0.0.1:10255", authorization=auth).cleartext_token_risk()
    assert not Endpoint("http://[::1]:10255", authorization=auth).cleartext_token_risk()
    assert not Endpoint("https://10.1.2.3:10250", authorization=auth).cleartext_token_risk()
    assert not Endpoint("http://10.1.2.3:10255").cleartext_token_risk()


# --- issue 23 rows 4 and 5: a scrape that fits its timeout; values that cannot break /metrics ----------------

def _scrape_with_timeout(exp: Exporter, timeout_header: str | None, limit: float = 30.0) -> tuple[int, float, str]:
    req = urllib.request.Request(exp.base + "/metrics")
    if timeout_header is not None:
        req.add_header("X-Prometheus-Scrape-Timeout-Seconds", timeout_header)
    start = time.monotonic()
    with urllib.request.urlopen(req, timeout=limit) as r:
        return r.status, time.monotonic() - start, r.read().decode()


def test_i23_row4_two_slow_sources_fit_the_scrapers_timeout_and_show_as_down(tmp_path: Path) -> None:
    """Kubelet and agent both drip their headers, each with its default 5 s timeout: read at the same time and
    cut at the scrape's budget (Prometheus' X-Prometheus-Scrape-Timeout-Seconds 3 s minus the 0.5 s offset), the
    scrape answers in time with both sources down (timeout); six scrapes 0.3 s apart share the reads."""
    kubelet = EvilServer(dripping(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: " + b"a" * 200, 0.3))
    agent = EvilServer(dripping(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Slow: " + b"a" * 200, 0.3))
    healthy = EvilServer(answer(summary()))
    try:
        with Exporter(tmp_path, "--sources=kubelet", f"--kubelet-address={healthy.url()}", "--kubelet-token-file=",
                      name="idle") as exp:
            idle = [_scrape_with_timeout(exp, "3")[1] for _ in range(3)]
        with Exporter(tmp_path, "--sources=kubelet,agent", f"--kubelet-address={kubelet.url()}",
                      "--kubelet-token-file=", f"--agent-metrics-address={agent.url(path='/metrics')}") as exp:
            status, one, body = _scrape_with_timeout(exp, "3")
            m = Metrics(body)
            results: list[tuple[int, float, str]] = []
            threads = []
            for _ in range(6):
                threads.append(threading.Thread(target=lambda: results.append(_scrape_with_timeout(exp, "3"))))
                threads[-1].start()
                time.sleep(0.3)
            for t in threads:
                t.join(30)
            time.sleep(1.1)  # past the 1 s cache
            no_header = _scrape_with_timeout(exp, None)[1]  # --scrape-timeout 10s: budget 9.5 s > the 5 s timeouts
            log = exp.log()
    finally:
        for server in (kubelet, agent, healthy):
            server.close()
    times = [t for _, t, _ in results]
    report("i23 row 4 (kubelet and agent dripping, 5 s timeouts, scraper timeout 3 s)", idle_s=round(max(idle), 3),
           one_scrape_s=round(one, 2), six_scrapes_s=[round(t, 2) for t in times], no_header_s=round(no_header, 2),
           budget_s=2.5, one_over_budget=round(one / 2.5, 2))
    assert status == 200 and one < 3.0, one
    assert m.value(UP, source="kubelet") == 0 and m.value(UP, source="agent") == 0
    assert errors(m, "kubelet") == {"timeout": 1} and errors(m, "agent") == {"timeout": 1}
    assert len(results) == 6 and all(s == 200 for s, _, _ in results) and max(times) < 3.0, times
    assert 4.5 < no_header < 5.0 + 2.0  # both 5 s reads at once, not one after the other
    assert "scrape's budget" in log


class UnixJson:
    """An HTTP server on a unix socket answering GETs of ``paths`` with their JSON bodies (the agent API)."""

    def __init__(self, path: str, paths: dict[str, bytes]) -> None:
        bodies = paths

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = bodies.get(self.path.split("?")[0], b"{}")
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

            def get_request(self):  # type: ignore[no-untyped-def]
                request, _ = super().get_request()
                return request, ("unix", 0)  # BaseHTTPRequestHandler wants a (host, port) peer

        self.server = Server(path, Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("where", ["kubelet", "apiserver", "agent-api"])
def test_i23_row5_a_401_digit_integer_is_dropped_and_counted_and_the_rest_served(tmp_path: Path, where: str) -> None:
    """A kubelet working set, an API server restartCount or the agent API's BPFEventsDefaultRateLimit of 10**400:
    /metrics answers 200, the value is left out with a counted error, every other series is served."""
    big = 10**400
    if where == "kubelet":
        body = summary(working_set=big)
        server = EvilServer(answer(body))
        flags = ["--sources=kubelet", f"--kubelet-address={server.url()}", "--kubelet-token-file="]
    elif where == "apiserver":
        pod = {"metadata": {"name": "cilium-x", "namespace": "kube-system", "uid": "u1"},
               "spec": {"containers": [{"name": "cilium-agent"}]},
               "status": {"containerStatuses": [{"name": "cilium-agent", "restartCount": big}]}}
        server = EvilServer(answer(json.dumps({"kind": "PodList", "metadata": {"resourceVersion": "1"},
                                               "items": [pod]}).encode()))
        flags = ["--sources=apiserver", f"--apiserver-address={server.url()}", "--apiserver-token-file=",
                 "--envoy=false"]
    else:
        config = json.loads((DATA / "cilium-agent" / "v1.17-get-config.json").read_text())
        config["status"]["daemonConfigurationMap"]["BPFEventsDefaultRateLimit"] = big
        health = (DATA / "cilium-agent" / "v1.16-get-healthz-brief.json").read_bytes()
        server = UnixJson(str(tmp_path / "cilium.sock"), {"/v1/config": json.dumps(config).encode(),
                                                          "/v1/healthz": health})
        flags = ["--sources=settings", "--settings-from=agent-api", f"--agent-api-socket={tmp_path}/cilium.sock"]
    try:
        with Exporter(tmp_path, *flags) as exp:
            source = {"agent-api": "settings"}.get(where, where)
            m = exp.wait_metrics(lambda m: source in dict(next(iter(m.series(UP, source=source)), {})).values(),
                                 what=f"{source} attempted")
            status, _ = exp.get("/metrics")
            m = exp.scrape()
            log = exp.log()
    finally:
        server.close()
    report(f"i23 row 5 ({where}: 10**400)", status=status, up=m.value(UP, source=source), errors=errors(m, source))
    assert status == 200 and m.has("cilium_node_exporter_build_info") and m.has("process_resident_memory_bytes")
    assert sum(errors(m, source).values()) >= 1 and errors(m, source).get("protocol", 0) >= 1
    assert "Traceback" not in log
    if where == "agent-api":  # the rest of the reading stands: the setting alone is unknown
        assert m.value(UP, source="settings") == 1 and not m.has("cilium_node_agent_events_rate_limit")
        assert m.has("cilium_node_agent_notifications_enabled")
    else:
        assert m.value(UP, source=source) == 0
        assert not m.has(WORKING_SET) and not m.has("cilium_node_agent_restarts_total")


def test_a_watch_announcing_thousands_of_pods_keeps_a_bounded_table_and_short_labels() -> None:
    """security.md N14: a (TLS-verified but misbehaving) API server streams ADDED events with new UIDs and a
    100 KB termination reason: the watch keeps at most MAX_PODS pods and the labels are cut."""
    cfg = parse_args(["--sources=apiserver", "--node-name=node-a", "--apiserver-address=http://127.0.0.1:9",
                      "--apiserver-token-file=", "--envoy=false"], environ={})
    state = ExporterState(sources=cfg.sources.names, envelope=cfg.memory_envelope)
    watch = ApiServerSource(cfg, state).watches["agent"]
    start = time.monotonic()
    for i in range(1000):
        pod = {"metadata": {"name": f"cilium-{i}", "namespace": "kube-system", "uid": f"uid-{i}",
                            "creationTimestamp": f"2026-12-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
                            "resourceVersion": str(i)},
               "spec": {"containers": [{"name": "cilium-agent"}]},
               "status": {"containerStatuses": [{"name": "cilium-agent", "restartCount": i, "lastState": {
                   "terminated": {"reason": "R" * 20_000, "finishedAt": "2026-12-01T00:00:00Z"}}}]}}
        watch._event(json.dumps({"type": "ADDED", "object": pod}).encode(), str(i))
    took = time.monotonic() - start
    report("N14 (1000 pods announced by a watch)", table=len(watch._pods), seconds=round(took, 2))
    assert len(watch._pods) <= apiserver.MAX_PODS
    chosen = state.pods["agent"]
    assert chosen.name == "cilium-999" and len(chosen.last_terminated_reason or "") == apiserver.MAX_LABEL


def test_i23_row5_a_value_past_the_parsers_is_left_out_and_counted_by_the_collector() -> None:
    """The last line: whatever reaches the state, a sample /metrics cannot carry costs that sample only."""
    from cilium_node_exporter.aggregation.containers import AGENT, ContainerMemory
    from tests.support.cluster import scrape

    state = ExporterState(sources=("kubelet",), envelope=(1, 2))
    state.memory = {AGENT: ContainerMemory("kube-system", "cilium-x", "u1", working_set=10**400, rss=5,
                                           usage=float("nan"), limit=7)}
    m = scrape(state)
    assert not m.has(WORKING_SET) and not m.has("cilium_node_agent_memory_usage_bytes")
    assert m.value("cilium_node_agent_memory_rss_bytes") == 5 and m.value("cilium_node_agent_memory_limit_bytes") == 7
    dropped = "cilium_node_exporter_samples_dropped_total"
    assert m.value(dropped, family=WORKING_SET) == 1
    assert m.value(dropped, family="cilium_node_agent_memory_usage_bytes") == 1
