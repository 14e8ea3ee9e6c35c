"""Realistic Hubble flows for the simulator, pre-serialized per emulated Cilium version.

An :class:`EventSpec` (one line of a scenario's ``rates``) describes one kind of event: a trace,
a drop, a policy-denied packet (two flows: a type-5 verdict and a type-1 drop), an explicit deny,
a policy verdict, an HTTP request/response pair or a DNS request/response pair. A
:class:`FlowFactory` compiles it into a pool of distinct *occurrences* (tuples of
:class:`FlowTemplate`), each flow serialized once without ``time`` and ``uuid``; the
:class:`Stamper` splices those two fields in per event (protobuf accepts fields in any order), so
producing an event costs a ``bytes.join``, not a protobuf round trip.

Version emulation (hubble-api.md §7) strips fields the emulated version does not have: ``uuid``
(<1.14), ``*_allowed_by`` (<1.15), ``*_denied_by``/cluster_name/node_labels/trace_reason (<1.16),
``Policy.kind``/``file`` (<1.17), ``emitter`` (<1.19).
"""

from __future__ import annotations

import random
import re
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from cilium_node_exporter import contract
from cilium_node_exporter.api.flow import flow_pb2
from cilium_node_exporter.api.observer import observer_pb2
from cilium_node_simulator.grpc_wire import fast_varint, frame, frame_header, len_field, tag, timestamp

Version = tuple[int, int, int]
EVENT_KINDS = ("trace", "drop", "policy_denied", "policy_deny", "verdict", "http", "dns")
RESERVED_IDENTITIES = {"host": 1, "world": 2, "unmanaged": 3, "health": 4, "init": 5, "remote-node": 6,
                       "kube-apiserver": 7, "ingress": 8}
DIRECTIONS = {"unknown": 0, "ingress": 1, "egress": 2}
ACTIONS = {"unknown": 0, "forwarded": 1, "dropped": 2, "error": 3, "audit": 4, "redirected": 5,
           "traced": 6, "translated": 7}
MATCHES = {name: code for code, name in contract.MATCH_BY_TYPE.items()}
DROP_CODES = {name: code for code, name in contract.DROP_REASON_NAME_BY_CODE.items()}
LOST_SOURCES = {name: code for code, name in contract.LOST_SOURCE_BY_ENUM.items() if code}
UNKNOWN_FIELD_BYTES = tag(9999, 0) + b"\x01" + len_field(9998, b"\x08\x2a")  # fields 9999/9998
_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+].*)?$")


class SpecError(ValueError):
    """An event spec (or a scenario) is invalid; the message names the offending key."""


def parse_version(text: str) -> Version:
    """``"1.19.4"`` (or ``v1.16``, ``1.15.3-rc1``) → (1, 19, 4)."""
    match = _VERSION_RE.match(str(text).strip())
    if not match:
        raise SpecError(f"invalid version {text!r} (use X.Y.Z, e.g. 1.19.4)")
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


# --- event specs ---------------------------------------------------------------------------------

def _enum(value: Any, table: Mapping[str, int], what: str, where: str) -> int:
    if isinstance(value, bool):
        raise SpecError(f"{where}: invalid {what} {value!r}")
    if isinstance(value, int):
        if value < 0 or value > 2**31 - 1:
            raise SpecError(f"{where}: {what} {value} out of range")
        return value
    key = str(value).strip()
    for candidate in (key, key.lower(), key.upper()):
        if candidate in table:
            return table[candidate]
    raise SpecError(f"{where}: unknown {what} {value!r} (one of {', '.join(table)} or a number)")


def _identity(value: Any, where: str, what: str) -> int | None:
    if value is None:
        return None
    return _enum(value, RESERVED_IDENTITIES, what, where)


def _workload(value: Any, where: str, what: str) -> str | None:
    if value is None:
        return None
    text = str(value)
    if text.count("/") != 1 or not all(text.split("/")):
        raise SpecError(f"{where}: {what} must be 'namespace/workload', got {value!r}")
    return text


