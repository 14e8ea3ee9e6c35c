"""Kubelet, Kubernetes API and agent-metrics endpoints of the simulator (filled in by issue 3).

The ``simulate`` command calls :func:`add_arguments` while building its parser and :func:`start`
once the scenario runtime is running; :func:`start` returns objects with a ``stop()`` method.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the kubelet / API server / agent-metrics flags to the ``simulate`` parser."""


def start(args: argparse.Namespace, runtime: Any) -> list[Any]:
    """Start the endpoints selected by ``args``; return handles with ``stop()``."""
    return []
