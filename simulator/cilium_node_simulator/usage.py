"""The simulator's argument parser: usage errors in one line, exit code 2."""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn


class Parser(argparse.ArgumentParser):
    """Usage errors as one line, ``<command>: error: <message>``, and exit code 2 (no usage dump)."""

    def __init__(self, *args: Any, command: str = "cilium-node-exporter simulate", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.command = command

    def error(self, message: str) -> NoReturn:
        print(f"{self.command}: error: {message}", file=sys.stderr)
        raise SystemExit(2)
