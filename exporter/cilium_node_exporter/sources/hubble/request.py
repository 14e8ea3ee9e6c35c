"""Building the GetFlows request: server-side whitelist and a field mask every release copies faithfully.

What each Cilium release does with a field mask (read in Cilium's sources):

- 1.14 reads ``experimental.field_mask`` and copies it with ``pkg/hubble/observer/utils.go``
  ``filter.copy``, which recurses into ``dst.Get(fd).Message()`` without allocating: a path below a
  message the reused destination ``Flow`` does not hold (any ``l7.<branch>`` once another branch
  was allocated) panics the GetFlows handler, and Hubble's gRPC server has no panic recovery, so
  the cilium-agent dies. We send 1.14 no mask at all.
- 1.15 reads ``experimental.field_mask``; 1.16-1.18 read ``field_mask`` and fall back to the
  experimental one; 1.19 reads only ``field_mask`` (``pkg/hubble/observer/local_observer.go``).
  1.15-1.18 copy with ``pkg/hubble/parser/fieldmask/fieldmask.go`` ``Copy``: a leaf is ``Set`` (or
  ``Clear``ed when absent), a non-leaf recurses and calls ``Mutable`` on the destination. Naming two
  branches of a oneof (``l7.http.method`` and ``l7.dns.query``) makes ``Mutable`` switch the reused
  destination's ``record`` to whichever branch Go's map iteration visits last, empty (fixed only
  in 1.19 by cilium/cilium PR 43924, whose Copy then leaves a previous flow's branch in place for a
  flow without one). So no path goes below a oneof member: ``l7`` is a leaf.
- Every release validates the mask against its own ``Flow`` (``fieldmaskpb.IsValid``) and answers
  ``invalid fieldmask`` (a plain error: gRPC status UNKNOWN) for a field it lacks: ``*_allowed_by``
  exist from 1.15, ``*_denied_by`` from 1.16 (``api/v1/flow/flow.proto``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from cilium_node_exporter import contract as c
from cilium_node_exporter.api.flow import flow_pb2
from cilium_node_exporter.api.observer import observer_pb2

COUNTED_EVENT_TYPES = (c.EVENT_TYPE_DROP, c.EVENT_TYPE_POLICY_VERDICT, c.EVENT_TYPE_L7)

# Fields the counting rules read (proto field names). Leaves, or paths below messages without a oneof
# (Endpoint); "l7" stays a leaf because its record is a oneof (see the module docstring).
BASE_MASK = (
    "time", "uuid", "verdict", "drop_reason", "drop_reason_desc", "event_type", "traffic_direction",
    "policy_match_type", "source.identity", "destination.identity", "l7",
)
NAMESPACE_MASK = ("source.namespace", "destination.namespace")
PROTOCOL_MASK = ("l4",)
ALLOWED_BY_MASK = ("egress_allowed_by", "ingress_allowed_by")  # Flow fields 21001/21002, from 1.15
DENIED_BY_MASK = ("egress_denied_by", "ingress_denied_by")  # Flow fields 21004/21005, from 1.16

_VERSION = re.compile(r"v?(\d+)\.(\d+)")


def parse_version(text: str) -> tuple[int, int] | None:
    """(major, minor) from a Hubble version string such as ``cilium v1.19.4+g1a2b3c``; None if unknown."""
    match = _VERSION.search(text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


@dataclass(frozen=True)
class MaskPlan:
    """Where a release reads the field mask (``none``, ``experimental`` or ``top``) and the paths it gets."""

    where: str
    paths: tuple[str, ...] = ()


NO_MASK = MaskPlan("none")


def mask_plan(version: str, extra_labels: tuple[str, ...] = ()) -> MaskPlan:
    """The field mask a server reporting ``version`` copies faithfully (see the module docstring)."""
    parsed = parse_version(version)
    if parsed is None or parsed < (1, 15):
        return NO_MASK
    paths = list(BASE_MASK)
    if "endpoint_namespace" in extra_labels:
        paths += NAMESPACE_MASK
    if "protocol" in extra_labels:
        paths += PROTOCOL_MASK
    if "policy" in extra_labels:
        paths += ALLOWED_BY_MASK + (DENIED_BY_MASK if parsed >= (1, 16) else ())
    return MaskPlan("top" if parsed >= (1, 16) else "experimental", tuple(paths))


def build_request(*, plan: MaskPlan = NO_MASK, since_ns: int | None = None,
                  follow: bool = True) -> observer_pb2.GetFlowsRequest:
    """GetFlows request for the counted event types with ``plan``'s mask, resuming at ``since_ns`` when given."""
    req = observer_pb2.GetFlowsRequest(follow=follow)
    req.whitelist.append(flow_pb2.FlowFilter(
        event_type=[flow_pb2.EventTypeFilter(type=t) for t in COUNTED_EVENT_TYPES]))
    if since_ns is not None:
        req.since.CopyFrom(Timestamp(seconds=since_ns // 1_000_000_000, nanos=since_ns % 1_000_000_000))
    if plan.where == "top":
        req.field_mask.paths.extend(plan.paths)
    elif plan.where == "experimental":
        req.experimental.field_mask.paths.extend(plan.paths)
    return req
