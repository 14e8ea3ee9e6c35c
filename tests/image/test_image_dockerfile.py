"""What the image tests cannot see by building on a local base: the production base the Dockerfile names,
and a build context that holds only what the build reads."""

from __future__ import annotations

import re

from tests.support.paths import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()


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
        "pyproject.toml", "README.md", "LICENSE", "exporter", "scripts/image_rootfs.py"}
