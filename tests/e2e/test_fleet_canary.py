"""Fleet end to end for the version canary: two simulated clusters roll Cilium 1.16.5 -> 1.16.6 over an hour, one
with a bad release (``upgrade-bad``: its agent process grows 300Mi -> 900Mi, its maps leak 600Mi, it drops ~1 % of
packets as MISSED_TAIL_CALL), one with a good one (``upgrade-good``: every agent restarts and reuses its pinned
maps, so its working set drops by their size, cilium/cilium#37935). Debian's Prometheus evaluates the accelerated
pack (30x: the canary's 30-minute settle time is a minute); CiliumClusterVersionCanary must fire for the bad
rollout and never even be pending for the good one, whose working sets fell after the upgrade.

The simulator's own tables are the ground truth: the process size each release runs with comes from the fleet
scenario files, never from the exporter's parsers.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import yaml

from cilium_node_exporter.mixin import lifecycle as lc
from cilium_node_simulator.fleet_scenario import assign, load_fleet
from cilium_node_simulator.memory_model import MemoryModel
from cilium_node_simulator.webhook import WebhookReceiver
from tests.e2e import fleet_pack
from tests.e2e.stack import JOB, Stack, wait_until
from tests.support.paths import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("fleet-canary"), pytest.mark.timeout(300)]

SCENARIOS = REPO / "simulator" / "cilium_node_simulator" / "scenarios" / "fleet"
NODES = 40  # per cluster: every node size of the scenario (8 to 256 GiB) keeps at least 6 nodes
BAD, GOOD = "canary-bad", "canary-good"
CLUSTERS = {BAD: "upgrade-bad", GOOD: "upgrade-good"}
LAST_UPGRADE = 70 * 60  # scenario seconds: 10 minutes before the rollout, then a node of each group every 60/n min
MI = 1024 * 1024


@dataclass
class CanaryRun:
    """The stack, and when the fleet's timelines started."""

    stack: Stack
    t0: float
    speed: float
    fired_at: float | None = None

    def scenario_now(self) -> float:
        return (time.time() - self.t0) * self.speed

    def canary_states(self, cluster: str) -> dict[str, set[str]]:
        """signal -> alert states Prometheus had for the canary in ``cluster`` since the fleet started."""
        window = max(1, int(time.time() - self.t0) + 1)
        out: dict[str, set[str]] = {}
        for s in self.stack.query(f'max_over_time(ALERTS{{alertname="{lc.VERSION_CANARY}", '
                                  f'cluster="{cluster}"}}[{window}s])'):
            out.setdefault(s["metric"].get("signal", ""), set()).add(s["metric"]["alertstate"])
        return out


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CanaryRun]:
    stack = Stack(tmp_path_factory.mktemp("fleet-canary"))
    webhook = WebhookReceiver().start()
    speed = fleet_pack.compression()
    try:
        stack.start_monitoring(webhook.url, dashboard_rules=False, resend_delay="5s")
        targets = stack.sd_dir / "fleet.json"
        argv = [sys.executable, "-m", "cilium_node_exporter", "simulate", "--fleet", "0",
                *(a for name, scenario in CLUSTERS.items() for a in ("--cluster", f"{name}={scenario}:{NODES}")),
                "--speed", f"{speed:g}", "--targets-file", str(targets), "--scrape-interval", "2s"]
        stack.procs.start("fleet", argv)
        wait_until(targets.exists, 60, lambda: f"the fleet's targets; log:\n{stack.procs.log('fleet')}")
        canary = CanaryRun(stack, time.time(), speed)
        want = NODES * len(CLUSTERS)
        wait_until(lambda: int(float((stack.query(f'count(up{{job="{JOB}"}} == 1)') or [{"value": [0, 0]}])[0]
                                     ["value"][1])) >= want, 40,
                   lambda: f"{want} exporters scraped; fleet log:\n{stack.procs.log('fleet')}")
        # until the bad rollout's canary fires, at most until the last node upgraded (scenario time)
        deadline = canary.t0 + LAST_UPGRADE / speed
        while time.time() < deadline:
            if "firing" in {s for states in canary.canary_states(BAD).values() for s in states}:
                canary.fired_at = canary.scenario_now()
                break
            time.sleep(2)
        yield canary
    finally:
        stack.procs.stop_all()
        webhook.stop()


