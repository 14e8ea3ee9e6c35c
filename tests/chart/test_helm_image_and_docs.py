"""The plain Prometheus scrape config of docs/deploy.md, checked by Debian's real promtool (the image
itself is built and run by tests/image/)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.chart.test_helm_render import CHART, REPO


def _scrape_config() -> dict:
    doc = (REPO / "docs" / "deploy.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", doc, re.S) if "scrape_configs:" in b]
    assert len(blocks) == 1
    return yaml.safe_load(blocks[0])


def test_plain_scrape_config_passes_promtool(tmp_path: Path) -> None:
    """Debian builds Prometheus without Kubernetes service discovery, so the SD block is swapped for a
    static target carrying the same meta labels; everything else (relabeling, timeouts) is checked as is."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: make system-deps"
    config = _scrape_config()
    (job,) = config["scrape_configs"]
    assert job.pop("kubernetes_sd_configs")[0]["role"] == "pod"
    job["static_configs"] = [{"targets": ["10.0.0.5:9969"], "labels": {
        "__meta_kubernetes_pod_container_port_name": "metrics", "__meta_kubernetes_pod_node_name": "node-a",
        "__meta_kubernetes_namespace": "kube-system", "__meta_kubernetes_pod_name": "cne-abcde"}}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_plain_scrape_config_matches_the_chart() -> None:
    (job,) = _scrape_config()["scrape_configs"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert job["job_name"] == values["jobLabel"]
    relabel = job["relabel_configs"]
    assert {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"} in relabel
    assert {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "metrics",
            "action": "keep"} in relabel
    (selector,) = job["kubernetes_sd_configs"][0]["selectors"]
    assert selector["label"] == "app.kubernetes.io/name=cilium-node-exporter"
