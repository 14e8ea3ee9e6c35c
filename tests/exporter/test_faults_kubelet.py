"""Kubelet faults, driving the real exporter process against the simulator's kubelet over real TLS.

The kubelet is read at scrape time (one-second cache): every scrape below is spaced past the cache.
A failure must leave the exporter serving, drop the agent memory series (never stale), count the
error under a bounded reason, log one line per distinct problem, and recover on its own.
"""

from __future__ import annotations

import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cilium_node_simulator.k8s import make_tls
from cilium_node_simulator.kubelet_fake import KubeletFake
from tests.support.cluster import Cluster, MiB
from tests.support.procs import Exporter, Metrics

UP = "cilium_node_exporter_source_up"
ERRORS = "cilium_node_exporter_source_errors_total"
WORKING_SET = "cilium_node_agent_memory_working_set_bytes"
CACHE = 1.05  # the kubelet source's cache, plus a little


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "cluster", working_set=310 * MiB, rss=260 * MiB, limit=1024 * MiB)
    yield c
    c.close()


def exporter(tmp_path: Path, cluster: Cluster, *extra: str, sources: str = "kubelet",
             name: str = "exporter") -> Exporter:
    return Exporter(tmp_path, *cluster.flags, f"--sources={sources}", "--kubelet-timeout=1s", *extra, name=name)


def up(m: Metrics) -> float:
    return m.value(UP, source="kubelet")


def err(m: Metrics, reason: str) -> float:
    return m.value(ERRORS, source="kubelet", reason=reason)


def scrape_later(exp: Exporter) -> Metrics:
    time.sleep(CACHE)
    return exp.scrape()


