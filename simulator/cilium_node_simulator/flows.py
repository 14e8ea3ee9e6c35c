"""Realistic Hubble flows for one simulated node and Cilium release, pre-serialized.

A :class:`FlowFactory` compiles an :class:`~.events.EventSpec` into a pool of distinct *occurrences*
(tuples of :class:`FlowTemplate`: the flows one event produces), each flow serialized once without
``time`` and ``uuid`` (the :class:`~.stamper.Stamper` splices those in per event). Flows are built in
1.19's shape and then cut to the release's ``flow.proto`` (:meth:`.releases.Release.strip`), so a 1.14
node never sends ``*_allowed_by``, a 1.15 node never ``*_denied_by``, and so on.

L7 flows are what Envoy and the DNS proxy make Hubble produce (citations ``[LABEL path:lines]``, :mod:`.sources`):
event type 129, sub_type 0, ``Type`` L7, ``drop_reason_desc`` 0, ``is_reply`` always set
[v1.16.15 pkg/hubble/parser/seven/parser.go:140-159]; REQUEST or RESPONSE and the verdict from the log entry's type
[v1.16.15 pkg/envoy/accesslog.go:56-88] (the same in [v1.14.16 pkg/envoy/accesslog.go:56-88] and
[main pkg/envoy/accesslog.go:56-88]):

- HTTP allowed: a REQUEST (FORWARDED), then the upstream's RESPONSE (FORWARDED, its status code);
- HTTP denied by L7 policy: a REQUEST with verdict DROPPED, then Envoy's local ``403`` logged as a RESPONSE with
  verdict **FORWARDED**: Denied, then Response [proxy-1.16.15 cilium/l7policy.cc:263-268,340-354];
- a RESPONSE has source and destination (addresses, identities, ports) swapped but the request's
  ``traffic_direction`` (the log record's ``IsIngress`` is passed unchanged);
- DNS [v1.16.15 pkg/fqdn/dnsproxy/proxy.go:1015-1024], notify handler up to 1.17
  [v1.16.15 daemon/cmd/fqdn.go:208-280], [v1.17.8 daemon/cmd/fqdn.go], from 1.18
  [v1.18.3 pkg/fqdn/messagehandler/message_handler.go]: always EGRESS; allowed = REQUEST (FORWARDED, ``rcode``
  0) then RESPONSE (FORWARDED) with the answer's ``rcode``; denied = **one** REQUEST (DROPPED) and no response
  flow (the proxy's REFUSED reply is written to the client, not logged);
- Kafka (proxylib [proxy-1.16.15 proxylib/kafka/parser.go:110], Hubble
  [v1.16.15 pkg/hubble/parser/seven/kafka.go], present up to 1.19): one REQUEST flow per topic, the record logged
  again for each extra topic [v1.16.15 pkg/envoy/accesslog_server.go:198-201,237-240]; allowed = REQUEST(s)
  FORWARDED then one RESPONSE FORWARDED carrying only the correlation id (so ``api_key`` "produce",
  ``api_version`` 0, no topic); denied = REQUEST(s) DROPPED with ``error_code`` 29 and no response flow.
"""

from __future__ import annotations

import random
import uuid
import zlib
from dataclasses import dataclass
from typing import Any

from cilium_node_exporter.api.flow import flow_pb2
from cilium_node_exporter.api.observer import observer_pb2
from cilium_node_simulator import cilium_enums as ce
from cilium_node_simulator.events import CompiledSpec, EventSpec
from cilium_node_simulator.grpc_wire import frame, len_field, tag
from cilium_node_simulator.releases import ServerVersion, parse_version
from cilium_node_simulator.truth import flow_truth

UNKNOWN_FIELD_BYTES = tag(9999, 0) + b"\x01" + len_field(9998, b"\x08\x2a")  # fields 9999/9998
FORWARDED, DROPPED = ce.VERDICTS["FORWARDED"], ce.VERDICTS["DROPPED"]
INGRESS, EGRESS = ce.TRAFFIC_DIRECTIONS["INGRESS"], ce.TRAFFIC_DIRECTIONS["EGRESS"]
POLICY_DENIED, POLICY_DENY = 133, 181  # DropReason

