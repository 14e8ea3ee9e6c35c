"""API server faults, driving the real exporter process against the simulator's Kubernetes API over TLS.

The exporter lists then watches the agent pod (the in-cluster flags the simulator writes). Faults are
driven through the fake's run-time endpoints (``POST /-/action``, ``POST /-/fault``) like a fire drill.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cilium_node_simulator.kubeapi_fake import KubeApiFake
from tests.exporter.test_faults_kubelet import post
from tests.support.cluster import Cluster
from tests.support.procs import Exporter, Metrics

UP = "cilium_node_exporter_source_up"
ERRORS = "cilium_node_exporter_source_errors_total"
INFO = "cilium_node_agent_info"
RESTARTS = "cilium_node_agent_restarts_total"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "cluster", kubelet=False, kubeapi=True)
    yield c
    c.close()


def exporter(tmp_path: Path, cluster: Cluster) -> Exporter:
    return Exporter(tmp_path, *cluster.flags, "--sources=apiserver")


def up(m: Metrics) -> float:
    return m.value(UP, source="apiserver")


def errors(m: Metrics) -> float:
    return m.sum(ERRORS, source="apiserver")


def uids(m: Metrics) -> set[str]:
    return {dict(k)["agent_uid"] for k in m.series(INFO)}


def action(cluster: Cluster, name: str) -> None:
    assert cluster.kubeapi is not None
    post(f"{cluster.kubeapi.url}/-/action?name={name}", cluster.tls.ca)


def fault(cluster: Cluster, kind: str) -> None:
    assert cluster.kubeapi is not None
    post(f"{cluster.kubeapi.url}/-/fault?kind={kind}", cluster.tls.ca)


def ready(exp: Exporter, cluster: Cluster) -> Metrics:
    return exp.wait_metrics(lambda m: uids(m) == {cluster.model.agent.uid} and up(m) == 1, what="agent pod listed")


def restarted(exp: Exporter, cluster: Cluster, count: int) -> Metrics:
    """Make the agent restart and wait until the exporter saw it (through the watch)."""
    cluster.runtime.set(restart_count=count)
    return exp.wait_metrics(lambda m: m.value(RESTARTS, -1) == count, what=f"restart count {count}")


def test_watch_closed_by_the_server_is_resumed(tmp_path: Path, cluster: Cluster) -> None:
    with exporter(tmp_path, cluster) as exp:
        ready(exp, cluster)
        for n in (1, 2, 3):
            action(cluster, "close-watches")  # the API server ends every watch (timeout, restart, LB)
            restarted(exp, cluster, n)
        m = exp.scrape()
        assert up(m) == 1 and errors(m) == 0  # a normal end of a watch is not an error
        assert exp.log_count("WARNING|ERROR") == 0


@pytest.mark.parametrize("how", ["ERROR event", "HTTP 410"])
def test_410_gone_relists(tmp_path: Path, cluster: Cluster, how: str) -> None:
    with exporter(tmp_path, cluster) as exp:
        ready(exp, cluster)
        if how == "ERROR event":  # history compacted: the resumed watch gets an ERROR 410 event
            action(cluster, "expire")
            action(cluster, "close-watches")
        else:  # the watch request itself answered 410
            fault(cluster, "gone-http")
        exp.wait_metrics(lambda m: exp.log_count("410 Gone") >= 1, what="410 seen")
        fault(cluster, "none")
        m = restarted(exp, cluster, 4)
        assert up(m) == 1 and errors(m) == 0  # expiry is routine: re-list, no error
        assert uids(m) == {cluster.model.agent.uid}


def test_pod_deleted_and_recreated(tmp_path: Path, cluster: Cluster) -> None:
    with exporter(tmp_path, cluster) as exp:
        ready(exp, cluster)
        m = restarted(exp, cluster, 2)
        old = cluster.model.agent.uid
        action(cluster, "recreate-pod")
        m = exp.wait_metrics(lambda m: uids(m) == {cluster.model.agent.uid}, what="the new pod")
        assert cluster.model.agent.uid != old and len(m.series(INFO)) == 1  # the old pod's series is gone
        assert m.value(RESTARTS) == 0  # a new pod counts from zero
        assert dict(next(iter(m.series(INFO))))["agent_pod"] == cluster.model.agent.name


def test_connection_refused_then_the_api_server_comes_back(tmp_path: Path, cluster: Cluster) -> None:
    assert cluster.kubeapi is not None
    port = cluster.kubeapi.port
    with exporter(tmp_path, cluster) as exp:
        ready(exp, cluster)
        cluster.kubeapi.stop()  # the API server goes away (control-plane upgrade)
        cluster.servers.remove(cluster.kubeapi)
        m = exp.wait_metrics(lambda m: up(m) == 0, what="source down")
        assert m.value(ERRORS, source="apiserver", reason="connect") >= 1
        assert not m.has(INFO)  # nothing stale while the source is down
        time.sleep(2.5)  # a few retries (1 s, then 2 s backoff)
        assert exp.scrape().value(ERRORS, source="apiserver", reason="connect") >= 2
        # one line for the broken watch, one for the failing re-list; retries add none
        assert exp.log_count("connection refused") <= 2, exp.log()
        back = KubeApiFake(port, cluster.model, cluster.tokens, cluster.tls).start()
        cluster.servers.append(back)
        cluster.kubeapi = back
        m = exp.wait_metrics(lambda m: up(m) == 1 and uids(m) == {cluster.model.agent.uid}, timeout=20,
                             what="recovered")
        restarted(exp, cluster, 1)
        assert exp.log_count("source apiserver recovered") == 1


def test_refused_from_the_start(tmp_path: Path, cluster: Cluster) -> None:
    assert cluster.kubeapi is not None
    cluster.kubeapi.stop()
    cluster.servers.remove(cluster.kubeapi)
    with exporter(tmp_path, cluster) as exp:
        m = exp.wait_metrics(lambda m: m.value(ERRORS, source="apiserver", reason="connect") >= 2,
                             what="connect errors")
        assert up(m) == 0 and not m.has(INFO)
        assert m.has("cilium_node_agent_memory_envelope_upper_bytes")
        assert exp.get("/readyz")[0] == 200  # a source being down never makes the pod NotReady
