"""The GetFlows request per Cilium release: where the mask goes and which paths each release copies faithfully.

The release facts are written here as literals (not read from the exporter): which ``Flow`` fields a
release's ``flow.proto`` declares, where its observer reads the mask, and that 1.14 gets none.
"""

from __future__ import annotations

import pytest

from cilium_node_exporter.sources.hubble.request import build_request, mask_plan

# Top-level Flow fields the mask may name, per release (api/v1/flow/flow.proto at v1.14.2, v1.15.4, v1.16.0).
POLICY_FIELDS = {
    (1, 15): {"egress_allowed_by", "ingress_allowed_by"},
    (1, 16): {"egress_allowed_by", "ingress_allowed_by", "egress_denied_by", "ingress_denied_by"},
}
ALL_LABELS = ("protocol", "endpoint_namespace", "policy")


@pytest.mark.parametrize("version", ["1.14.16", "cilium v1.14.2+g0123abcd", "1.13.2", "", "garbage"])
def test_no_mask_for_114_and_unknown(version: str) -> None:
    plan = mask_plan(version, ALL_LABELS)
    assert plan.where == "none" and plan.paths == ()
    req = build_request(plan=plan)
    assert not req.field_mask.paths and not req.experimental.field_mask.paths


@pytest.mark.parametrize(("version", "where", "release"), [
    ("1.15.7", "experimental", (1, 15)),
    ("cilium v1.16.15+g5c0ad3f4", "top", (1, 16)),
    ("1.17.8", "top", (1, 16)),
    ("1.18.3", "top", (1, 16)),
    ("cilium v1.19.4+g1a2b3c4d", "top", (1, 16)),
])
def test_mask_location_and_policy_fields_per_release(version: str, where: str, release: tuple[int, int]) -> None:
    plan = mask_plan(version, ALL_LABELS)
    assert plan.where == where
    req = build_request(plan=plan)
    sent = req.field_mask.paths if where == "top" else req.experimental.field_mask.paths
    assert list(sent) == list(plan.paths)
    policy = {p for p in plan.paths if p.endswith(("_allowed_by", "_denied_by"))}
    assert policy == POLICY_FIELDS[release]


@pytest.mark.parametrize("labels", [(), ALL_LABELS])
@pytest.mark.parametrize("version", ["1.15.7", "1.16.15", "1.19.4"])
def test_no_path_below_the_l7_record_oneof(version: str, labels: tuple[str, ...]) -> None:
    paths = mask_plan(version, labels).paths
    assert "l7" in paths  # the whole L7 message, copied as one leaf
    assert not [p for p in paths if p.startswith("l7.")]


def test_optional_dimensions_add_only_their_paths() -> None:
    base = set(mask_plan("1.16.15").paths)
    assert set(mask_plan("1.16.15", ("endpoint_namespace",)).paths) - base == {"source.namespace",
                                                                              "destination.namespace"}
    assert set(mask_plan("1.16.15", ("protocol",)).paths) - base == {"l4"}
    assert {"time", "uuid", "verdict", "drop_reason_desc", "event_type", "source.identity"} <= base


def test_since_is_split_into_seconds_and_nanos() -> None:
    req = build_request(since_ns=1_700_000_000_123_456_789)
    assert (req.since.seconds, req.since.nanos) == (1_700_000_000, 123_456_789)
    assert [f.type for f in req.whitelist[0].event_type] == [1, 5, 129] and req.follow
