"""Shared test fixtures: repository paths and the read-only ../shared samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.paths import REPO

SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    assert SHARED.is_dir(), f"{SHARED} missing: tests read the real samples from ../shared"
    return SHARED
