"""Field masks the way each Cilium release validates and applies them (not the way protobuf does).

Written in our own code from each release's source (citations ``[LABEL path:lines]``, :mod:`.sources`):

- **Validation**: ``fieldmaskpb.IsValid(&flowpb.Flow{})`` against the release's own ``Flow``
  [v1.14.16 pkg/hubble/observer/utils.go:20-26] [v1.15.7 pkg/hubble/parser/fieldmask/fieldmask.go:20-26]
  [main pkg/hubble/parser/fieldmask/fieldmask.go:20-26]; the check is ``numValidPaths`` of
  ``google.golang.org/protobuf/types/known/fieldmaskpb`` (vendored v1.34.2 in 1.14.16, v1.36.6 in 1.16.15:
  [v1.16.15 vendor/google.golang.org/protobuf/types/known/fieldmaskpb/field_mask.pb.go:368-402]): every
  dot-separated name must be a field of the current message (case-sensitive proto names; a oneof *member* is a
  field, the oneof's own name is not), a repeated field may only be last, a scalar ends the path, an empty name
  fails. Any invalid path fails the whole mask, answered as the plain Go error ``invalid fieldmask``, which
  grpc-go sends as status UNKNOWN [v1.16.15 vendor/google.golang.org/grpc/server.go:1705-1709]
  [v1.16.15 vendor/google.golang.org/grpc/status/status.go:151-162].
- **Tree**: ``Normalize()`` (sort, de-duplicate, drop paths below another path), then every path is added to
  a ``map[string]FieldMask`` tree; a leaf is a nil map [v1.15.7 pkg/hubble/parser/fieldmask/fieldmask.go:27-49].
- **One destination per call**: ``GetFlows`` allocates one ``Flow``, runs ``Alloc`` (``Mutable`` on every
  non-leaf field in descriptor order, so with several members of one oneof the last *declared*
  stays), then for each event ``Copy(flow, ev)`` into that same ``Flow`` and sends it; it is never reset
  [v1.14.16 pkg/hubble/observer/local_observer.go:295-299,325-329]
  [v1.16.15 pkg/hubble/observer/local_observer.go:308-312,338-342]
  [main pkg/hubble/observer/local_observer.go:326-330,383-387].
- **Copy** ranges over the Go map, whose iteration order is random: for a map of up to 8 entries
  (one bucket in Go's classic maps, one group in Go 1.24's swiss tables) both start at a random slot
  of the 8 and wrap around, slots filled in insertion order; larger maps are shuffled here (only
  ``Flow``'s top level, where order does not matter: ``Flow`` has no oneof). A leaf is ``Set`` from the
  source when the source has it, else ``Clear``-ed. A non-leaf:

  - 1.14 (``filter.copy``) [v1.14.16 pkg/hubble/observer/utils.go:53-67]: recurses into
    ``dst.Get(fd).Message()`` without allocating; when the destination does not hold that message (a oneof
    member another one replaced) the next ``Set`` or ``Clear`` writes through a nil pointer: ``panic: invalid
    nil pointer`` [v1.14.16 vendor/google.golang.org/protobuf/internal/impl/pointer_unsafe.go:70], and Hubble's
    gRPC server has no recovery: its only interceptors are grpc-prometheus'
    [v1.14.16 daemon/cmd/hubble.go:133-137] [v1.14.16 pkg/hubble/server/server.go:57-64], and grpc-go does
    not recover a handler's panic, so the agent process dies;
  - 1.15-1.18 [v1.15.7 pkg/hubble/parser/fieldmask/fieldmask.go:53-71]: recurses into the destination's message,
    ``Mutable``-allocating it when absent: naming two members of one oneof switches the destination's oneof at
    each visit and the *last visited* member survives, often empty;
  - 1.19 (PR #43924) [main pkg/hubble/parser/fieldmask/fieldmask.go:68-81] [changelog-v1.19 CHANGELOG.md]: for a
    oneof member, recurses only when it is the source's active member and otherwise skips it entirely, so a
    flow without that oneof keeps the previous flow's member.
"""

