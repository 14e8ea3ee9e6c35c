"""Session fixtures: the checkout, and the optional real samples (skipped, with the reason, when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.paths import REAL_SAMPLES, REPO


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def real_samples() -> Path:
    """The directory of real captured payloads; the test is skipped when it is not there."""
    if not REAL_SAMPLES.is_dir():
        pytest.skip(f"{REAL_SAMPLES} not present: real samples are an extra cross-check of tests/data")
    return REAL_SAMPLES
