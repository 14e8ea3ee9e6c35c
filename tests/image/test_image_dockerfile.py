"""What the image tests cannot see by building on a local base: the production base the Dockerfile names,
and a build context that holds only what the build reads."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement

from tests.support.paths import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_production_base_is_python_311_slim_bookworm() -> None:
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.M)
    assert base and base.group(1) == "python:3.11-slim-bookworm"
    assert re.findall(r"^FROM (\S+)", DOCKERFILE, re.M) == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}", "scratch"]


def test_dockerignore_keeps_the_context_to_what_the_build_reads() -> None:
    lines = [ln for ln in (REPO / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "*"
    allowed = {ln[1:] for ln in lines if ln.startswith("!")}
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE, re.M)
    assert {p for c in copied for p in c.split()} == allowed == {
        "pyproject.toml", "README.md", "LICENSE", "exporter", "scripts/image_rootfs.py", "requirements/image.lock",
        "requirements/build.lock"}


def locked(path: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a pip-compile --generate-hashes lock."""
    out: dict[str, tuple[str, list[str]]] = {}
    name = ""
    for line in (REPO / path).read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9._-]+)==(\S+) \\$", line):
            name = match.group(1).lower().replace("_", "-")
            out[name] = (match.group(2), [])
        elif match := re.match(r"^\s+--hash=sha256:([0-9a-f]{64})", line):
            out[name][1].append(match.group(1))
    return out


def test_the_images_dependencies_are_locked_with_hashes_and_installed_so() -> None:
    """Issue 23 row 12: every runtime dependency of pyproject.toml at one version within its range, with the
    sha256 of each file PyPI has for it (every platform's wheel: the release builds amd64 and arm64), and the
    Dockerfile installs nothing that is not checked against them."""
    runtime, build = locked("requirements/image.lock"), locked("requirements/build.lock")
    declared = {Requirement(r).name.lower(): Requirement(r) for r in PYPROJECT["project"]["dependencies"]}
    assert set(declared) <= set(runtime)
    for name, requirement in declared.items():
        assert requirement.specifier.contains(runtime[name][0]), (name, runtime[name][0])
    assert {"setuptools", "wheel"} <= set(build)
    for name, (_, hashes) in {**runtime, **build}.items():
        assert hashes, name
    assert len(runtime["grpcio"][1]) > 10  # one wheel per platform and Python, not just this machine's
    downloads = re.findall(r"pip download (.*?) -r (\S+)", DOCKERFILE)
    assert {lock for _, lock in downloads} == {"requirements/image.lock", "requirements/build.lock"}
    assert all("--require-hashes" in opts and "--only-binary=:all:" in opts for opts, _ in downloads)
    assert re.search(r"pip install --no-index --find-links=/wheels --require-hashes --no-deps \\\n\s+-r "
                     r"/wheels/image.lock", DOCKERFILE)
    assert "--no-build-isolation --no-index" in DOCKERFILE  # our wheel, built offline with the locked tools
