"""Every tracked text file is free of merge-conflict markers (a merge resolved only half lands nowhere)."""

from __future__ import annotations

import re
import subprocess

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
