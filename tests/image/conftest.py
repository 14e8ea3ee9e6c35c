"""Session fixtures of the image tests: the local base image, the repository's Dockerfile built on it, and
the built image's root filesystem, each made once per test session (the base takes about a minute)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.image import Buildah, build_base, missing_tools
from tests.support.paths import REPO
from tests.support.registry import Registry

BASE_TAG = "localhost/cne-test-base:python3.11-bookworm"
IMAGE_TAG = "localhost/cilium-node-exporter:test"


@pytest.fixture(scope="session")
def buildah(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Buildah]:
    missing = missing_tools()
    # Not a skip: CI (.ci/run, `make system-deps`) installs them, so a missing tool is a broken setup.
    assert not missing, f"{', '.join(missing)} missing: `make system-deps` installs buildah, mmdebstrap and runc"
    tool = Buildah(tmp_path_factory.mktemp("buildah"))
    yield tool
    tool.cleanup()


@pytest.fixture(scope="session")
def built(buildah: Buildah, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The local base, then the repository's Dockerfile built on it; build timings for the report."""
    started = time.monotonic()
    base = build_base(buildah, tmp_path_factory.mktemp("base"), BASE_TAG)
    base_seconds = time.monotonic() - started
    started = time.monotonic()
    log = buildah.build(REPO, IMAGE_TAG, "--build-arg", f"PYTHON_IMAGE={base}")
    return {"base": base, "image": IMAGE_TAG, "log": log, "base_seconds": base_seconds,
            "build_seconds": time.monotonic() - started}


@pytest.fixture(scope="session")
def image_config(buildah: Buildah, built: dict[str, Any]) -> dict[str, Any]:
    return buildah.config(built["image"])


@pytest.fixture(scope="session")
def rootfs(buildah: Buildah, built: dict[str, Any]) -> Path:
    """The built image's root filesystem (a buildah working container, mounted)."""
    _, path = buildah.mount(built["image"])
    return path


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    server = Registry(tmp_path_factory.mktemp("registry"))
    yield server
    server.stop()
