"""The Cilium releases the simulator emulates, 1.14 to 1.19: one row each, read from that release's sources.

Citations ``[LABEL path:lines]`` name the tree (:mod:`.sources`: release and commit) and the lines. What each
column means, and where it was read:

- **fields**: which ``Flow`` (and nested message) fields the release's ``api/v1/flow/flow.proto`` has, from the
  Cilium tree each cilium/hubble tag vendors (1.14.2, 1.15.4, 1.16.6, 1.17.5, 1.18.6, 1.19.4; within a minor only
  enum values changed). The mask validation and the flows a release sends both follow it.
- **mask_from**: where ``GetFlows`` reads the field mask: 1.14/1.15 ``req.Experimental.GetFieldMask()`` only
  [v1.14.16 pkg/hubble/observer/local_observer.go:290] [v1.15.7 pkg/hubble/observer/local_observer.go:298]; their
  ``GetFlowsRequest`` has no field 10, so a top-level mask is an unknown field
  [hubble-v0.13.6 api/v1/observer/observer.proto:123-128]; 1.16-1.18 ``req.GetFieldMask()``, falling back to the
  experimental one when it has no paths [v1.16.15 pkg/hubble/observer/local_observer.go:298-303]
  [v1.18.3 pkg/hubble/observer/local_observer.go:319-324]; 1.19 ``req.GetFieldMask()`` only
  [main pkg/hubble/observer/local_observer.go:320-321], ``Experimental`` has ``reserved 1``
  [hubble-v1.19.4 api/v1/observer/observer.proto:128-129].
- **copy**: how the mask is applied (see :mod:`.fieldmask`): 1.14 ``filter.copy``, no allocation
  [v1.14.16 pkg/hubble/observer/utils.go:53-67]; 1.15-1.18 ``fieldmask.Copy``, ``Mutable`` on every named branch
  [v1.15.7 pkg/hubble/parser/fieldmask/fieldmask.go:53-71] (byte-identical at v1.16.15 and v1.17.8; v1.18.3
  differs only in a loop's syntax); 1.19 the same file after PR #43924
  [main pkg/hubble/parser/fieldmask/fieldmask.go:53-92], backported to 1.19 by PR #44003
  [changelog-v1.19 CHANGELOG.md].
- **lost_batched**: 1.19 sends one aggregated ``HUBBLE_RING_BUFFER`` lost event per interval with
  ``first``/``last`` [main pkg/hubble/observer/local_observer.go:332-358] (PR #41163, in the 1.19 tree's
  ``LostEvent`` [hubble-v1.19.4 api/v1/flow/flow.proto:790-802]); earlier releases one per overwritten slot
  [v1.18.3 pkg/hubble/container/ring.go:219-232].
- **version_header**: 1.18+ add the ``hubble-server-version`` response header = ``SemVer()``
  [v1.18.3 pkg/hubble/cell/hubbleintegration.go:452-467]; 1.17 has no such interceptor
  [v1.17.8 pkg/hubble/cell/hubbleintegration.go].
- **flows_rate**: ``ServerStatusResponse.flows_rate`` exists from 1.15
  [hubble-v0.13.6 api/v1/observer/observer.proto:80] (not in [hubble-v0.12.3 api/v1/observer/observer.proto]).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from cilium_node_exporter.api.observer import observer_pb2
from cilium_node_simulator.events import SpecError

Version = tuple[int, int, int]

# Where GetFlows reads the mask.
EXPERIMENTAL: Final = "experimental"
TOP_THEN_EXPERIMENTAL: Final = "top, else experimental"
TOP: Final = "top"
# How the mask is copied into the reused destination Flow.
COPY_UNALLOCATED: Final = "1.14 filter.copy"
COPY_MUTABLE_EVERY_BRANCH: Final = "1.15-1.18 fieldmask.Copy"
COPY_ACTIVE_BRANCH: Final = "1.19 fieldmask.Copy (PR 43924)"

# `Flow` fields of 1.14.2, in declaration order [hubble-v0.12.3 api/v1/flow/flow.proto:13-117].
FLOW_FIELDS_1_14: Final = (
    "time", "uuid", "verdict", "drop_reason", "auth_type", "ethernet", "IP", "l4", "source", "destination", "Type",
    "node_name", "source_names", "destination_names", "l7", "reply", "event_type", "source_service",
    "destination_service", "traffic_direction", "policy_match_type", "trace_observation_point", "drop_reason_desc",
    "is_reply", "debug_capture_point", "interface", "proxy_port", "trace_context", "sock_xlate_point",
    "socket_cookie", "cgroup_id", "Summary",
)
# Fields each release added (message full name -> field names); nothing was removed or renumbered 1.14-1.19.
FIELDS_ADDED: Final[dict[int, dict[str, tuple[str, ...]]]] = {
    # Policy is a new message [hubble-v0.13.6 api/v1/flow/flow.proto:14-128]
    15: {"flow.Flow": ("egress_allowed_by", "ingress_allowed_by", "extensions")},
    # [hubble-v1.16.6 api/v1/flow/flow.proto:14-137,254-263,276-286]
    16: {"flow.Flow": ("trace_reason", "node_labels", "egress_denied_by", "ingress_denied_by"),
         "flow.Endpoint": ("cluster_name",), "flow.IP": ("source_xlated",)},
    17: {"flow.Flow": ("file",), "flow.Policy": ("kind",)},  # [hubble-v1.17.5 api/v1/flow/flow.proto:14-140,481-487]
    18: {"flow.Flow": ("tunnel", "policy_log")},  # Tunnel without vni [hubble-v1.18.6 api/v1/flow/flow.proto:14-148]
    # [hubble-v1.19.4 api/v1/flow/flow.proto:14-158,251-261,389-400,790-802]
    19: {"flow.Flow": ("ip_trace_id", "emitter", "aggregate"), "flow.Layer4": ("VRRP", "IGMP"),
         "flow.Tunnel": ("vni",), "flow.LostEvent": ("first", "last")},
}


@dataclass(frozen=True)
class Release:
    """One emulated Cilium minor release (see the module docstring for each column's source)."""

    minor: int
    mask_from: str
    copy: str
    lost_batched: bool
    version_header: bool
    flows_rate: bool

    @property
    def name(self) -> str:
        return f"1.{self.minor}"

    def fields(self, message: Descriptor) -> frozenset[str]:
        """Names of ``message``'s fields in this release (the 1.19.4 descriptor minus later additions)."""
        if message.full_name == "flow.Flow":
            names = set(FLOW_FIELDS_1_14)
            for minor, added in FIELDS_ADDED.items():
                if minor <= self.minor:
                    names.update(added.get("flow.Flow", ()))
            return frozenset(names)
        later = {name for minor, added in FIELDS_ADDED.items() if minor > self.minor
                 for name in added.get(message.full_name, ())}
        return frozenset(f.name for f in message.fields if f.name not in later)

    def mask_paths(self, req: observer_pb2.GetFlowsRequest) -> list[str]:
        """The field-mask paths this release takes from a GetFlows request (``mask_from``)."""
        if self.mask_from == EXPERIMENTAL:
            return list(req.experimental.field_mask.paths)
        top = list(req.field_mask.paths)
        if self.mask_from == TOP or top:
            return top
        return list(req.experimental.field_mask.paths)

    def strip(self, msg: Message) -> None:
        """Clear every field (recursively) this release's proto does not have: what it would send."""
        allowed = self.fields(msg.DESCRIPTOR)
        for fd, value in msg.ListFields():
            if fd.name not in allowed:
                msg.ClearField(fd.name)
            elif fd.message_type is not None and fd.message_type.full_name.startswith("flow."):
                for sub in (value if fd.is_repeated else (value,)):
                    self.strip(sub)


# One row per release; each row's sources are in the module docstring, column by column.
RELEASES: Final = {
    # [v1.14.16 pkg/hubble/observer/local_observer.go:290] [v1.14.16 pkg/hubble/observer/utils.go:53-67]
    14: Release(14, EXPERIMENTAL, COPY_UNALLOCATED, lost_batched=False, version_header=False, flows_rate=False),
    # [v1.15.7 pkg/hubble/observer/local_observer.go:298] [v1.15.7 pkg/hubble/parser/fieldmask/fieldmask.go:53-71]
    15: Release(15, EXPERIMENTAL, COPY_MUTABLE_EVERY_BRANCH, lost_batched=False, version_header=False,
                flows_rate=True),
    # [v1.16.15 pkg/hubble/observer/local_observer.go:298-303] [v1.16.15 pkg/hubble/container/ring.go]
    16: Release(16, TOP_THEN_EXPERIMENTAL, COPY_MUTABLE_EVERY_BRANCH, lost_batched=False, version_header=False,
                flows_rate=True),
    # [v1.17.8 pkg/hubble/observer/local_observer.go:298-303] [v1.17.8 pkg/hubble/cell/hubbleintegration.go]
    17: Release(17, TOP_THEN_EXPERIMENTAL, COPY_MUTABLE_EVERY_BRANCH, lost_batched=False, version_header=False,
                flows_rate=True),
    # [v1.18.3 pkg/hubble/observer/local_observer.go:319-324] [v1.18.3 pkg/hubble/cell/hubbleintegration.go:452-467]
    18: Release(18, TOP_THEN_EXPERIMENTAL, COPY_MUTABLE_EVERY_BRANCH, lost_batched=False, version_header=True,
                flows_rate=True),
    # [main pkg/hubble/observer/local_observer.go:320-321,332-358] [changelog-v1.19 CHANGELOG.md]
    19: Release(19, TOP, COPY_ACTIVE_BRANCH, lost_batched=True, version_header=True, flows_rate=True),
}
SUPPORTED: Final = ", ".join(r.name for r in RELEASES.values())

_VERSION_RE = re.compile(r"^(?:cilium )?v?(\d+)\.(\d+)(?:\.(\d+))?(-[0-9A-Za-z.-]+)?(?:\+g([0-9a-f]{7,40}))?$")


@dataclass(frozen=True)
class ServerVersion:
    """A Cilium build's version as Hubble reports it ([v1.14.16 pkg/hubble/build/version.go]
    [hubble-v1.19.4 pkg/hubble/build/version.go], identical 1.14-1.19).

    ``core`` is the Cilium version (``1.16.15``, ``1.19.0-rc.1``), ``revision`` git's short commit hash (8 or
    10 hex digits in practice, ``Makefile.defs`` ``GIT_VERSION``). ``SemVer()`` = core + ``+g<revision>``;
    ``String()`` = ``cilium v`` + SemVer, which is what ``ServerStatusResponse.version`` carries
    [v1.16.15 pkg/hubble/observer/local_observer.go:220], e.g. ``cilium v1.16.15+g5b0ec0a4``.
    """

    numbers: Version
    core: str
    revision: str

    @property
    def semver(self) -> str:
        return f"{self.core}+g{self.revision}"

    @property
    def text(self) -> str:
        return f"cilium v{self.semver}"

    @property
    def release(self) -> Release:
        return RELEASES[self.numbers[1]]


def parse_version(text: str) -> ServerVersion:
    """``1.16.15``, ``v1.19.4``, ``1.19.0-rc.1`` or ``cilium v1.18.3+gcb98de38f6`` -> a supported release's
    version; the revision defaults to a stable 8-digit hash of the core (a build's short SHA)."""
    match = _VERSION_RE.match(str(text).strip())
    if not match:
        raise SpecError(f"invalid version {text!r} (use X.Y.Z, e.g. 1.19.4)")
    major, minor, patch = int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)
    if major != 1 or minor not in RELEASES:
        raise SpecError(f"version {text!r}: the simulator emulates Cilium {SUPPORTED} only")
    core = f"{major}.{minor}.{patch}{match.group(4) or ''}"
    revision = match.group(5) or hashlib.sha1(core.encode()).hexdigest()[:8]
    return ServerVersion((major, minor, patch), core, revision)
