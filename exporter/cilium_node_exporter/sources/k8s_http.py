"""A small HTTP(S) client for the kubelet, the API server, the agent metrics endpoint and the agent's
REST API on its unix socket (``unix:///var/run/cilium/cilium.sock``).

Standard library only (``http.client`` + ``ssl``): the generated ``kubernetes`` client costs
25-45 MiB of RSS (see ``bench/exporter_rss.py``), more than this whole exporter otherwise needs.
Every call has an overall deadline that a peer dripping bytes cannot stretch (a watchdog shuts the
socket down at the deadline, whatever phase the exchange is in: TLS handshake, headers, chunk framing,
a ``Connection: close`` body), a size cap, and JSON is decoded only after a cheap count of its values
(:func:`loads_bounded`: a body of ``{}`` or ``[]`` cannot amplify into hundreds of MiB). Every failure
becomes a :class:`SourceError` with a reason from ``contract.ERROR_REASONS``; messages never carry a
token and quote what a server said with ``repr`` (no forged log lines). Only GET is implemented: the
exporter never writes to anything it reads.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import logging
import math
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
_BEARER = re.compile(r"(?i)(bearer|basic)\s+\S+")


def parse_time(value: Any) -> float | None:
    """RFC 3339 (``2026-06-26T10:14:32Z``) to Unix seconds; None when absent or unparsable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


MAX_COUNT = 2**63  # counts and byte sizes at or above this are no real value (and 10**400 is no float)


def count(value: Any, what: str) -> int | None:
    """A JSON count or byte size: None when absent; an ``int`` for a whole number in [0, 2**63) (an integral
    float included); a ``protocol`` :class:`SourceError` for anything else (a string, a bool, a negative,
    NaN or infinity, a 401-digit integer), so that a value /metrics cannot carry never reaches it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SourceError("protocol", f"{what} is not a number: {str(value)[:64]!r}")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise SourceError("protocol", f"{what} is not a whole number: {str(value)[:64]}")
    if not 0 <= value < MAX_COUNT:
        raise SourceError("protocol", f"{what} is out of range ({len(str(int(value)))} digits)"
                          if isinstance(value, int) else f"{what} is out of range")
    return int(value)


class SourceError(Exception):
    """A failed request; ``reason`` is one of ``contract.ERROR_REASONS``.

    ``absent`` marks "nothing listens there" (connection refused, no such unix socket): for an optional
    source that is an endpoint this node does not have, not a failure of one it has.
    """

    def __init__(self, reason: str, message: str, status: int | None = None, *, absent: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status
        self.absent = absent


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a unix stream socket; the request carries ``Host: localhost`` (what Cilium's own
    Go client sends on ``cilium.sock``: ``api/v1/client`` ``DefaultHost``)."""

    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path
        self._create_connection = _unix_connect  # what a Watchdog wraps, as for TCP

    def connect(self) -> None:
        self.sock = self._create_connection(self.socket_path, self.timeout)


