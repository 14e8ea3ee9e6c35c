"""Abuse of the HTTP endpoint (issue 17, rows 1-5 and 12-13), against the real exporter process.

Each test does what a peer on the node network could do and asserts the bound: peak RSS (VmHWM) under
the chart's 192Mi limit, /metrics still answering within a scrape budget while the abuse runs, SIGTERM
exiting within a second, logs that stay JSON. The figures are printed (``pytest -s``) and quoted in
docs/reliability.md.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import http.client
import json
import os
import resource
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest
import trustme

from cilium_node_exporter.exposition import http as http_module
from cilium_node_exporter.exposition import web_auth
from cilium_node_simulator.flood import Flood
from tests.support.evil import connect, reset
from tests.support.procs import Exporter, Metrics, free_port
from tests.support.protected import ProtectedExporter

LIMIT = 192 * 2**20  # the chart's resources.limits.memory
BUDGET = 5.0  # a scrape must answer within this while the abuse runs (Prometheus' default timeout is 10 s)
MiB = 2**20


def hubble_only(tmp: Path, *flags: str, host: str = "127.0.0.1", **kw: object) -> Exporter:
    return Exporter(tmp, "--sources=hubble", f"--hubble-address=unix://{tmp}/absent.sock", *flags, host=host,
                    **kw)  # type: ignore[arg-type]


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[Exporter]:
    with hubble_only(tmp_path) as exp:
        yield exp


def timed_scrape(exp: Exporter, timeout: float = 15.0) -> float:
    start = time.monotonic()
    status, body = exp.get("/metrics", timeout=timeout)
    took = time.monotonic() - start
    assert status == 200 and "cilium_node_exporter_build_info" in body
    return took


def raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, wanted + 200))
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return min(wanted, target - 200)


def report(row: str, **figures: object) -> None:
    print(f"\nABUSE {row}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


# --- row 1: IPv6 and dual-stack listen addresses ---------------------------------------------------

def test_row1_listens_on_ipv6_loopback(tmp_path: Path) -> None:
    with hubble_only(tmp_path, host="::1") as exp:
        assert exp.base.startswith("http://[::1]:")
        timed_scrape(exp)
        assert exp.log_count(r"listening on \[::1\]:") == 1


def test_row1_empty_host_is_dual_stack(tmp_path: Path) -> None:
    port = free_port()
    with _raw_exporter(tmp_path, f":{port}", ()) as (_, log):
        for base in (f"http://127.0.0.1:{port}", f"http://[::1]:{port}"):
            with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
                assert r.status == 200, base
        assert f"listening on [::]:{port}" in log()


# --- rows 2-5: header memory, idle connections, shutdown, backlog ----------------------------------

def _big_header_request(port: int, results: list[str]) -> None:
    """99 headers of 64 KB (6 MiB), the last CRLF never sent."""
    try:
        with connect("127.0.0.1", port, timeout=10) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            for i in range(99):
                s.sendall(b"X-Pad-%d: %s\r\n" % (i, b"a" * 65000))
            results.append(s.recv(200).split(b"\r\n", 1)[0].decode())
    except OSError as exc:  # the server answered 431 and closed while we were still sending
        results.append(type(exc).__name__)


def test_row2_headers_over_the_budget_get_431(exporter: Exporter) -> None:
    with connect("127.0.0.1", exporter.port, timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 17 * 1024 + b"\r\n\r\n")
        assert s.recv(100).split(b" ")[1] == b"431"


def test_row2_huge_headers_cannot_exhaust_memory(exporter: Exporter) -> None:
    results: list[str] = []
    threads = [threading.Thread(target=_big_header_request, args=(exporter.port, results)) for _ in range(16)]
    for t in threads:
        t.start()
    latency = timed_scrape(exporter)
    for t in threads:
        t.join(30)
    peak = exporter.peak_rss_bytes()
    report("row 2 (16 x 6 MiB of headers at once)", peak_rss_mib=round(peak / MiB, 1),
           scrape_s=round(latency, 3), answers=sorted(set(results)))
    # 431, or a reset when the server closes while the client is still sending (TCP discards the answer)
    assert set(results) <= {"HTTP/1.0 431 Request Header Fields Too Large", "ConnectionResetError",
                            "BrokenPipeError"}, results
    assert peak < LIMIT and latency < BUDGET


def test_row3_thousands_of_idle_connections_cannot_lock_out_a_scrape(exporter: Exporter) -> None:
    wanted = raise_fd_limit(3000)
    idle: list[socket.socket] = []
    try:
        for i in range(wanted):
            try:
                s = connect("127.0.0.1", exporter.port, timeout=2)
            except OSError:
                break
            if i % 2:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # a partial request (slowloris)
            idle.append(s)
        latencies = [timed_scrape(exporter) for _ in range(3)]
        for s in idle[::3]:  # keep dripping into the partial requests
            with contextlib.suppress(OSError):
                s.sendall(b"a")
        latencies.append(timed_scrape(exporter))
        peak, threads = exporter.peak_rss_bytes(), exporter.threads()
    finally:
        for s in idle:
            s.close()
    report(f"row 3 ({len(idle)} idle/slowloris connections)", peak_rss_mib=round(peak / MiB, 1), threads=threads,
           scrape_s=[round(x, 3) for x in latencies])
    assert len(idle) >= min(wanted, 1000)
    assert peak < LIMIT and max(latencies) < BUDGET
    assert threads < 20  # no thread per connection
    assert exporter.log_count("the longest-waiting ones are closed") >= 1


def test_row3_a_dripping_request_is_cut_at_the_deadline(exporter: Exporter) -> None:
    with connect("127.0.0.1", exporter.port, timeout=20) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\n")
        start = time.monotonic()
        closed = None
        for _ in range(40):  # one header byte every 0.5 s: always active, never complete
            try:
                s.sendall(b"X")
                s.settimeout(0.5)
                if s.recv(100) == b"":
                    closed = time.monotonic() - start
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = time.monotonic() - start
                break
    report("row 3 (one request dripped 1 byte / 0.5 s)", closed_after_s=closed)
    assert closed is not None and closed < 15, "a dripping request held its connection past the deadline"


@pytest.mark.parametrize("connections", [1, 2000])
def test_row4_sigterm_exits_within_a_second_whatever_the_clients_do(tmp_path: Path, connections: int) -> None:
    raise_fd_limit(connections)
    exp = hubble_only(tmp_path)
    held: list[socket.socket] = []
    try:
        for i in range(connections):
            s = connect("127.0.0.1", exp.port, timeout=2)
            if i % 2:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost")
            held.append(s)
        time.sleep(0.3)
        start = time.monotonic()
        exp.signal(signal.SIGTERM)
        code = exp.proc.wait(10)
        took = time.monotonic() - start
    finally:
        for s in held:
            s.close()
        exp.stop()
    report(f"row 4 (SIGTERM with {connections} open connection(s))", exit_s=round(took, 3), code=code)
    assert code == 0 and took < 1.0


def test_row5_200_simultaneous_scrapes_are_all_answered(exporter: Exporter) -> None:
    barrier = threading.Barrier(200)
    latencies: list[float] = []
    failures: list[str] = []

    def scrape() -> None:
        barrier.wait(30)
        start = time.monotonic()
        try:
            status, _ = exporter.get("/metrics", timeout=30)
            assert status == 200
            latencies.append(time.monotonic() - start)
        except Exception as exc:  # reported below
            failures.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=scrape) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    latencies.sort()
    report("row 5 (200 scrapes at once)", p50_s=round(statistics.median(latencies), 3),
           p99_s=round(latencies[int(len(latencies) * 0.99) - 1], 3), max_s=round(latencies[-1], 3),
           failures=len(failures), peak_rss_mib=round(exporter.peak_rss_bytes() / MiB, 1))
    assert not failures and len(latencies) == 200
    assert latencies[-1] < BUDGET * 2  # every one answered within Prometheus' default scrape timeout
    assert exporter.log_count("Task queue depth") == 0  # peers cannot choose how much the exporter logs


# --- row 12: resets mid-scrape, JSON logs --------------------------------------------------------------

def test_row12_clients_resetting_mid_scrape_leave_json_logs(tmp_path: Path) -> None:
    with hubble_only(tmp_path, "--log-format=json", "--log-level=debug") as exp:
        for _ in range(50):
            s = connect("127.0.0.1", exp.port)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            reset(s)
        timed_scrape(exp)
        lines = exp.log().splitlines()
    bad = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            bad.append(line)
    report("row 12 (50 resets mid-scrape, json logs)", log_lines=len(lines), non_json=len(bad))
    assert lines and not bad, bad[:5]
    assert not any("Traceback" in line for line in lines)


# --- row 13: gzip, name[], OPTIONS, other methods, no version in Server ------------------------------

def test_row13_gzip_name_filter_options_and_405(exporter: Exporter) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=10)
    conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
    resp = conn.getresponse()
    raw = resp.read()
    assert resp.getheader("Content-Encoding") == "gzip" and resp.getheader("Server") is None
    plain = gzip.decompress(raw).decode()
    assert "cilium_node_exporter_build_info" in plain and len(raw) < len(plain) / 2
    conn.request("GET", "/metrics?name[]=cilium_node_exporter_build_info&name[]=process_open_fds")
    body = conn.getresponse().read().decode()
    names = {line.split("{")[0].split(" ")[0] for line in body.splitlines() if not line.startswith("#")}
    assert names == {"cilium_node_exporter_build_info", "process_open_fds"}, body
    conn.request("OPTIONS", "/metrics")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 200 and "GET" in resp.getheader("Allow", "")
    for method in ("POST", "PUT", "DELETE", "TRACE"):
        conn.request(method, "/metrics", body=b"")
        resp = conn.getresponse()
        resp.read()
        assert resp.status in (405, 413), (method, resp.status)  # 413: no request body is accepted at all
    conn.request("GET", "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    resp = conn.getresponse()
    assert resp.getheader("Content-Type").startswith("application/openmetrics-text")
    assert resp.read().decode().endswith("# EOF\n")
    conn.close()


# --- a protectable endpoint: TLS, client certificates, basic auth -------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca, client_ca = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "::1", "localhost")
    client = client_ca.issue_cert("prometheus")
    files = {"ca": d / "ca.pem", "cert": d / "cert.pem", "key": d / "key.pem", "client_ca": d / "client-ca.pem",
             "client": d / "client.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    client_ca.cert_pem.write_to_path(str(files["client_ca"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(files["client"]))
    return files


def basic(user: str, password: str | bytes) -> str:
    raw = password if isinstance(password, bytes) else password.encode()
    return "Basic " + base64.b64encode(user.encode() + b":" + raw).decode()


def _get(url: str, ctx: ssl.SSLContext | None = None, auth: tuple[str, str] | None = None) -> int:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", basic(*auth))
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def web_config(path: Path, *, users: dict[str, str], cost: int = 4, tls: dict[str, Path] | None = None) -> Path:
    """An exporter-toolkit web configuration: basic_auth_users hashed at ``cost`` and, with ``tls`` (the pki
    fixture), HTTPS that requires client certificates."""
    lines = []
    if tls:
        lines += ["tls_server_config:", f"  cert_file: {tls['cert']}", f"  key_file: {tls['key']}",
                  "  client_auth_type: RequireAndVerifyClientCert", f"  client_ca_file: {tls['client_ca']}"]
    lines.append("basic_auth_users:")
    lines += [f"  {u}: {bcrypt.hashpw(p.encode(), bcrypt.gensalt(cost)).decode()}" for u, p in users.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_tls_with_client_certificates_and_basic_auth(tmp_path: Path, pki: dict[str, Path]) -> None:
    config = web_config(tmp_path / "web.yml", users={"prometheus": "s3cret"}, tls=pki)
    with ProtectedExporter(tmp_path, "--sources=hubble", f"--hubble-address=unix://{tmp_path}/absent.sock",
                           f"--web-config-file={config}") as exp:
        base = exp.https
        trusted = ssl.create_default_context(cafile=str(pki["ca"]))
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):  # no client certificate
            _get(base + "/healthz", trusted)
        mtls = ssl.create_default_context(cafile=str(pki["ca"]))
        mtls.load_cert_chain(str(pki["client"]))
        assert _get(base + "/healthz", mtls) == 200  # probes need no password
        assert _get(exp.health_url + "/healthz") == 200  # the kubelet's probe: plain HTTP, no certificate
        assert _get(base + "/metrics", mtls) == 401
        assert _get(base + "/metrics", mtls, ("prometheus", "wrong")) == 401
        assert _get(base + "/metrics", mtls, ("prometheus", "s3cret")) == 200
        assert _get(base + "/metrics", mtls, ("prometheus", "s3cret")) == 200  # cached, same answer
        with pytest.raises(urllib.error.URLError):  # a client that does not trust the server's CA
            _get(base + "/metrics", ssl.create_default_context())
        assert "s3cret" not in exp.log()


@contextlib.contextmanager
def _raw_exporter(tmp: Path, listen: str, flags: tuple[str, ...]) -> Iterator[tuple[int, Callable[[], str]]]:
    """The exporter on ``listen``, ready once it logs so (:class:`Exporter` probes plain HTTP on 127.0.0.1)."""
    log_path = tmp / "raw.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "cilium_node_exporter", f"--listen-address={listen}",
                                 "--sources=hubble", f"--hubble-address=unix://{tmp}/absent.sock", *flags],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "listening on" not in log_path.read_text():
            assert proc.poll() is None, log_path.read_text()
            time.sleep(0.05)
        yield proc.pid, log_path.read_text
    finally:
        proc.terminate()
        proc.wait(10)


# --- issue 23, rows 1-3: basic auth that cannot lock Prometheus out ---------------------------------------

def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def authed_scrape(exp: Exporter, auth: tuple[str, str], timeout: float = 15.0) -> tuple[int, float]:
    start = time.monotonic()
    status = _get(exp.base + "/metrics", auth=auth)
    return status, time.monotonic() - start


def test_i23_row1_wrong_passwords_from_64_connections_cannot_starve_scrapes(tmp_path: Path) -> None:
    """bcrypt cost 10 (Helm's htpasswd, Go's DefaultCost), 64 keep-alive connections guessing the password of the
    known user, each request a new guess (no cache helps the server)."""
    config = web_config(tmp_path / "web.yml", users={"prometheus": "right", "second": "other"}, cost=10)
    with ProtectedExporter(tmp_path, "--sources=hubble", f"--hubble-address=unix://{tmp_path}/absent.sock",
                           f"--web-config-file={config}") as exp:
        assert authed_scrape(exp, ("prometheus", "right"))[0] == 200  # verified once, then cached
        idle = [authed_scrape(exp, ("prometheus", "right"))[1] for _ in range(5)]
        guess = lambda n: (b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: " +  # noqa: E731
                           basic("prometheus", f"guess-{n}").encode() + b"\r\n\r\n")
        cpu0, t0 = cpu_seconds(exp.pid), time.monotonic()
        with Flood(exp.port, 64, guess) as flood:
            time.sleep(1.0)
            results = []
            for _ in range(8):
                results.append(authed_scrape(exp, ("prometheus", "right")))
                time.sleep(0.3)
            fresh = authed_scrape(exp, ("second", "other"))  # a credential not verified yet: one bcrypt now
        cores = (cpu_seconds(exp.pid) - cpu0) / (time.monotonic() - t0)
        attack_s = time.monotonic() - t0
        req = urllib.request.Request(exp.base + "/metrics", headers={"Authorization": basic("prometheus", "right")})
        with urllib.request.urlopen(req, timeout=15) as r:
            m = Metrics(r.read().decode())
    failures = {dict(k)["reason"]: v for k, v in m.series("cilium_node_exporter_web_auth_failures_total").items()}
    latencies = [t for _, t in results]
    report("i23 row 1 (64 connections guessing, bcrypt cost 10)", idle_p50_s=round(statistics.median(idle), 4),
           attack_p50_s=round(statistics.median(latencies), 4), attack_max_s=round(max(latencies), 3),
           ratio_p50=round(statistics.median(latencies) / statistics.median(idle), 1), fresh_credential=fresh,
           attacker_answers=dict(flood.statuses), exporter_cores=round(cores, 2), failures=failures)
    assert [s for s, _ in results] == [200] * 8 and max(latencies) < BUDGET, results
    assert fresh[0] == 200 and fresh[1] < BUDGET
    assert flood.statuses[429] > 0 and set(flood.statuses) <= {401, 429}
    # the guesses bcrypt ran: the attacker peer's burst, then PEER_RATE per second (plus slack for the clock)
    assert failures["wrong_password"] <= web_auth.PEER_BURST + web_auth.PEER_RATE * attack_s + 2, failures


def test_i23_row2_a_resalted_users_secret_keeps_prometheus_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Kubernetes Secret volume (``..data`` symlink swapped) re-written with the same password and a new salt,
    as every ``helm upgrade`` with Helm's htpasswd does; then a real password change."""
    secret = tmp_path / "secret"
    first = secret / "..2026_12_01"
    first.mkdir(parents=True)
    web_config(first / "web.yml", users={"prometheus": "right"}, cost=5)
    (secret / "..data").symlink_to(first.name)
    (secret / "web.yml").symlink_to("..data/web.yml")
    with ProtectedExporter(tmp_path, "--sources=hubble", f"--hubble-address=unix://{tmp_path}/absent.sock",
                           f"--web-config-file={secret / 'web.yml'}") as exp:
        assert authed_scrape(exp, ("prometheus", "right"))[0] == 200

        def swap(name: str, password: str) -> None:
            new = secret / name
            new.mkdir()
            web_config(new / "web.yml", users={"prometheus": password}, cost=5)
            (secret / "..data_tmp").symlink_to(new.name)
            os.replace(secret / "..data_tmp", secret / "..data")

        swap("..2026_12_02", "right")
        codes = []
        for _ in range(8):  # across the reload check (1 s)
            codes.append(authed_scrape(exp, ("prometheus", "right"))[0])
            time.sleep(0.3)
        swap("..2026_12_03", "rotated")
        time.sleep(1.5)
        after = authed_scrape(exp, ("prometheus", "right"))[0], authed_scrape(exp, ("prometheus", "rotated"))[0]
        reloads = exp.log_count("reloaded")
    report("i23 row 2 (users Secret re-salted, then rotated)", codes=codes, old_then_new_password=after)
    assert codes == [200] * 8 and after == (401, 200)
    assert reloads == 2


