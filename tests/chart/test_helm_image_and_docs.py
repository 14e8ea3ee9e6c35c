"""The Dockerfile's structure (Docker cannot run here) and the plain Prometheus scrape config of
docs/deploy.md, checked by Debian's real promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.chart.test_helm_render import CHART, REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()


def _stages() -> list[list[str]]:
    """Instructions (continuation lines joined, comments dropped) grouped by FROM."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    stages: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_multi_stage_slim_python_311() -> None:
    stages = _stages()
    assert len(stages) == 2
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.M)
    assert base and re.fullmatch(r"python:3\.11-slim(-\w+)?", base.group(1))
    assert stages[0][0] == "FROM ${PYTHON_IMAGE} AS build" and stages[1][0] == "FROM ${PYTHON_IMAGE}"
    assert any(re.match(r'RUN pip wheel --wheel-dir /wheels "\.\$\{EXTRAS:\+\[\$EXTRAS\]\}"$', i) for i in stages[0])
    # the DaemonSet image is the core install; EXTRAS=report builds the SLO review's image (docs/report.md)
    assert re.search(r"^ARG EXTRAS=$", DOCKERFILE, re.M)


def test_dockerfile_final_stage_installs_the_wheel_only_and_runs_non_root() -> None:
    final = _stages()[1]
    (install,) = [i for i in final if i.startswith("RUN ")]
    assert "--mount=type=bind,from=build,source=/wheels" in install
    assert "--no-index" in install and "cilium-node-exporter" in install
    assert "pip uninstall --yes setuptools wheel pip" in install
    assert not re.search(r"apt-get|gcc|build-essential|python3-dev", install)
    assert not [i for i in final if i.startswith(("COPY", "ADD"))], "no source tree in the final image"
    (user,) = [i for i in final if i.startswith("USER ")]
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0  # numeric, so runAsNonRoot can verify it
    (entry,) = [i for i in final if i.startswith("ENTRYPOINT ")]
    assert json.loads(entry.removeprefix("ENTRYPOINT ")) == ["cilium-node-exporter"]
    project = (REPO / "pyproject.toml").read_text()
    assert 'cilium-node-exporter = "cilium_node_exporter.cli:main"' in project


def test_dockerignore_keeps_the_context_to_the_wheel_inputs() -> None:
    lines = [ln for ln in (REPO / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!exporter"} <= set(lines)
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE, re.M)
    assert {p for c in copied for p in c.split()} == {"pyproject.toml", "README.md", "exporter"}


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