def _process_sizes(scenario: str) -> tuple[float, float]:
    """(process before the upgrade, process at the end of the upgrade phase) in bytes, from the scenario file."""
    doc = yaml.safe_load((SCENARIOS / f"{scenario}.yaml").read_text())
    plan = doc["groups"][0]["scenario"]
    upgraded = next(p for p in plan["phases"] if p.get("version"))
    process = (upgraded.get("agent") or {}).get("process", plan["agent"]["process"])

    def size(text: str) -> float:
        return float(text.removesuffix("Mi")) * MI

    after = process["to"] if isinstance(process, dict) else process
    return size(plan["agent"]["process"]), size(after)


def test_bad_rollout_fires_the_canary(run: CanaryRun) -> None:
    states = run.canary_states(BAD)
    assert run.fired_at is not None, (states, run.stack.procs.log("fleet")[-2000:])
    # the canary fires while the rollout is under way (both cohorts present), not after it
    assert run.fired_at < LAST_UPGRADE, run.fired_at
    assert "process_memory" in states and "firing" in states["process_memory"], states
    # the release's map leak and its MISSED_TAIL_CALL drops are seen too (they settle with the same nodes)
    assert {"process_memory", "bpf_memory", "unexpected_drops"} <= set(states), states
    before, after = _process_sizes(CLUSTERS[BAD])
    assert after >= 2 * before  # the scenario really is a bad release (simulator's table)
    medians = {s["metric"]["version"]: float(s["value"][1])
               for s in run.stack.query(f'{lc.COHORT_PROCESS}{{cluster="{BAD}"}}')}
    assert set(medians) == {"1.16.5", "1.16.6"}, medians
    assert abs(medians["1.16.5"] - before) < 0.05 * before, medians
    assert medians["1.16.6"] > 1.25 * before + 64 * MI, medians


def test_good_rollout_stays_quiet_although_working_sets_drop(run: CanaryRun) -> None:
    assert run.fired_at is not None  # the run lasted until the bad canary fired: the good one had as long
    assert run.canary_states(GOOD) == {}, run.canary_states(GOOD)
    before, after = _process_sizes(CLUSTERS[GOOD])
    assert after == before
    # both cohorts present and settled: the comparison happened
    settled = {s["metric"]["version"]: float(s["value"][1])
               for s in run.stack.query(f'{lc.COHORT_SETTLED}{{cluster="{GOOD}"}}')}
    assert settled.get("1.16.5", 0) >= 3 and settled.get("1.16.6", 0) >= 3, settled
    # the restart artefact is real: upgraded agents pay for less BPF memory than they hold
    uncharged = run.stack.query(f'count({lc.BPF_UNCHARGED}{{cluster="{GOOD}"}} > 0)')
    assert uncharged and float(uncharged[0]["value"][1]) >= 3, uncharged


def test_footprint_restores_what_the_restart_took_from_the_working_set(run: CanaryRun) -> None:
    """Ground truth from the simulator's memory model (its own tables): on the good rollout's upgraded nodes the
    working set is the one of a container that reused its maps, and the footprint the one of a container that
    created them, within the kernel and file-mapped memory the charge estimate cannot separate (64Mi)."""
    truth = {}
    for node, a in assign(load_fleet(CLUSTERS[GOOD]), NODES, run.speed):
        scenario = a.plan.scenario
        process = (scenario.phases[-1].agent.process or scenario.agent.process).end
        model = MemoryModel((1, 16), scenario.host, scenario.cluster, scenario.cilium.sizing())
        truth[node] = (model.sample(process, owns_maps=True), model.sample(process, owns_maps=False))
    sel = f'cluster="{GOOD}"'
    upgraded = {s["metric"]["node"] for s in run.stack.query(
        f'{lc.VERSION}{{{sel}, version="1.16.6"}} and on (cluster, node) '
        f'time() - max by (cluster, node) (cilium_node_agent_container_start_time_seconds{{{sel}}}) > 10')}
    assert len(upgraded) >= 3, upgraded

    def by_node(expr: str) -> dict[str, float]:
        return {s["metric"]["node"]: float(s["value"][1]) for s in run.stack.query(expr)}

    footprint = by_node(f"{lc.FOOTPRINT}{{{sel}}}")
    working_set = by_node(f"max by (node) (cilium_node_agent_memory_working_set_bytes{{{sel}}})")
    for node in sorted(upgraded):
        owned, reused = truth[node]
        assert abs(working_set[node] - reused.working_set) < 4 * MI, (node, working_set[node], reused)
        assert abs(footprint[node] - owned.working_set) < 64 * MI, (node, footprint[node], owned)
        assert owned.working_set - reused.working_set > 64 * MI  # the artefact is real on every node size
