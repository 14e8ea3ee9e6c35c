"""The endpoint's web configuration file, in the format of the Prometheus exporter-toolkit's
``--web.config.file`` (``docs/web-configuration.md`` of prometheus/exporter-toolkit), so that an
organisation's standard web-config Secret serves here unchanged::

    tls_server_config: {cert_file, key_file, cert, key, client_ca_file, client_ca, client_auth_type,
                        client_allowed_sans, min_version, max_version, cipher_suites,
                        prefer_server_cipher_suites, curve_preferences}
    http_server_config: {http2, headers}
    basic_auth_users: {user: bcrypt-hash}
    rate_limit: {interval, burst}

Read like the toolkit reads it: unknown keys are errors (``yaml.UnmarshalStrict``), relative file paths
are relative to the configuration file, only the toolkit's five response headers may be set, every user
needs a bcrypt hash. Where this server differs, it says so at load:

- TLS 1.2 serves AEAD suites only (ECDHE with AES-GCM or ChaCha20-Poly1305; TLS 1.3's are all AEAD): CBC
  suites in ``cipher_suites`` are left out with a warning, and ``min_version`` below TLS12 is raised to it;
- ``client_auth_type`` RequestClientCert and RequireAnyClientCert (which accept certificates nobody
  verified) are refused: use RequireAndVerifyClientCert (or VerifyClientCertIfGiven) with a client CA;
- HTTP/1.1 only: ``http2`` is accepted and has no effect;
- OpenSSL takes one elliptic curve or its own list: with several ``curve_preferences`` its defaults stay
  (they include the four the toolkit names).

The file and the files it names are re-read when they change (:class:`WebConfigFile`), checked every
:data:`RELOAD_CHECK` seconds; a change that does not load keeps the previous configuration.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import yaml

from cilium_node_exporter.units import UnitError, parse_duration

log = logging.getLogger(__name__)

RELOAD_CHECK = 1.0
T = TypeVar("T")

# exporter-toolkit web/handler.go extraHTTPHeaders: the only headers it lets a configuration set, and the
# values allowed where the header is an enumeration.
RESPONSE_HEADERS: Mapping[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (), "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"), "X-XSS-Protection": (), "Content-Security-Policy": ()}
CLIENT_AUTH = {"": ssl.CERT_NONE, "NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1, "TLS12": ssl.TLSVersion.TLSv1_2,
                "TLS13": ssl.TLSVersion.TLSv1_3}
# Go's crypto/tls CipherSuites() by Go name: the OpenSSL name of each TLS 1.2 suite, None for TLS 1.3
# suites (not configurable in Go either), and whether it is AEAD.
CIPHERS: Mapping[str, tuple[str | None, bool]] = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": ("ECDHE-ECDSA-AES128-GCM-SHA256", True),
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": ("ECDHE-ECDSA-AES256-GCM-SHA384", True),
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": ("ECDHE-RSA-AES128-GCM-SHA256", True),
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": ("ECDHE-RSA-AES256-GCM-SHA384", True),
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": ("ECDHE-ECDSA-CHACHA20-POLY1305", True),
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": ("ECDHE-RSA-CHACHA20-POLY1305", True),
    "TLS_AES_128_GCM_SHA256": (None, True), "TLS_AES_256_GCM_SHA384": (None, True),
    "TLS_CHACHA20_POLY1305_SHA256": (None, True),
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": ("ECDHE-ECDSA-AES128-SHA", False),
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": ("ECDHE-ECDSA-AES256-SHA", False),
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": ("ECDHE-RSA-AES128-SHA", False),
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": ("ECDHE-RSA-AES256-SHA", False),
}
# TLS 1.2 without a cipher_suites list: ECDHE key exchange and AEAD encryption only (Mozilla "intermediate").
DEFAULT_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}
_BCRYPT = re.compile(r"^\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}$")
_SECTIONS = {"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"}
_TLS_KEYS = {"cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type", "client_ca_file",
             "client_allowed_sans", "min_version", "max_version", "cipher_suites", "prefer_server_cipher_suites",
             "curve_preferences"}


class WebConfigError(ValueError):
    """A web configuration (or a file it names) the endpoint cannot use; the message names the file and the
    key, never a secret."""


@dataclass(frozen=True)
class TlsSettings:
    """``tls_server_config``, checked; PEM text inline or file paths (already made absolute)."""

    cert_file: str = ""
    key_file: str = ""
    cert: str = ""
    key: str = field(default="", repr=False)
    client_ca_file: str = ""
    client_ca: str = ""
    client_auth: str = "NoClientCert"
    client_allowed_sans: tuple[str, ...] | None = None
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    ciphers: tuple[str, ...] = ()  # OpenSSL names of the TLS 1.2 suites; () = DEFAULT_TLS12_CIPHERS
    curve: str = ""  # the one OpenSSL curve, when exactly one is listed
    prefer_server_cipher_suites: bool = True

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(p for p in (self.cert_file, self.key_file, self.client_ca_file) if p)


@dataclass(frozen=True)
class RateLimit:
    """``rate_limit``: a token bucket over every request (``interval`` seconds per token, ``burst`` tokens)."""

    interval: float
    burst: int


@dataclass(frozen=True)
class WebConfig:
    """One loaded configuration file."""

    path: str
    tls: TlsSettings | None = None
    users: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)
    rate_limit: RateLimit | None = None

    @property
    def files(self) -> tuple[str, ...]:
        """Every file whose change means a reload: the configuration and the files it names."""
        return (self.path, *(self.tls.files if self.tls else ()))


def load(path: str) -> WebConfig:
    """Read and check the file at ``path`` (:class:`WebConfigError` when it cannot be used)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read(1 << 20)
    except (OSError, UnicodeDecodeError) as exc:
        raise WebConfigError(f"cannot read the web configuration {path}: "
                             f"{getattr(exc, 'strerror', None) or 'not UTF-8'}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise WebConfigError(f"web configuration {path}{where}: not YAML") from None
    return parse(doc, path)


def parse(doc: Any, path: str) -> WebConfig:
    """A :class:`WebConfig` from a decoded YAML document (``None``: the empty file, no TLS, no auth)."""
    where = f"web configuration {path}"
    if doc is None:
        return WebConfig(path)
    if not isinstance(doc, dict):
        raise WebConfigError(f"{where}: not a mapping of {', '.join(sorted(_SECTIONS))}")
    _known(doc, _SECTIONS, where)
    base = os.path.dirname(os.path.abspath(path))
    tls = _tls(doc.get("tls_server_config"), base, where)
    return WebConfig(path, tls=tls, users=_users(doc.get("basic_auth_users"), where),
                     headers=_headers(doc.get("http_server_config"), where),
                     rate_limit=_rate_limit(doc.get("rate_limit"), where))


def _known(section: Mapping[Any, Any], keys: set[str], where: str) -> None:
    unknown = sorted(str(k) for k in section if k not in keys)
    if unknown:
        raise WebConfigError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(keys))})")


