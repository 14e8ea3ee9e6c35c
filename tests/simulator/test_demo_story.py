"""The demo's parts without processes: its timeline reads the pack (names, severities, routes), the story turns
API answers into transition lines and a summary; the shared stack's Alertmanager configuration and supervisor."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.generate import build_alertmanager
from cilium_node_exporter.mixin import names as n
from cilium_node_simulator import stack
from cilium_node_simulator.demo import PACK, PackAlert, Story, envelope_burns, read_pack, report_hint, timeline
from cilium_node_simulator.scenario import load_scenario
from cilium_node_simulator.webhook import Delivery
from tests.support.paths import REPO
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


def test_showcase_timeline_announces_the_budget_burns_and_why_they_outlive_their_inhibitor(
        pack: dict[str, PackAlert]) -> None:
    """The envelope SLO's burn alerts (found in the pack by the SLI they read) are announced with their windows and
    route, held back while the envelope alert fires (the shipped inhibit rule), and still firing after it resolves:
    the time spent above the envelope stays in their windows, and each pass of the loop goes above again."""
    burns = envelope_burns(pack)
    assert sorted(pair.long for _, pair in burns) == ["144m", "48m"]
    (burn,) = {name for name, _ in burns}
    events = timeline(load_scenario("showcase"), 4, UPPER, pack)
    crossing = next(t for t, what in events if "crosses its envelope" in what)
    at, what = next((t, what) for t, what in events if f"-> {burn} ({pack[burn].route}" in what)
    # both windows need more than factor x 1 % of bad time: 2.8 % of 4m (6.72 s) or 0.93 % of 12m (6.70 s) above
    assert at - crossing == pytest.approx(min(0.028 * 240, 0.0093 * 720))
    assert f"windows 48m/4m, 144m/12m); Alertmanager holds it back while {n.AGENT_ABOVE_ENVELOPE} fires" in what
    back = next(what for t, what in events if "is back inside its envelope" in what)
    assert f"{n.AGENT_ABOVE_ENVELOPE} resolves; {burn} does not" in back
    assert "Alertmanager now delivers what it held back" in back
    assert "each 3:00 pass goes above again, so 48m/4m, 144m/12m keep firing while the tour loops" in back
    # without a loop the burns resolve: their short windows forget the time above
    once = timeline(replace(load_scenario("showcase"), loop=False), 4, UPPER, pack)
    assert "(4m later for 48m/4m, 12m later for 144m/12m)" in next(w for _, w in once if "back inside" in w)
    assert not any(w.startswith("pass 2") for _, w in once)


def test_showcase_timeline_says_why_the_second_pass_raises_no_surge(pack: dict[str, PackAlert]) -> None:
    at4 = dict(timeline(load_scenario("showcase"), 4, UPPER, pack))
    second = at4[180.0]
    assert second.startswith("pass 2: the scenario starts again (every 3:00); the memory alerts come again")
    assert f"but not {n.POLICY_DENIAL_SURGE} nor {n.L7_DENIAL_SURGE}" in second
    assert f"its own average over the last {PACK['denialBaselineWindow']} (denialBaselineWindow)" in second
    # a pass longer than the baseline window: the baseline no longer holds the first storm, nothing is promised
    at1 = dict(timeline(load_scenario("showcase"), 1, UPPER, pack))
    assert at1[720.0] == "pass 2: the scenario starts again (every 12:00)"


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
    assert out.getvalue() == ""  # said, printed at the flush in time order
    story.flush()
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
    assert lines[0].startswith(" 1:40  (sim 6:40 memory-climb)  "), lines[0]
    summary = "\n".join(story.summary())
    assert "ticket firing 1:40; ticket resolved 1:40" in summary
    assert f"held back: inhibited by {loop}" in summary
    assert "alerts delivered: 2 to ticket" in summary
    assert summary.startswith("\nSummary after 1:40 of demo time (m:ss since the simulator started):")


def test_story_lines_are_printed_in_time_order_with_both_clocks_and_the_pass() -> None:
    out = io.StringIO()
    story = Story(load_scenario("showcase"), 4, {}, time.monotonic(), out)
    story.say(200.0, "later")
    story.say(5.0, "earlier")
    story.flush()
    assert out.getvalue().splitlines() == [" 0:05  (sim 0:20 steady)  earlier",
                                           " 3:20  (sim 1:20 steady, pass 2)  later"]


def shifted(story: Story, seconds: float) -> None:
    """Make ``seconds`` of demo time have passed since the story's scenario started."""
    story.started = time.monotonic() - seconds


def test_story_marks_each_pass_and_a_surge_that_does_not_come_back(pack: dict[str, PackAlert]) -> None:
    out = io.StringIO()
    story = Story(load_scenario("showcase"), 4, pack, time.monotonic(), out)
    for at in (170, 181, 215, 245, 250):  # pass 1's last phase, pass 2, its policy storm (3:30), its L7 phase (4:00)
        shifted(story, at)
        story.tick()
    story.prometheus([alert(n.L7_DENIAL_SURGE, "pending")])  # the L7 surge does come back in pass 2
    shifted(story, 275)  # both phases are over
    story.tick()
    story.flush()
    said = [line.split(")  ", 1)[1] for line in out.getvalue().splitlines()]
    assert said[0] == "the scenario starts again: pass 2"
    assert out.getvalue().splitlines()[0].startswith(" 3:01  (sim 0:04 steady, pass 2)  ")
    quiet = (f"phase 'policy-storm' of pass 2 is over: 64 policy denials/s again and no {n.POLICY_DENIAL_SURGE}, as "
             f"expected: the node's {PACK['denialBaselineWindow']} average it compares with holds the earlier passes")
    assert quiet in said, said
    assert not [line for line in said if "no " + n.L7_DENIAL_SURGE in line], said


def test_a_delivery_held_back_until_its_cause_resolved_says_so(pack: dict[str, PackAlert]) -> None:
    out = io.StringIO()
    story = Story(load_scenario("showcase"), 4, pack, time.monotonic() - 130, out)
    above, burn = n.AGENT_ABOVE_ENVELOPE, "CiliumAgentMemoryEnvelopeBudgetBurn"
    story.prometheus([alert(above, "firing"), alert(burn, "firing", long="48m", short="4m")])
    story.alertmanager([{"fingerprint": "a", "labels": alert(above, "")["labels"], "status": {"inhibitedBy": []}},
                        {"fingerprint": "b", "labels": alert(burn, "", long="48m", short="4m")["labels"],
                         "status": {"inhibitedBy": ["a"]}}])
    story.prometheus([alert(burn, "firing", long="48m", short="4m")])  # the envelope alert resolved
    story.deliveries([Delivery(time.time(), "ticket", "firing", alert(burn, "", long="48m", short="4m")["labels"],
                               {}, "", "")])
    story.flush()
    assert out.getvalue().splitlines()[-1].endswith(
        f'delivered to TICKET: {burn}{{long="48m", short="4m"}} firing (held back while {above} fired; that has '
        "resolved)")


def test_the_review_the_demo_suggests_is_written_outside_the_checkout() -> None:
    """`make demo` runs from the checkout: a relative --output would leave an untracked file in it."""
    hint = "\n".join(report_hint("http://127.0.0.1:9090", 0.0))
    output = Path(re.search(r"--output (\S+)", hint).group(1))  # type: ignore[union-attr]
    assert output.is_absolute() and output.parent == Path(tempfile.gettempdir())
    assert REPO not in output.parents and f"open {output} in a browser" in hint


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
