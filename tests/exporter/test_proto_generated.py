"""The committed protobuf modules are exactly what `make proto` generates from proto/."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cilium_node_exporter.api.flow import flow_pb2
from cilium_node_exporter.api.observer import observer_pb2


def test_generated_modules_are_current(repo_root: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("gen_proto", repo_root / "scripts" / "gen_proto.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    out = tmp_path / "api"
    written = gen.generate(out)
    committed_dir = repo_root / "exporter" / "cilium_node_exporter" / "api"
    for path in written:
        rel = path.relative_to(out)
        assert (committed_dir / rel).read_bytes() == path.read_bytes(), f"{rel} is stale: run `make proto`"
    committed = {p.relative_to(committed_dir) for p in committed_dir.rglob("*.py*") if "__pycache__" not in p.parts}
    assert committed == {p.relative_to(out) for p in written}


def test_wire_identity_matches_hubble() -> None:
    # field numbers and names the exporter relies on (Cilium v1.19.4)
    flow = flow_pb2.Flow.DESCRIPTOR.fields_by_name
    assert {n: flow[n].number for n in ("time", "verdict", "event_type", "drop_reason_desc", "traffic_direction",
                                       "policy_match_type", "l7", "uuid", "egress_denied_by", "is_reply")} == {
        "time": 1, "verdict": 2, "event_type": 19, "drop_reason_desc": 25, "traffic_direction": 22,
        "policy_match_type": 23, "l7": 15, "uuid": 34, "egress_denied_by": 21004, "is_reply": 26}
    req = observer_pb2.GetFlowsRequest.DESCRIPTOR.fields_by_name
    assert (req["follow"].number, req["whitelist"].number, req["since"].number, req["field_mask"].number,
            req["experimental"].number) == (3, 6, 7, 10, 999)
    resp = observer_pb2.GetFlowsResponse.DESCRIPTOR.fields_by_name
    assert (resp["flow"].number, resp["node_status"].number, resp["lost_events"].number, resp["time"].number) == (
        1, 2, 3, 1001)
    lost = flow_pb2.LostEvent.DESCRIPTOR.fields_by_name
    assert (lost["num_events_lost"].number, lost["first"].number, lost["last"].number) == (2, 4, 5)
    svc = observer_pb2.DESCRIPTOR.services_by_name["Observer"]
    assert svc.full_name == "observer.Observer"
    assert {m.name for m in svc.methods} >= {"GetFlows", "ServerStatus", "GetNodes"}
    assert flow_pb2.DropReason.Value("DROP_PUNT_PROXY") == 205
    assert flow_pb2.LostEventSource.Value("HUBBLE_RING_BUFFER") == 3
