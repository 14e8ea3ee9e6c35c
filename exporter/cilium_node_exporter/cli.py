"""The ``cilium-node-exporter`` command: serve metrics, write the SLO review (``report``, the ``report`` extra),
or run a subcommand another distribution provides."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cilium_node_exporter.config import Config

SUBCOMMANDS_GROUP = "cilium_node_exporter.subcommands"
# Subcommands that live in other distributions, and how to get them.
INSTALL_HINTS = {"simulate": "the simulator is a separate package: from a checkout, `pip install ./simulator` "
                             "(or `make setup`)"}


# What `report` needs beyond the exporter's own dependencies (the `report` extra; not in the DaemonSet image).
REPORT_MODULES = ("matplotlib", "jinja2", "numpy", "requests", "yaml")
REPORT_HINT = ("the report needs the `report` extra, which the DaemonSet image does not carry: "
               "pip install 'cilium-node-exporter[report]' (from a checkout: pip install -e '.[report]')")


def report(args: list[str]) -> int:
    """``cilium-node-exporter report``: imported only when asked for (its dependencies are optional)."""
    missing = [m for m in REPORT_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        print(f"cilium-node-exporter report: {REPORT_HINT} (missing: {', '.join(missing)})", file=sys.stderr)
        return 2
    from cilium_node_exporter.report.cli import main as report_main

    return report_main(args)


def subcommand(name: str) -> Callable[[list[str]], int] | None:
    """The entry point registered for subcommand ``name``, if its distribution is installed."""
    for ep in entry_points(group=SUBCOMMANDS_GROUP, name=name):
        return ep.load()
    return None


def check_kubeconfig(config: Config) -> None:
    """Load ``--kubeconfig`` once at start, as the sources will: a file that is missing or not a kubeconfig, or
    no kubernetes client, is bad configuration (one line, exit 2), not a warning per retry."""
    if not config.kubeconfig:
        return
    from cilium_node_exporter.config import ConfigError
    from cilium_node_exporter.sources.apiserver import kubeconfig_endpoint
    from cilium_node_exporter.sources.k8s_http import SourceError

    try:
        kubeconfig_endpoint(config.kubeconfig)
    except SourceError as exc:
        raise ConfigError(f"--kubeconfig: {' '.join(exc.message.split())}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad flags or configuration)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "report":
        return report(args[1:])
    if args and args[0] in INSTALL_HINTS:
        run = subcommand(args[0])
        if run is None:
            print(f"cilium-node-exporter {args[0]}: {INSTALL_HINTS[args[0]]}", file=sys.stderr)
            return 2
        return run(args[1:])
    from cilium_node_exporter.config import ConfigError, parse_args

    try:
        config = parse_args(args)
        check_kubeconfig(config)
    except ConfigError as exc:
        print(f"cilium-node-exporter: error: {exc}", file=sys.stderr)
        return 2
    from cilium_node_exporter.app import run
    from cilium_node_exporter.logs import setup_logging

    setup_logging(config.log_level, config.log_format)
    return run(config)


if __name__ == "__main__":
    sys.exit(main())