def test_i23_row3_passwords_over_72_bytes_are_401_without_tracebacks(tmp_path: Path) -> None:
    config = web_config(tmp_path / "web.yml", users={"prometheus": "right"}, cost=5)
    with ProtectedExporter(tmp_path, "--sources=hubble", f"--hubble-address=unix://{tmp_path}/absent.sock",
                           f"--web-config-file={config}", "--log-format=json") as exp:
        long = lambda n: (b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: " +  # noqa: E731
                          basic("prometheus", b"x" * 80 + str(n).encode()).encode() + b"\r\n\r\n")
        with Flood(exp.port, 20, long, source="127.0.0.3") as flood:
            time.sleep(2.0)
        assert authed_scrape(exp, ("prometheus", "right"))[0] == 200
        lines = exp.log().splitlines()
    report("i23 row 3 (20 connections, 80-byte passwords, 2 s)", answers=dict(flood.statuses), log_lines=len(lines))
    assert flood.statuses[401] > 0 and set(flood.statuses) == {401}
    assert not [line for line in lines if '"error"' in line or "Traceback" in line]


# --- issue 22: the connection cap and which connection makes room --------------------------------------

def test_the_cap_is_256_connections_and_the_longest_waiting_one_makes_room(exporter: Exporter) -> None:
    """Past 256 open connections, each new one closes the connection that has waited longest without a request:
    the first ones opened, in order, never the newest (a cap of 1024, or newest-first eviction, fails here)."""
    raise_fd_limit(400)
    opened: list[socket.socket] = []
    try:
        for _ in range(256):  # the documented cap (docs/reliability.md), not the constant: a change must fail here
            opened.append(connect("127.0.0.1", exporter.port, timeout=5))
        time.sleep(3 * http_module.EVICT_AFTER)  # every one of them has now waited long enough to be evicted
        extra = 20
        for _ in range(extra):
            opened.append(connect("127.0.0.1", exporter.port, timeout=5))
            time.sleep(2 * http_module.EVICT_AFTER)
        time.sleep(0.5)
        closed = [i for i, s in enumerate(opened) if _closed_by_peer(s)]
    finally:
        for s in opened:
            s.close()
    report("cap (256 + 20 connections)", closed=closed)
    assert closed == list(range(extra)), closed


def _closed_by_peer(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
