"""Where the simulator's Cilium behaviour was read: every label its citations use, with the repository, the
release and the commit (or tag) the cited files and lines come from.

A citation is written ``[LABEL path]`` or ``[LABEL path:lines]`` (``lines`` like ``290``, ``298-303`` or
``290,325-327``) next to the table entry or the behaviour it supports, e.g.
``[v1.16.15 pkg/hubble/observer/local_observer.go:298-303]``; paths are relative to the repository of the label
(for ``hubble-*`` labels, to the Cilium tree that tag vendors: ``vendor/github.com/cilium/cilium/`` + path).
``tests/simulator/test_citations.py`` checks that every table entry carries one and that its label is here.

``cilium/cilium`` itself is too large to fetch here; the release branches were read from public copies that carry
its commits unchanged (named below), at the commit that prepares each release, which upstream tags as that
release. There is no 1.19 branch among them: ``main`` is the 1.20 development branch, read after the v1.19 branch
was cut from it (``933785d620`` "Prepare for v1.20 development cycle", 2026-01-14). It stands for 1.19 only where
the 1.19 sources that were read agree: the Cilium tree ``hubble-v1.19.4`` vendors (``api/``, ``pkg/option``,
``pkg/monitor``, the hubble CLI), and the v1.19.0-rc.1 CHANGELOG for what was backported (``changelog-v1.19``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Source:
    """One tree the simulator's facts were read from."""

    repo: str  # the repository the tree belongs to (owner/name)
    release: str  # the Cilium release it is (or vendors)
    ref: str  # tag or branch
    commit: str  # 12 hex digits; empty when the tag alone names it
    copy: str = ""  # the public copy it was read from, when not the repository itself


SOURCES: Final[dict[str, Source]] = {
    # cilium/cilium at each release ("Prepare for release vX.Y.Z" on its stable branch)
    "v1.14.16": Source("cilium/cilium", "1.14.16", "v1.14.16", "c2fcf1db31b1", "tommyp1ckles/cilium branch v1.14"),
    "v1.15.7": Source("cilium/cilium", "1.15.7", "v1.15.7", "de06bcfb3cf8",
                      "joamaki/cilium branch pr/joamaki/v1.15-fix-bwmgr-devices"),
    "v1.16.15": Source("cilium/cilium", "1.16.15", "v1.16.15", "751306740843", "tommyp1ckles/cilium branch v1.16"),
    "v1.17.8": Source("cilium/cilium", "1.17.8", "v1.17.8", "03b5572f35bb",
                      "tommyp1ckles/cilium branch pr/v1.17-backport-2025-10-21"),
    "v1.18.3": Source("cilium/cilium", "1.18.3", "v1.18.3", "c16016890116",
                      "tommyp1ckles/cilium branch pr/v1.18-backport-2025-10-20"),
    "main": Source("cilium/cilium", "1.20.0-dev", "main", "aeb2d1b68e0e", "tommyp1ckles/cilium branch main"),
    "changelog-v1.19": Source("cilium/cilium", "1.19.0-rc.1", "v1.19.0-rc.1", ""),  # CHANGELOG.md of that tag
    # cilium/proxy (cilium-envoy's Cilium filters) at the commit Cilium 1.16.15's image pins
    # (images/cilium/Dockerfile: cilium-envoy:v1.33.9-...-3c04e8f2f1027d106b96f8ef4a0215e81dbaaece)
    "proxy-1.16.15": Source("cilium/proxy", "1.16.15", "v1.33", "3c04e8f2f102"),
    # cilium/hubble tags: each vendors one Cilium release's api/, pkg/ and hubble CLI (vendor/modules.txt)
    "hubble-v0.12.3": Source("cilium/hubble", "1.14.2", "v0.12.3", "572301b78366"),
    "hubble-v0.13.6": Source("cilium/hubble", "1.15.4", "v0.13.6", "ebca919509de"),
    "hubble-v1.16.6": Source("cilium/hubble", "1.16.6", "v1.16.6", "ef134ba4693a"),
    "hubble-v1.17.5": Source("cilium/hubble", "1.17.5", "v1.17.5", "13fb5dcb7aa5"),
    "hubble-v1.18.6": Source("cilium/hubble", "1.18.6", "v1.18.6", "95622e77ee29"),
    "hubble-v1.19.4": Source("cilium/hubble", "1.19.4", "v1.19.4", "39037bdd6cb6"),
}

CITATION: Final = re.compile(r"\[(?P<label>[\w.-]+) (?P<path>[\w./{},*-]+?)"
                             r"(?::(?P<lines>\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*))?\]")


def citations(text: str) -> list[tuple[str, str, str | None]]:
    """(label, path, lines) of every citation in ``text``."""
    return [(m["label"], m["path"], m["lines"]) for m in CITATION.finditer(text)]
