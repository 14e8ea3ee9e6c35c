"""docs/runbooks.md: every command runs as written on the Cilium release it names (1.16): `hubble observe` flags
from the CLI's source (tests/data/hubble_observe_flags_v1.16.6.txt), cilium-dbg command paths and flags from
the agent image's (tests/data/cilium_dbg_commands_v1.16.txt), containers named in every `kubectl exec`."""

from __future__ import annotations

import re

import pytest

from tests.support.paths import REPO

RUNBOOKS = (REPO / "docs" / "runbooks.md").read_text()
HUBBLE_FLAGS = {line.strip() for line in (REPO / "tests" / "data" / "hubble_observe_flags_v1.16.6.txt").read_text()
                .splitlines() if line.strip() and not line.startswith("#")}
HUBBLE_SHORT = {"t", "n", "l", "A", "4", "6", "o", "f", "D"}  # short forms registered in the same files
CILIUM_DBG = {}
for _line in (REPO / "tests" / "data" / "cilium_dbg_commands_v1.16.txt").read_text().splitlines():
    if _line.strip() and not _line.startswith("#"):
        _path, _, _flags = _line.partition("|")
        CILIUM_DBG[_path.strip()] = set(_flags.split())


FENCED = re.compile(r"^ *```[a-z]*\n(.*?)^ *```", re.M | re.S)


def commands(tool: str) -> list[str]:
    """Every invocation of ``tool`` in the runbooks: in code blocks up to the end of the line or a comment,
    in inline code up to the closing backtick."""
    spans = [line for block in FENCED.findall(RUNBOOKS) for line in block.splitlines()]
    spans += re.findall(r"`([^`\n]+)`", FENCED.sub("", RUNBOOKS))
    found = []
    for span in spans:
        for match in re.finditer(rf"(?:^|[\s($]){re.escape(tool)}\s+([^|;#)]*)", span):
            found.append(match.group(1).strip())
    return sorted(set(found))


def test_the_flag_lists_are_the_real_ones() -> None:
    assert {"node-name", "drop-reason-desc", "verdict", "type", "last", "server"} <= HUBBLE_FLAGS
    assert not {"node", "drop-reason", "port-forward", "dns-query", "reply"} & HUBBLE_FLAGS


def test_hubble_observe_uses_only_real_flags() -> None:
    invocations = [c for c in commands("hubble") if c.startswith("observe")]
    assert len(invocations) >= 6, invocations
    for command in invocations:
        for flag in re.findall(r"(?:^|\s)--([a-z0-9-]+)", command):
            assert flag in HUBBLE_FLAGS, (flag, command)
        for short in re.findall(r"(?:^|\s)-([A-Za-z0-9])\b", command):
            assert short in HUBBLE_SHORT, (short, command)


def test_cilium_dbg_commands_exist_with_their_flags() -> None:
    invocations = commands("cilium-dbg")
    assert {"status --verbose", "bpf metrics list"} <= set(invocations)
    for command in invocations:
        words = command.split()
        paths = [p for p in CILIUM_DBG if words[:len(p.split())] == p.split()]
        assert paths, command
        path = max(paths, key=len)
        for flag in (w for w in words[len(path.split()):] if w.startswith("-")):
            assert flag in CILIUM_DBG[path], (flag, command)


@pytest.mark.parametrize("wrong", ["hubble observe --node ", "--drop-reason ", "bpf ct list global | wc",
                                   "raise `bpf-events-", "hubble observe -P"])
def test_known_wrong_advice_is_gone(wrong: str) -> None:
    assert wrong not in RUNBOOKS


def test_kubectl_exec_names_the_container() -> None:
    execs = [c for c in commands("kubectl") if " exec " in f" {c} "]
    assert execs
    for command in execs:
        assert "-c cilium-agent" in command or "-c cilium-envoy" in command, command


def test_fleet_triage_and_rollback_commands() -> None:
    for needle in ("kubectl -n kube-system rollout history ds/cilium", "kubectl -n kube-system rollout undo ds/cilium",
                   "cilium-dbg bpf metrics list", "--node-name $NODE"):
        assert needle in RUNBOOKS, needle
