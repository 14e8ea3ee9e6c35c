"""Parsing the kubelet Summary API: our 1.35-shaped payload (tests/data/kubelet) with cilium-agent pods added,
and the same checks on a real 1.35 payload where it is present (an extra cross-check)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from cilium_node_exporter.sources.k8s_http import SourceError
from cilium_node_exporter.sources.kubelet import parse_summary
from tests.support.paths import DATA

REAL_SAMPLE = "kubelet/stats_summary_k8s-1.35_minikube.json"


@pytest.fixture(scope="module", params=["fixture", "real"], ids=["tests-data", "real-sample"])
def summary(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "fixture":
        return json.loads((DATA / "kubelet" / "stats_summary.json").read_text())
    return json.loads((request.getfixturevalue("real_samples") / REAL_SAMPLE).read_text())


def agent_pod(uid: str = "0b0e0a52-8c7e-4bd6-b5f4-3b62a2a5fa01", started: str = "2026-06-26T10:13:00Z",
              **memory: Any) -> dict[str, Any]:
    mem = {"time": "2026-06-26T10:14:29Z", "availableBytes": 700_000_000, "usageBytes": 380_000_000,
           "workingSetBytes": 350_000_000, "rssBytes": 300_000_000, "pageFaults": 1, "majorPageFaults": 0,
           "psi": {"full": {"total": 0, "avg10": 0, "avg60": 0, "avg300": 0},
                   "some": {"total": 0, "avg10": 0, "avg60": 0, "avg300": 0}}}
    mem.update(memory)
    mem = {k: v for k, v in mem.items() if v is not None}
    return {"podRef": {"name": f"cilium-{uid[:5]}", "namespace": "kube-system", "uid": uid},
            "startTime": "2026-06-26T10:12:00Z",
            "containers": [
                {"name": "cilium-agent", "startTime": started, "memory": mem,
                 "swap": {"time": "2026-06-26T10:14:29Z", "swapAvailableBytes": 0, "swapUsageBytes": 0}},
                {"name": "cilium-monitor", "startTime": started,
                 "memory": {"time": "2026-06-26T10:14:29Z", "workingSetBytes": 1}}],
            "cpu": {"time": "2026-06-26T10:14:29Z", "usageNanoCores": 1}}


def with_pods(summary: dict[str, Any], *pods: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(summary)
    doc["pods"].extend(pods)
    return doc


def test_payload_without_agent_has_no_agent(summary: dict[str, Any]) -> None:
    assert parse_summary(summary, "kube-system", "cilium-agent") is None


def test_payload_with_agent(summary: dict[str, Any]) -> None:
    memory = parse_summary(with_pods(summary, agent_pod()), "kube-system", "cilium-agent")
    assert memory is not None
    assert (memory.working_set, memory.rss, memory.usage) == (350_000_000, 300_000_000, 380_000_000)
    assert memory.limit == 700_000_000 + 350_000_000
    assert memory.start_time == 1782468780.0  # 2026-06-26T10:13:00Z
    assert (memory.pod_namespace, memory.pod_name) == ("kube-system", "cilium-0b0e0")


def test_limit_matches_the_coredns_limit(summary: dict[str, Any]) -> None:
    # coredns has a 170Mi limit in both payloads: availableBytes + workingSetBytes must give it back.
    memory = parse_summary(summary, "kube-system", "coredns")
    assert memory is not None and memory.limit == 170 * 2**20


def test_a_container_of_a_multi_container_pod_reads_its_own_figures() -> None:
    doc = json.loads((DATA / "kubelet" / "stats_summary.json").read_text())
    memory = parse_summary(doc, "shop", "otel-collector")
    assert memory is not None and memory.pod_name.startswith("cart-")
    assert memory.limit == 128 * 2**20 and memory.working_set == 73_728_000  # the container's, not the pod's
    assert parse_summary(doc, "kube-system", "cilium-agent") is None  # cilium-envoy, cilium-operator: not the agent


def test_no_limit_means_no_limit_not_zero(summary: dict[str, Any]) -> None:
    memory = parse_summary(with_pods(summary, agent_pod(availableBytes=None)), "kube-system", "cilium-agent")
    assert memory is not None and memory.limit is None and memory.working_set == 350_000_000


def test_omitted_fields_stay_absent(summary: dict[str, Any]) -> None:
    pod = agent_pod(rssBytes=None, usageBytes=None, workingSetBytes=None)
    memory = parse_summary(with_pods(summary, pod), "kube-system", "cilium-agent")
    assert memory is not None
    assert (memory.rss, memory.usage, memory.working_set, memory.limit) == (None, None, None, None)


def test_container_without_memory_block(summary: dict[str, Any]) -> None:
    pod = agent_pod()
    del pod["containers"][0]["memory"]
    memory = parse_summary(with_pods(summary, pod), "kube-system", "cilium-agent")
    assert memory is not None and memory.working_set is None and memory.start_time is not None


def test_extra_fields_are_ignored(summary: dict[str, Any]) -> None:
    pod = agent_pod(hugetlb={"2Mi": 0}, futureField=[1, 2])
    pod["containers"][0]["accelerators"] = [{"make": "x"}]
    pod["newTopLevel"] = {"x": 1}
    doc = with_pods(summary, pod)
    doc["node"]["somethingNew"] = True
    memory = parse_summary(doc, "kube-system", "cilium-agent")
    assert memory is not None and memory.working_set == 350_000_000


def test_other_namespace_or_container_name_is_not_the_agent(summary: dict[str, Any]) -> None:
    pod = agent_pod()
    pod["podRef"]["namespace"] = "default"
    assert parse_summary(with_pods(summary, pod), "kube-system", "cilium-agent") is None
    assert parse_summary(with_pods(summary, agent_pod()), "kube-system", "agent") is None
    assert parse_summary(with_pods(summary, pod), "default", "cilium-agent") is not None


def test_rollout_prefers_the_api_server_pod_else_the_newest(summary: dict[str, Any]) -> None:
    old = agent_pod(uid="11111111-0000-4000-8000-000000000000", started="2026-06-26T09:00:00Z", workingSetBytes=1)
    new = agent_pod(uid="22222222-0000-4000-8000-000000000000", started="2026-06-26T10:00:00Z", workingSetBytes=2)
    doc = with_pods(summary, old, new)
    assert parse_summary(doc, "kube-system", "cilium-agent").working_set == 2  # type: ignore[union-attr]
    chosen = parse_summary(doc, "kube-system", "cilium-agent", prefer_uid=old["podRef"]["uid"])
    assert chosen is not None and chosen.working_set == 1


@pytest.mark.parametrize("doc", [[], "x", {"pods": {}}, {"pods": [1]}, {"pods": [{"containers": []}]}])
def test_unexpected_shape_is_a_protocol_error(doc: Any) -> None:
    with pytest.raises(SourceError) as err:
        parse_summary(doc, "kube-system", "cilium-agent")
    assert err.value.reason == "protocol"


def test_non_numeric_byte_count_is_a_protocol_error(summary: dict[str, Any]) -> None:
    with pytest.raises(SourceError) as err:
        parse_summary(with_pods(summary, agent_pod(rssBytes="lots")), "kube-system", "cilium-agent")
    assert err.value.reason == "protocol"


def test_empty_pods_list_and_missing_pods_key(summary: dict[str, Any]) -> None:
    assert parse_summary({"node": summary["node"], "pods": []}, "kube-system", "cilium-agent") is None
    assert parse_summary({"node": summary["node"]}, "kube-system", "cilium-agent") is None
