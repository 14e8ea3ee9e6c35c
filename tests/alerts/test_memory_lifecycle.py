"""The lifecycle and canary promtool tests (alerts/tests/memory_lifecycle.yaml, canary.yaml) are not vacuous: a
rule pack that forgets what tells a warm-up, churn or a single-node cohort from a real problem fails them. And the
words a report puts on a working set that fell at a restart (mixin.lifecycle.read_drop)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cilium_node_exporter.mixin.lifecycle import read_drop
from tests.alerts.test_alerts_promtool import assert_mutant_fails

FORECAST, CANARY = "a leak is forecast", "bad 1.16.5 -> 1.16.6 rollouts"  # the test groups that must fail
MUTANTS: list[tuple[dict[str, Any], str, str]] = [
    ({"memoryForecastRecentShare": 0}, "memory_lifecycle.yaml", FORECAST),  # a warm-up still growing is a leak
    ({"memoryChurnBytesPerEntry": 0}, "memory_lifecycle.yaml", FORECAST),  # growth with the cluster's pods is a leak
    ({"canaryMinNodes": 1}, "canary.yaml", CANARY),  # a single-node cohort pages
    ({"canarySettleSeconds": 0}, "canary.yaml", CANARY),  # nodes compared while their agents warm up
    ({"canaryMemoryRatio": 4}, "canary.yaml", CANARY),  # a 3x process no longer counts
    ({"canaryDropRatio": 0.02}, "canary.yaml", CANARY),  # 1 % unexpected drops under the floor
    ({"canaryRestartsPerNode": 10}, "canary.yaml", CANARY),  # a crash-looping release no longer counts
]


@pytest.mark.parametrize(("overrides", "test_file", "group"), MUTANTS, ids=lambda x: str(x))
def test_lifecycle_unit_tests_fail_for_a_mutant(overrides: dict[str, Any], test_file: str, group: str,
                                                tmp_path: Path) -> None:
    assert_mutant_fails(overrides, test_file, group, tmp_path)


MI = 2**20


@pytest.mark.parametrize(("before", "after", "restarted", "uncharged", "verdict"), [
    (1388 * MI, 320 * MI, True, 1068 * MI, "restart artefact"),  # the promtool test's n1
    (1388 * MI, 320 * MI, True, 0.0, "recovered by the restart"),  # maps recreated, a leak the restart fixed
    (1388 * MI, 320 * MI, True, None, "unknown"),  # agent metrics off: no claim either way
    (900 * MI, 600 * MI, False, 0.0, "recovered"),  # the same container freed memory
    (600 * MI, 650 * MI, True, 300 * MI, "no drop"),
])
def test_a_report_reads_a_drop_after_a_restart(before: float, after: float, restarted: bool, uncharged: float | None,
                                              verdict: str) -> None:
    assert read_drop(before, after, restarted, uncharged)[0] == verdict
