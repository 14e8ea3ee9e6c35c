"""A small Prometheus HTTP API client (Prometheus, Thanos Query, Mimir's Prometheus API) for the report.

Queries go as POST forms (long expressions fit); every failure becomes a :class:`PrometheusError` whose
message says what to check: the URL, the credentials, the TLS flags, or the query limits.

Against a hostile or broken server (issue 23, row 11): an answer is read in chunks and refused past
``max_response_bytes`` (memory bounded whatever the server sends); ``timeout`` is one deadline for the whole
run, checked between chunks and as every socket read's limit (a server dripping bytes cannot hold the
report); a redirect is refused while credentials or custom headers are set (they would follow it);
credentials never reach a message: the URL's user information is masked and error texts are scrubbed
of the token, the password and header values.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import requests

Labels = dict[str, str]


class PrometheusError(Exception):
    """A query the report could not run; ``kind`` is unreachable, auth, tls, query or server."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class Stats:
    """What the report asked of Prometheus."""

    queries: int = 0
    series: int = 0
    points: int = 0
    seconds: float = 0.0


@dataclass
class Client:
    """Prometheus HTTP API at ``url`` (the prefix before ``/api/v1``)."""

    url: str
    bearer_token_file: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure_skip_verify: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 600.0  # for the whole run
    stats: Stats = field(default_factory=Stats)
    max_response_bytes: int = 256 * 2**20
    basic_auth_user: str = ""
    basic_auth_password_file: str = ""

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        self.shown_url = _mask_userinfo(self.url)
        if not self.url.startswith(("http://", "https://")):
            raise PrometheusError("unreachable", f"--prometheus-url {self.shown_url!r} must start with http:// or "
                                  "https://")
        self.deadline = time.monotonic() + self.timeout
        self._secrets = [v for v in self.headers.values() if v]
        userinfo = re.match(r"^https?://([^/@]*)@", self.url)
        if userinfo:
            self._secrets += [p for p in userinfo.group(1).split(":") if p]
        for name, value in self.headers.items():
            if not _HEADER_OK.fullmatch(value):
                raise PrometheusError("auth", f"--header {name}: the value has a line break or control character")
        if bool(self.basic_auth_user) != bool(self.basic_auth_password_file):
            raise PrometheusError("auth", "--basic-auth-user and --basic-auth-password-file must be given together")
        if bool(self.cert_file) != bool(self.key_file):
            raise PrometheusError("tls", "--prometheus-tls-cert and --prometheus-tls-key must be given together")
        for flag, path in (("--bearer-token-file", self.bearer_token_file), ("--prometheus-ca", self.ca_file),
                           ("--prometheus-tls-cert", self.cert_file), ("--prometheus-tls-key", self.key_file),
                           ("--basic-auth-password-file", self.basic_auth_password_file)):
            if path and not Path(path).is_file():
                raise PrometheusError("tls" if flag != "--bearer-token-file" else "auth",
                                      f"{flag} {path}: no such file")
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": "cilium-node-exporter-report", **self.headers})
        # per request: requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override a session's verify
        self.tls: dict[str, Any] = {"verify": False if self.insecure_skip_verify else (self.ca_file or True)}
        if self.cert_file:
            self.tls["cert"] = (self.cert_file, self.key_file)
        if self.insecure_skip_verify:
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    # --- transport ---------------------------------------------------------------------------------
    def _auth(self) -> dict[str, str]:
        if self.basic_auth_user:
            import base64

            password = Path(self.basic_auth_password_file).read_text().rstrip("\r\n")
            self._remember(password)
            pair = base64.b64encode(f"{self.basic_auth_user}:{password}".encode()).decode()
            self._remember(pair)
            return {"Authorization": f"Basic {pair}"}
        if not self.bearer_token_file:
            return {}
        token = Path(self.bearer_token_file).read_text().strip()
        self._remember(token)
        if not _HEADER_OK.fullmatch(token):
            raise PrometheusError("auth", f"--bearer-token-file {self.bearer_token_file}: the token has a line break "
                                  "or control character inside")
        return {"Authorization": f"Bearer {token}"}

    def _remember(self, secret: str) -> None:
        if secret and secret not in self._secrets:
            self._secrets.append(secret)

    def scrub(self, text: str) -> str:
        """``text`` without any credential the client knows (for messages and logs)."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            if len(secret) >= 3:
                text = text.replace(secret, "<redacted>")
        return text.replace(self.url, self.shown_url)

    def _remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise PrometheusError("unreachable", f"the report did not finish within --timeout {self.timeout:g} s "
                                  f"(the whole run's deadline; {self.shown_url} answers slowly)")
        return left

    def _send(self, method: str, url: str, params: dict[str, Any] | None, form: bool) -> requests.Response:
        left = self._remaining()
        kwargs: dict[str, Any] = {"headers": self._auth(), "timeout": (min(left, 30.0), left), "stream": True,
                                  # credentials and custom headers must not follow a redirect to another server
                                  "allow_redirects": not (self.headers or self.bearer_token_file
                                                          or self.basic_auth_user), **self.tls}
        if form and method == "POST":
            return self.session.post(url, data=params, **kwargs)
        return self.session.get(url, params=params, **kwargs)

    def _read(self, resp: requests.Response) -> bytes:
        """The body, at most ``max_response_bytes``, by the run's deadline."""
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_response_bytes:
            resp.close()
            raise PrometheusError("server", f"{self.shown_url} answered {int(declared):,} bytes, more than "
                                  f"--max-response-bytes {self.max_response_bytes:,}")
        chunks: list[bytes] = []
        size = 0
        while chunk := _read1(resp):  # what one socket read brought: a drip cannot outlast the deadline
            size += len(chunk)
            if size > self.max_response_bytes:
                resp.close()
                raise PrometheusError("server", f"{self.shown_url} answered more than --max-response-bytes "
                                      f"{self.max_response_bytes:,} bytes (a narrower --cluster or period, or a "
                                      "larger limit)")
            chunks.append(chunk)
            self._remaining()
        return b"".join(chunks)

    def _request(self, path: str, params: dict[str, Any] | None = None, form: bool = False,
                 matrix: bool = False) -> Any:
        try:
            return self._request_once(path, params, form, matrix)
        except PrometheusError as exc:
            raise PrometheusError(exc.kind, self.scrub(str(exc))) from None

    def _request_once(self, path: str, params: dict[str, Any] | None, form: bool, matrix: bool = False) -> Any:
        url = f"{self.url}{path}"
        shown = f"{self.shown_url}{path}"
        started = time.monotonic()
        try:
            resp = self._send("POST" if form else "GET", url, params, form)
            if form and resp.status_code == 405:  # a proxy that only allows GET
                resp.close()
                resp = self._send("GET", url, params, False)
            if resp.is_redirect:
                resp.close()
                target = _mask_userinfo(resp.headers.get("Location", "?"))
                raise PrometheusError("server", f"{shown} redirected to {target}: refused while credentials or "
                                      "--header are set (use the final URL)")
            raw = self._read(resp)
        except requests.exceptions.SSLError as exc:
            raise PrometheusError("tls", f"TLS handshake with {self.shown_url} failed: {_root(exc)} (check "
                                  "--prometheus-ca, --prometheus-tls-cert/--prometheus-tls-key, or "
                                  "--prometheus-insecure-skip-verify)") from None
        except requests.exceptions.Timeout:
            raise PrometheusError("unreachable", f"{self.shown_url} did not answer by the --timeout deadline "
                                  f"({self.timeout:g} s for the whole run)") from None
        except requests.exceptions.ConnectionError as exc:
            raise PrometheusError("unreachable", f"cannot reach Prometheus at {self.shown_url}: {_root(exc)}") from None
        except requests.exceptions.RequestException as exc:  # never the exception's text: it may hold a header
            raise PrometheusError("server", f"request to {self.shown_url} failed: {type(exc).__name__}") from None
        finally:
            self.stats.seconds += time.monotonic() - started
        if resp.status_code in (401, 403):
            hint = ("the bearer token was rejected" if self.bearer_token_file
                    else "the password was rejected" if self.basic_auth_user
                    else "it needs credentials: --bearer-token-file, --basic-auth-user, a client certificate, or "
                         "--header")
            raise PrometheusError("auth", f"{self.shown_url} answered {resp.status_code} {resp.reason}: {hint}")
        if matrix and resp.status_code == 200:
            text = raw.decode("utf-8", errors="replace")
            del raw
            start = _MATRIX_PREFIX.match(text)
            if start:  # one series at a time: never the whole answer as Python objects
                try:
                    return _decode_matrix(text, start.end())
                except (ValueError, TypeError, AttributeError, IndexError):
                    raise PrometheusError("server", f"{shown} answered a malformed matrix") from None
            raw = text.encode()
        if len(raw) > self.max_response_bytes // WHOLE_PARSE_SHARE:
            # decoded whole, an answer costs several times its size: held to a share of the limit
            raise PrometheusError("server", f"{shown} answered {len(raw):,} bytes that cannot be read a series at "
                                  f"a time: more than a {WHOLE_PARSE_SHARE}th of --max-response-bytes")
        try:
            body = json.loads(raw)
        except ValueError:
            raise PrometheusError("server", f"{shown} answered {resp.status_code} with no Prometheus API response "
                                  f"(is --prometheus-url the query URL? got {raw[:120]!r})") from None
        del raw
        if not isinstance(body, dict):
            raise PrometheusError("server", f"{shown} answered {resp.status_code} with no Prometheus API response")
        if resp.status_code >= 400 or body.get("status") != "success":
            kind = "query" if resp.status_code in (400, 422) else "server"
            raise PrometheusError(kind, f"{shown}: {str(body.get('errorType', resp.status_code))[:200]}: "
                                        f"{str(body.get('error', resp.reason))[:500]}")
        return body.get("data")

    def close(self) -> None:
        self.session.close()

    # --- API ---------------------------------------------------------------------------------------
    def query(self, expr: str, at: float) -> list[tuple[Labels, Any]]:
        """Instant query at ``at``: ``[(labels, value or samples)]`` (a range vector's samples as an (n, 2) array of
        time and value rows)."""
        data = self._request("/api/v1/query", {"query": expr, "time": f"{at:.3f}"}, form=True, matrix=True)
        self.stats.queries += 1
        if isinstance(data, list):  # a range vector, decoded a series at a time
            self.stats.points += sum(len(t) for _, t, _ in data)
            self.stats.series += len(data)
            return [(labels, np.column_stack((t, v))) for labels, t, v in data]
        result = data.get("result", []) if isinstance(data, dict) else []
        out: list[tuple[Labels, Any]] = []
        if data.get("resultType") == "matrix":
            for s in result:
                values = [(float(t), _num(v)) for t, v in s.get("values", [])]
                self.stats.points += len(values)
                out.append((s.get("metric", {}), values))
        elif data.get("resultType") == "vector":
            for s in result:
                out.append((s.get("metric", {}), _num(s["value"][1])))
            self.stats.points += len(out)
        elif data.get("resultType") == "scalar":
            out.append(({}, _num(data["result"][1])))
        self.stats.series += len(out)
        return out

    def query_range(self, expr: str, start: float, end: float,
                    step: int) -> list[tuple[Labels, np.ndarray, np.ndarray]]:
        """Range query: ``[(labels, times, values)]`` (numpy arrays: a point costs 16 bytes, not a tuple)."""
        got = self._request("/api/v1/query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                                    "step": str(step)}, form=True, matrix=True)
        self.stats.queries += 1
        out = got if isinstance(got, list) else [_series(s) for s in (got or {}).get("result", [])]
        self.stats.points += sum(len(t) for _, t, _ in out)
        self.stats.series += len(out)
        return out

    def flags(self) -> dict[str, str]:
        """The server's command-line flags (Prometheus only; empty elsewhere)."""
        try:
            data = self._request("/api/v1/status/flags")
        except PrometheusError as exc:
            if exc.kind in ("unreachable", "auth", "tls"):
                raise
            return {}
        return data if isinstance(data, dict) else {}

    def buildinfo(self) -> dict[str, str]:
        """Version of the server (Prometheus; Thanos and Mimir answer too or give {})."""
        try:
            data = self._request("/api/v1/status/buildinfo")
        except PrometheusError as exc:
            if exc.kind in ("unreachable", "auth", "tls"):
                raise
            return {}
        return data if isinstance(data, dict) else {}


def _read1(resp: requests.Response) -> bytes:
    """At most 64 KiB of the (decoded) body from a single read (urllib3 2: ``read1``)."""
    raw = resp.raw
    if hasattr(raw, "read1"):
        return raw.read1(1 << 16, decode_content=True)
    return raw.read(1 << 16, decode_content=True)


WHOLE_PARSE_SHARE = 4
_HEADER_OK = re.compile(r"[\x20-\x7e\x80-\uffff]*")


def _mask_userinfo(url: str) -> str:
    """``https://user:secret@host/`` -> ``https://***@host/``."""
    return re.sub(r"^(https?://)[^/@]*@", r"\1***@", url)


_MATRIX_PREFIX = re.compile(r'\{\s*"status"\s*:\s*"success"\s*,\s*"data"\s*:\s*\{\s*"resultType"\s*:\s*"matrix"\s*,'
                            r'\s*"result"\s*:\s*\[')
_SPACE = re.compile(r"\s*")


def _series(obj: dict[str, Any]) -> tuple[Labels, np.ndarray, np.ndarray]:
    values = obj.get("values") or []
    times = np.fromiter((float(p[0]) for p in values), dtype=float, count=len(values))
    nums = np.fromiter((_num(p[1]) for p in values), dtype=float, count=len(values))
    return obj.get("metric") or {}, times, nums


def _decode_matrix(text: str, pos: int) -> list[tuple[Labels, np.ndarray, np.ndarray]]:
    """The series of a matrix answer from ``pos`` (just inside ``"result":[``), decoded one at a time."""
    decoder = json.JSONDecoder()
    out = []
    pos = _SPACE.match(text, pos).end()  # type: ignore[union-attr]
    while not text.startswith("]", pos):
        obj, pos = decoder.raw_decode(text, pos)
        out.append(_series(obj))
        pos = _SPACE.match(text, pos).end()  # type: ignore[union-attr]
        if text.startswith(",", pos):
            pos = _SPACE.match(text, pos + 1).end()  # type: ignore[union-attr]
        elif not text.startswith("]", pos):
            raise ValueError("expected , or ]")
    return out


def _num(text: Any) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return math.nan
    return value


def _root(exc: BaseException) -> str:
    """The innermost cause of a requests exception, in a few words."""
    while exc.__context__ is not None and exc.__context__ is not exc:
        exc = exc.__context__
    while exc.args and isinstance(exc.args[0], BaseException):
        exc = exc.args[0]
    text = str(exc)
    return text.split("] ")[-1] if "] " in text else text


ProgressFn = Callable[[str], None]
