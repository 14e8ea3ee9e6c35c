"""The shipped inhibition rules, loaded into Debian's real Alertmanager: amtool accepts the configuration,
and alerts posted to a running Alertmanager are muted exactly where a cause explains them."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from alerts import generate
from tests.support.paths import REPO
from tests.support.procs import free_port

INHIBIT = REPO / "alerts" / "alertmanager" / generate.INHIBIT_FILE


def binary(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} not found: apt-get install prometheus-alertmanager (make system-deps)")
    return path


def write_config(tmp_path: Path) -> Path:
    config = {
        "route": {"receiver": "hook", "group_by": ["alertname"], "group_wait": "1h"},
        "receivers": [{"name": "hook", "webhook_configs": [{"url": "http://127.0.0.1:9/hook"}]}],
        **yaml.safe_load(INHIBIT.read_text()),
    }
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_amtool_accepts_the_inhibition_rules(tmp_path: Path) -> None:
    result = subprocess.run([binary("amtool"), "check-config", str(write_config(tmp_path))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(generate.build_inhibit_rules())} inhibit rules" in result.stdout


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [binary("prometheus-alertmanager"), f"--config.file={write_config(tmp_path)}",
         f"--storage.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--cluster.listen-address="], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"alertmanager did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def alert(name: str, node: str, **labels: str) -> dict:
    return {"labels": {"alertname": name, "cluster": "c1", "node": node, "severity": "warning", **labels},
            "startsAt": datetime.now(UTC).isoformat()}


def test_causes_mute_their_echoes_on_the_same_node(alertmanager: str) -> None:
    posted = [
        alert("CiliumNodeConntrackMapFull", "n1", severity="critical"),
        alert("CiliumNodeUnexpectedDrops", "n1"),
        alert("CiliumNodeUnexpectedDrops", "n2"),
        alert("CiliumNodeExporterSourceDown", "n3", source="kubelet"),
        alert("CiliumAgentMemoryAboveEnvelope", "n3"),
        alert("CiliumAgentOOMKilled", "n3", severity="critical"),
        alert("CiliumNodeDropErrorBudgetBurn", "n4", severity="critical", long="1h", short="5m"),
        alert("CiliumNodeDropErrorBudgetBurn", "n4", long="1d", short="2h"),
        alert("CiliumNodeExporterDown", "n5"),
        alert("CiliumNodePolicyDenialSurge", "n5"),
        alert("CiliumNodePolicyDenialSurge", "n5", cluster="c2"),
    ]
    request = urllib.request.Request(f"{alertmanager}/api/v2/alerts", data=json.dumps(posted).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"{alertmanager}/api/v2/alerts", timeout=5) as response:
        got = json.load(response)
    muted = {(a["labels"]["alertname"], a["labels"]["node"], a["labels"]["cluster"], a["labels"].get("long", ""))
             for a in got if a["status"]["inhibitedBy"]}
    assert len(got) == len(posted)
    assert muted == {
        ("CiliumNodeUnexpectedDrops", "n1", "c1", ""),
        ("CiliumAgentMemoryAboveEnvelope", "n3", "c1", ""),
        ("CiliumNodeDropErrorBudgetBurn", "n4", "c1", "1d"),
        ("CiliumNodePolicyDenialSurge", "n5", "c1", ""),
    }