def post(url: str, ca: Path) -> None:
    """Drive a fake's run-time knob (``/-/fault``, ``/-/action``) over its real TLS endpoint."""
    ctx = ssl.create_default_context(cafile=str(ca))
    req = urllib.request.Request(url, method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
        assert r.status == 200


def test_401_then_recovery_after_token_rotation(tmp_path: Path, cluster: Cluster) -> None:
    with exporter(tmp_path, cluster) as exp:
        m = exp.scrape()
        assert up(m) == 1 and m.value(WORKING_SET) == 310 * MiB
        cluster.tokens.tokens = {"token-2"}  # the old token expired; the kubelet takes only the new one
        m = scrape_later(exp)
        assert up(m) == 0 and err(m, "auth") == 1
        assert not m.has(WORKING_SET)  # dropped, not served stale
        m = scrape_later(exp)
        assert err(m, "auth") == 2
        assert exp.log_count("HTTP 401") == 1  # one line for the repeated problem
        (cluster.dir / "client" / "token").write_text("token-2\n")  # kubelet rotates the projected token
        m = scrape_later(exp)
        assert up(m) == 1 and m.value(WORKING_SET) == 310 * MiB
        assert exp.log_count("source kubelet recovered") == 1


def test_403_log_names_the_missing_permission(tmp_path: Path, cluster: Cluster) -> None:
    with exporter(tmp_path, cluster) as exp:
        post(cluster.kubelet.url + "/-/fault?kind=403", cluster.tls.ca)
        m = exp.scrape()
        assert up(m) == 0 and err(m, "auth") == 1
        lines = exp.log_lines("HTTP 403")
        assert len(lines) == 1 and "nodes/stats" in lines[0]
        post(cluster.kubelet.url + "/-/fault?kind=none", cluster.tls.ca)
        assert up(scrape_later(exp)) == 1


@pytest.mark.parametrize(("fault", "reason", "message"), [
    ("500", "http", "HTTP 500"),
    ("garbage", "decode", "not JSON"),
    ("wrong-shape", "protocol", "not a Summary"),
    ("huge", "protocol", "larger than"),
    ("reset", "connect", "closed the connection"),
    ("slow", "timeout", "timed out"),
])
def test_fault_drops_values_counts_once_logs_once_recovers(tmp_path: Path, cluster: Cluster, fault: str,
                                                           reason: str, message: str) -> None:
    cluster.kubelet.slow_seconds = 3.0  # beyond --kubelet-timeout=1s
    with exporter(tmp_path, cluster) as exp:
        assert exp.scrape().value(WORKING_SET) == 310 * MiB
        rss_before = exp.rss_bytes()
        cluster.kubelet.fault = fault
        for attempt in (1, 2):
            time.sleep(CACHE)
            start = time.monotonic()
            m = exp.scrape()
            assert time.monotonic() - start < 2.5  # the timeout bounds the scrape, whatever the kubelet does
            assert up(m) == 0 and err(m, reason) == attempt
            assert not m.has(WORKING_SET) and not m.has("cilium_node_agent_memory_rss_bytes")
            assert m.has("cilium_node_agent_memory_envelope_upper_bytes")  # the envelope is always there
        assert exp.log_count(message) == 1, exp.log()
        if fault == "huge":  # 256 MiB offered: the 16 MiB cap keeps the exporter small
            assert exp.rss_bytes() - rss_before < 64 * MiB
        cluster.kubelet.fault = "none"
        m = scrape_later(exp)
        assert up(m) == 1 and m.value(WORKING_SET) == 310 * MiB
        assert exp.alive() and exp.log_count("Traceback") == 0


@pytest.mark.parametrize("mismatch", ["unknown CA", "wrong host name"])
def test_certificate_mismatch_is_tls_and_the_log_names_the_fix(tmp_path: Path, cluster: Cluster,
                                                               mismatch: str) -> None:
    if mismatch == "unknown CA":
        flags = [f"--kubelet-ca={make_tls(tmp_path / 'other').ca}"]
    else:  # a kubelet serving a certificate for another name, signed by the CA we trust
        other = make_tls(tmp_path / "other", hosts=("kubelet.invalid",))
        kubelet = KubeletFake(0, cluster.model, cluster.tokens, other).start()
        cluster.servers.append(kubelet)
        flags = [f"--kubelet-address={kubelet.url}", f"--kubelet-ca={other.ca}"]
    with exporter(tmp_path, cluster, *flags) as exp:
        m = exp.scrape()
        assert up(m) == 0 and err(m, "tls") == 1 and not m.has(WORKING_SET)
        scrape_later(exp)
        lines = exp.log_lines("kubelet.*(certificate|TLS)")
        assert len(lines) == 1
        for hint in ("--kubelet-ca", "--kubelet-insecure-skip-verify", "kubelet.insecureSkipVerify"):
            assert hint in lines[0]
    with exporter(tmp_path, cluster, *flags, "--kubelet-insecure-skip-verify", name="insecure") as exp:
        assert up(exp.scrape()) == 1  # the documented way out for self-signed kubelet certificates
        assert exp.log_count("verification is off") == 1


def test_agent_pod_disappears_and_reappears_with_a_new_uid(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "cluster", kubeapi=True, working_set=310 * MiB, limit=1024 * MiB)
    try:
        with exporter(tmp_path, cluster, sources="kubelet,apiserver") as exp:
            m = exp.wait_metrics(lambda m: m.has("cilium_node_agent_info") and m.has(WORKING_SET), what="agent")
            old_uid = dict(next(iter(m.series("cilium_node_agent_info")))).get("agent_uid")
            assert old_uid == cluster.model.agent.uid
            cluster.runtime.set(running=False)  # the agent container is gone (between an OOM kill and restart)
            m = exp.wait_metrics(lambda m: not m.has(WORKING_SET), what="memory series gone")
            assert up(m) == 1  # no agent pod is not a kubelet failure
            cluster.runtime.set(running=True)
            post(cluster.kubeapi.url + "/-/action?name=recreate-pod", cluster.tls.ca)  # deleted, recreated
            m = exp.wait_metrics(lambda m: {dict(k)["agent_uid"] for k in m.series("cilium_node_agent_info")}
                                 == {cluster.model.agent.uid}, what="the new pod")
            assert cluster.model.agent.uid != old_uid
            m = exp.wait_metrics(lambda m: m.has(WORKING_SET), what="memory of the new pod")
            assert m.value(WORKING_SET) == 310 * MiB and up(m) == 1
            assert m.value(UP, source="apiserver") == 1
            assert m.value("cilium_node_agent_restarts_total") == 0  # a new pod starts from zero
    finally:
        cluster.close()


def test_scrapes_in_parallel_during_a_slow_kubelet_do_not_pile_up(tmp_path: Path, cluster: Cluster) -> None:
    """Prometheus retries and several scrapers: a hung kubelet must not hold one thread per scrape forever."""
    cluster.kubelet.fault = "slow"
    cluster.kubelet.slow_seconds = 3.0
    with exporter(tmp_path, cluster) as exp:
        results: list[float] = []

        def one() -> None:
            start = time.monotonic()
            exp.scrape(timeout=10)
            results.append(time.monotonic() - start)

        threads = [threading.Thread(target=one) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        # one timed-out read shared by the scrapes queued behind it, not eight reads in a row
        assert len(results) == 8 and max(results) < 2.5, results
        assert err(exp.scrape(), "timeout") == 1
