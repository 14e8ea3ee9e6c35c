"""The simulator's client config (what the e2e stack and the demo start the exporter with)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.stack import wait_until

pytestmark = pytest.mark.timeout(60)


def client_flags(tmp_path: Path, *args: str) -> list[str]:
    flags = tmp_path / "client" / "exporter.flags"
    proc = subprocess.Popen([sys.executable, "-m", "cilium_node_exporter", "simulate", "--scenario", "memory-leak",
                             "--hubble-socket", str(tmp_path / "h.sock"), "--write-client-config",
                             str(tmp_path / "client"), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: flags.exists() or proc.poll() is not None, 30, "exporter.flags")
        assert flags.exists(), proc.stderr.read() if proc.stderr else ""
        return flags.read_text().split()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_fake_cluster_uses_the_scenario_node_and_flags_name_the_hubble_socket(tmp_path: Path) -> None:
    flags = client_flags(tmp_path, "--kubelet-port", "0", "--kubeapi-port", "0")
    assert "--node-name=sim-1" in flags  # memory-leak.yaml: node sim-1 (default)
    assert f"--hubble-address=unix://{tmp_path / 'h.sock'}" in flags
    assert any(f.startswith("--kubelet-address=https://127.0.0.1:") for f in flags)
    assert (tmp_path / "client" / "kubeconfig").exists()


def test_agent_api_socket_is_served_and_named(tmp_path: Path) -> None:
    flags = client_flags(tmp_path, "--agent-api-socket", str(tmp_path / "run" / "cilium.sock"))
    assert f"--agent-api-socket={tmp_path / 'run' / 'cilium.sock'}" in flags


def test_node_name_override_and_hubble_only_config(tmp_path: Path) -> None:
    flags = client_flags(tmp_path, "--sim-node-name", "worker-7")
    # no agent API served: the exporter is pointed at a path where nothing is, never the host's cilium.sock
    assert flags == ["--node-name=worker-7", "--cilium-namespace=kube-system",
                     f"--hubble-address=unix://{tmp_path / 'h.sock'}",
                     f"--agent-api-socket={tmp_path / 'client' / 'no-agent-api.sock'}"]
    assert not (tmp_path / "client" / "token").exists()
