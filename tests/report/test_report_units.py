"""Fast checks of the report's pieces: periods, the series names against the rule pack, the CLI's errors."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alerts import generate as rules_generate
from cilium_node_exporter import cli
from cilium_node_exporter.mixin import names as mixin_names
from cilium_node_exporter.mixin.config import DEFAULTS as MIXIN_DEFAULTS
from cilium_node_exporter.report import period as P
from cilium_node_exporter.report import series
from tests.support.procs import free_port

NOW = datetime(2026, 11, 29, 21, 52, 49, tzinfo=UTC).timestamp()


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def test_month_is_the_calendar_month() -> None:
    p = P.resolve("2026-10", None, None, "28d", now=NOW)
    assert (p.start, p.end, p.hours, p.label) == (ts("2026-10-01"), ts("2026-11-01"), 31 * 24, "October 2026")


def test_last_month() -> None:
    p = P.resolve("last", None, None, "28d", now=NOW)
    assert (p.start, p.end, p.label) == (ts("2026-10-01"), ts("2026-11-01"), "October 2026")


def test_default_is_the_last_slo_period_in_whole_hours() -> None:
    p = P.resolve(None, None, None, "28d", now=NOW)  # the hour in progress is the last one
    assert p.end == ts("2026-11-29T22:00") and p.hours == 28 * 24 and p.label == "the last 28d"
    assert P.resolve(None, None, None, "7d", now=NOW).hours == 7 * 24


def test_from_to_and_a_month_in_progress() -> None:
    p = P.resolve(None, "2026-11-01", "2026-11-08T12:30:00Z", "28d", now=NOW)
    assert (p.start, p.end) == (ts("2026-11-01"), ts("2026-11-08T12:00"))
    running = P.resolve("2026-11", None, None, "28d", now=NOW)
    assert running.end == ts("2026-11-29T22:00") and running.label == "November 2026 so far"
    this_hour = P.resolve(None, "2026-11-29T21:40:00Z", None, "28d", now=NOW)  # a demo's few minutes
    assert (this_hour.start, this_hour.end) == (ts("2026-11-29T21:00"), ts("2026-11-29T22:00"))


@pytest.mark.parametrize(("args", "message"), [
    (("2026-13", None, None), "invalid month"),
    (("2026-10", "2026-10-01", None), "either --month or --from/--to"),
    ((None, "yesterday", None), "invalid time"),
    (("2027-01", None, None), "starts in the future"),
    ((None, "2026-11-01T10:10:00Z", "2026-11-01T10:50:00Z"), "at least one hour"),
])
def test_bad_periods(args: tuple, message: str) -> None:
    with pytest.raises(P.PeriodError, match=message):
        P.resolve(*args, "28d", now=NOW)


def test_series_names_are_the_rule_packs() -> None:
    """The report reads the names and defaults of the mixin the rule pack is generated from, and the pack
    records every one of them."""
    for name in ("FLOWS_SEEN", "DROPS_BY_REASON", "DROPS_UNEXPECTED", "POLICY_DENIED", "L7_DENIED", "LOST_BY_SOURCE",
                 "DATAPATH_DROPS_BY_REASON", "WORKING_SET", "ENVELOPE_UPPER",
                 "ENVELOPE_LOWER", "MEMORY_LIMIT", "MEMORY_ENVELOPE_ERROR", "SLO_OBJECTIVE", "SLO_DROP", "SLO_MEMORY"):
        assert getattr(series, name) == getattr(mixin_names, name), name
    for key, value in series.RULES_DEFAULTS.items():
        assert MIXIN_DEFAULTS[key] == value, key
    recorded = {r["record"] for g in rules_generate.build_groups() for r in g["rules"] if "record" in r}
    assert set(series.RECORDED) <= recorded
    # the drop SLI is read in packets from the pack's hourly count chain (issue 20), not from rates
    assert (series.DROP_ERRORS_COUNT, series.DROP_TRAFFIC_COUNT) == (
        "node:cilium_node_drop_slo_errors:increase1h_every1h", "node:cilium_node_drop_slo_traffic:increase1h_every1h")
    exprs = {q.key: q.expr for q in series.Series(series.RULES_DEFAULTS).node_hourly()}
    assert exprs["dp_errors"].startswith("sum by (cluster, node) (sum_over_time("
                                         "node:cilium_node_drop_slo_errors:increase1h_every1h[3599999ms]))")


def test_cluster_matcher_reaches_every_query() -> None:
    s = series.Series(series.RULES_DEFAULTS, cluster='prod "eu"')
    queries = s.node_hourly() + s.node_labelled_hourly() + s.cluster_hourly()
    for q in queries:
        for expr in (q.expr, q.fallback.expr if q.fallback else q.expr):
            assert 'cluster="prod \\"eu\\""' in expr, expr


def report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cilium_node_exporter", "report", *args], capture_output=True,
                          text=True, timeout=120)


def test_unreachable_prometheus() -> None:
    done = report("--prometheus-url", f"http://127.0.0.1:{free_port()}", "-o", "-")
    assert done.returncode == 3
    assert "cannot reach Prometheus at http://127.0.0.1:" in done.stderr and "Connection refused" in done.stderr


class _Deny(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        ok = self.headers.get("Authorization") == "Bearer good"
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status":"success","data":{"resultType":"vector","result":[]}}' if ok else b"{}")

    do_GET = do_POST

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def auth_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Deny)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_auth_failures(auth_server: str, tmp_path: Path) -> None:
    done = report("--prometheus-url", auth_server, "-o", "-")
    assert done.returncode == 3 and "answered 401" in done.stderr and "--bearer-token-file" in done.stderr
    token = tmp_path / "token"
    token.write_text("wrong\n")
    done = report("--prometheus-url", auth_server, "--bearer-token-file", str(token), "-o", "-")
    assert done.returncode == 3 and "the bearer token was rejected" in done.stderr
    token.write_text("good\n")  # accepted: this server has no data, so "no data in the period"
    done = report("--prometheus-url", auth_server, "--bearer-token-file", str(token), "-o", "-")
    assert done.returncode == 4 and "no cilium-node-exporter data" in done.stderr


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS server (a trustme CA's certificate for 127.0.0.1) that accepts the bearer token "good"."""
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Deny)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", ca_file
    finally:
        server.shutdown()
        server.server_close()


