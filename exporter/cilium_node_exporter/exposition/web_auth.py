"""HTTP basic auth against bcrypt hashes (``basic_auth_users`` of the web configuration), built so that
wrong passwords cost an attacker more than they cost Prometheus:

- a verified credential is remembered (:data:`MAX_VERIFIED` entries), and so is a refused one
  (:data:`MAX_REFUSED`, in a separate table so that refused guesses never push out a verified credential);
  both are keyed on the user, the *stored hash* and the password (an HMAC under a per-process key), so a
  users file re-written with new salts (``helm upgrade`` with Helm's ``htpasswd``) checks the same password
  again instead of refusing it;
- a bcrypt check runs only behind a gate: one at a time, one more may wait up to :data:`GATE_WAIT` seconds,
  any other answers 429 at once. Of the endpoint's worker threads at most two are ever busy with bcrypt,
  so a flood of wrong passwords cannot queue scrapes behind it;
- each peer (an IPv4 address, an IPv6 /64) may cause :data:`PEER_BURST` checks at once and
  :data:`PEER_RATE` per second after that (then 429), so one attacker cannot keep the gate busy;
- an unknown user costs a bcrypt check too (against a stored hash, which never matches for them), so the
  answer time does not tell which users exist; a password over 72 bytes (bcrypt's limit) is refused like a
  wrong one, without a check;
- every refusal is counted by reason (:data:`FAILURE_REASONS`, ``cilium_node_exporter_web_auth_failures_total``).

A check costs what the hash's cost factor says: about 2 ms of CPU at cost 5, 60 ms at cost 10 and 240 ms at
cost 12 (``python -m bench.web_auth`` prints the figures of the machine it runs on).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

import bcrypt

from cilium_node_exporter.contract import WEB_AUTH_FAILURE_REASONS

MAX_VERIFIED = 64
MAX_REFUSED = 1024
MAX_PEERS = 4096
GATE_WAIT = 1.0  # the one waiter's patience (a second Prometheus of an HA pair checking at the same moment)
PEER_BURST = 4.0
PEER_RATE = 1.0  # checks per second per peer once its burst is spent
MAX_PASSWORD = 72  # bcrypt reads at most 72 bytes; longer passwords are refused, never truncated
FAILURE_REASONS = WEB_AUTH_FAILURE_REASONS  # missing, invalid, unknown_user, wrong_password, throttled


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` per second."""

    def __init__(self, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.capacity = rate, capacity
        self.tokens = capacity
        self._clock = clock
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._at) * self.rate)
        self._at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class _Gate:
    """At most one bcrypt check running and one waiting (for at most :data:`GATE_WAIT` seconds)."""

    def __init__(self) -> None:
        self._run = threading.Lock()
        self._wait = threading.Lock()

    def enter(self) -> bool:
        if self._run.acquire(blocking=False):
            return True
        if not self._wait.acquire(blocking=False):
            return False
        try:
            return self._run.acquire(timeout=GATE_WAIT)
        finally:
            self._wait.release()

    def leave(self) -> None:
        self._run.release()


def peer_key(address: str) -> str:
    """The unit a peer is limited by: its IPv4 address, or its IPv6 /64 (one host can hold a whole /64)."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # a dual-stack socket's IPv4 peer
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class BasicAuth:
    """Checks ``Authorization: Basic`` against the users that ``users()`` returns (re-read when the
    configuration changes); :meth:`check` returns None when allowed, else the failure reason."""

    def __init__(self, users: Callable[[], Mapping[str, bytes]], clock: Callable[[], float] = time.monotonic) -> None:
        self._users = users
        self._clock = clock
        self._key = os.urandom(32)
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._refused: OrderedDict[bytes, None] = OrderedDict()
        self._peers: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()  # the tables above
        self._gate = _Gate()
        self.failures: dict[str, int] = dict.fromkeys(FAILURE_REASONS, 0)

    def check(self, header: str | None, peer: str = "") -> str | None:
        reason = self._check(header, peer)
        if reason is not None:
            with self._lock:
                self.failures[reason] += 1
        return reason

    def _check(self, header: str | None, peer: str) -> str | None:
        if not header:
            return "missing"
        if header[:6].lower() != "basic ":
            return "invalid"
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return "invalid"
        user_bytes, sep, password = decoded.partition(b":")
        if not sep:
            return "invalid"
        try:
            user = user_bytes.decode("utf-8")
        except UnicodeDecodeError:
            return "invalid"
        users = self._users()
        stored = users.get(user)
        if len(password) > MAX_PASSWORD:
            return "wrong_password" if stored is not None else "unknown_user"
        # an unknown user is checked against a stored hash too: the same work, never a match for them
        digest = stored if stored is not None else next(iter(users.values()), None)
        if digest is None:
            return "unknown_user"
        key = hmac.new(self._key, b"\0".join((user_bytes, digest, password)), hashlib.sha256).digest()
        with self._lock:
            if key in self._verified:
                self._verified.move_to_end(key)
                return None
            if key in self._refused:
                return "wrong_password" if stored is not None else "unknown_user"
            if not self._peer_allows(peer):
                return "throttled"
        if not self._gate.enter():
            return "throttled"
        try:
            matches = bcrypt.checkpw(password, digest)
        except ValueError:  # a hash bcrypt cannot read (the configuration checks the format, not the salt)
            matches = False
        finally:
            self._gate.leave()
        ok = matches and stored is not None
        with self._lock:
            table, limit = (self._verified, MAX_VERIFIED) if ok else (self._refused, MAX_REFUSED)
            table[key] = None
            if len(table) > limit:
                table.popitem(last=False)
        if ok:
            return None
        return "wrong_password" if stored is not None else "unknown_user"

    def _peer_allows(self, peer: str) -> bool:
        key = peer_key(peer)
        bucket = self._peers.get(key)
        if bucket is None:
            bucket = self._peers[key] = TokenBucket(PEER_RATE, PEER_BURST, self._clock)
            if len(self._peers) > MAX_PEERS:
                self._peers.popitem(last=False)
        else:
            self._peers.move_to_end(key)
        return bucket.take()
