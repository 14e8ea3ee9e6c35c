"""The ``cilium-node-exporter simulate`` command: flags, errors, help, clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from cilium_node_exporter.cli import main as top_main
from cilium_node_simulator.cli import main
from tests.support.procs import wait_until
from tests.support.simulator_grpc import server_status


def test_list_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert top_main(["simulate", "--list-scenarios"]) == 0
    out = capsys.readouterr().out
    assert "showcase" in out and "policy-storm" in out


def test_help_documents_the_scenario_format(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for needle in ("phases:", "duration:", "rates:", "working_set: {from:", "oom_kill", "--scenario", "--bench"):
        assert needle in out


@pytest.mark.parametrize("argv", [["--bogus"], ["--speed", "fast"], ["--speed", "0"], ["--scenario", "nope"],
                                  ["--tls-cert", "x.pem"], ["--version", "latest"]])
def test_bad_flags_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    assert main([*argv, "--hubble-socket", str(tmp_path / "h.sock")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cilium-node-exporter simulate: error:") and "\n" not in err


def test_bad_scenario_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "drill.yaml"
    bad.write_text("name: drill\nphases:\n  - duration: 1m\n    rates: [{type: drop, reason: POLICY_DENIED, rte: 1}]\n")
    assert main(["--scenario", str(bad), "--hubble-socket", str(tmp_path / "h.sock")]) == 2
    err = capsys.readouterr().err.strip()
    assert str(bad) in err and "unknown key 'rte'" in err and "\n" not in err


def test_runs_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    sock = tmp_path / "sim" / "hubble.sock"
    proc = subprocess.Popen([sys.executable, "-m", "cilium_node_exporter", "simulate", "--scenario", "policy-storm",
                             "--speed", "30", "--version", "1.16.5", "--hubble-socket", str(sock),
                             "--log-level", "warning"], stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: sock.exists(), timeout=20, what="socket")
        ch = grpc.insecure_channel(f"unix:{sock}")
        status = wait_until(lambda: (s := server_status(ch)).seen_flows > 0 and s, what="flows")
        assert status.version.startswith("cilium v1.16.5+g") and status.max_flows == 4095
        ch.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not sock.exists()
