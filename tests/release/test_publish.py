"""The chart's way from the release workflow to a user's helm install, through a real OCI registry on
loopback: `helm package` and `helm push` as the release job runs them, then the deploy guide's chart
reference and --version pulled back and rendered with the guide's values: the same objects as the chart
in this checkout. (ghcr.io, its login and cosign's keyless signing need GitHub: not run here.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import helm_python as helm
import pytest

from tests.chart.test_deploy_guide import _install_args, _render
from tests.chart.test_helm_render import CHART
from tests.release.test_workflows import load
from tests.support.registry import Registry


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    server = Registry(tmp_path / "registry")
    yield server
    server.stop()


def test_packaged_chart_pushed_and_pulled_renders_like_the_checkout(registry: Registry, tmp_path: Path) -> None:
    chart_runs = "\n".join(s.get("run", "") for s in load("release.yml")["jobs"]["chart"]["steps"])
    assert "helm package helm/cilium-node-exporter --destination dist" in chart_runs
    assert 'helm push "dist/cilium-node-exporter-${VERSION}.tgz" "$CHARTS"' in chart_runs
    args = _install_args("install")
    version = args["version"]
    archive = Path(helm.package(CHART, destination=tmp_path / "dist"))
    assert archive.name == f"cilium-node-exporter-{version}.tgz"
    charts = f"oci://{registry.host}/charts"  # the workflow's $CHARTS on ghcr.io
    helm.push(archive, charts, plain_http=True)
    assert registry.get("charts/cilium-node-exporter/tags/list", accept="*/*")["tags"] == [version]
    reference = args["chart"].replace("oci://ghcr.io/cilium-node-exporter/charts", charts)
    assert reference != args["chart"]
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    helm.pull(reference, version=version, destination=pulled, untar=True, untar_dir=pulled, plain_http=True)
    assert (pulled / "cilium-node-exporter" / "Chart.yaml").exists()
    assert _render(pulled / "cilium-node-exporter", args) == _render(CHART, args)