@dataclass(frozen=True)
class EventSpec:
    """One kind of event and its rate (events per simulated second; a policy-denied event is 2 flows)."""

    type: str
    rate: float = 0.0
    reason: int = 0
    direction: int = 1
    match: int | None = None
    action: int = 1
    method: str = "GET"
    path: str = "/api/v1/items"
    query: str = "api.example.com."
    protocol: str = "tcp"
    source: str | None = None
    destination: str | None = None
    source_identity: int | None = None
    destination_identity: int | None = None
    policy: str | None = None
    unknown_field: bool = False
    pool: int = 16

    def __post_init__(self) -> None:
        if self.type not in EVENT_KINDS:
            raise SpecError(f"event type must be one of {', '.join(EVENT_KINDS)}, got {self.type!r}")

    @classmethod
    def from_mapping(cls, data: Any, where: str = "event") -> EventSpec:
        """Build and validate a spec from a scenario mapping; errors name ``where`` and the key."""
        if not isinstance(data, Mapping):
            raise SpecError(f"{where}: expected a mapping like {{type: drop, reason: POLICY_DENIED, rate: 5}}")
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise SpecError(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(known))})")
        kind = data.get("type")
        if kind not in EVENT_KINDS:
            raise SpecError(f"{where}: 'type' must be one of {', '.join(EVENT_KINDS)}, got {kind!r}")
        kw: dict[str, Any] = {"type": kind}
        rate = data.get("rate", 0.0)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or rate < 0:
            raise SpecError(f"{where}: 'rate' must be a non-negative number (events per second), got {rate!r}")
        kw["rate"] = float(rate)
        if kind == "drop":
            if "reason" not in data:
                raise SpecError(f"{where}: a drop needs 'reason' (e.g. CT_MAP_INSERTION_FAILED or 250)")
            kw["reason"] = _enum(data["reason"], DROP_CODES, "reason", where)
        elif "reason" in data:
            raise SpecError(f"{where}: 'reason' only applies to type drop "
                            "(policy_denied is 133, policy_deny is 181)")
        if "direction" in data:
            kw["direction"] = _enum(data["direction"], DIRECTIONS, "direction", where)
        elif kind == "dns":
            kw["direction"] = 2
        if "match" in data:
            kw["match"] = _enum(data["match"], MATCHES, "match", where)
        if "action" in data:
            if kind not in ("verdict", "http", "dns"):
                raise SpecError(f"{where}: 'action' only applies to verdict, http and dns")
            kw["action"] = _enum(data["action"], ACTIONS, "action", where)
        for key in ("method", "path", "query"):
            if key in data:
                if not isinstance(data[key], str) or not data[key]:
                    raise SpecError(f"{where}: {key!r} must be a non-empty string")
                kw[key] = data[key]
        if "protocol" in data:
            proto = str(data["protocol"]).lower()
            if proto not in ("tcp", "udp", "icmp"):
                raise SpecError(f"{where}: 'protocol' must be tcp, udp or icmp, got {data['protocol']!r}")
            kw["protocol"] = proto
        elif kind == "dns":
            kw["protocol"] = "udp"
        kw["source"] = _workload(data.get("source"), where, "source")
        kw["destination"] = _workload(data.get("destination"), where, "destination")
        kw["source_identity"] = _identity(data.get("source_identity"), where, "source_identity")
        kw["destination_identity"] = _identity(data.get("destination_identity"), where, "destination_identity")
        kw["policy"] = _workload(data.get("policy"), where, "policy")
        if "unknown_field" in data:
            if not isinstance(data["unknown_field"], bool):
                raise SpecError(f"{where}: 'unknown_field' must be true or false")
            kw["unknown_field"] = data["unknown_field"]
        if "pool" in data:
            pool = data["pool"]
            if isinstance(pool, bool) or not isinstance(pool, int) or not 1 <= pool <= 10000:
                raise SpecError(f"{where}: 'pool' must be an integer 1..10000")
            kw["pool"] = pool
        return cls(**kw)


# --- ground truth contributions -------------------------------------------------------------------

def direction_label(code: int) -> str:
    return contract.DIRECTION_BY_ENUM.get(code, "unknown")


def match_label(code: int) -> str:
    return contract.MATCH_BY_TYPE.get(code, contract.MATCH_UNKNOWN)


def action_label(code: int) -> str:
    return contract.ACTION_BY_VERDICT.get(code, "unknown")