def _unix_connect(path: str, timeout: float | None = None, source: object = None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach one HTTP server."""

    base_url: str
    ssl_context: ssl.SSLContext | None = None
    # Authorization header value ("Bearer <token>"), called per request so that rotation works.
    authorization: Callable[[], str | None] | None = None

    def connection(self, timeout: float) -> http.client.HTTPConnection:
        """A connection to the endpoint; a URL it cannot use is a ``connect`` error (never an exception)."""
        try:
            parts = urlsplit(self.base_url)
            host, port = parts.hostname, parts.port
        except ValueError as exc:  # e.g. an unbracketed IPv6 host: "Port could not be cast to integer"
            raise SourceError("connect", f"invalid URL {self.base_url!r}: {exc}") from None
        if parts.scheme == "unix" and parts.path:
            return UnixHTTPConnection(parts.path, timeout)
        if parts.scheme not in ("http", "https") or not host:
            raise SourceError("connect", f"unsupported URL {self.base_url!r} (use http://, https:// or unix:///path)")
        if parts.scheme == "https":
            ctx = self.ssl_context or ssl.create_default_context()
            return http.client.HTTPSConnection(host, port or 443, timeout=timeout, context=ctx)
        return http.client.HTTPConnection(host, port or 80, timeout=timeout)

    def cleartext_token_risk(self) -> bool:
        """True when a bearer token would go over plain http to a host that is not loopback."""
        try:
            parts = urlsplit(self.base_url)
            if parts.scheme != "http" or self.authorization is None:
                return False
            return not ipaddress.ip_address(parts.hostname or "").is_loopback
        except ValueError:  # a name, or an unusable URL
            return (urlsplit(self.base_url).hostname or "") != "localhost"

    def path(self, path: str, query: Mapping[str, str] | None = None) -> str:
        parts = urlsplit(self.base_url)
        prefix = "" if parts.scheme == "unix" else parts.path.rstrip("/")
        return (prefix + path or "/") + (("?" + urlencode(query)) if query else "")


def refuse_cleartext_token(endpoint: Endpoint, address_flag: str, token_flag: str) -> None:
    """A bearer token is never sent over plain http to a host other than loopback (anyone on the path
    would read it): raise an ``auth`` error that says how to fix the configuration."""
    if endpoint.cleartext_token_risk():
        raise SourceError("auth", f"refusing to send the bearer token over plain http to {endpoint.base_url}: use "
                                  f"https in {address_flag}, or set {token_flag}= (empty) for an endpoint that "
                                  "needs no token")


def tls_context(ca_file: str = "", *, ca_data: str | None = None, insecure: bool = False,
                cert_file: str = "", key_file: str = "") -> ssl.SSLContext:
    """Client TLS context: verify against ``ca_file``/``ca_data`` (or the system store), or not at all."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        try:
            if ca_file or ca_data:
                ctx.load_verify_locations(cafile=ca_file or None, cadata=ca_data)
            else:
                ctx.load_default_certs()
        except (OSError, ssl.SSLError) as exc:
            raise SourceError("tls", f"cannot load CA bundle {ca_file or '(inline data)'}: {exc}") from None
    if cert_file:
        try:
            ctx.load_cert_chain(cert_file, key_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise SourceError("tls", f"cannot load client certificate {cert_file}: {exc}") from None
    return ctx


def bearer_from_file(path: str) -> Callable[[], str]:
    """An ``authorization`` callable that re-reads the token file on every request."""
    return lambda: "Bearer " + read_token(path)


def read_token(path: str) -> str:
    """Read a bearer token file (re-read on every request so that a rotated token is picked up).

    A token is printable ASCII without spaces (RFC 6750 ``b64token`` and JWTs are); anything else is
    rejected before it reaches a header, naming the file and never the content."""
    try:
        with open(path, encoding="utf-8") as fh:
            token = fh.read(64 * 1024).strip()
    except (OSError, UnicodeDecodeError) as exc:
        detail = getattr(exc, "strerror", None) or "not UTF-8"
        raise SourceError("auth", f"cannot read token file {path}: {detail}") from None
    if not token:
        raise SourceError("auth", f"token file {path} is empty")
    if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        raise SourceError("auth", f"token file {path} holds whitespace, control or non-ASCII characters "
                                  "inside the token (not a bearer token)")
    return token


def redact(text: str) -> str:
    """``text`` with any ``Bearer …``/``Basic …`` credential replaced."""
    return _BEARER.sub(lambda m: m.group(1) + " [redacted]", text)


def classify(exc: BaseException, what: str) -> SourceError:
    """Map a low-level exception to a :class:`SourceError` with a bounded reason (credentials redacted)."""
    out = _classify(exc, what)
    return SourceError(out.reason, redact(out.message), out.status, absent=out.absent)


def _classify(exc: BaseException, what: str) -> SourceError:
    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        return SourceError("tls", f"{what}: certificate verification failed: {exc.verify_message or exc}")
    if isinstance(exc, ssl.SSLError):
        return SourceError("tls", f"{what}: TLS error: {exc.reason or exc}")
    if isinstance(exc, TimeoutError | socket.timeout):
        return SourceError("timeout", f"{what}: timed out")
    if isinstance(exc, ConnectionRefusedError):
        return SourceError("connect", f"{what}: connection refused", absent=True)
    if isinstance(exc, FileNotFoundError):
        return SourceError("connect", f"{what}: no such socket", absent=True)
    if isinstance(exc, PermissionError):
        return SourceError("auth", f"{what}: permission denied (the socket's owner and group do not admit "
                                   "this user)")
    if isinstance(exc, socket.gaierror):
        return SourceError("connect", f"{what}: cannot resolve host: {exc.strerror or exc}")
    if isinstance(exc, http.client.RemoteDisconnected):
        return SourceError("connect", f"{what}: the server closed the connection without a response")
    if isinstance(exc, http.client.IncompleteRead | http.client.BadStatusLine | http.client.LineTooLong):
        return SourceError("protocol", f"{what}: malformed HTTP response")
    if isinstance(exc, http.client.HTTPException):
        return SourceError("protocol", f"{what}: HTTP protocol error: {type(exc).__name__}")
    if isinstance(exc, ConnectionError | OSError):
        return SourceError("connect", f"{what}: {type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}")
    return SourceError("protocol", f"{what}: {type(exc).__name__}: {exc}")


def _status_error(status: int, body: bytes, what: str) -> SourceError:
    detail = ""
    try:
        doc = json.loads(body[:4096])
        if isinstance(doc, dict) and isinstance(doc.get("message"), str):
            detail = ": " + repr(doc["message"][:200])  # quoted and escaped: a server cannot forge log lines
    except ValueError:
        pass
    reason = "auth" if status in (401, 403) else "http"
    return SourceError(reason, f"{what}: HTTP {status}{detail}", status)


class Deadline:
    """An overall time budget shared by connect, send and every read."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline exceeded")
        return left


class Watchdog:
    """Shuts a connection down when its time is up, whatever phase it is in.

    A per-read socket timeout does not bound a peer that sends one byte at a time, and http.client drops
    its socket reference for ``Connection: close`` bodies; so the watchdog keeps a duplicate of the TCP
    socket from the moment it connects (:meth:`watch`, via ``HTTPConnection._create_connection``) and a
    timer calls ``shutdown()`` on it at the deadline: every pending or later read then fails at once.
    """

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def attach(self, conn: http.client.HTTPConnection) -> None:
        """Watch the socket ``conn`` opens (several watchdogs may watch one connection)."""
        opener = conn._create_connection  # type: ignore[attr-defined]

        def create_connection(address: tuple[str, int], timeout: Any = None, source: Any = None) -> socket.socket:
            sock = opener(address, timeout, source)
            self.watch(sock)
            return sock

        conn._create_connection = create_connection  # type: ignore[attr-defined]

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._close_dup()
            # a duplicate descriptor: shutdown() acts on the connection, which every descriptor of it shares
            self._sock = socket.fromfd(sock.fileno(), sock.family, sock.type)
            if self.fired:
                self._shutdown()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            self._shutdown()

    def _shutdown(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    def _close_dup(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._close_dup()


def _headers(endpoint: Endpoint, accept: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    headers = {"Accept": accept, "User-Agent": "cilium-node-exporter", **(extra or {})}
    value = endpoint.authorization() if endpoint.authorization else None
    if value:
        headers["Authorization"] = value
    return headers


def get(endpoint: Endpoint, path: str, *, timeout: float, max_bytes: int, what: str,
        accept: str = "application/json", query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None) -> bytes:
    """GET ``path``; the whole exchange (connect included) must finish within ``timeout`` seconds."""
    return b"".join(get_chunks(endpoint, path, timeout=timeout, max_bytes=max_bytes, what=what,
                               accept=accept, query=query, headers=headers))


def get_chunks(endpoint: Endpoint, path: str, *, timeout: float, max_bytes: int, what: str,
               accept: str = "application/json", query: Mapping[str, str] | None = None,
               headers: Mapping[str, str] | None = None) -> Iterator[bytes]:
    """Like :func:`get` but yields the body in chunks (callers can filter without holding it all)."""
    deadline = Deadline(timeout)
    request_headers = _headers(endpoint, accept, headers)
    conn = endpoint.connection(timeout)
    watchdog = Watchdog(timeout)
    watchdog.attach(conn)
    try:
        try:
            conn.request("GET", endpoint.path(path, query), headers=request_headers)
            if conn.sock is not None:
                conn.sock.settimeout(deadline.remaining())
            resp = conn.getresponse()
            if resp.status != 200:
                raise _status_error(resp.status, _read_some(resp, deadline, 4096), what)
            total = 0
            while True:
                if conn.sock is not None:
                    conn.sock.settimeout(deadline.remaining())
                chunk = resp.read1(CHUNK) if hasattr(resp, "read1") else resp.read(CHUNK)
                if not chunk:
                    if watchdog.fired:  # the watchdog's shutdown looks like the end of a close-framed body
                        raise TimeoutError("deadline exceeded")
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise SourceError("protocol", f"{what}: response larger than {max_bytes} bytes")
                yield chunk
        except Exception as exc:
            error = classify(exc, what)
            # one message for every way the deadline shows (socket timeout, the watchdog's shutdown), so a slow
            # peer logs one line, not one per phase it happened to be in
            if error.reason == "timeout" or (watchdog.fired and not isinstance(exc, SourceError)):
                raise SourceError("timeout", f"{what}: timed out (no complete answer within {timeout:g}s)") from None
            raise error from None
    finally:
        watchdog.close()
        conn.close()


def _read_some(resp: http.client.HTTPResponse, deadline: Deadline, limit: int) -> bytes:
    try:
        deadline.remaining()
        return resp.read(limit)
    except Exception:
        return b""


def loads_bounded(body: bytes, max_values: int, what: str) -> Any:
    """``json.loads`` after a cheap count of what the document could amplify into.

    Decoded JSON costs far more than its text (``{}`` is 2 bytes and a 64-byte dict; ``1.5`` 4 bytes and a
    32-byte float): counting ``{``, ``[`` and ``,`` bytes (C speed; those inside strings count too, which
    only errs on the safe side) bounds the number of Python objects before any is built. Nesting deeper
    than the interpreter allows is a ``decode`` error like any other malformed body."""
    values = body.count(b"{") + body.count(b"[") + body.count(b",")
    if values > max_values:
        raise SourceError("protocol", f"{what}: response has more than {max_values} JSON values")
    try:
        return json.loads(body)
    except RecursionError:
        raise SourceError("decode", f"{what}: response nests JSON too deeply") from None
    except ValueError as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise SourceError("decode", f"{what}: response is not JSON ({detail})") from None


def get_json(endpoint: Endpoint, path: str, *, timeout: float, max_bytes: int, what: str, max_values: int,
             query: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None) -> Any:
    """GET and decode JSON within ``max_bytes`` and ``max_values``; a body that is not JSON is a ``decode``
    error."""
    body = get(endpoint, path, timeout=timeout, max_bytes=max_bytes, what=what, query=query, headers=headers)
    return loads_bounded(body, max_values, what)


class Stream:
    """A long-lived GET (a Kubernetes watch) read line by line; :meth:`close` unblocks a reader."""

    def __init__(self, endpoint: Endpoint, path: str, *, query: Mapping[str, str], connect_timeout: float,
                 read_timeout: float, what: str, max_line: int = 2**20) -> None:
        """The request and the response headers must arrive within ``connect_timeout``; the whole stream
        lasts at most ``read_timeout`` (a watch asks the server to end it before: ``timeoutSeconds``)."""
        self.what = what
        self.max_line = max_line
        self._closed = False
        self._conn = endpoint.connection(connect_timeout)
        self._lifetime = Watchdog(read_timeout)
        self._lifetime.attach(self._conn)
        opening = Watchdog(connect_timeout)
        opening.attach(self._conn)
        try:
            self._conn.request("GET", endpoint.path(path, query), headers=_headers(endpoint, "application/json"))
            if self._conn.sock is not None:
                self._conn.sock.settimeout(read_timeout)
            self._resp = self._conn.getresponse()
        except Exception as exc:
            self.close()
            if opening.fired:
                raise SourceError("timeout", f"{what}: no response headers within {connect_timeout:g}s") from None
            raise classify(exc, what) from None
        finally:
            opening.close()
        if self._resp.status != 200:
            body = b""
            with contextlib.suppress(Exception):
                body = self._resp.read(4096)
            self.close()
            raise _status_error(self._resp.status, body, what)

    def lines(self) -> Iterator[bytes]:
        """Yield each non-empty line; ends when the server closes the stream."""
        try:
            while True:
                line = self._resp.readline(self.max_line + 1)
                if not line:
                    return
                if len(line) > self.max_line:
                    raise SourceError("protocol", f"{self.what}: watch event larger than {self.max_line} bytes")
                if line.strip():
                    yield line
        except SourceError:
            raise
        except Exception as exc:
            if self._closed:
                return
            if self._lifetime.fired:
                raise SourceError("timeout", f"{self.what}: the server kept the stream open too long") from None
            raise classify(exc, self.what) from None

    def close(self) -> None:
        """Close the connection (safe from another thread: a blocked read returns)."""
        self._closed = True
        self._lifetime.close()
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._conn.close()