from __future__ import annotations

import random
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from cilium_node_exporter.api.flow import flow_pb2
from cilium_node_simulator.releases import COPY_ACTIVE_BRANCH, COPY_UNALLOCATED, Release

# A tree node: field name -> subtree (a dict) or None for a leaf.
Tree = dict[str, Any]
# fmt.Errorf("invalid fieldmask") in every release [v1.14.16 pkg/hubble/observer/utils.go:25]
# [v1.15.7 pkg/hubble/parser/fieldmask/fieldmask.go:25] [main pkg/hubble/parser/fieldmask/fieldmask.go:25]
INVALID_FIELDMASK = "invalid fieldmask"
# protobuf-go's panic on a nil message [v1.14.16 vendor/google.golang.org/protobuf/internal/impl/pointer_unsafe.go:70]
NIL_POINTER = "invalid nil pointer"
GO_SMALL_MAP = 8


class InvalidFieldMask(ValueError):
    """The release's ``IsValid`` refused the mask."""


class AgentPanic(RuntimeError):
    """The release's copy code panicked: the real cilium-agent process would die here."""


def is_valid(paths: list[str], release: Release, message: Descriptor = flow_pb2.Flow.DESCRIPTOR) -> bool:
    """``fieldmaskpb.IsValid`` against ``release``'s ``message`` (see the module docstring)."""
    for path in paths:
        md: Descriptor | None = message
        for name in path.split("."):
            if md is None or name not in release.fields(md):
                return False
            fd = md.fields_by_name[name]
            md = None if fd.is_repeated else fd.message_type
    return True


def normalize(paths: list[str]) -> list[str]:
    """``FieldMask.Normalize``: sorted, de-duplicated, without paths below another path."""
    out: list[str] = []
    for path in sorted(set(paths)):
        if out and path.startswith(out[-1] + "."):
            continue
        out.append(path)
    return out


def build_tree(paths: list[str]) -> Tree:
    """The ``map[string]FieldMask`` tree of normalized ``paths`` (a leaf is None), in insertion order."""
    tree: Tree = {}
    for path in paths:
        node = tree
        parts = path.split(".")
        for name in parts[:-1]:
            if node.get(name) is None:
                node[name] = {}
            node = node[name]
        node[parts[-1]] = None
    return tree


def go_map_order(keys: list[str], rng: random.Random) -> list[str]:
    """One Go ``range`` over a map holding ``keys`` (inserted in that order): a random rotation of the
    8 slots of a small map (see the module docstring); a shuffle for larger maps."""
    if len(keys) > GO_SMALL_MAP:
        shuffled = list(keys)
        rng.shuffle(shuffled)
        return shuffled
    offset = rng.randrange(GO_SMALL_MAP)
    return [keys[slot] for i in range(GO_SMALL_MAP) if (slot := (i + offset) % GO_SMALL_MAP) < len(keys)]


def _has(msg: Message, fd: FieldDescriptor) -> bool:
    """protoreflect ``Has``: set (messages), non-empty (lists), non-zero (proto3 scalars)."""
    if fd.is_repeated:
        return len(getattr(msg, fd.name)) > 0
    if fd.has_presence:
        return msg.HasField(fd.name)
    return bool(getattr(msg, fd.name) != fd.default_value)


def _set(dst: Message | None, fd: FieldDescriptor, src: Message) -> None:
    if dst is None:
        raise AgentPanic(NIL_POINTER)
    if fd.is_repeated:
        target = getattr(dst, fd.name)
        del target[:]
        target.extend(getattr(src, fd.name))
    elif fd.message_type is not None:
        sub = getattr(dst, fd.name)
        sub.SetInParent()
        sub.CopyFrom(getattr(src, fd.name))
    else:
        setattr(dst, fd.name, getattr(src, fd.name))