# --- the cluster -------------------------------------------------------------------------------

_WORKLOADS = (
    ("shop", "frontend", 8080), ("shop", "cart", 8080), ("shop", "checkout", 8080),
    ("payments", "api", 8443), ("payments", "ledger", 5432), ("default", "xwing", 80),
    ("default", "deathstar", 80), ("monitoring", "prometheus", 9090), ("kube-system", "coredns", 53),
    ("streaming", "kafka", 9092),
)
_RESERVED_LABEL = {code: f"reserved:{name}" for name, code in ce.RESERVED_IDENTITIES.items()}
_TRACE_POINTS = ((0, flow_pb2.TO_ENDPOINT), (3, flow_pb2.TO_STACK), (5, flow_pb2.FROM_ENDPOINT),
                 (2, flow_pb2.TO_HOST))
# Illustrative datapath locations for the 1.17+ `file` field of a drop (not Cilium's exact lines).
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


class FlowFactory:
    """Builds flows for one node and emulated release."""

    def __init__(self, node: str = "sim-1", version: str | ServerVersion = "1.19.4", seed: int = 1) -> None:
        self.node = node
        self.version = version if isinstance(version, ServerVersion) else parse_version(version)
        self.release = self.version.release
        self.seed = seed

    # -- endpoints --------------------------------------------------------------------------
    def _workload_peer(self, name: str, rng: random.Random) -> _Peer:
        ns, wl = name.split("/")
        crc = zlib.crc32(name.encode())
        port = next((p for n, w, p in _WORKLOADS if n == ns and w == wl), 8080)
        replica = rng.randrange(3)
        suffix = "".join(rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
        ep = flow_pb2.Endpoint(
            ID=100 + crc % 3900 + replica, identity=10000 + crc % 50000, namespace=ns, cluster_name="default",
            labels=[f"k8s:app={wl}", "k8s:io.cilium.k8s.policy.cluster=default",
                    f"k8s:io.kubernetes.pod.namespace={ns}"],
            pod_name=f"{wl}-{crc % 0xFFFFFFFF:08x}"[:len(wl) + 11] + f"-{suffix}",
            workloads=[flow_pb2.Workload(name=wl, kind="Deployment")])
        ip = f"10.244.{(crc >> 8) % 4}.{10 + (crc + replica * 7) % 240}"
        return _Peer(ep, ip, port, name)

    def _reserved_peer(self, identity: int, rng: random.Random) -> _Peer:
        label = _RESERVED_LABEL.get(identity)
        ep = flow_pb2.Endpoint(identity=identity, labels=[label] if label else [])
        if identity == ce.IDENTITY_WORLD:
            ip = f"203.0.113.{rng.randrange(1, 255)}"
        else:
            ep.cluster_name = "default"
            if identity == ce.IDENTITY_HOST:
                ip = "10.244.0.1"
            elif identity == ce.IDENTITY_HEALTH:
                ep.ID = 3004
                ip = "10.244.0.77"
            elif identity == ce.IDENTITY_KUBE_APISERVER:
                ip = "172.18.0.2"
            else:
                ip = f"10.244.9.{rng.randrange(1, 255)}"
        port = 443 if identity == ce.IDENTITY_KUBE_APISERVER else 4240 if identity == ce.IDENTITY_HEALTH else 80
        return _Peer(ep, ip, port, label or str(identity))

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
        return flow_pb2.Policy(
            name=name, namespace=ns, revision=zlib.crc32(name.encode()) % 40 + 2, kind="CiliumNetworkPolicy",
            labels=["k8s:io.cilium.k8s.policy.derived-from=CiliumNetworkPolicy",
                    f"k8s:io.cilium.k8s.policy.name={name}", f"k8s:io.cilium.k8s.policy.namespace={ns}",
                    f"k8s:io.cilium.k8s.policy.uid={uuid.UUID(int=zlib.crc32(name.encode()) << 64)}"])

    # -- L3/L4 flows ------------------------------------------------------------------------
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
        f.node_labels.extend([f"kubernetes.io/hostname={self.node}", "kubernetes.io/os=linux"])
        f.emitter.name, f.emitter.version = "Hubble", self.version.core
        return f

    @staticmethod
    def _summary(f: flow_pb2.Flow) -> None:
        if f.l4.HasField("TCP"):
            flags = [n for n in ("SYN", "ACK", "FIN", "RST", "PSH") if getattr(f.l4.TCP.flags, n)]
            f.Summary = "TCP Flags: " + ", ".join(flags) if flags else "TCP"
        elif f.l4.HasField("UDP"):
            f.Summary = "UDP"
        elif f.l4.HasField("ICMPv4"):
            f.Summary = "ICMPv4 EchoRequest"

    def _drop(self, spec: EventSpec, src: _Peer, dst: _Peer, rng: random.Random, reason: int) -> flow_pb2.Flow:
        f = self._base(spec, src, dst, rng, ce.EVENT_DROP, reason)
        f.verdict = DROPPED  # type: ignore[assignment]
        f.drop_reason = reason
        f.drop_reason_desc = reason  # type: ignore[assignment]  # open enum: unknown codes allowed
        f.traffic_direction = spec.traffic_direction  # type: ignore[assignment]
        if f.l4.HasField("TCP"):
            f.l4.TCP.flags.SYN = True
        f.ethernet.source, f.ethernet.destination = "7e:2a:1b:3c:4d:5e", "9a:8b:7c:6d:5e:4f"
        name, line = _DROP_FILES.get(reason, ("bpf_lxc.c", 1500 + reason))
        f.file.name, f.file.line = name, line
        self._summary(f)
        return f

    def _verdict(self, spec: EventSpec, src: _Peer, dst: _Peer, rng: random.Random, action: int,
                 match: int, drop_reason: int = 0) -> flow_pb2.Flow:
        direction = spec.traffic_direction
        f = self._base(spec, src, dst, rng, ce.EVENT_POLICY_VERDICT)
        f.verdict = action  # type: ignore[assignment]
        f.traffic_direction = direction  # type: ignore[assignment]
        f.policy_match_type = match
        if f.l4.HasField("TCP"):
            f.l4.TCP.flags.SYN = True
        if action == DROPPED:
            f.drop_reason = drop_reason or POLICY_DENIED
            f.drop_reason_desc = drop_reason or POLICY_DENIED  # type: ignore[assignment]
        else:
            f.is_reply.value = False
        policy_dst = dst if direction != EGRESS else src
        allowed = action in (FORWARDED, ce.VERDICTS["REDIRECTED"], ce.VERDICTS["AUDIT"]) and match != 0
        if allowed:
            target = f.egress_allowed_by if direction == EGRESS else f.ingress_allowed_by
            target.append(self._policy(spec, policy_dst, deny=False))
        if drop_reason == POLICY_DENY:
            target = f.egress_denied_by if direction == EGRESS else f.ingress_denied_by
            target.append(self._policy(spec, policy_dst, deny=True))
            f.policy_log.append("")
        self._summary(f)
        return f

    def _trace(self, spec: EventSpec, src: _Peer, dst: _Peer, rng: random.Random) -> flow_pb2.Flow:
        sub, point = rng.choice(_TRACE_POINTS)
        f = self._base(spec, src, dst, rng, ce.EVENT_TRACE, sub)
        f.verdict = FORWARDED  # type: ignore[assignment]
        f.trace_observation_point = point
        f.traffic_direction = INGRESS if point == flow_pb2.TO_ENDPOINT else EGRESS  # type: ignore[assignment]
        reply = rng.random() < 0.5
        f.is_reply.value = reply
        f.reply = reply
        if f.l4.HasField("TCP"):
            f.l4.TCP.flags.ACK = True
            f.l4.TCP.flags.PSH = rng.random() < 0.3
        f.trace_reason = flow_pb2.REPLY if reply else flow_pb2.ESTABLISHED
        f.ethernet.source, f.ethernet.destination = "d2:d9:76:de:f4:90", "6e:3c:ce:d3:9e:a6"
        self._summary(f)
        return f

    # -- L7 flows (see the module docstring) --------------------------------------------------
    def _l7(self, spec: EventSpec, src: _Peer, dst: _Peer, rng: random.Random, verdict: int) -> flow_pb2.Flow:
        f = self._base(spec, src, dst, rng, ce.EVENT_L7)
        f.Type = flow_pb2.L7
        f.verdict = verdict  # type: ignore[assignment]
        f.traffic_direction = spec.traffic_direction  # type: ignore[assignment]
        f.is_reply.value = False
        f.l7.type = ce.L7_REQUEST  # type: ignore[assignment]
        return f

    @staticmethod
    def _response(req: flow_pb2.Flow, rng: random.Random) -> flow_pb2.Flow:
        """The RESPONSE of ``req``: always FORWARDED, endpoints swapped, same traffic direction."""
        resp = flow_pb2.Flow()
        resp.CopyFrom(req)
        resp.verdict = FORWARDED  # type: ignore[assignment]
        resp.IP.source, resp.IP.destination = req.IP.destination, req.IP.source
        resp.source.CopyFrom(req.destination)
        resp.destination.CopyFrom(req.source)
        for proto in ("TCP", "UDP"):
            if req.l4.HasField(proto):
                r, q = getattr(resp.l4, proto), getattr(req.l4, proto)
                r.source_port, r.destination_port = q.destination_port, q.source_port
        resp.is_reply.value = True
        resp.l7.type = ce.L7_RESPONSE  # type: ignore[assignment]
        resp.l7.latency_ns = rng.randrange(300_000, 40_000_000)
        return resp

    def _http(self, spec: EventSpec, src: _Peer, dst: _Peer, rng: random.Random) -> tuple[flow_pb2.Flow, ...]:
        denied = spec.action == DROPPED
        req = self._l7(spec, src, dst, rng, DROPPED if denied else FORWARDED)
        host = dst.name.split("/")[-1]
        http = req.l7.http
        http.method, http.url, http.protocol = spec.method, f"http://{host}:{dst.port}{spec.path}", "HTTP/1.1"
        http.headers.extend([flow_pb2.HTTPHeader(key=":scheme", value="http"),
                             flow_pb2.HTTPHeader(key="User-Agent", value="curl/8.5.0"),
                             flow_pb2.HTTPHeader(key="X-Request-Id", value=str(uuid.UUID(
                                 int=rng.getrandbits(128), version=4)))])
        req.Summary = f"HTTP/1.1 {spec.method} {http.url}"
        resp = self._response(req, rng)
        code = 403 if denied else 200  # Envoy's local reply for a denied request: 403 "Access denied"
        resp.l7.http.code = code
        del resp.l7.http.headers[:]
        resp.Summary = f"HTTP/1.1 {code} {resp.l7.latency_ns // 1_000_000}ms ({spec.method} {http.url})"
        return req, resp

    def _dns(self, spec: EventSpec, src: _Peer, dst: _Peer, rng: random.Random) -> tuple[flow_pb2.Flow, ...]:
        denied = spec.action == DROPPED
        req = self._l7(spec, src, dst, rng, DROPPED if denied else FORWARDED)
        dns = req.l7.dns
        dns.query, dns.observation_source = spec.query, "proxy"
        dns.qtypes.append("A")
        req.Summary = f"DNS Query {spec.query} A"
        if denied:
            return (req,)
        resp = self._response(req, rng)
        answer = resp.l7.dns
        answer.ips.append(f"10.96.{rng.randrange(256)}.{rng.randrange(1, 255)}")
        answer.ttl, answer.rcode = 30, 0
        answer.rrtypes.append("A")
        resp.Summary = f"DNS Answer \"{answer.ips[0]}\" TTL: 30 (Proxy {spec.query} A)"
        return req, resp

    def _kafka(self, spec: EventSpec, src: _Peer, dst: _Peer, rng: random.Random) -> tuple[flow_pb2.Flow, ...]:
        denied = spec.action == DROPPED
        first = self._l7(spec, src, dst, rng, DROPPED if denied else FORWARDED)
        kafka = first.l7.kafka
        kafka.api_key, kafka.api_version, kafka.correlation_id = spec.api_key, 12, rng.randrange(1, 1 << 20)
        if denied:
            kafka.error_code = ce.KAFKA_TOPIC_AUTHORIZATION_FAILED
        requests = []
        for topic in spec.topics:
            req = flow_pb2.Flow()
            req.CopyFrom(first)
            req.l7.kafka.topic = topic
            req.Summary = f"Kafka request {spec.api_key} correlation id {kafka.correlation_id} topic '{topic}'"
            requests.append(req)
        if denied:
            return tuple(requests)
        resp = self._response(first, rng)
        resp.l7.kafka.Clear()
        resp.l7.kafka.api_key, resp.l7.kafka.correlation_id = "produce", kafka.correlation_id  # ApiKey 0
        resp.Summary = f"Kafka response produce correlation id {kafka.correlation_id}"
        return (*requests, resp)

    def _occurrence(self, spec: EventSpec, rng: random.Random) -> tuple[flow_pb2.Flow, ...]:
        src = self._peer(spec.source, spec.source_identity, rng)
        dst = self._peer(spec.destination, spec.destination_identity, rng, avoid=src.name)
        if spec.type in ("dns", "kafka") and spec.destination is None and spec.destination_identity is None:
            dst = self._peer("kube-system/coredns" if spec.type == "dns" else "streaming/kafka", None, rng)
        kind = spec.type
        if kind == "trace":
            return (self._trace(spec, src, dst, rng),)
        if kind == "drop":
            return (self._drop(spec, src, dst, rng, spec.reason),)
        if kind in ("policy_denied", "policy_deny"):
            code = POLICY_DENIED if kind == "policy_denied" else POLICY_DENY
            match = spec.match if spec.match is not None else (0 if code == POLICY_DENIED else 1)
            verdict = self._verdict(spec, src, dst, rng, DROPPED, match, code)
            drop = self._drop(spec, src, dst, rng, code)
            drop.l4.CopyFrom(verdict.l4)
            return verdict, drop
        if kind == "verdict":
            match = spec.match if spec.match is not None else 2
            reason = POLICY_DENIED if spec.action == DROPPED else 0
            return (self._verdict(spec, src, dst, rng, spec.action, match, reason),)
        if kind == "http":
            return self._http(spec, src, dst, rng)
        if kind == "dns":
            return self._dns(spec, src, dst, rng)
        return self._kafka(spec, src, dst, rng)

    def flows(self, spec: EventSpec, rng: random.Random) -> tuple[flow_pb2.Flow, ...]:
        """One occurrence of ``spec`` as this release sends it."""
        out = self._occurrence(spec, rng)
        for f in out:
            self.release.strip(f)
        return out

    @staticmethod
    def template(f: flow_pb2.Flow, unknown_field: bool = False) -> FlowTemplate:
        rest = f.SerializeToString(deterministic=True)
        if unknown_field:
            rest += UNKNOWN_FIELD_BYTES
        return FlowTemplate(f, rest)

    def compile(self, spec: EventSpec, index: int = 0) -> CompiledSpec:
        """Pre-serialize ``spec.pool`` distinct occurrences (deterministic per seed and index)."""
        rng = random.Random(f"{self.seed}/{index}/{spec}")
        occurrences, truths = [], []
        for _ in range(spec.pool):
            flows = self.flows(spec, rng)
            occurrences.append(tuple(self.template(f, spec.unknown_field) for f in flows))
            truths.append([entry for f in flows for entry in flow_truth(f)])
        return CompiledSpec(spec, occurrences, truths)

    # -- lost events ------------------------------------------------------------------------
    def lost_message(self, source: int, count: int, now_ns: int, cpu: int | None = None,
                     first_ns: int | None = None, last_ns: int | None = None) -> bytes:
        """A framed GetFlowsResponse carrying a LostEvent (``first``/``last`` only where the release has them)."""
        resp = observer_pb2.GetFlowsResponse(node_name=self.node)
        lost = resp.lost_events
        lost.source = source  # type: ignore[assignment]
        lost.num_events_lost = count
        if cpu is not None:
            lost.cpu.value = cpu
        if first_ns is not None:
            lost.first.FromNanoseconds(first_ns)
            lost.last.FromNanoseconds(last_ns if last_ns is not None else first_ns)
        self.release.strip(lost)
        resp.time.FromNanoseconds(now_ns)
        return frame(resp.SerializeToString())
