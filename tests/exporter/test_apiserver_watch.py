"""The API server source against the simulator's Kubernetes API: list+watch, restarts, OOMKilled,
410 re-list, pod recreated, watch closed by the server, errors; the in-cluster flags, and a kubeconfig
loaded by ``kubernetes``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from cilium_node_exporter.aggregation.containers import ContainerPod
from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.config import parse_args
from cilium_node_exporter.sources.apiserver import ApiServerSource, config_endpoint, parse_pod
from cilium_node_exporter.sources.k8s_http import SourceError
from tests.support.cluster import Cluster
from tests.support.procs import wait_until as wait_for


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, kubelet=False, kubeapi=True, annotation="300Mi-800Mi")
    yield c
    c.close()


@pytest.fixture
def running(cluster: Cluster) -> Iterator[tuple[ApiServerSource, ExporterState]]:
    source, state = start(cluster)
    yield source, state
    source.stop()


def agent(state: ExporterState) -> ContainerPod | None:
    return state.pods.get("agent")


def start(cluster: Cluster, *extra: str, **overrides: object) -> tuple[ApiServerSource, ExporterState]:
    cfg = cluster.config(*extra, **overrides)
    state = cluster.state(cfg)
    source = ApiServerSource(cfg, state)
    source.min_interval = 0.05
    source.backoff_max = 0.2
    source.start()
    return source, state


def test_list_finds_the_agent_pod(cluster: Cluster, running: tuple[ApiServerSource, ExporterState]) -> None:
    _, state = running
    pod = wait_for(lambda: agent(state), what="agent pod")
    assert (pod.namespace, pod.name, pod.uid) == ("kube-system", cluster.model.agent.name, cluster.model.agent.uid)
    assert pod.restart_count == 0 and pod.last_terminated_reason is None
    wait_for(lambda: state.health["apiserver"].up, what="up once the agent and envoy watches both listed")


def test_kubeconfig_reaches_the_same_api_server(cluster: Cluster) -> None:
    source, state = start(cluster, f"--kubeconfig={cluster.dir / 'client' / 'kubeconfig'}",
                          "--apiserver-address=https://127.0.0.1:1")  # --kubeconfig wins over the in-cluster flags
    try:
        pod = wait_for(lambda: agent(state), what="agent pod")
        assert pod.uid == cluster.model.agent.uid
    finally:
        source.stop()


def test_restart_count_increases_and_oomkilled_appears(cluster: Cluster,
                                                       running: tuple[ApiServerSource, ExporterState]) -> None:
    _, state = running
    wait_for(lambda: agent(state), what="agent pod")
    lists = cluster.kubeapi.pod_lists["k8s-app=cilium"]
    cluster.runtime.set(running=False, last_terminated_reason="OOMKilled")
    cluster.runtime.set(restart_count=1, running=True)
    pod = wait_for(lambda: agent(state) if agent(state).restart_count == 1 else None, what="restart")
    assert pod.last_terminated_reason == "OOMKilled" and pod.last_terminated_at is not None
    cluster.runtime.set(restart_count=2, last_terminated_reason="Error")
    wait_for(lambda: agent(state).restart_count == 2 and agent(state).last_terminated_reason == "Error",
             what="second restart")
    assert cluster.kubeapi.pod_lists["k8s-app=cilium"] == lists  # seen through the watch, not by re-listing


def test_410_gone_relists(cluster: Cluster, running: tuple[ApiServerSource, ExporterState]) -> None:
    _, state = running
    wait_for(lambda: agent(state), what="agent pod")
    lists = cluster.kubeapi.pod_lists["k8s-app=cilium"]
    cluster.kubeapi.fault = "gone"
    wait_for(lambda: cluster.kubeapi.pod_lists["k8s-app=cilium"] >= lists + 2, what="re-lists after ERROR 410 events")
    cluster.kubeapi.fault = "none"
    cluster.runtime.set(restart_count=3)
    wait_for(lambda: agent(state).restart_count == 3, what="restart after 410")
    assert state.health["apiserver"].up and not state.health["apiserver"].errors


def test_410_on_compacted_history(cluster: Cluster, running: tuple[ApiServerSource, ExporterState]) -> None:
    _, state = running
    wait_for(lambda: agent(state), what="agent pod")
    lists = cluster.kubeapi.pod_lists["k8s-app=cilium"]
    # The watch resumes from an old version after the server closes it; history is gone: 410 Gone.
    with cluster.model._cond:
        cluster.model._events.clear()
    cluster.model.expire_history()
    cluster.kubeapi.close_generation += 1
    wait_for(lambda: cluster.kubeapi.pod_lists["k8s-app=cilium"] > lists, what="re-list after compaction")


def test_410_as_http_status_relists(cluster: Cluster, running: tuple[ApiServerSource, ExporterState]) -> None:
    _, state = running
    wait_for(lambda: agent(state), what="agent pod")
    lists = cluster.kubeapi.pod_lists["k8s-app=cilium"]
    cluster.kubeapi.fault = "gone-http"
    wait_for(lambda: cluster.kubeapi.pod_lists["k8s-app=cilium"] >= lists + 2, what="re-lists after HTTP 410")
    assert not state.health["apiserver"].errors


def test_watch_closed_by_server_resumes_without_list(cluster: Cluster,
                                                     running: tuple[ApiServerSource, ExporterState]) -> None:
    _, state = running
    wait_for(lambda: agent(state), what="agent pod")
    lists, requests = cluster.kubeapi.pod_lists["k8s-app=cilium"], cluster.kubeapi.requests
    cluster.kubeapi.close_generation += 1
    cluster.model.touch()
    wait_for(lambda: cluster.kubeapi.requests > requests, what="a new watch")
    cluster.runtime.set(restart_count=5)
    wait_for(lambda: agent(state).restart_count == 5, what="restart after re-watch")
    assert cluster.kubeapi.pod_lists["k8s-app=cilium"] == lists


def test_pod_deleted_and_recreated_with_new_uid(cluster: Cluster,
                                                running: tuple[ApiServerSource, ExporterState]) -> None:
    _, state = running
    old = wait_for(lambda: agent(state), what="agent pod")
    cluster.runtime.set(restart_count=4)
    wait_for(lambda: agent(state).restart_count == 4, what="restarts")
    cluster.model.recreate()
    new = wait_for(lambda: agent(state) if agent(state).uid != old.uid else None, what="new uid")
    assert new.uid == cluster.model.agent.uid and new.name != old.name
    assert new.restart_count == 0


def test_envelope_annotation_overrides(cluster: Cluster) -> None:
    source, state = start(cluster, "--envelope-from-node-annotation")
    try:
        wait_for(lambda: state.envelope_override, what="annotation")
        assert state.envelope_override == (300 * 2**20, 800 * 2**20)
    finally:
        source.stop()


def test_invalid_envelope_annotation_logs_and_keeps_default(cluster: Cluster,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    cluster.kubeapi.envelope_annotation = "800Mi-300Mi"
    with caplog.at_level(logging.ERROR):
        source, state = start(cluster, "--envelope-from-node-annotation")
        try:
            wait_for(lambda: agent(state), what="agent pod")
            wait_for(lambda: any("invalid node annotation" in r.getMessage() for r in caplog.records),
                     what="log line")
            assert state.envelope_override is None
        finally:
            source.stop()


@pytest.mark.parametrize(("fault", "reason"), [("403", "auth"), ("500", "http"), ("garbage", "decode")])
def test_errors_drop_the_pod_and_count(cluster: Cluster, fault: str, reason: str) -> None:
    cluster.kubeapi.fault = fault
    source, state = start(cluster)
    try:
        wait_for(lambda: state.health["apiserver"].errors.get(reason), what=f"{reason} error")
        assert agent(state) is None and not state.health["apiserver"].up
        cluster.kubeapi.fault = "none"
        wait_for(lambda: agent(state), what="recovery")
        wait_for(lambda: state.health["apiserver"].up, what="up once every component's watch listed again")
    finally:
        source.stop()


def test_no_agent_pod_on_this_node_keeps_the_source_up(cluster: Cluster) -> None:
    source, state = start(cluster, node_name="another-node")
    try:
        wait_for(lambda: state.health["apiserver"].up, what="up once both components listed")
        assert all(cluster.kubeapi.pod_lists[s] for s in ("k8s-app=cilium", "k8s-app=cilium-envoy"))
        assert agent(state) is None
    finally:
        source.stop()


def test_stop_is_prompt(cluster: Cluster) -> None:
    import time

    source, state = start(cluster)
    wait_for(lambda: agent(state), what="agent pod")
    began = time.monotonic()
    source.stop()
    assert time.monotonic() - began < 1.5
    assert all(w._thread is not None and not w._thread.is_alive() for w in source.watches.values())


def test_in_cluster_endpoint_from_the_pod_environment(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("abc\n")
    files = [f"--apiserver-token-file={tmp_path}/token", f"--apiserver-ca={tmp_path}/ca.crt"]
    with pytest.raises(SourceError) as err:
        config_endpoint(parse_args(files, environ={}))
    assert "--kubeconfig" in err.value.message
    from cilium_node_simulator.k8s import make_tls

    tls = make_tls(tmp_path)
    assert tls.ca == tmp_path / "ca.crt"
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    endpoint = config_endpoint(parse_args(files, environ=env))
    assert endpoint.base_url == "https://[fd00::1]:443"
    assert endpoint.authorization is not None and endpoint.authorization() == "Bearer abc"


def test_parse_pod_shapes() -> None:
    pod = {"metadata": {"name": "cilium-x", "namespace": "kube-system", "uid": "u"},
           "spec": {"containers": [{"name": "cilium-agent"}]},
           "status": {"containerStatuses": [{"name": "cilium-agent", "restartCount": 7, "lastState": {
               "terminated": {"reason": "OOMKilled", "exitCode": 137, "finishedAt": "2026-06-26T10:13:00Z"}}}]}}
    got = parse_pod(pod, "cilium-agent")
    assert got is not None
    assert (got.pod.restart_count, got.pod.last_terminated_reason, got.pod.last_terminated_at) == (
        7, "OOMKilled", 1782468780.0)
    pending = {"metadata": pod["metadata"], "spec": pod["spec"], "status": {"phase": "Pending"}}
    got = parse_pod(pending, "cilium-agent")
    assert got is not None and got.pod.restart_count is None
    assert parse_pod(pod, "other") is None
    with pytest.raises(SourceError):
        parse_pod({"kind": "Pod"}, "cilium-agent")