def _clear(dst: Message | None, fd: FieldDescriptor) -> None:
    if dst is None:
        raise AgentPanic(NIL_POINTER)
    dst.ClearField(fd.name)


def _held(dst: Message | None, fd: FieldDescriptor) -> Message | None:
    """``dst.Get(fd).Message()`` when valid (the destination holds that message), else None (nil)."""
    if dst is None or not dst.HasField(fd.name):
        return None
    sub: Message = getattr(dst, fd.name)
    return sub


def _mutable(dst: Message, fd: FieldDescriptor) -> Message:
    """``dst.Mutable(fd).Message()``: the held message, or a new empty one (switching a oneof)."""
    sub: Message = getattr(dst, fd.name)
    sub.SetInParent()
    return sub


def alloc(tree: Tree, msg: Message) -> None:
    """``Alloc``: ``Mutable`` every non-leaf field of the tree, in descriptor order, recursively."""
    for fd in msg.DESCRIPTOR.fields:
        sub = tree.get(fd.name)
        if sub:
            alloc(sub, _mutable(msg, fd))


def copy_into(release: Release, tree: Tree, dst: Message | None, src: Message, rng: random.Random) -> None:
    """One ``Copy(dst, src)`` of ``release`` (raises :class:`AgentPanic` where 1.14 panics)."""
    fields = src.DESCRIPTOR.fields_by_name
    for name in go_map_order(list(tree), rng):
        fd = fields[name]
        sub = tree[name]
        if not sub:  # a leaf
            if _has(src, fd):
                _set(dst, fd, src)
            else:
                _clear(dst, fd)
            continue
        src_sub = getattr(src, name)
        if release.copy == COPY_UNALLOCATED:
            copy_into(release, sub, _held(dst, fd), src_sub, rng)
            continue
        assert dst is not None  # 1.15+ always allocate
        oneof = fd.containing_oneof
        if release.copy == COPY_ACTIVE_BRANCH and oneof is not None and src.WhichOneof(oneof.name) != name:
            continue  # not the source's member: skipped, no Clear, no Mutable
        held = _held(dst, fd)
        copy_into(release, sub, held if held is not None else _mutable(dst, fd), src_sub, rng)


def _history_free(tree: Tree, message: Descriptor) -> bool:
    """True when no non-leaf node is a oneof member: then a copy's output depends on the source only
    (every non-leaf message stays allocated, every leaf is overwritten), and 1.14 cannot panic."""
    for name, sub in tree.items():
        if sub:
            fd = message.fields_by_name[name]
            if fd.containing_oneof is not None or not _history_free(sub, fd.message_type):
                return False
    return True


class FlowMask:
    """The field mask of one GetFlows call on ``release``: its tree and its reused destination ``Flow``."""

    def __init__(self, release: Release, paths: list[str], rng: random.Random) -> None:
        if not is_valid(paths, release):
            raise InvalidFieldMask(INVALID_FIELDMASK)
        self.release = release
        self.paths = tuple(normalize(paths))
        self.tree = build_tree(list(self.paths))
        self.rng = rng
        self.history_free = _history_free(self.tree, flow_pb2.Flow.DESCRIPTOR)
        self.dst = flow_pb2.Flow()
        alloc(self.tree, self.dst)

    @property
    def active(self) -> bool:
        return bool(self.tree)

    def copy(self, src: flow_pb2.Flow) -> flow_pb2.Flow:
        """Copy ``src`` into the call's destination and return it (what the release sends)."""
        copy_into(self.release, self.tree, self.dst, src, self.rng)
        return self.dst

    def fresh(self, src: flow_pb2.Flow) -> flow_pb2.Flow:
        """The masked flow of ``src`` on a newly allocated destination (equal to :meth:`copy` when
        ``history_free``, so it can be cached per flow)."""
        out = flow_pb2.Flow()
        alloc(self.tree, out)
        copy_into(self.release, self.tree, out, src, self.rng)
        return out
