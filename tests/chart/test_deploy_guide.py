"""docs/deploy.md, command by command, where this machine can run it: the chart rendered by the real Helm
engine with exactly the guide's values file and --set flags (install and upgrade), what uninstall leaves,
and the published locations the commands name. The image commands (buildah build, manifest push to a
registry) run in tests/image, the chart's push and pull in tests/release/test_publish.py; docker buildx,
cosign verify, ghcr.io and kubectl need a Docker daemon, GitHub or a cluster and are checked against the
release workflow instead."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from cilium_node_exporter.config import parse_args
from tests.chart.test_helm_render import (
    CHART,
    exporter_config,
    one,
    validate_object,
)
from tests.release.test_workflows import load
from tests.support.deploy_guide import GUIDE, blocks, command, variables
from tests.support.paths import REPO

EXAMPLE = REPO / "docs" / "examples" / "kube-prometheus-stack-values.yaml"
KPS_RELEASE = "kube-prometheus-stack"


def _install_args(verb: str) -> dict[str, Any]:
    """The guide's ``helm <verb>``: release, chart, version, namespace, values files, --set pairs."""
    (argv,) = command("helm", verb)
    args: dict[str, Any] = {"release": argv[2], "chart": argv[3], "files": [], "sets": []}
    rest = iter(argv[4:])
    for flag in rest:
        value = next(rest)
        key = {"--version": "version", "-n": "namespace", "--namespace": "namespace"}.get(flag)
        if key:
            args[key] = value
        elif flag in ("-f", "--values"):
            args["files"].append(value)
        elif flag == "--set":
            args["sets"].append(value)
        else:
            raise AssertionError(f"flag {flag} of helm {verb} is not checked here")
    return args