def method_label(method: str) -> str:
    return method if method in contract.HTTP_METHODS else "other"


# --- the cluster -------------------------------------------------------------------------------

_WORKLOADS = (
    ("shop", "frontend", 8080), ("shop", "cart", 8080), ("shop", "checkout", 8080),
    ("payments", "api", 8443), ("payments", "ledger", 5432), ("default", "xwing", 80),
    ("default", "deathstar", 80), ("monitoring", "prometheus", 9090), ("kube-system", "coredns", 53),
)
_RESERVED_LABEL = {1: "reserved:host", 2: "reserved:world", 3: "reserved:unmanaged", 4: "reserved:health",
                   5: "reserved:init", 6: "reserved:remote-node", 7: "reserved:kube-apiserver",
                   8: "reserved:ingress"}
_TRACE_POINTS = ((0, flow_pb2.TO_ENDPOINT), (3, flow_pb2.TO_STACK), (5, flow_pb2.FROM_ENDPOINT),
                 (2, flow_pb2.TO_HOST))
_DROP_FILES = {155: ("conntrack.h", 1032), 133: ("bpf_lxc.c", 2110), 181: ("bpf_lxc.c", 2110)}


@dataclass
class _Peer:
    endpoint: flow_pb2.Endpoint
    ip: str
    port: int
    name: str  # "ns/workload" or reserved label


class FlowTemplate:
    """One pre-serialized flow without time and uuid; identity-hashed (filters cache per template)."""

    __slots__ = ("event_type", "flow", "fmt", "fmt_ts", "heads", "is_lost", "masked", "rest")

    def __init__(self, flow: flow_pb2.Flow | None, rest: bytes, is_lost: bool = False) -> None:
        self.flow = flow
        self.rest = rest
        self.is_lost = is_lost
        self.event_type = flow.event_type.type if flow is not None else -1
        self.heads: dict[int, bytes] = {}
        self.masked: dict[Any, tuple[Any, ...]] = {}
        self.fmt = b""
        self.fmt_ts: bytes | None = None


LOST_TEMPLATE = FlowTemplate(None, b"", is_lost=True)


@dataclass
class CompiledSpec:
    """A spec ready to produce: distinct occurrences and what each occurrence adds to the ground truth."""

    spec: EventSpec
    occurrences: list[tuple[FlowTemplate, ...]]
    truth: list[tuple[str, tuple[Any, ...]]]
    next_index: int = 0

    @property
    def flows_per_occurrence(self) -> int:
        return len(self.occurrences[0])


