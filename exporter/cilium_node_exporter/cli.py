"""The ``cilium-node-exporter`` command: serve metrics, or ``simulate``."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad flags or configuration)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "simulate":
        from cilium_node_exporter.simulator.cli import main as simulate

        return simulate(args[1:])
    from cilium_node_exporter.config import ConfigError, parse_args

    try:
        config = parse_args(args)
    except ConfigError as exc:
        print(f"cilium-node-exporter: error: {exc}", file=sys.stderr)
        return 2
    from cilium_node_exporter.app import run
    from cilium_node_exporter.logs import setup_logging

    setup_logging(config.log_level, config.log_format)
    return run(config)


if __name__ == "__main__":
    sys.exit(main())
