"""The report against a hostile Prometheus (issue 23, row 11): huge and dripping answers, redirects that
would carry credentials, credentials echoed back in errors. Real HTTP servers on loopback, the real CLI."""

from __future__ import annotations

import http.server
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

TOKEN = "tok-5ecret-7d1e"  # what must never appear on stderr
TENANT = "tenant-5ecret-42"


def report(*args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "cilium_node_exporter", "report", *args, "-o", "-", "-q"],
                          capture_output=True, text=True, timeout=timeout)
    return done, time.monotonic() - started


class _Hostile(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict[str, str]]  # set per server: the headers of every request

    def do_POST(self) -> None:
        self.seen.append(dict(self.headers))
        if self.headers.get("Content-Length"):
            self.rfile.read(int(self.headers["Content-Length"]))
        getattr(self, "_" + self.server.mode)()  # type: ignore[attr-defined]

    do_GET = do_POST

    def _huge(self) -> None:
        """A well-formed start, then an endless body: the report must stop reading."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status":"success","data":{"resultType":"vector","result":[')
        item = b'{"metric":{"node":"' + b"n" * 1000 + b'"},"value":[1,"1"]},'
        try:
            for _ in range(200_000):  # 200 MB at most, if nothing stops it
                self.wfile.write(item)
        except OSError:
            pass

    def _big_vector(self) -> None:
        """A complete 2 MiB vector of tiny samples: decoded whole, it would cost many times that."""
        item = b'{"metric":{},"value":[1,"1"]}'
        body = (b'{"status":"success","data":{"resultType":"vector","result":['
                + b",".join([item] * (2 * 2**20 // len(item))) + b"]}}")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _drip(self) -> None:
        """Headers at once, then a byte every 0.2 s for ever (each read well inside any read timeout)."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self._drip_bytes(b'{"status":"success","data":{"resultType":"vector","result":[' + b" " * 10_000)

    def _drip_headers(self) -> None:
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
        self._drip_bytes(b"X-Slow: " + b"a" * 10_000)

    def _drip_bytes(self, data: bytes) -> None:
        try:
            for i in range(len(data)):
                self.wfile.write(data[i: i + 1])
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass

    def _redirect(self) -> None:
        self.send_response(307)
        self.send_header("Location", self.server.target + self.path)  # type: ignore[attr-defined]
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _echo(self) -> None:
        """An error that quotes the request's credentials back (proxies do)."""
        body = ('{"status":"error","errorType":"bad_data","error":"refused ' + self.headers.get("Authorization", "")
                + " for " + self.headers.get("X-Scope-OrgID", "") + '"}').encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _empty(self) -> None:
        body = b'{"status":"success","data":{"resultType":"vector","result":[]}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    block_on_close = False


def serve(mode: str, target: str = "") -> tuple[str, list[dict[str, str]], _Server]:
    seen: list[dict[str, str]] = []
    handler = type("H", (_Hostile,), {"seen": seen})
    server = _Server(("127.0.0.1", 0), handler)
    server.mode = mode  # type: ignore[attr-defined]
    server.target = target  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", seen, server


@pytest.fixture
def servers() -> Iterator[list[_Server]]:
    running: list[_Server] = []
    yield running
    for s in running:
        s.shutdown()
        s.server_close()


def start(servers: list[_Server], mode: str, target: str = "") -> tuple[str, list[dict[str, str]]]:
    url, seen, server = serve(mode, target)
    servers.append(server)
    return url, seen


def test_an_answer_past_the_limit_is_refused(servers: list[_Server]) -> None:
    url, _ = start(servers, "huge")
    done, _ = report("--prometheus-url", url, "--max-response-bytes", str(2**20))
    assert done.returncode == 3, done.stderr
    assert "more than --max-response-bytes 1,048,576 bytes" in done.stderr


def test_an_answer_decoded_whole_is_held_to_a_share_of_the_limit(servers: list[_Server]) -> None:
    url, _ = start(servers, "big_vector")
    done, _ = report("--prometheus-url", url, "--max-response-bytes", str(4 * 2**20))
    assert done.returncode == 3 and "cannot be read a series at a time" in done.stderr, done.stderr


def test_the_timeout_is_one_deadline_for_the_run(servers: list[_Server]) -> None:
    """A body dripping a byte every 0.2 s never trips a per-read timeout; the run's deadline stops it."""
    url, _ = start(servers, "drip")
    done, took = report("--prometheus-url", url, "--timeout", "2")
    assert done.returncode == 3 and "did not finish within --timeout 2 s" in done.stderr, done.stderr
    assert took < 2 + 4, took  # the deadline (a few seconds for Python's start on a busy machine)


def test_dripping_headers_hit_the_deadline_too(servers: list[_Server]) -> None:
    url, _ = start(servers, "drip_headers")
    done, took = report("--prometheus-url", url, "--timeout", "1", timeout=60)
    assert done.returncode == 3 and "did not finish within --timeout 1 s" in done.stderr, done.stderr
    assert took < 1 + 5 + 5, took  # the deadline, the watchdog's grace, Python's start


def test_credentials_do_not_follow_a_redirect(servers: list[_Server], tmp_path: Path) -> None:
    target, seen = start(servers, "empty")
    url, _ = start(servers, "redirect", target)
    token = tmp_path / "token"
    token.write_text(TOKEN)
    for creds in (("--header", f"X-Scope-OrgID: {TENANT}"), ("--bearer-token-file", str(token))):
        done, _ = report("--prometheus-url", url, *creds)
        assert done.returncode == 3 and f"redirected to {target}/api/v1/query: refused" in done.stderr, done.stderr
    assert seen == []  # the other server never saw a request, so never a header
    done, _ = report("--prometheus-url", url)  # no credentials: a redirect is followed
    assert done.returncode == 4 and len(seen) >= 1, done.stderr


def test_credentials_never_reach_stderr(servers: list[_Server], tmp_path: Path) -> None:
    url, _ = start(servers, "echo")
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    done, _ = report("--prometheus-url", url, "--bearer-token-file", str(token), "--header",
                     f"X-Scope-OrgID: {TENANT}")
    assert done.returncode == 3 and "refused Bearer <redacted> for <redacted>" in done.stderr, done.stderr
    password = tmp_path / "password"
    password.write_text(TOKEN)
    done, _ = report("--prometheus-url", url.replace("http://", f"http://admin:{TOKEN}x@"))
    assert done.returncode == 3 and "http://***@127.0.0.1" in done.stderr, done.stderr
    done, _ = report("--prometheus-url", url, "--basic-auth-user", "admin", "--basic-auth-password-file",
                     str(password))
    assert done.returncode == 3 and "refused Basic <redacted>" in done.stderr, done.stderr
    token.write_text(TOKEN + "\nsecond-line")  # requests would quote the whole header value in its exception
    done, _ = report("--prometheus-url", url, "--bearer-token-file", str(token))
    assert done.returncode == 3 and "line break or control character" in done.stderr, done.stderr
    for out in (done.stderr, done.stdout):
        assert TOKEN not in out and TENANT not in out and "Traceback" not in out
