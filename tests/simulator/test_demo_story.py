"""The demo's parts without processes: its timeline reads the pack (names, severities, routes), the story turns
API answers into transition lines and a summary; the shared stack's Alertmanager configuration and supervisor."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.generate import build_alertmanager
from cilium_node_simulator import stack
from cilium_node_simulator.demo import PackAlert, Story, read_pack, timeline
from cilium_node_simulator.scenario import load_scenario
from cilium_node_simulator.webhook import Delivery
from tests.support.procs import wait_until

UPPER = 500 * 2**20


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PackAlert]:
    rules = stack.render_pack(tmp_path_factory.mktemp("rules"))
    return read_pack(rules, stack.alertmanager_config("http://127.0.0.1:1/hook"))


def test_pack_routes_come_from_the_rules_and_the_shipped_routes(pack: dict[str, PackAlert]) -> None:
    assert pack["CiliumAgentOOMKilled"].route == "warning -> ticket"
    assert pack["CiliumAgentOOMKillLoop"].route == "critical -> page"
    assert pack["CiliumAgentMemoryBelowEnvelope"].receiver == "none"
    assert pack["CiliumAgentMemoryAboveEnvelope"].summary.endswith(".")


def test_showcase_timeline_names_the_packs_alerts(pack: dict[str, PackAlert]) -> None:
    showcase = load_scenario("showcase")
    at4 = "\n".join(what for _, what in timeline(showcase, 4, UPPER, pack))
    assert "not in the loaded pack" not in at4, at4
    for name in ("CiliumNodePolicyDenialSurge", "CiliumNodeL7DenialSurge", "CiliumAgentMemoryGrowthForecast",
                 "CiliumAgentMemoryAboveEnvelope", "CiliumAgentMemoryNearLimit"):
        assert f"{name} ({pack[name].route})" in at4, at4
    assert "OOM-killed and restarts  -> CiliumAgentOOMKilled (warning -> ticket)" in at4
    # one kill per 3-minute loop at 4x: the loop alert (2 kills within 2m) does not page ...
    assert "CiliumAgentOOMKillLoop (critical -> page) needs 2 within 2m, so no page" in at4
    # ... at 20x the loop takes 36 s: the second kill pages
    at20 = timeline(showcase, 20, UPPER, pack)
    assert (33 + 36, "kill number 2 within 2m  -> CiliumAgentOOMKillLoop (critical -> page)") in at20
    crossing = next(t for t, what in at20 if "crosses its envelope (500Mi)" in what)
    assert crossing == pytest.approx((6 * 60 + (500 - 320) / (640 - 320) * 180) / 20)


def alert(name: str, state: str, **labels: str) -> dict[str, Any]:
    return {"labels": {"alertname": name, "node": "sim-1", "severity": "warning", **labels}, "state": state}


def test_story_prints_transitions_deliveries_and_a_summary(pack: dict[str, PackAlert]) -> None:
    out = io.StringIO()
    story = Story(load_scenario("showcase"), 4, pack, time.monotonic() - 100, out)
    above, kill, loop = "CiliumAgentMemoryAboveEnvelope", "CiliumAgentOOMKilled", "CiliumAgentOOMKillLoop"
    story.prometheus([alert(above, "pending"), alert("CiliumHubbleEventsLost", "pending", source="ring")])
    story.prometheus([alert(above, "firing")])
    story.prometheus([alert(kill, "firing"), alert(loop, "firing")])
    story.alertmanager([{"fingerprint": "a", "labels": alert(kill, "")["labels"], "status": {"inhibitedBy": ["b"]}},
                        {"fingerprint": "b", "labels": alert(loop, "")["labels"], "status": {"inhibitedBy": []}}])
    now = time.time()
    story.deliveries([Delivery(now, "ticket", "firing", alert(above, "")["labels"], {}, "", ""),
                      Delivery(now, "ticket", "resolved", alert(above, "")["labels"], {}, "", "")])
    lines = out.getvalue().splitlines()
    assert [line.split(")  ", 1)[1] for line in lines] == [
        f"{above} is pending (warning -> ticket)",
        'CiliumHubbleEventsLost{source="ring"} is pending (warning -> ticket)',
        f"{above} FIRING (warning -> ticket): {pack[above].summary}",
        'CiliumHubbleEventsLost{source="ring"} is no longer pending (it did not last long enough to fire)',
        f"{kill} FIRING (warning -> ticket): {pack[kill].summary}",
        f"{loop} FIRING (critical -> page): {pack[loop].summary}",
        f"{above} resolved",
        f"Alertmanager holds {kill} back: inhibited by {loop}",
        f"delivered to TICKET: {above} firing",
        f"delivered to TICKET: {above} resolved",
    ]
    assert lines[0].startswith(" 1:40  (scenario 6:40 memory-climb)"), lines[0]
    summary = "\n".join(story.summary())
    assert "ticket firing 1:40; ticket resolved 1:40" in summary
    assert f"held back: inhibited by {loop}" in summary
    assert "alerts delivered: 2 to ticket" in summary


def test_alertmanager_config_is_the_shipped_one_with_local_receivers() -> None:
    shipped = build_alertmanager()
    fast = stack.alertmanager_config("http://127.0.0.1:9/hook", stack.FAST_ROUTE)
    urls = {r["name"]: [h["url"] for h in r.get("webhook_configs", [])] for r in fast["receivers"]}
    assert urls == {"page": ["http://127.0.0.1:9/hook/page"], "ticket": ["http://127.0.0.1:9/hook/ticket"],
                    "none": []}
    assert fast["inhibit_rules"] == shipped["inhibit_rules"]
    assert {k: fast["route"][k] for k in stack.FAST_ROUTE} == dict(stack.FAST_ROUTE)
    (scoped,) = fast["route"]["routes"]  # the pack's one route, severities below it
    page = next(r for r in scoped["routes"] if r["receiver"] == "page")
    assert page["group_wait"] == "5s" and page["matchers"] == ['severity="critical"']
    assert "group_wait" not in next(r for r in scoped["routes"] if r["receiver"] == "ticket")
    as_shipped = stack.alertmanager_config("http://127.0.0.1:9/hook")
    assert as_shipped["route"] == shipped["route"]
    assert stack.receivers_by_severity(shipped) == {"critical": "page", "warning": "ticket", "info": "none"}


def test_supervisor_stops_its_children_and_they_die_with_their_parent(tmp_path: Path) -> None:
    sup = stack.Supervisor(tmp_path / "logs")
    ignores_term = sup.start("stubborn", [sys.executable, "-c", "import signal, time; "
                                          "signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); "
                                          "time.sleep(60)"])
    wait_until(lambda: "up" in sup.log("stubborn"), 10, "the child started")
    assert sup.dead() is None
    assert sup.stop_all(timeout=0.5) == {"stubborn": -signal.SIGKILL}
    assert ignores_term.poll() is not None
    # a parent killed with SIGKILL takes its supervised children along (PR_SET_PDEATHSIG)
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from cilium_node_simulator.stack import Supervisor
        child = Supervisor(Path({str(tmp_path)!r}) / "parent").start("sleeper", ["sleep", "60"])
        print(child.pid, flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(10)

    def gone() -> bool:
        try:
            return Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    wait_until(gone, 10, "the orphan to end")


def test_prometheus_config_scrapes_file_targets_and_sends_to_alertmanager(tmp_path: Path) -> None:
    stack.write_targets(tmp_path / "sd", "n1", ["127.0.0.1:1"], {"node": "n1"})
    config = stack.prometheus_config(tmp_path / "sd", [tmp_path / "a.rules.yaml"], alertmanager="127.0.0.1:2")
    assert config["alerting"]["alertmanagers"][0]["static_configs"] == [{"targets": ["127.0.0.1:2"]}]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == stack.JOB and job["file_sd_configs"][0]["files"] == [str(tmp_path / "sd" / "*.json")]
    assert yaml.safe_load((tmp_path / "sd" / "n1.json").read_text()) == [
        {"targets": ["127.0.0.1:1"], "labels": {"node": "n1"}}]
