"""Where things are in the checkout, and the optional real payloads beside it."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
# Real payloads captured from clusters (Hubble JSON, kubelet responses), kept by the team's workspace
# beside the checkout (or beside the directory holding a git worktree), never in it. Tests that read
# them are an optional cross-check of our own fixtures in DATA: where no such directory exists (a
# fresh clone, CI) they skip, saying so.
_BESIDE = "shared/samples"
REAL_SAMPLES = next((d / _BESIDE for d in REPO.parents if (d / _BESIDE).is_dir()), REPO.parent / _BESIDE)
