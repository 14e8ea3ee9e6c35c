"""The README's first screen says why a team would run this beside Cilium's metrics and kube-prometheus-stack; the
facts it states about this project and about Cilium's metric names hold."""

from __future__ import annotations

import re

from alerts.generate import build_groups
from cilium_node_exporter.config import FLAGS_BY_NAME
from tests.support.paths import REPO

README = (REPO / "README.md").read_text()
SECTION = README.split("## Beside what you already run\n", 1)[1].split("\n## ", 1)[0]
CILIUM_METRICS = {line.strip() for line in (REPO / "tests" / "data" / "cilium_documented_metrics.txt").read_text()
                  .splitlines() if line.strip() and not line.startswith("#")}
# Not in Cilium's metrics docs but registered by Hubble's policy handler (namespace hubble, name
# policy_verdicts_total: pkg/hubble/metrics/policy/handler.go, Cilium 1.16.15).
CILIUM_METRICS.add("hubble_policy_verdicts_total")


def test_it_is_on_the_first_screen() -> None:
    assert README.index("## Beside what you already run") < README.index("## How it works") < README.index(
        "## Try it")
    assert README[:README.index("## Beside what you already run")].count("\n") < 10


def test_the_cilium_metrics_it_names_are_ciliums() -> None:
    named = set(re.findall(r"`((?:cilium|hubble)_[a-z_]+)(?:\{[^`]*\})?`", SECTION))
    assert {"cilium_drop_count_total", "hubble_drop_total", "cilium_process_resident_memory_bytes"} <= named
    assert named <= CILIUM_METRICS, named - CILIUM_METRICS


def test_what_it_says_of_this_project_holds() -> None:
    alerts = {r["alert"] for g in build_groups() for r in g["rules"] if "alert" in r}
    assert "CiliumNodeHubbleBlind" in alerts and "`CiliumNodeHubbleBlind`" in SECTION
    assert any(a.startswith("CiliumCluster") for a in alerts) and "`CiliumCluster*`" in SECTION
    assert FLAGS_BY_NAME["memory-envelope"].default == "200Mi-500Mi" and "default 200Mi-500Mi" in SECTION
    for link in re.findall(r"\]\(([^)#]+)\)", SECTION):
        assert (REPO / link).is_file(), link
    assert "What it does not tell:" in SECTION
