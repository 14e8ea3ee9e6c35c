"""The commands and blocks of docs/deploy.md, parsed so that tests run or render exactly what it says."""

from __future__ import annotations

import re
import shlex

from tests.support.paths import REPO

GUIDE = REPO / "docs" / "deploy.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(), re.S)


def commands() -> list[list[str]]:
    """Every command of the ```sh blocks (continuation lines joined, comments left out), as argv lists
    with the guide's shell variables substituted (``$VERSION``, ``$REPO``)."""
    out = []
    vars_ = variables()
    for block in blocks("sh"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if not line or line.startswith("#") or re.fullmatch(r"[A-Z]+=\S+", line):
                continue
            line = line.removesuffix("&").strip()  # started in the background
            for name, value in vars_.items():
                line = line.replace(f"${name}", value)
            out.append(shlex.split(line))
    return out


def variables() -> dict[str, str]:
    """The ``NAME=value`` assignments of the guide's first shell block."""
    return dict(re.findall(r"^([A-Z]+)=(\S+)$", blocks("sh")[0], re.M))


def command(*prefix: str) -> list[list[str]]:
    """The guide's commands that start with ``prefix``."""
    return [c for c in commands() if tuple(c[:len(prefix)]) == prefix]
