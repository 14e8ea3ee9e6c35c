"""Hubble FlowFilter semantics for the simulator (whitelist minus blacklist, ANY filter, ALL fields).

Implemented fields: event_type (type, match_sub_type/sub_type), verdict, traffic_direction,
drop_reason_desc, source/destination_identity, source/destination_pod (``ns/prefix``, ``ns/``,
``/prefix``), source/destination_ip (address or CIDR), source/destination_label (``key=value``),
node_name (glob), http_method, protocol, reply, ip_version. Other fields are ignored (they
match), and logged once. Results are cached per flow template by the caller.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import logging
from collections.abc import Callable, Sequence

from cilium_node_exporter.api.flow import flow_pb2

log = logging.getLogger(__name__)
_SUPPORTED = {"event_type", "verdict", "traffic_direction", "drop_reason_desc", "source_identity",
              "destination_identity", "source_pod", "destination_pod", "source_ip", "destination_ip",
              "source_label", "destination_label", "node_name", "http_method", "protocol", "reply",
              "ip_version"}
_warned: set[str] = set()


def _pod_match(patterns: Sequence[str], ep: flow_pb2.Endpoint) -> bool:
    for pat in patterns:
        ns, _, prefix = pat.partition("/") if "/" in pat else ("default", "", pat)
        if (not ns or ep.namespace == ns) and ep.pod_name.startswith(prefix) and (ns or prefix):
            return True
    return False


def _ip_match(patterns: Sequence[str], ip: str) -> bool:
    if not ip:
        return False
    addr = ipaddress.ip_address(ip)
    for pat in patterns:
        try:
            if addr in ipaddress.ip_network(pat, strict=False):
                return True
        except ValueError:
            continue
    return False


def _label_match(patterns: Sequence[str], ep: flow_pb2.Endpoint) -> bool:
    labels = {lbl.split(":", 1)[-1] for lbl in ep.labels} | set(ep.labels)
    return any(pat in labels or pat.split(":", 1)[-1] in labels for pat in patterns)


def _protocol(f: flow_pb2.Flow) -> set[str]:
    out = set()
    l4 = f.l4.WhichOneof("protocol")
    if l4:
        out.add(l4.lower())
        if l4.startswith("ICMP"):
            out.add("icmp")
    if f.HasField("l7"):
        record = f.l7.WhichOneof("record")
        if record:
            out.add(record)
    return out


def flow_matches(ff: flow_pb2.FlowFilter, f: flow_pb2.Flow) -> bool:
    """True when every field set in ``ff`` matches ``f`` (unsupported fields are ignored)."""
    for fd, _ in ff.ListFields():
        name = fd.name
        if name not in _SUPPORTED:
            if name not in _warned:
                _warned.add(name)
                log.info("simulator: FlowFilter field %s is not emulated; it matches every flow", name)
            continue
        if name == "event_type":
            et = f.event_type
            if not any(e.type == et.type and (not e.match_sub_type or e.sub_type == et.sub_type)
                       for e in ff.event_type):
                return False
        elif name == "verdict":
            if f.verdict not in ff.verdict:
                return False
        elif name == "traffic_direction":
            if f.traffic_direction not in ff.traffic_direction:
                return False
        elif name == "drop_reason_desc":
            if f.drop_reason_desc not in ff.drop_reason_desc:
                return False
        elif name == "source_identity":
            if f.source.identity not in ff.source_identity:
                return False
        elif name == "destination_identity":
            if f.destination.identity not in ff.destination_identity:
                return False
        elif name == "source_pod":
            if not _pod_match(ff.source_pod, f.source):
                return False
        elif name == "destination_pod":
            if not _pod_match(ff.destination_pod, f.destination):
                return False
        elif name == "source_ip":
            if not _ip_match(ff.source_ip, f.IP.source):
                return False
        elif name == "destination_ip":
            if not _ip_match(ff.destination_ip, f.IP.destination):
                return False
        elif name == "source_label":
            if not _label_match(ff.source_label, f.source):
                return False
        elif name == "destination_label":
            if not _label_match(ff.destination_label, f.destination):
                return False
        elif name == "node_name":
            if not any(fnmatch.fnmatchcase(f.node_name, p) or fnmatch.fnmatchcase(f.node_name, p + "*")
                       if p.endswith("/") else fnmatch.fnmatchcase(f.node_name, p) for p in ff.node_name):
                return False
        elif name == "http_method":
            if not f.l7.HasField("http") or f.l7.http.method.upper() not in {m.upper() for m in ff.http_method}:
                return False
        elif name == "protocol":
            if not _protocol(f) & {p.lower() for p in ff.protocol}:
                return False
        elif name == "reply":
            if not f.HasField("is_reply") or f.is_reply.value not in ff.reply:
                return False
        elif name == "ip_version" and f.IP.ipVersion not in ff.ip_version:
            return False
    return True


def compile_filters(whitelist: Sequence[flow_pb2.FlowFilter],
                    blacklist: Sequence[flow_pb2.FlowFilter]) -> Callable[[flow_pb2.Flow], bool]:
    """Predicate: (no whitelist or ANY whitelist filter matches) and NO blacklist filter matches."""
    white, black = list(whitelist), list(blacklist)

    def predicate(f: flow_pb2.Flow) -> bool:
        if white and not any(flow_matches(ff, f) for ff in white):
            return False
        return not any(flow_matches(ff, f) for ff in black)

    return predicate
