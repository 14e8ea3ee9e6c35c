"""A small Prometheus HTTP API client (Prometheus, Thanos Query, Mimir's Prometheus API) for the report.

Queries go as POST forms (long expressions fit); every failure becomes a :class:`PrometheusError` whose
message says what to check: the URL, the credentials, the TLS flags, or the query limits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    timeout: float = 120.0
    stats: Stats = field(default_factory=Stats)

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise PrometheusError("unreachable", f"--prometheus-url {self.url!r} must start with http:// or https://")
        if bool(self.cert_file) != bool(self.key_file):
            raise PrometheusError("tls", "--prometheus-tls-cert and --prometheus-tls-key must be given together")
        for flag, path in (("--bearer-token-file", self.bearer_token_file), ("--prometheus-ca", self.ca_file),
                           ("--prometheus-tls-cert", self.cert_file), ("--prometheus-tls-key", self.key_file)):
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
        if not self.bearer_token_file:
            return {}
        token = Path(self.bearer_token_file).read_text().strip()
        return {"Authorization": f"Bearer {token}"}

    def _request(self, path: str, params: dict[str, Any] | None = None, form: bool = False) -> Any:
        url = f"{self.url}{path}"
        started = time.monotonic()
        try:
            if form:
                resp = self.session.post(url, data=params, headers=self._auth(), timeout=self.timeout, **self.tls)
                if resp.status_code == 405:  # a proxy that only allows GET
                    resp = self.session.get(url, params=params, headers=self._auth(), timeout=self.timeout,
                                            **self.tls)
            else:
                resp = self.session.get(url, params=params, headers=self._auth(), timeout=self.timeout, **self.tls)
        except requests.exceptions.SSLError as exc:
            raise PrometheusError("tls", f"TLS handshake with {self.url} failed: {_root(exc)} (check "
                                  "--prometheus-ca, --prometheus-tls-cert/--prometheus-tls-key, or "
                                  "--prometheus-insecure-skip-verify)") from None
        except requests.exceptions.Timeout:
            raise PrometheusError("unreachable", f"{self.url} did not answer within {self.timeout:.0f} s") from None
        except requests.exceptions.ConnectionError as exc:
            raise PrometheusError("unreachable", f"cannot reach Prometheus at {self.url}: {_root(exc)}") from None
        finally:
            self.stats.seconds += time.monotonic() - started
        if resp.status_code in (401, 403):
            hint = ("the bearer token was rejected" if self.bearer_token_file
                    else "it needs credentials: --bearer-token-file, a client certificate, or --header")
            raise PrometheusError("auth", f"{self.url} answered {resp.status_code} {resp.reason}: {hint}")
        try:
            body = resp.json()
        except ValueError:
            raise PrometheusError("server", f"{url} answered {resp.status_code} with no Prometheus API response "
                                  f"(is --prometheus-url the query URL? got {resp.text[:120]!r})") from None
        if resp.status_code >= 400 or body.get("status") != "success":
            kind = "query" if resp.status_code in (400, 422) else "server"
            raise PrometheusError(kind, f"{url}: {body.get('errorType', resp.status_code)}: "
                                        f"{body.get('error', resp.reason)}")
        return body.get("data")

    def close(self) -> None:
        self.session.close()

    # --- API ---------------------------------------------------------------------------------------
    def query(self, expr: str, at: float) -> list[tuple[Labels, Any]]:
        """Instant query at ``at``: ``[(labels, value or [(t, v), ...])]`` (range vectors give samples)."""
        data = self._request("/api/v1/query", {"query": expr, "time": f"{at:.3f}"}, form=True)
        self.stats.queries += 1
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
                    step: int) -> list[tuple[Labels, list[tuple[float, float]]]]:
        """Range query: ``[(labels, [(t, v), ...])]``."""
        data = self._request("/api/v1/query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                                     "step": str(step)}, form=True)
        self.stats.queries += 1
        out = []
        for s in data.get("result", []):
            values = [(float(t), _num(v)) for t, v in s.get("values", [])]
            self.stats.points += len(values)
            out.append((s.get("metric", {}), values))
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