class FlowFactory:
    """Builds flows for one node and emulated version."""

    def __init__(self, node: str = "sim-1", version: str = "1.19.4", seed: int = 1) -> None:
        self.node = node
        self.version_text = version
        self.version = parse_version(version)
        self.seed = seed

    # -- endpoints --------------------------------------------------------------------------
    def _workload_peer(self, name: str, rng: random.Random) -> _Peer:
        ns, wl = name.split("/")
        crc = zlib.crc32(name.encode())
        port = next((p for n, w, p in _WORKLOADS if n == ns and w == wl), 8080)
        replica = rng.randrange(3)
        suffix = "".join(rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
        ep = flow_pb2.Endpoint(
            ID=100 + crc % 3900 + replica, identity=10000 + crc % 50000, namespace=ns,
            labels=[f"k8s:app={wl}", "k8s:io.cilium.k8s.policy.cluster=default",
                    f"k8s:io.kubernetes.pod.namespace={ns}"],
            pod_name=f"{wl}-{crc % 0xFFFFFFFF:08x}"[:len(wl) + 11] + f"-{suffix}",
            workloads=[flow_pb2.Workload(name=wl, kind="Deployment")])
        if self.version >= (1, 16, 0):
            ep.cluster_name = "default"
        ip = f"10.244.{(crc >> 8) % 4}.{10 + (crc + replica * 7) % 240}"
        return _Peer(ep, ip, port, name)

    def _reserved_peer(self, identity: int, rng: random.Random) -> _Peer:
        label = _RESERVED_LABEL.get(identity)
        ep = flow_pb2.Endpoint(identity=identity, labels=[label] if label else [])
        if identity == 2:
            ip = f"203.0.113.{rng.randrange(1, 255)}"
        elif identity == 1:
            ip = "10.244.0.1"
        elif identity == 4:
            ep.ID = 3004
            ip = "10.244.0.77"
        elif identity == 7:
            ip = "172.18.0.2"
        else:
            ip = f"10.244.9.{rng.randrange(1, 255)}"
        if self.version >= (1, 16, 0) and identity not in (2,):
            ep.cluster_name = "default"
        return _Peer(ep, ip, 443 if identity == 7 else 4240 if identity == 4 else 80, label or str(identity))

    def _peer(self, workload: str | None, identity: int | None, rng: random.Random, avoid: str = "") -> _Peer:
        if identity is not None and identity < 256:
            return self._reserved_peer(identity, rng)
        if workload is None:
            choices = [f"{n}/{w}" for n, w, _ in _WORKLOADS if f"{n}/{w}" != avoid]
            workload = rng.choice(choices)
        peer = self._workload_peer(workload, rng)
        if identity is not None:
            peer.endpoint.identity = identity
        return peer

    def _policy(self, spec: EventSpec, dst: _Peer, deny: bool) -> flow_pb2.Policy:
        if spec.policy:
            ns, name = spec.policy.split("/")
        else:
            ns = dst.endpoint.namespace or "default"
            name = ("deny-" if deny else "allow-") + (dst.name.split("/")[-1] if "/" in dst.name else "world")
        pol = flow_pb2.Policy(
            name=name, namespace=ns, revision=zlib.crc32(name.encode()) % 40 + 2,
            labels=["k8s:io.cilium.k8s.policy.derived-from=CiliumNetworkPolicy",
                    f"k8s:io.cilium.k8s.policy.name={name}", f"k8s:io.cilium.k8s.policy.namespace={ns}",
                    f"k8s:io.cilium.k8s.policy.uid={uuid.UUID(int=zlib.crc32(name.encode()) << 64)}"])
        if self.version >= (1, 17, 0):
            pol.kind = "CiliumNetworkPolicy"
        return pol

    # -- flows ------------------------------------------------------------------------------
    def _base(self, spec: EventSpec, src: _Peer, dst: _Peer, rng: random.Random, event_type: int,
              sub_type: int = 0) -> flow_pb2.Flow:
        f = flow_pb2.Flow(node_name=self.node, Type=flow_pb2.L3_L4)
        f.IP.source, f.IP.destination, f.IP.ipVersion = src.ip, dst.ip, flow_pb2.IPv4
        f.source.CopyFrom(src.endpoint)
        f.destination.CopyFrom(dst.endpoint)
        f.event_type.type = event_type
        if sub_type:
            f.event_type.sub_type = sub_type
        sport = rng.randrange(32768, 60999)
        if spec.protocol == "udp":
            f.l4.UDP.source_port, f.l4.UDP.destination_port = sport, dst.port
        elif spec.protocol == "icmp":
            f.l4.ICMPv4.type = 8
        else:
            f.l4.TCP.source_port, f.l4.TCP.destination_port = sport, dst.port
        if self.version >= (1, 16, 0):
            f.node_labels.extend([f"kubernetes.io/hostname={self.node}", "kubernetes.io/os=linux"])
        if self.version >= (1, 19, 0):
            f.emitter.name, f.emitter.version = "Hubble", self.version_text.lstrip("v")
        return f

    def _summary(self, f: flow_pb2.Flow) -> None:
        if f.l4.HasField("TCP"):
            flags = [n for n in ("SYN", "ACK", "FIN", "RST", "PSH") if getattr(f.l4.TCP.flags, n)]
            f.Summary = "TCP Flags: " + ", ".join(flags) if flags else "TCP"
        elif f.l4.HasField("UDP"):
            f.Summary = "UDP"
        elif f.l4.HasField("ICMPv4"):
            f.Summary = "ICMPv4 EchoRequest"

    def _drop(self, spec: EventSpec, src: _Peer, dst: _Peer, rng: random.Random, reason: int,
              direction: int) -> flow_pb2.Flow:
        f = self._base(spec, src, dst, rng, contract.EVENT_TYPE_DROP, reason)
        f.verdict = flow_pb2.DROPPED
        f.drop_reason = reason
        f.drop_reason_desc = reason  # type: ignore[assignment]  # open enum: unknown codes allowed
        f.traffic_direction = direction  # type: ignore[assignment]
        if f.l4.HasField("TCP"):
            f.l4.TCP.flags.SYN = True
        f.ethernet.source, f.ethernet.destination = "7e:2a:1b:3c:4d:5e", "9a:8b:7c:6d:5e:4f"
        if self.version >= (1, 17, 0):
            name, line = _DROP_FILES.get(reason, ("bpf_lxc.c", 1500 + reason))
            f.file.name, f.file.line = name, line
        self._summary(f)
        return f

    def _verdict(self, spec: EventSpec, src: _Peer, dst: _Peer, rng: random.Random, action: int,
                 match: int, direction: int, drop_reason: int = 0) -> flow_pb2.Flow:
        f = self._base(spec, src, dst, rng, contract.EVENT_TYPE_POLICY_VERDICT)
        f.verdict = action  # type: ignore[assignment]
        f.traffic_direction = direction  # type: ignore[assignment]
        f.policy_match_type = match
        if f.l4.HasField("TCP"):
            f.l4.TCP.flags.SYN = True
        if action == flow_pb2.DROPPED:
            f.drop_reason = drop_reason or 133
            f.drop_reason_desc = drop_reason or 133  # type: ignore[assignment]
        else:
            f.is_reply.value = False
        policy_dst = dst if direction != flow_pb2.EGRESS else src
        allowed = action in (flow_pb2.FORWARDED, flow_pb2.REDIRECTED, flow_pb2.AUDIT) and match != 0
        if allowed and self.version >= (1, 15, 0):
            target = f.egress_allowed_by if direction == flow_pb2.EGRESS else f.ingress_allowed_by
            target.append(self._policy(spec, policy_dst, deny=False))
        if drop_reason == 181 and self.version >= (1, 16, 0):
            target = f.egress_denied_by if direction == flow_pb2.EGRESS else f.ingress_denied_by
            target.append(self._policy(spec, policy_dst, deny=True))
        if self.version >= (1, 18, 0) and drop_reason == 181:
            f.policy_log.append("")
        self._summary(f)
        return f

    def _trace(self, spec: EventSpec, src: _Peer, dst: _Peer, rng: random.Random) -> flow_pb2.Flow:
        sub, point = rng.choice(_TRACE_POINTS)
        f = self._base(spec, src, dst, rng, contract.EVENT_TYPE_TRACE, sub)
        f.verdict = flow_pb2.FORWARDED
        f.trace_observation_point = point
        f.traffic_direction = flow_pb2.INGRESS if point == flow_pb2.TO_ENDPOINT else flow_pb2.EGRESS
        reply = rng.random() < 0.5
        f.is_reply.value = reply
        f.reply = reply
        if f.l4.HasField("TCP"):
            f.l4.TCP.flags.ACK = True
            f.l4.TCP.flags.PSH = rng.random() < 0.3
        if self.version >= (1, 16, 0):
            f.trace_reason = flow_pb2.REPLY if reply else flow_pb2.ESTABLISHED
        f.ethernet.source, f.ethernet.destination = "d2:d9:76:de:f4:90", "6e:3c:ce:d3:9e:a6"
        self._summary(f)
        return f

    def _l7_pair(self, spec: EventSpec, src: _Peer, dst: _Peer, rng: random.Random,
                 dns: bool) -> tuple[flow_pb2.Flow, flow_pb2.Flow]:
        req = self._base(spec, src, dst, rng, contract.EVENT_TYPE_L7)
        req.Type = flow_pb2.L7
        req.verdict = spec.action  # type: ignore[assignment]
        req.traffic_direction = spec.direction  # type: ignore[assignment]
        req.is_reply.value = False
        req.l7.type = flow_pb2.REQUEST
        denied = spec.action == flow_pb2.DROPPED
        if dns:
            req.l7.dns.query = spec.query
            req.l7.dns.qtypes.append("A")
            req.l7.dns.observation_source = "proxy"
            req.Summary = f"DNS Query {spec.query} A"
        else:
            host = dst.name.split("/")[-1]
            req.l7.http.method = spec.method
            req.l7.http.url = f"http://{host}:{dst.port}{spec.path}"
            req.l7.http.protocol = "HTTP/1.1"
            req.l7.http.headers.extend([flow_pb2.HTTPHeader(key=":scheme", value="http"),
                                        flow_pb2.HTTPHeader(key="User-Agent", value="curl/8.5.0"),
                                        flow_pb2.HTTPHeader(key="X-Request-Id", value=str(uuid.UUID(
                                            int=rng.getrandbits(128), version=4)))])
            req.Summary = f"HTTP/1.1 {spec.method} {req.l7.http.url}"
        resp = flow_pb2.Flow()
        resp.CopyFrom(req)
        resp.IP.source, resp.IP.destination = req.IP.destination, req.IP.source
        resp.source.CopyFrom(req.destination)
        resp.destination.CopyFrom(req.source)
        if resp.l4.HasField("TCP"):
            resp.l4.TCP.source_port, resp.l4.TCP.destination_port = req.l4.TCP.destination_port, \
                req.l4.TCP.source_port
        elif resp.l4.HasField("UDP"):
            resp.l4.UDP.source_port, resp.l4.UDP.destination_port = req.l4.UDP.destination_port, \
                req.l4.UDP.source_port
        resp.is_reply.value = True
        resp.l7.type = flow_pb2.RESPONSE
        resp.l7.latency_ns = rng.randrange(300_000, 40_000_000)
        if dns:
            resp.l7.dns.ips.append(f"10.96.{rng.randrange(256)}.{rng.randrange(1, 255)}")
            resp.l7.dns.ttl = 30
            resp.l7.dns.rcode = 5 if denied else 0
            resp.l7.dns.rrtypes.append("A")
            resp.Summary = f"DNS Answer \"{resp.l7.dns.ips[0]}\" TTL: 30 (Proxy {spec.query} A)"
        else:
            code = 403 if denied else 200
            resp.l7.http.code = code
            del resp.l7.http.headers[:]
            resp.Summary = f"HTTP/1.1 {code} {resp.l7.latency_ns // 1_000_000}ms ({spec.method} {req.l7.http.url})"
        return req, resp

    def _occurrence(self, spec: EventSpec, rng: random.Random) -> tuple[flow_pb2.Flow, ...]:
        src = self._peer(spec.source, spec.source_identity, rng)
        dst = self._peer(spec.destination, spec.destination_identity, rng, avoid=src.name)
        if spec.type == "dns" and spec.destination is None and spec.destination_identity is None:
            dst = self._peer("kube-system/coredns", None, rng)
        kind = spec.type
        if kind == "trace":
            return (self._trace(spec, src, dst, rng),)
        if kind == "drop":
            return (self._drop(spec, src, dst, rng, spec.reason, spec.direction),)
        if kind in ("policy_denied", "policy_deny"):
            code = 133 if kind == "policy_denied" else 181
            match = spec.match if spec.match is not None else (0 if code == 133 else 1)
            verdict = self._verdict(spec, src, dst, rng, flow_pb2.DROPPED, match, spec.direction, code)
            drop = self._drop(spec, src, dst, rng, code, spec.direction)
            drop.l4.CopyFrom(verdict.l4)
            return verdict, drop
        if kind == "verdict":
            match = spec.match if spec.match is not None else 2
            reason = 133 if spec.action == flow_pb2.DROPPED else 0
            return (self._verdict(spec, src, dst, rng, spec.action, match, spec.direction, reason),)
        return self._l7_pair(spec, src, dst, rng, dns=kind == "dns")

    def truth_of(self, spec: EventSpec) -> list[tuple[str, tuple[Any, ...]]]:
        """What one occurrence adds to the ground truth (counter name, label tuple)."""
        out: list[tuple[str, tuple[Any, ...]]] = []
        d = direction_label(spec.direction)
        src_id, dst_id = spec.source_identity, spec.destination_identity

        def verdict(match: int, action: int) -> None:
            if src_id == contract.IDENTITY_HOST:
                return
            key = (d, match_label(match), action_label(action))
            health = contract.IDENTITY_HEALTH in (src_id, dst_id)
            out.append(("verdicts_health" if health else "verdicts", key))

        kind = spec.type
        if kind == "drop":
            out.append(("drops", (contract.drop_reason_name(spec.reason), d)))
        elif kind in ("policy_denied", "policy_deny"):
            code = 133 if kind == "policy_denied" else 181
            verdict(spec.match if spec.match is not None else (0 if code == 133 else 1), 2)
            out.append(("drops", (contract.drop_reason_name(code), d)))
        elif kind == "verdict":
            verdict(spec.match if spec.match is not None else 2, spec.action)
        elif kind in ("http", "dns"):
            a = action_label(spec.action)
            out.append(("verdicts", (d, f"l7/{kind}", a)))
            method = method_label(spec.method) if kind == "http" else ""
            out.append(("l7_requests", (kind, method, d, a)))
        return out

    def template(self, f: flow_pb2.Flow, unknown_field: bool = False) -> FlowTemplate:
        rest = f.SerializeToString(deterministic=True)
        if unknown_field:
            rest += UNKNOWN_FIELD_BYTES
        return FlowTemplate(f, rest)

    def compile(self, spec: EventSpec, index: int = 0) -> CompiledSpec:
        """Pre-serialize ``spec.pool`` distinct occurrences (deterministic per seed and index)."""
        rng = random.Random(f"{self.seed}/{index}/{spec}")
        occurrences = [tuple(self.template(f, spec.unknown_field) for f in self._occurrence(spec, rng))
                       for _ in range(spec.pool)]
        return CompiledSpec(spec, occurrences, self.truth_of(spec))

    # -- lost events ------------------------------------------------------------------------
    def lost_message(self, source: int, count: int, now_ns: int, cpu: int | None = None,
                     first_ns: int | None = None, last_ns: int | None = None) -> bytes:
        """A framed GetFlowsResponse carrying a LostEvent (first/last only for >= 1.19)."""
        resp = observer_pb2.GetFlowsResponse(node_name=self.node)
        lost = resp.lost_events
        lost.source = source  # type: ignore[assignment]
        lost.num_events_lost = count
        if cpu is not None:
            lost.cpu.value = cpu
        if self.version >= (1, 19, 0) and first_ns is not None:
            lost.first.FromNanoseconds(first_ns)
            lost.last.FromNanoseconds(last_ns if last_ns is not None else first_ns)
        resp.time.FromNanoseconds(now_ns)
        return frame(resp.SerializeToString())


_UUID_KEY = tag(34, 2) + b"\x24"
_FLOW_KEY = b"\x0a"
_TIME_KEY = tag(1001, 2)


class Stamper:
    """Stamps time and uuid into templates and writes the events into a ring (the hot path)."""

    def __init__(self, node: str, with_uuid: bool) -> None:
        self.node_field = len_field(1000, node.encode())
        self.with_uuid = with_uuid
        self.uuid_prefix = str(uuid.uuid4())[:24].encode()
        self.counter = 0

    def head(self, t: FlowTemplate, ts_len: int) -> bytes:
        flow_len = 1 + len(fast_varint(ts_len)) + ts_len + (39 if self.with_uuid else 0) + len(t.rest)
        resp_len = (1 + len(fast_varint(flow_len)) + flow_len + len(self.node_field)
                    + len(_TIME_KEY) + len(fast_varint(ts_len)) + ts_len)
        h = frame_header(resp_len) + _FLOW_KEY + fast_varint(flow_len)
        t.heads[ts_len] = h
        return h

    def _format(self, t: FlowTemplate, ts: bytes) -> bytes:
        """The event bytes for timestamp ``ts`` as a ``%``-format taking the uuid counter."""
        ts_len = len(ts)
        head = t.heads.get(ts_len) or self.head(t, ts_len)
        flow_ts = b"\x0a" + fast_varint(ts_len) + ts
        tail = t.rest + self.node_field + _TIME_KEY + fast_varint(ts_len) + ts
        if self.with_uuid:
            pre = head + flow_ts + _UUID_KEY + self.uuid_prefix
            fmt = pre.replace(b"%", b"%%") + b"%012x" + tail.replace(b"%", b"%%")
        else:
            fmt = head + flow_ts + tail
        t.fmt_ts, t.fmt = ts, fmt
        return fmt

    def produce(self, ring: Any, compiled: CompiledSpec, count: int, now_ns: int, ts: bytes | None = None) -> int:
        """Write ``count`` occurrences of ``compiled`` into ``ring``; return the number of flows.

        Per event this is one ``bytes % int`` (the uuid counter) on a format prepared per template
        and timestamp; pass the same ``ts`` object again to reuse the formats across calls.
        """
        if ts is None:
            ts = timestamp(now_ns)
        occurrences = compiled.occurrences
        n_occ = len(occurrences)
        k = compiled.next_index
        data, mask, w = ring.data, ring.mask, ring.write
        c = self.counter
        flows = 0
        if self.with_uuid:
            for _ in range(count):
                for t in occurrences[k % n_occ]:
                    fmt = t.fmt if t.fmt_ts is ts else self._format(t, ts)
                    data[w & mask] = (now_ns, t, ts, fmt % c)
                    c += 1
                    w += 1
                    flows += 1
                k += 1
        else:
            for _ in range(count):
                for t in occurrences[k % n_occ]:
                    data[w & mask] = (now_ns, t, ts, t.fmt if t.fmt_ts is ts else self._format(t, ts))
                    w += 1
                    flows += 1
                k += 1
        compiled.next_index = k % n_occ
        ring.write = w
        self.counter = c
        return flows

    def masked_parts(self, t: FlowTemplate, ts: bytes, mask_key: frozenset[str],
                     mask: Any) -> tuple[bytes, bytes, int]:
        """(prefix, suffix, uuid offset or -1) so that a masked message of an event of ``t``
        stamped ``ts`` is ``prefix + wire[offset:offset + 36] + suffix`` (the flow mask is cached)."""
        base = t.masked.get(mask_key)
        if base is None:
            assert t.flow is not None
            out = flow_pb2.Flow()
            mask.MergeMessage(t.flow, out)
            roots = {p.split(".")[0] for p in mask_key}
            base = (out.SerializeToString(deterministic=True), "time" in roots, "uuid" in roots and self.with_uuid)
            t.masked[mask_key] = base
        rest, with_time, with_uuid = base
        ts_len = len(ts)
        ts_len_b = fast_varint(ts_len)
        flow_ts = b"\x0a" + ts_len_b + ts if with_time else b""
        flow_len = len(flow_ts) + (39 if with_uuid else 0) + len(rest)
        resp_len = (1 + len(fast_varint(flow_len)) + flow_len + len(self.node_field)
                    + len(_TIME_KEY) + len(ts_len_b) + ts_len)
        head = frame_header(resp_len) + _FLOW_KEY + fast_varint(flow_len) + flow_ts
        tail = rest + self.node_field + _TIME_KEY + ts_len_b + ts
        if not with_uuid:
            return head + tail, b"", -1
        full_head = t.heads.get(ts_len) or self.head(t, ts_len)
        offset = len(full_head) + 1 + len(ts_len_b) + ts_len + 3
        return head + _UUID_KEY, tail, offset

    def masked(self, entry: tuple[int, FlowTemplate, bytes, bytes], mask_key: frozenset[str], mask: Any) -> bytes:
        """Wire bytes of a ring entry with a field mask applied to its flow."""
        pre, post, off = self.masked_parts(entry[1], entry[2], mask_key, mask)
        return pre + entry[3][off:off + 36] + post if off >= 0 else pre


@dataclass
class BenchMix:
    """Specs of the benchmark mix: matching drops/verdicts/L7 flows plus traces a whitelist filters out."""

    matching: list[EventSpec] = field(default_factory=lambda: [
        EventSpec("drop", reason=133, direction=1), EventSpec("drop", reason=155, direction=2),
        EventSpec("verdict", action=1, match=2, direction=2), EventSpec("verdict", action=2, match=0),
        EventSpec("verdict", action=5, match=4, direction=1), EventSpec("http", method="GET"),
        EventSpec("http", method="POST", action=2)])
    trace: EventSpec = field(default_factory=lambda: EventSpec("trace"))
