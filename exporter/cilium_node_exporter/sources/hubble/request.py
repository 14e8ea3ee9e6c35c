"""Building the GetFlows request: server-side whitelist and a version-dependent field mask."""

from __future__ import annotations

import re

from google.protobuf.timestamp_pb2 import Timestamp

from cilium_node_exporter import contract as c
from cilium_node_exporter.api.flow import flow_pb2
from cilium_node_exporter.api.observer import observer_pb2

COUNTED_EVENT_TYPES = (c.EVENT_TYPE_DROP, c.EVENT_TYPE_POLICY_VERDICT, c.EVENT_TYPE_L7)

# Fields the counting rules read (proto field names, as Hubble's field masks expect them).
BASE_MASK = (
    "time", "uuid", "verdict", "drop_reason", "drop_reason_desc", "event_type", "traffic_direction",
    "policy_match_type", "source.identity", "destination.identity", "l7.type", "l7.http.method",
    "l7.dns.query", "l7.kafka.api_key",
)
NAMESPACE_MASK = ("source.namespace", "destination.namespace")
PROTOCOL_MASK = ("l4",)
POLICY_MASK = ("egress_allowed_by", "ingress_allowed_by", "egress_denied_by", "ingress_denied_by")

_VERSION = re.compile(r"v?(\d+)\.(\d+)")


def parse_version(text: str) -> tuple[int, int] | None:
    """(major, minor) from a Hubble/Cilium version string such as ``1.19.4+g1a2b3c``; None if unknown."""
    match = _VERSION.search(text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def mask_paths(extra_labels: tuple[str, ...]) -> list[str]:
    """Field-mask paths for the enabled optional dimensions."""
    paths = list(BASE_MASK)
    if "endpoint_namespace" in extra_labels:
        paths += NAMESPACE_MASK
    if "protocol" in extra_labels:
        paths += PROTOCOL_MASK
    if "policy" in extra_labels:
        paths += POLICY_MASK
    return paths


def build_request(*, version: str, extra_labels: tuple[str, ...] = (), since_ns: int | None = None,
                  follow: bool = True) -> observer_pb2.GetFlowsRequest:
    """GetFlows request for the counted event types, resuming at ``since_ns`` when given.

    The field mask goes to ``field_mask`` (10) for servers >= 1.16 and to
    ``experimental.field_mask`` for 1.14-1.15; older or unknown versions get no mask (an
    unknown field is ignored by old servers anyway, but the experimental one was removed in 1.19).
    """
    req = observer_pb2.GetFlowsRequest(follow=follow)
    req.whitelist.append(flow_pb2.FlowFilter(
        event_type=[flow_pb2.EventTypeFilter(type=t) for t in COUNTED_EVENT_TYPES]))
    if since_ns is not None:
        req.since.CopyFrom(Timestamp(seconds=since_ns // 1_000_000_000, nanos=since_ns % 1_000_000_000))
    parsed = parse_version(version)
    if parsed is not None:
        paths = mask_paths(extra_labels)
        if parsed >= (1, 16):
            req.field_mask.paths.extend(paths)
        elif parsed >= (1, 14):
            req.experimental.field_mask.paths.extend(paths)
    return req
