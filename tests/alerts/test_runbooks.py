"""docs/runbooks.md: every command runs as written on every Cilium release it claims (1.14 to 1.19).

The flag lists are our own test data, read from each release's source (tests/data/cilium-cli/, every file names
the commit it was read from): the `hubble observe` flags of each `hubble` CLI the agent images carry, the
`cilium-dbg` (1.14: `cilium`) command paths and flags, and the FlowFilter fields each release's Hubble server
knows (a filter flag the server does not know is silently ignored). A command that needs a newer release carries
a `# Cilium 1.16+` comment; it is checked from that release on, and the mark must be needed. The client-side
`jq` filters run with the real jq on our own fixture flows.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.paths import REPO

RUNBOOKS = (REPO / "docs" / "runbooks.md").read_text()
DATA = REPO / "tests" / "data" / "cilium-cli"
FLOWS = sorted((REPO / "tests" / "data" / "hubble").glob("flows-*.json"))


def _lines(name: str) -> list[str]:
    text = (DATA / name).read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


@dataclass(frozen=True)
class HubbleCli:
    """The flags one `hubble` CLI build accepts for `hubble observe`."""

    name: str
    long: frozenset[str]
    short: frozenset[str]

    @classmethod
    def read(cls, name: str) -> HubbleCli:
        lines = _lines(name)
        short = next(line for line in lines if line.startswith("short:")).split(":", 1)[1].split()
        return cls(name, frozenset(line for line in lines if not line.startswith("short:")), frozenset(short))


def read_dbg(name: str) -> dict[str, frozenset[str]]:
    """command path -> flags, of one `cilium-dbg` build."""
    out = {}
    for line in _lines(name):
        path, _, flags = line.partition("|")
        out[path.strip()] = frozenset(flags.split())
    return out


@dataclass(frozen=True)
class Release:
    """A Cilium minor: the agent CLI's name, the cilium-dbg builds and hubble CLIs its images carry (each must
    accept a command), and its Hubble server's FlowFilter fields."""

    minor: int
    agent_cli: str
    dbg: tuple[str, ...]
    hubble: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"1.{self.minor}"


# Which builds each release ships (the sources are in each file's header): 1.14 and 1.15 images download a
# hubble CLI (v0.12.0 in 1.14.0 up to v1.16.2 in 1.14.16; v0.13.x up to 1.15.7), later ones build it from the
# tree. No 1.19 cilium-dbg source was read: a command must hold at 1.18.3 and on main after the 1.19 branch cut.
RELEASES = (
    Release(14, "cilium", ("cilium-dbg-1.14.16.txt",),
            ("hubble-observe-v0.12.0.txt", "hubble-observe-v0.13.5.txt", "hubble-observe-v1.16.2.txt")),
    Release(15, "cilium-dbg", ("cilium-dbg-1.15.7.txt",), ("hubble-observe-v0.13.5.txt",)),
    Release(16, "cilium-dbg", ("cilium-dbg-1.16.15.txt",), ("hubble-observe-1.16.15.txt",)),
    Release(17, "cilium-dbg", ("cilium-dbg-1.17.8.txt",), ("hubble-observe-1.17.8.txt",)),
    Release(18, "cilium-dbg", ("cilium-dbg-1.18.3.txt",), ("hubble-observe-1.18.3.txt",)),
    Release(19, "cilium-dbg", ("cilium-dbg-1.18.3.txt", "cilium-dbg-main-1.20.0-dev.txt"),
            ("hubble-observe-v1.19.4.txt",)),
)
FLOWFILTER = {line.split(":")[0]: frozenset(line.split(":", 1)[1].split()) for line in _lines("flowfilter-fields.txt")}
# `hubble observe` filter flags the runbooks use -> the FlowFilter field the server must know (flows.go
# filterVar handling); the other flags the runbooks use select, print or connect.
FILTER_FIELDS = {"verdict": "verdict", "type": "event_type", "t": "event_type", "node-name": "node_name",
                 "drop-reason-desc": "drop_reason_desc"}
NOT_FILTERS = {"last", "first", "follow", "f", "server", "output", "o", "print-node-name"}
MARK = re.compile(r"#\s*Cilium 1\.(\d+)\+")
FENCED = re.compile(r"^ *```[a-z]*\n(.*?)^ *```", re.M | re.S)


@dataclass(frozen=True)
class Command:
    text: str  # the arguments after the tool's name
    since: int  # the first minor it claims (14: every release)