def test_tls(tls_server: tuple[str, Path], tmp_path: Path) -> None:
    url, ca_file = tls_server
    token = tmp_path / "token"
    token.write_text("good")
    done = report("--prometheus-url", url, "--bearer-token-file", str(token), "-o", "-")
    assert done.returncode == 3 and "TLS handshake with" in done.stderr and "--prometheus-ca" in done.stderr
    for flags in (("--prometheus-ca", str(ca_file)), ("--prometheus-insecure-skip-verify",)):
        done = report("--prometheus-url", url, "--bearer-token-file", str(token), *flags, "-o", "-")
        assert done.returncode == 4 and "no cilium-node-exporter data" in done.stderr, (flags, done.stderr)


def test_bad_flags() -> None:
    done = report("--prometheus-url", "prometheus:9090")
    assert done.returncode == 2 and "must start with http:// or https://" in done.stderr
    done = report("--prometheus-url", "http://127.0.0.1:1", "--prometheus-tls-cert", "/nonexistent")
    assert done.returncode == 2
    assert "--prometheus-tls-cert and --prometheus-tls-key must be given together" in done.stderr
    done = report("--prometheus-url", "http://127.0.0.1:1", "--rules-config", "/nonexistent.yaml")
    assert done.returncode == 2 and "--rules-config /nonexistent.yaml" in done.stderr


def test_without_the_report_extra_prints_an_install_hint(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "REPORT_MODULES", (*cli.REPORT_MODULES, "cne_module_that_is_not_installed"))
    assert cli.main(["report", "--prometheus-url", "http://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'cilium-node-exporter[report]'" in err and "cne_module_that_is_not_installed" in err
