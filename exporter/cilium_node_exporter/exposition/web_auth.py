"""Optional protection of the HTTP endpoint: TLS (mutual with a client CA) and HTTP basic auth.

In the spirit of the Prometheus exporter-toolkit's web configuration (``tls_server_config`` with
``cert_file``/``key_file``/``client_ca_file``, ``basic_auth_users`` with bcrypt hashes), set with flags
instead of a YAML file (no YAML parser in the image). The users file is htpasswd's bcrypt format, one
``user:hash`` per line, as ``htpasswd -nbB USER PASSWORD`` prints it. Certificates, keys and the users
file are re-read when they change (cert-manager rotation, a Secret update), checked every
:data:`RELOAD_CHECK` seconds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import bcrypt

log = logging.getLogger(__name__)

RELOAD_CHECK = 10.0
MAX_CACHED = 64  # successful (user, password digest) pairs kept so that a scrape costs no bcrypt round
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")

T = TypeVar("T")


class WebConfigError(ValueError):
    """A TLS or users file the endpoint cannot use (the message names the file, never its content)."""


class _Reloading(Generic[T]):
    """A value built from files, rebuilt when one of them changes (a failed rebuild keeps the old one)."""

    def __init__(self, paths: Sequence[str], build: Callable[[], T]) -> None:
        self._paths = [p for p in paths if p]
        self._build = build
        self._lock = threading.Lock()
        self._stamp = self._stamps()
        self._value = build()
        self._checked = time.monotonic()

    def _stamps(self) -> tuple[tuple[int, int], ...]:
        out = []
        for path in self._paths:
            try:
                st = os.stat(path)
                out.append((st.st_mtime_ns, st.st_ino))
            except OSError:
                out.append((0, 0))
        return tuple(out)

    def current(self) -> T:
        now = time.monotonic()
        if now - self._checked < RELOAD_CHECK:
            return self._value
        with self._lock:
            self._checked = now
            stamp = self._stamps()
            if stamp != self._stamp:
                try:
                    self._value = self._build()
                    log.info("web: reloaded %s", ", ".join(self._paths))
                except WebConfigError as exc:
                    log.error("web: %s; keeping the previous configuration", exc)
                self._stamp = stamp
        return self._value


class TlsConfig:
    """The server's TLS context from PEM files; ``client_ca`` makes client certificates mandatory."""

    def __init__(self, cert: str, key: str, client_ca: str = "") -> None:
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self._ctx = _Reloading([cert, key, client_ca], self._build)

    def _build(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(f"cannot load the TLS certificate {self.cert} and key {self.key}: "
                                 f"{getattr(exc, 'strerror', None) or type(exc).__name__}") from None
        if self.client_ca:
            try:
                ctx.load_verify_locations(cafile=self.client_ca)
            except (OSError, ssl.SSLError) as exc:
                raise WebConfigError(f"cannot load the client CA {self.client_ca}: "
                                     f"{getattr(exc, 'strerror', None) or type(exc).__name__}") from None
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def context(self) -> ssl.SSLContext:
        return self._ctx.current()


def _load_users(path: str) -> dict[str, bytes]:
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise WebConfigError(f"cannot read the users file {path}: "
                             f"{getattr(exc, 'strerror', None) or type(exc).__name__}") from None
    users: dict[str, bytes] = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, digest = line.partition(":")
        if not sep or not user or not digest.startswith(_BCRYPT_PREFIXES) or len(digest) != 60:
            raise WebConfigError(f"users file {path} line {number}: not 'user:bcrypt-hash' "
                                 "(create lines with `htpasswd -nbB USER PASSWORD`)")
        users[user] = digest.encode()
    if not users:
        raise WebConfigError(f"users file {path} lists no user")
    return users


class BasicAuth:
    """Checks ``Authorization: Basic`` against the users file. bcrypt rounds run one at a time (a flood of
    wrong passwords costs at most one core); a successful pair is remembered by its SHA-256 digest."""

    def __init__(self, users_file: str) -> None:
        self.users_file = users_file
        self._users = _Reloading([users_file], lambda: _load_users(users_file))
        self._ok: dict[tuple[str, bytes], bytes] = {}
        self._bcrypt = threading.Lock()

    def allows(self, header: str | None) -> bool:
        if not header or header[:6].lower() != "basic ":
            return False
        try:
            user, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return False
        users = self._users.current()
        digest = users.get(user)
        if not sep or digest is None:
            return False
        key = (user, hashlib.sha256(password.encode()).digest())
        cached = self._ok.get(key)
        if cached is not None:
            return hmac.compare_digest(cached, digest)
        with self._bcrypt:
            ok = bcrypt.checkpw(password.encode(), digest)
        if ok:
            if len(self._ok) >= MAX_CACHED:
                self._ok.clear()
            self._ok[key] = digest
        return ok