def commands(tool: str) -> list[Command]:
    """Every invocation of ``tool`` in the runbooks: in code blocks (continued lines joined) up to a pipe or a
    comment, whose `# Cilium 1.N+` mark it keeps; in inline code up to the closing backtick."""
    spans = []
    for block in FENCED.findall(RUNBOOKS):
        for line in block.replace("\\\n", " ").splitlines():
            mark = MARK.search(line)
            spans.append((line, int(mark.group(1)) if mark else 14))
    spans += [(span, 14) for span in re.findall(r"`([^`\n]+)`", FENCED.sub("", RUNBOOKS))]
    found = set()
    for span, since in spans:
        for match in re.finditer(rf"(?:^|[\s($]){re.escape(tool)}\s+([^|;#)]*)", span):
            found.add(Command(match.group(1).strip(), since))
    return sorted(found, key=lambda c: (c.text, c.since))


def flags(command: str) -> tuple[list[str], list[str]]:
    return re.findall(r"(?:^|\s)--([a-z0-9-]+)", command), re.findall(r"(?:^|\s)-([A-Za-z0-9])\b", command)


def hubble_problems(command: str, release: Release) -> list[str]:
    """Why ``hubble command`` would fail (a CLI refuses a flag) or mislead (the server ignores a filter)."""
    problems = []
    longs, shorts = flags(command)
    for cli in map(HubbleCli.read, release.hubble):
        problems += [f"{cli.name} has no --{f}" for f in longs if f not in cli.long]
        problems += [f"{cli.name} has no -{s}" for s in shorts if s not in cli.short]
    for flag in longs + shorts:
        assert flag in FILTER_FIELDS or flag in NOT_FILTERS, f"--{flag}: say whether it is a server-side filter"
        field = FILTER_FIELDS.get(flag)
        if field and field not in FLOWFILTER[release.name]:
            problems.append(f"the {release.name} server has no FlowFilter.{field}: --{flag} is ignored")
    return problems


def dbg_problems(command: str, release: Release) -> list[str]:
    words = command.split()
    problems = []
    for name in release.dbg:
        table = read_dbg(name)
        paths = [p for p in table if words[:len(p.split())] == p.split()]
        if not paths:
            problems.append(f"{name}: no command {command!r}")
            continue
        path = max(paths, key=len)
        problems += [f"{name}: {path} has no {w}" for w in words[len(path.split()):]
                     if w.startswith("-") and w not in table[path]]
    return problems


def test_the_flag_lists_are_the_real_ones() -> None:
    """Facts each list must show (read from the sources named in its header)."""
    for path in DATA.glob("*.txt"):
        assert re.search(r"^#.*\b[0-9a-f]{12}\b", path.read_text(), re.M), f"{path.name} names no source commit"
    clis = {r.minor: [HubbleCli.read(name) for name in r.hubble] for r in RELEASES}
    for minor, builds in clis.items():
        for cli in builds:
            assert {"node-name", "verdict", "type", "last", "server", "output"} <= cli.long, cli.name
            assert not {"node", "drop-reason", "dns-query"} & cli.long, cli.name
            assert ("drop-reason-desc" in cli.long) == (cli.name not in ("hubble-observe-v0.12.0.txt",
                                                                         "hubble-observe-v0.13.5.txt")), cli.name
            assert ("port-forward" in cli.long) == (minor >= 17), cli.name
    assert {minor for minor in range(14, 20) if "drop_reason_desc" in FLOWFILTER[f"1.{minor}"]} == {16, 17, 18, 19}
    assert all({"verdict", "event_type", "node_name"} <= fields for fields in FLOWFILTER.values())
    for release in RELEASES:
        for name in release.dbg:
            table = read_dbg(name)
            assert {"status", "config", "bpf metrics list", "monitor", "endpoint config"} <= set(table), name
            assert {"--verbose", "--all", "-a", "--type", "-t"} <= table["status"] | table["config"] | table["monitor"]


def test_hubble_observe_works_on_every_release_it_claims() -> None:
    invocations = [c for c in commands("hubble") if c.text.startswith("observe")]
    assert len(invocations) >= 8, invocations
    for command in invocations:
        for release in RELEASES:
            if release.minor >= command.since:
                assert not hubble_problems(command.text, release), (command, release.name)


def test_a_release_mark_is_needed() -> None:
    """A command marked `# Cilium 1.N+` fails (or is ignored) on some earlier release: the mark is not stale."""
    marked = [c for c in commands("hubble") + commands("cilium-dbg") if c.since > 14]
    assert any("--drop-reason-desc" in c.text for c in marked), marked
    for command in marked:
        earlier = [r for r in RELEASES if r.minor < command.since]
        check = hubble_problems if command.text.startswith("observe") else dbg_problems
        assert any(check(command.text, r) for r in earlier), command


