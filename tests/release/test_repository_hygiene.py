"""Repository hygiene: no merge-conflict markers in tracked files, and the test workers' groups hold."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.support.paths import REPO

MARKER = re.compile(rb"^(<{7} |>{7} |={7}$)", re.M)


def test_no_conflict_markers_in_tracked_files() -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    marked = []
    for name in filter(None, files):
        path = REPO / name.decode()
        if not path.is_file() or path.stat().st_size > 4 * 2**20:
            continue
        data = path.read_bytes()
        if b"\0" not in data[:8192] and MARKER.search(data):
            marked.append(name.decode())
    assert not marked, f"merge-conflict markers in {marked}"


@pytest.mark.xdist_group("hygiene")
def test_xdist_groups_are_honoured(request: pytest.FixtureRequest) -> None:
    """`make test` runs `-n 3 --dist loadgroup`: heavy module fixtures (the e2e stack, the fleet, the image, the
    report's backfill) are built once because their tests share a worker. If a pytest/xdist pair stops honouring
    groups, this fails instead of the suite silently doubling its cost and running e2e stacks side by side."""
    if os.environ.get("PYTEST_XDIST_WORKER") and getattr(request.config.option, "loadgroup", False):
        assert request.node.nodeid.endswith("@hygiene"), request.node.nodeid
