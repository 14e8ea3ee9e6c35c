"""The production install is lean and complete: the core wheel carries only the exporter and depends only on
what the DaemonSet runs, and installed alone in a fresh virtualenv (runtime dependencies from PyPI, through
pip's cache) it serves every production source against the simulator run from the development install.

Builds and installs with ``bench/install_size.py`` (which prints the sizes); about 15 s with a warm pip cache.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.install_size import build_wheel, install, sizes
from cilium_node_exporter.cli import INSTALL_HINTS, REPORT_HINT
from tests.support.procs import Exporter, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("packaging")]

# Distributions the DaemonSet never runs: test, simulator and generator dependencies, the --kubeconfig and
# report extras.
NOT_IN_PRODUCTION = {"kubernetes", "h2", "cryptography", "trustme", "cilium-node-simulator",
                     "grpcio-tools", "pytest", "hypothesis", "matplotlib", "numpy", "jinja2", "requests"}
PRODUCTION_SOURCES = ("hubble", "kubelet", "apiserver", "agent")  # the default three and the opt-in agent


def _name(requirement: str) -> str:
    """The normalised distribution name a requirement or a distribution name starts with."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """The ``bin`` directory of a fresh virtualenv holding the wheel and its runtime dependencies only."""
    return install(tmp_path_factory.mktemp("core") / "venv", str(wheel)).parent


@pytest.fixture(scope="module")
def simulated_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """``simulate`` of the development install (Hubble, kubelet, API server, agent metrics); the exporter's flags."""
    tmp = tmp_path_factory.mktemp("node")
    flags_file = tmp / "client" / "exporter.flags"
    with open(tmp / "simulator.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "cilium_node_exporter", "simulate", "--scenario", "steady",
                                 "--hubble-socket", str(tmp / "hubble.sock"), "--kubelet-port", "0",
                                 "--kubeapi-port", "0", "--agent-metrics-port", "0",
                                 "--write-client-config", str(tmp / "client")],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: proc.poll() is not None or (flags_file.exists() and "--agent-metrics-address"
                                                       in flags_file.read_text()), timeout=60,
                   what="the simulator's exporter.flags", interval=0.1)
        assert proc.poll() is None, (tmp / "simulator.log").read_text()
        yield flags_file.read_text().split()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_wheel_depends_only_on_what_the_daemonset_runs(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        (metadata,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        lines = zf.read(metadata).decode().splitlines()
    requires = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]
    core = {_name(r) for r in requires if "extra ==" not in r}
    assert {"prometheus-client", "grpcio", "protobuf"} <= core
    assert not core & NOT_IN_PRODUCTION, core
    kubeconfig = {_name(r) for r in requires if re.search(r"""extra\s*==\s*["']kubeconfig["']""", r)}
    assert kubeconfig == {"kubernetes"}  # what the --kubeconfig error message tells users to install
    report = {_name(r) for r in requires if re.search(r"""extra\s*==\s*["']report["']""", r)}
    assert report == {"matplotlib", "numpy", "jinja2", "requests", "pyyaml"}  # `cilium-node-exporter report`


def test_wheel_holds_the_exporter_and_nothing_else(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry_points_text = zf.read(entry_points).decode()
    assert {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")} == {
        "cilium_node_exporter"}
    assert not [n for n in names if "simulat" in n or "demo" in n]
    assert "cilium_node_exporter/api/observer/observer_pb2.py" in names
    assert "cilium-node-exporter = cilium_node_exporter.cli:main" in entry_points_text
    assert "subcommands" not in entry_points_text  # `simulate` is registered by the simulator's distribution


def test_core_install_holds_no_development_distribution(core: Path) -> None:
    installed = {_name(d) for d in sizes(core / "python")["dists"]}
    assert "cilium-node-exporter" in installed
    assert not installed & NOT_IN_PRODUCTION, installed


def test_core_install_serves_every_production_source(core: Path, simulated_node: list[str], tmp_path: Path) -> None:
    with Exporter(tmp_path, *simulated_node, f"--sources={','.join(PRODUCTION_SOURCES)}",
                  command=[str(core / "cilium-node-exporter")], ready_timeout=30) as exp:
        m = exp.wait_metrics(
            lambda m: all(m.value("cilium_node_exporter_source_up", source=s) == 1 for s in PRODUCTION_SOURCES)
            and m.sum("cilium_node_exporter_events_total") > 0, timeout=60, what="every source up")
        assert m.value("cilium_node_agent_memory_working_set_bytes") > 0  # kubelet
        assert m.has("cilium_node_agent_restarts_total")  # API server
        assert exp.log_count("Traceback") == 0, exp.log()


def test_simulate_without_the_simulator_exits_2_with_the_install_hint(core: Path) -> None:
    run = subprocess.run([str(core / "cilium-node-exporter"), "simulate", "--scenario", "steady"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr == f"cilium-node-exporter simulate: {INSTALL_HINTS['simulate']}\n"


def test_report_without_the_extra_exits_2_with_the_install_hint(core: Path) -> None:
    run = subprocess.run([str(core / "cilium-node-exporter"), "report", "--prometheus-url", "http://127.0.0.1:1"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.startswith(f"cilium-node-exporter report: {REPORT_HINT} (missing: matplotlib, jinja2, numpy")


def test_kubeconfig_without_the_extra_is_a_clear_error(core: Path, simulated_node: list[str],
                                                       tmp_path: Path) -> None:
    kubeconfig = next(f.split("=", 1)[1] for f in simulated_node if f.startswith("--apiserver-ca=")).replace(
        "ca.crt", "kubeconfig")
    node = next(f for f in simulated_node if f.startswith("--node-name="))
    # bad configuration at start: one line and exit 2 (README "Configuration"), not a warning per retry
    res = subprocess.run([str(core / "cilium-node-exporter"), node, "--sources=apiserver",
                          f"--kubeconfig={kubeconfig}"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip() == ("cilium-node-exporter: error: --kubeconfig: --kubeconfig needs the kubernetes "
                                  "client: pip install 'cilium-node-exporter[kubeconfig]'")
    del tmp_path