def _values(args: dict[str, Any]) -> dict[str, Any]:
    """The values of the guide's command: its -f values.yaml is the example file (the guide says so)."""
    assert args["files"] == ["values.yaml"]
    values = helm.values_from_yaml(EXAMPLE.read_text())
    for pair in args["sets"]:
        values = _merge(values, helm.parse_set_string(pair))
    return values


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _render(chart_dir: Path, args: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    rendered = helm.Chart.load(chart_dir).render(_values(args), name=args["release"], namespace=args["namespace"])
    objects = [doc for path, text in sorted(rendered.items()) if not path.endswith("NOTES.txt")
               for doc in yaml.safe_load_all(text) if doc]
    notes = "".join(text for path, text in rendered.items() if path.endswith("NOTES.txt"))
    return objects, notes


def test_the_guide_shows_the_example_values_verbatim() -> None:
    assert EXAMPLE.read_text() in blocks("yaml"), "docs/deploy.md must include the example file as is"
    assert "`docs/examples/kube-prometheus-stack-values.yaml`" in GUIDE.read_text()


def test_install_renders_for_200_nodes_with_kube_prometheus_stack() -> None:
    args = _install_args("install")
    assert args["version"] == variables()["VERSION"]
    report = helm.lint(CHART, _values(args), strict=True, kube_version="v1.30.0", namespace=args["namespace"])
    assert not report["errors"] and not [m for m in report["messages"] if m["severity"] >= 2], report
    objects, notes = _render(CHART, args)
    for obj in objects:
        validate_object(obj)
    ds = one(objects, "DaemonSet")
    (rollout,) = {tuple(c) for c in command("kubectl", "-n") if "rollout" in c}
    assert rollout == ("kubectl", "-n", args["namespace"], "rollout", "status", f"daemonset/{ds['metadata']['name']}")
    assert ds["metadata"]["namespace"] == args["namespace"]
    (forward,) = [c for c in command("kubectl", "-n") if "port-forward" in c]
    assert forward[4:] == [f"daemonset/{ds['metadata']['name']}", "9969:9969"]
    (container,) = ds["spec"]["template"]["spec"]["containers"]
    appversion = helm.Chart.load(CHART).metadata["appVersion"]
    assert container["image"] == f"{variables()['REPO']}:{appversion}"
    assert ds["spec"]["template"]["spec"]["priorityClassName"] == "system-node-critical"
    assert ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == "10%"
    # What the stack selects by (kube-prometheus-stack 88.5.3: templates/prometheus/prometheus.yaml puts
    # matchLabels release: <release> in serviceMonitorSelector and ruleSelector; values.yaml sets the
    # Grafana sidecar's label grafana_dashboard, labelValue "1", searchNamespace ALL).
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert one(objects, kind)["metadata"]["labels"]["release"] == KPS_RELEASE
    dashboards = [o for o in objects if o["kind"] == "ConfigMap" and "grafana_dashboard" in o["metadata"]["labels"]]
    assert len(dashboards) == len(list((CHART / "files" / "dashboards").glob("*.json"))) >= 3
    assert all(d["metadata"]["labels"]["grafana_dashboard"] == "1" for d in dashboards)
    # The pack's route and inhibitions for the stack's Alertmanager, its receivers reading the Secret the guide
    # creates next to it (kube-prometheus-stack 88.5.3: alertmanagerConfigSelector and
    # alertmanagerConfigNamespaceSelector {}, every AlertmanagerConfig of every namespace).
    amc = one(objects, "AlertmanagerConfig")
    assert amc["metadata"]["namespace"] == args["namespace"]
    refs = {h["urlSecret"]["name"]: set() for r in amc["spec"]["receivers"] for h in r.get("webhookConfigs", [])}
    for r in amc["spec"]["receivers"]:
        for h in r.get("webhookConfigs", []):
            refs[h["urlSecret"]["name"]].add(h["urlSecret"]["key"])
    (secret,) = [c for c in command("kubectl", "-n", args["namespace"], "create", "secret", "generic")
                 if c[6] in refs]
    assert {secret[6]: {a.split("=", 2)[1] for a in secret[7:]}} == refs
    alerts = [r for g in one(objects, "PrometheusRule")["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert {r["labels"]["namespace"] for r in alerts} == {args["namespace"]}
    assert "WARNING" not in notes, notes
    cfg = exporter_config(objects)
    assert cfg.hubble_address == "unix:///var/run/cilium/hubble.sock"  # Cilium 1.16's node-local socket
    assert cfg.sources == parse_args(["--sources=auto"], environ={}).sources  # agent and settings where present


def test_the_chart_and_image_locations_are_where_the_release_publishes_them() -> None:
    release = load("release.yml")
    verify = "\n".join(s.get("run", "") for s in release["jobs"]["verify"]["steps"])
    assert 'image="ghcr.io/${owner}/cilium-node-exporter"' in verify
    assert 'echo "charts=oci://ghcr.io/${owner}/charts"' in verify
    owner = "cilium-node-exporter"
    for verb in ("install", "upgrade"):
        assert _install_args(verb)["chart"] == f"oci://ghcr.io/{owner}/charts/cilium-node-exporter"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["repository"] == f"ghcr.io/{owner}/cilium-node-exporter"
    (verify_cmd,) = command("cosign", "verify")
    assert verify_cmd[2] == f"ghcr.io/{owner}/cilium-node-exporter:{variables()['VERSION']}"
    identity = verify_cmd[verify_cmd.index("--certificate-identity-regexp") + 1]
    assert identity == rf"^https://github.com/{owner}/cilium-node-exporter/\.github/workflows/release\.yml@refs/tags/v"
    (buildx,) = command("docker", "buildx", "build")
    (build,) = [s for s in release["jobs"]["image"]["steps"] if s.get("uses", "").startswith("docker/build-push")]
    assert buildx[buildx.index("--platform") + 1] == build["with"]["platforms"]


def test_upgrade_keeps_the_daemonset_selector(tmp_path: Path) -> None:
    """A DaemonSet's selector is immutable: an upgrade that changed it would fail. Rendered with the
    guide's upgrade command against the same chart at a later version."""
    args = _install_args("upgrade")
    assert args == _install_args("install")
    before, _ = _render(CHART, args)
    later = tmp_path / "cilium-node-exporter"
    shutil.copytree(CHART, later)
    chart_yaml = later / "Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace(f"\nversion: {args['version']}\n", "\nversion: 9.9.9\n")
                          .replace(f'\nappVersion: "{args["version"]}"\n', '\nappVersion: "9.9.9"\n'))
    after, _ = _render(later, args)
    ds_before, ds_after = one(before, "DaemonSet"), one(after, "DaemonSet")
    assert ds_before["spec"]["selector"] == ds_after["spec"]["selector"]
    assert ds_after["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":9.9.9")
    assert ds_after["spec"]["updateStrategy"]["type"] == "RollingUpdate"


def test_uninstall_leaves_nothing_behind() -> None:
    (uninstall,) = command("helm", "uninstall")
    args = _install_args("install")
    assert uninstall == ["helm", "uninstall", args["release"], "-n", args["namespace"]]
    assert not (CHART / "crds").exists()
    objects, _ = _render(CHART, args)
    for obj in objects:
        annotations = obj["metadata"].get("annotations", {})
        assert "helm.sh/hook" not in annotations and "helm.sh/resource-policy" not in annotations, obj["kind"]
    kinds = {o["kind"] for o in objects}
    assert kinds == {"DaemonSet", "Service", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                     "RoleBinding", "ServiceMonitor", "PrometheusRule", "AlertmanagerConfig", "ConfigMap"}
    text = GUIDE.read_text()
    section = text[text.index("## Uninstall"):].split("\n## ", 1)[0]
    for kind in ("DaemonSet", "Service", "ServiceAccount", "RBAC", "ServiceMonitor", "PrometheusRule",
                 "AlertmanagerConfig", "ConfigMaps", "Secret"):
        assert kind in section


def test_the_readme_installs_the_same_chart_with_the_example_values() -> None:
    readme = (REPO / "README.md").read_text()
    (line,) = [ln for ln in readme.replace("\\\n", " ").splitlines() if ln.startswith("helm install ")]
    argv = line.split()
    args = _install_args("install")
    assert argv[2:4] == [args["release"], args["chart"]]
    assert argv[argv.index("--version") + 1] == args["version"]
    assert argv[argv.index("-n") + 1] == args["namespace"]
    assert REPO / argv[argv.index("-f") + 1] == EXAMPLE
