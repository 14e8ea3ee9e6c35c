"""One version everywhere (scripts/release.py) and a CHANGELOG in Keep a Changelog form whose sections
become the release notes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cilium_node_exporter
import cilium_node_simulator
from tests.support.paths import REPO

SCRIPT = REPO / "scripts" / "release.py"
FILES = ("exporter/cilium_node_exporter/__init__.py", "simulator/cilium_node_simulator/__init__.py",
         "helm/cilium-node-exporter/Chart.yaml", "helm/cilium-node-exporter/values.yaml", "CHANGELOG.md",
         "docs/deploy.md", "README.md")


def release(*args: str, root: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(root / "scripts" / "release.py"), *args], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The files the script reads and writes, in a scratch tree of the same layout."""
    for name in (*FILES, "scripts/release.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, tmp_path / name)
    return tmp_path


def test_every_place_has_the_same_version() -> None:
    result = release("version")
    assert result.returncode == 0, result.stderr
    version = result.stdout.strip()
    assert version == cilium_node_exporter.__version__ == cilium_node_simulator.__version__
    chart = (REPO / "helm/cilium-node-exporter/Chart.yaml").read_text()
    assert f"\nversion: {version}\n" in chart and f'\nappVersion: "{version}"\n' in chart


def test_a_place_left_behind_is_reported(copy: Path) -> None:
    init = copy / "simulator/cilium_node_simulator/__init__.py"
    init.write_text(init.read_text().replace(cilium_node_exporter.__version__, "9.9.9"))
    result = release("version", root=copy)
    assert result.returncode == 1 and "simulator __version__ 9.9.9" in result.stderr, result.stderr


def test_set_writes_every_place_and_dates_the_unreleased_notes(copy: Path) -> None:
    unreleased = re.split(r"^## |^\[", (copy / "CHANGELOG.md").read_text().split("## [Unreleased]\n", 1)[1],
                          maxsplit=1, flags=re.M)[0].strip()
    assert release("set", "0.2.0", root=copy).stdout.strip() == "0.2.0"
    assert release("version", root=copy).stdout.strip() == "0.2.0"
    chart = (copy / "helm/cilium-node-exporter/Chart.yaml").read_text()
    assert "\nversion: 0.2.0\n" in chart and '\nappVersion: "0.2.0"\n' in chart
    assert "\nVERSION=0.2.0\n" in (copy / "docs/deploy.md").read_text()
    assert "\n  --version 0.2.0 -n kube-system -f " in (copy / "README.md").read_text()
    changelog = (copy / "CHANGELOG.md").read_text()
    assert re.search(r"^## \[Unreleased\]\n\n## \[0\.2\.0\] - \d{4}-\d{2}-\d{2}\n", changelog, re.M)
    check_keep_a_changelog(changelog)
    assert "[0.2.0]: https://github.com/cilium-node-exporter/cilium-node-exporter/releases/tag/v0.2.0" in changelog
    notes = release("notes", "0.2.0", root=copy)
    assert notes.returncode == 0 and notes.stdout.strip() == unreleased
    image = "ghcr.io/cilium-node-exporter/cilium-node-exporter"
    assert release("check-tag", "v0.2.0", "--image", image, root=copy).returncode == 0
    wrong_tag = release("check-tag", "v0.2.1", root=copy)
    assert wrong_tag.returncode == 1 and "does not match the version 0.2.0" in wrong_tag.stderr
    wrong_image = release("check-tag", "v0.2.0", "--image", "ghcr.io/someone-else/cilium-node-exporter", root=copy)
    assert wrong_image.returncode == 1 and "image.repository" in wrong_image.stderr
    assert release("set", "0.3", root=copy).returncode == 1  # not semantic


def test_the_version_the_readme_installs_is_released_in_the_changelog() -> None:
    """README and deploy guide install the current version: the CHANGELOG has its dated section and link, so
    its tag passes the release gate, with the previous notes kept apart from what is Unreleased."""
    version = cilium_node_exporter.__version__
    assert release("check-tag", f"v{version}").returncode == 0
    notes = release("notes", version)
    assert notes.returncode == 0 and "Exporter (one per node, DaemonSet)" in notes.stdout
    unreleased = (REPO / "CHANGELOG.md").read_text().split("## [Unreleased]\n", 1)[1].split("\n## [", 1)[0]
    assert unreleased.strip() and "Exporter (one per node, DaemonSet)" not in unreleased


def test_a_tag_without_release_notes_is_refused(copy: Path) -> None:
    """A version whose CHANGELOG section is missing (or undated) fails the release gate."""
    version = cilium_node_exporter.__version__
    changelog = copy / "CHANGELOG.md"
    changelog.write_text(re.sub(rf"^## \[{re.escape(version)}\] - .*$", f"## [{version}]", changelog.read_text(),
                                flags=re.M))
    result = release("check-tag", f"v{version}", root=copy)
    assert result.returncode == 1 and "CHANGELOG.md has no section" in result.stderr


def test_changelog_follows_keep_a_changelog() -> None:
    check_keep_a_changelog((REPO / "CHANGELOG.md").read_text())


def check_keep_a_changelog(text: str) -> None:
    assert text.startswith("# Changelog\n") and "https://keepachangelog.com/en/1.1.0/" in text
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings[0] == "[Unreleased]"
    dated = [re.fullmatch(r"\[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})", h) for h in headings[1:]]
    assert all(dated), headings
    versions = [tuple(int(x) for x in m.group(1).split(".")) for m in dated if m]
    assert versions == sorted(versions, reverse=True)
    kinds = set(re.findall(r"^### (.+)$", text, re.M))
    assert kinds <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}, kinds
    for heading in headings:  # every section heading is a link
        assert re.search(rf"^{re.escape(heading.split(' - ')[0])}: https://\S+$", text, re.M), heading