def _mapping(value: Any, where: str) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"{where}: not a mapping")
    return value


def _string(section: Mapping[str, Any], key: str, where: str) -> str:
    value = section.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise WebConfigError(f"{where}: {key} is not a string")
    return value


def _strings(section: Mapping[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WebConfigError(f"{where}: {key} is not a list of strings")
    return tuple(value)


def _tls(value: Any, base: str, where: str) -> TlsSettings | None:
    where = f"{where} tls_server_config"
    section = _mapping(value, where)
    _known(section, _TLS_KEYS, where)
    text = {k: _string(section, k, where) for k in ("cert", "key", "client_ca", "cert_file", "key_file",
                                                     "client_ca_file", "client_auth_type")}
    if not any(text.values()):  # the toolkit's TLSConfig.IsEnabled(): absent or empty means plain HTTP
        return None
    if not (text["cert"] or text["cert_file"]):
        raise WebConfigError(f"{where}: missing one of cert or cert_file")
    if not (text["key"] or text["key_file"]):
        raise WebConfigError(f"{where}: missing one of key or key_file")
    auth = text["client_auth_type"]
    if auth in UNVERIFIED_CLIENT_AUTH:
        raise WebConfigError(f"{where}: client_auth_type {auth} accepts client certificates nobody verified; use "
                             "RequireAndVerifyClientCert (or VerifyClientCertIfGiven) with client_ca_file")
    if auth not in CLIENT_AUTH:
        raise WebConfigError(f"{where}: invalid client_auth_type {auth!r} (one of NoClientCert, "
                             "VerifyClientCertIfGiven, RequireAndVerifyClientCert)")
    has_ca = bool(text["client_ca"] or text["client_ca_file"])
    if has_ca and CLIENT_AUTH[auth] == ssl.CERT_NONE:
        raise WebConfigError(f"{where}: client CA's have been configured without a client_auth_type")
    if CLIENT_AUTH[auth] != ssl.CERT_NONE and not has_ca:
        raise WebConfigError(f"{where}: client_auth_type {auth} needs client_ca_file (or client_ca)")
    min_version = _version(section, "min_version", ssl.TLSVersion.TLSv1_2, where)
    if min_version < ssl.TLSVersion.TLSv1_2:
        log.warning("%s: min_version %s raised to TLS12 (TLS 1.0 and 1.1 are not served)", where,
                    section["min_version"])
        min_version = ssl.TLSVersion.TLSv1_2
    max_version = _version(section, "max_version", ssl.TLSVersion.TLSv1_3, where)
    if max_version < min_version:
        raise WebConfigError(f"{where}: max_version is below min_version")
    prefer = section.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError(f"{where}: prefer_server_cipher_suites is not a boolean")

    def absolute(p: str) -> str:
        return os.path.join(base, p) if p and not os.path.isabs(p) else p

    return TlsSettings(
        cert_file=absolute(text["cert_file"]), key_file=absolute(text["key_file"]), cert=text["cert"],
        key=text["key"], client_ca_file=absolute(text["client_ca_file"]), client_ca=text["client_ca"],
        client_auth=auth or "NoClientCert", client_allowed_sans=_strings(section, "client_allowed_sans", where),
        min_version=min_version, max_version=max_version, ciphers=_ciphers(section, max_version, where),
        curve=_curve(section, where), prefer_server_cipher_suites=prefer)


def _version(section: Mapping[str, Any], key: str, default: ssl.TLSVersion, where: str) -> ssl.TLSVersion:
    value = section.get(key)
    if value is None:
        return default
    if value not in TLS_VERSIONS:
        raise WebConfigError(f"{where}: unknown TLS version {value!r} in {key} (TLS12 or TLS13)")
    return TLS_VERSIONS[value]


def _ciphers(section: Mapping[str, Any], max_version: ssl.TLSVersion, where: str) -> tuple[str, ...]:
    names = _strings(section, "cipher_suites", where) or ()
    unknown = [n for n in names if n not in CIPHERS]
    if unknown:
        raise WebConfigError(f"{where}: unknown cipher {unknown[0]!r}")
    cbc = [n for n in names if not CIPHERS[n][1]]
    if cbc:
        log.warning("%s: CBC cipher suites left out (TLS 1.2 is served with AEAD suites only): %s", where,
                    ", ".join(cbc))
    chosen = tuple(openssl for n in names if (openssl := CIPHERS[n][0]) is not None and CIPHERS[n][1])
    if names and not chosen and max_version < ssl.TLSVersion.TLSv1_3:
        raise WebConfigError(f"{where}: no AEAD TLS 1.2 cipher suite left in cipher_suites")
    return chosen


def _curve(section: Mapping[str, Any], where: str) -> str:
    names = _strings(section, "curve_preferences", where) or ()
    unknown = [n for n in names if n not in CURVES]
    if unknown:
        raise WebConfigError(f"{where}: unknown curve {unknown[0]!r}")
    if len(names) > 1:
        log.info("%s: curve_preferences lists %d curves; OpenSSL's default list (with all of them) is used",
                 where, len(names))
    return CURVES[names[0]] if len(names) == 1 else ""


def _users(value: Any, where: str) -> dict[str, bytes]:
    where = f"{where} basic_auth_users"
    users: dict[str, bytes] = {}
    for user, digest in _mapping(value, where).items():
        if not isinstance(user, str) or not isinstance(digest, str) or not _BCRYPT.match(digest):
            raise WebConfigError(f"{where}: user {str(user)[:64]!r} has no bcrypt hash (create one with "
                                 "`htpasswd -nBC 10 \"\" | tr -d ':\\n'`)")
        users[user] = digest.encode()
    return users


def _headers(value: Any, where: str) -> dict[str, str]:
    where = f"{where} http_server_config"
    section = _mapping(value, where)
    _known(section, {"http2", "headers"}, where)
    if not isinstance(section.get("http2", True), bool):
        raise WebConfigError(f"{where}: http2 is not a boolean")
    headers: dict[str, str] = {}
    for name, text in _mapping(section.get("headers"), f"{where} headers").items():
        if name not in RESPONSE_HEADERS:
            raise WebConfigError(f"{where}: HTTP header {name!r} can not be configured")
        text = "" if text is None else str(text)
        allowed = RESPONSE_HEADERS[name]
        if allowed and text not in allowed:
            raise WebConfigError(f"{where}: invalid value for {name}: expected one of {', '.join(allowed)}")
        if any(c in text for c in "\r\n\0"):
            raise WebConfigError(f"{where}: {name} holds a line break")
        if text:
            headers[name] = text
    return headers


def _rate_limit(value: Any, where: str) -> RateLimit | None:
    where = f"{where} rate_limit"
    section = _mapping(value, where)
    _known(section, {"interval", "burst"}, where)
    interval = section.get("interval", 0)
    burst = section.get("burst", 0)
    if isinstance(interval, bool) or not isinstance(interval, int | str):
        raise WebConfigError(f"{where}: interval is not a duration")
    try:  # Go decodes a YAML integer into a time.Duration as nanoseconds
        seconds = interval / 1e9 if isinstance(interval, int) else parse_duration(interval)
    except UnitError as exc:
        raise WebConfigError(f"{where}: {exc}") from None
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
        raise WebConfigError(f"{where}: burst is not a whole number")
    return RateLimit(seconds, burst) if seconds > 0 else None


def ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """The server context for ``tls`` (loads the certificate, key and client CA: :class:`WebConfigError`)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = tls.min_version
    ctx.maximum_version = tls.max_version
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_ciphers(":".join(tls.ciphers) if tls.ciphers else DEFAULT_TLS12_CIPHERS)
    if tls.curve:
        ctx.set_ecdh_curve(tls.curve)
    _load_chain(ctx, tls)
    if tls.client_auth != "NoClientCert":
        try:
            if tls.client_ca_file:
                ctx.load_verify_locations(cafile=tls.client_ca_file)
            else:
                ctx.load_verify_locations(cadata=tls.client_ca)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise WebConfigError(f"cannot load the client CA {tls.client_ca_file or '(client_ca)'}: "
                                 f"{getattr(exc, 'strerror', None) or type(exc).__name__}") from None
        ctx.verify_mode = CLIENT_AUTH[tls.client_auth]
    return ctx


def _load_chain(ctx: ssl.SSLContext, tls: TlsSettings) -> None:
    """Certificate and key from their files, or from inline PEM through private temporary files (OpenSSL
    loads a chain from files only); the temporary files are removed at once."""
    with contextlib.ExitStack() as stack:
        paths = []
        for path, pem in ((tls.cert_file, tls.cert), (tls.key_file, tls.key)):
            if not path:
                tmp = stack.enter_context(tempfile.NamedTemporaryFile("w", suffix=".pem", encoding="utf-8"))
                tmp.write(pem)
                tmp.flush()
                path = tmp.name
            paths.append(path)
        try:
            ctx.load_cert_chain(paths[0], paths[1])
        except (OSError, ssl.SSLError) as exc:
            cert = tls.cert_file or "(cert)"
            raise WebConfigError(f"cannot load the TLS certificate {cert} and key {tls.key_file or '(key)'}: "
                                 f"{getattr(exc, 'strerror', None) or type(exc).__name__}") from None


def peer_allowed(cert: Mapping[str, Any] | None, allowed: Sequence[str] | None) -> bool:
    """``client_allowed_sans``: the client certificate has a DNS, IP, e-mail or URI SAN in ``allowed``
    (exactly, as the toolkit's ``VerifyPeerCertificate``); True when no list is configured."""
    if allowed is None:
        return True
    if not cert:
        return False
    sans = {_normal(value) for kind, value in cert.get("subjectAltName", ())
            if kind in ("DNS", "IP Address", "email", "URI")}
    return bool(sans & {_normal(a) for a in allowed})


def _normal(value: str) -> str:
    """An IP address in one spelling (OpenSSL writes IPv6 SANs expanded and upper-case, Go compressed)."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return value


@dataclass(frozen=True)
class Loaded:
    """A configuration with its TLS context (None without TLS)."""

    config: WebConfig
    context: ssl.SSLContext | None


def load_with_context(path: str) -> Loaded:
    config = load(path)
    return Loaded(config, ssl_context(config.tls) if config.tls else None)


class Reloading(Generic[T]):
    """A value built from files, rebuilt when one of them changes (a failed rebuild keeps the old one).
    ``files`` names the files the current value depends on."""

    def __init__(self, build: Callable[[], T], files: Callable[[T], Sequence[str]],
                 accept: Callable[[T, T], str] = lambda old, new: "") -> None:
        self._build = build
        self._files = files
        self._accept = accept  # a reason to refuse a new value (e.g. TLS switched on or off), "" to take it
        self._lock = threading.Lock()
        self._value = build()
        self._stamp = self._stamps(self._value)
        self._checked = time.monotonic()

    def _stamps(self, value: T) -> tuple[tuple[str, int, int, int], ...]:
        out = []
        for path in self._files(value):
            try:
                st = os.stat(path)
                out.append((path, st.st_mtime_ns, st.st_ino, st.st_size))
            except OSError:
                out.append((path, 0, 0, 0))
        return tuple(out)

    def current(self) -> T:
        now = time.monotonic()
        if now - self._checked < RELOAD_CHECK:
            return self._value
        with self._lock:
            if now - self._checked < RELOAD_CHECK:
                return self._value
            self._checked = now
            stamp = self._stamps(self._value)
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    new = self._build()
                    refused = self._accept(self._value, new)
                    if refused:
                        log.error("web: %s; keeping the previous configuration", refused)
                    else:
                        self._value = new
                        self._stamp = self._stamps(new)
                        log.info("web: reloaded %s", ", ".join(self._files(new)))
                except WebConfigError as exc:
                    log.error("web: %s; keeping the previous configuration", exc)
        return self._value


class WebConfigFile:
    """The web configuration file, re-read when it or a file it names changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = Reloading(lambda: load_with_context(path), lambda loaded: loaded.config.files,
                               self._switch)

    @staticmethod
    def _switch(old: Loaded, new: Loaded) -> str:
        if (old.context is None) != (new.context is None):
            return "switching TLS on or off needs a restart"
        return ""

    def current(self) -> Loaded:
        return self._file.current()

    @property
    def tls(self) -> bool:
        """TLS is on (decided at start: switching needs a restart)."""
        return self.current().context is not None