def test_cilium_dbg_commands_exist_with_their_flags_on_every_release() -> None:
    invocations = commands("cilium-dbg")
    assert {"status --verbose", "bpf metrics list", "config DropNotification=Enabled PolicyVerdictNotification=Enabled"
            } <= {c.text for c in invocations}
    for command in invocations:
        for release in RELEASES:
            if release.minor >= command.since:
                assert not dbg_problems(command.text, release), (command, release.name)


def test_the_client_side_reason_filter_works_with_jq_on_our_flows() -> None:
    """The runbooks' `jq` filters (the way to filter by drop reason on 1.14/1.15, where the server ignores
    --drop-reason-desc) run with the real jq on `hubble observe -o json` lines: our fixtures, lost events and
    non-drop flows included. Each keeps exactly the flows of its reason, whatever else the server sent."""
    jq = shutil.which("jq")
    assert jq, "jq is required (apt-get install jq; make system-deps)"
    programs = set(re.findall(r"\| jq -c '([^'\n]+)'", RUNBOOKS))
    assert len(programs) >= 2, programs
    lines = [line for path in FLOWS for line in path.read_text().splitlines() if line.strip()]
    reasons = {json.loads(line).get("flow", {}).get("drop_reason_desc") for line in lines} - {None}
    assert {"CT_MAP_INSERTION_FAILED", "POLICY_DENIED"} <= reasons
    for program in programs:
        written = re.fullmatch(r'select\(\.flow\.drop_reason_desc == "([A-Z0-9_]+)"\)', program)
        assert written, program
        for reason in sorted(reasons | {written.group(1)}):
            run = subprocess.run([jq, "-c", program.replace(written.group(1), reason)], input="\n".join(lines),
                                 capture_output=True, text=True, timeout=30, check=True)
            kept = [json.loads(line) for line in run.stdout.splitlines()]
            expected = [json.loads(line) for line in lines
                        if json.loads(line).get("flow", {}).get("drop_reason_desc") == reason]
            assert kept == expected, (program, reason)
            assert all(f["flow"]["verdict"] == "DROPPED" for f in kept), reason


def test_cilium_namespace_is_a_variable_defined_once() -> None:
    """Cilium installed by Helm runs in its release's namespace: every command on Cilium's objects says
    `-n $CILIUM_NS`, defined once from the DaemonSet's `k8s-app: cilium` label (Cilium's chart,
    templates/cilium-agent/daemonset.yaml, 1.14-main)."""
    definitions = re.findall(r"^\s*CILIUM_NS=(.+)$", RUNBOOKS, re.M)
    assert definitions == ["$(kubectl get ds -A -l k8s-app=cilium -o jsonpath='{.items[0].metadata.namespace}')"]
    assert "kubectl -n kube-system" not in RUNBOOKS and "-n kube-system" not in RUNBOOKS
    cilium_objects = re.compile(r"\$AGENT|\$ENVOY|ds/cilium(-envoy)?(\s|$)|cm cilium-config|k8s-app=cilium")
    kubectl = [c.text for c in commands("kubectl")]
    on_cilium = [c for c in kubectl if cilium_objects.search(c) and not c.startswith("get ds -A")]
    assert len(on_cilium) >= 20, on_cilium
    for command in on_cilium:
        assert "-n $CILIUM_NS" in command, command


def test_hubble_blind_covers_the_runtime_switch_of_every_release() -> None:
    section = RUNBOOKS.split("## CiliumNodeHubbleBlind\n", 1)[1].split("\n## ", 1)[0]
    for needle in ("cilium-dbg config | grep Notification", "on 1.14: cilium config",
                   "cilium-dbg config DropNotification=Enabled PolicyVerdictNotification=Enabled",
                   "`bpf-events-drop-enabled`", "resets it from the flags"):
        assert needle in section, needle


@pytest.mark.parametrize("wrong", ["hubble observe --node ", "--drop-reason ", "bpf ct list global | wc",
                                   "raise `bpf-events-", "hubble observe -P", "has no `--drop-reason-desc`"])
def test_known_wrong_advice_is_gone(wrong: str) -> None:
    assert wrong not in RUNBOOKS


def test_kubectl_exec_names_the_container() -> None:
    execs = [c.text for c in commands("kubectl") if " exec " in f" {c.text} "]
    assert execs
    for command in execs:
        assert "-c cilium-agent" in command or "-c cilium-envoy" in command, command


def test_fleet_triage_and_rollback_commands() -> None:
    for needle in ("kubectl -n $CILIUM_NS rollout history ds/cilium", "kubectl -n $CILIUM_NS rollout undo ds/cilium",
                   "cilium-dbg bpf metrics list", "--node-name $NODE"):
        assert needle in RUNBOOKS, needle


def test_fixture_flows_exist() -> None:
    assert [p.name for p in FLOWS] == ["flows-1.16.json", "flows-1.19.json"]
    assert all(isinstance(p, Path) for p in FLOWS)
