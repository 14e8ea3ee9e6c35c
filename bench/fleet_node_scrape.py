"""Benchmark: what one scrape of one simulated fleet node costs the fleet process (CPU and bytes).

Usage: ``python bench/fleet_node_scrape.py [--nodes 30] [--rounds 12] [--scenario healthy-day]``

Starts ``--nodes`` fleet nodes in this process (the exporter's state, sources' parsers and registry per node, as
``simulate --fleet`` does), lets them run two seconds, then scrapes every node once a second for ``--rounds``
rounds and prints the process CPU per node scrape (median and minimum over the rounds; background ticks of the
nodes' runtimes included) and the median exposition size. To compare two checkouts, run it from each (with
``PYTHONPATH=<checkout>/exporter:<checkout>/simulator``): the e2e fleet serves 155 such scrapes a second.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from prometheus_client import generate_latest

from cilium_node_simulator.fleet_node import FleetNode
from cilium_node_simulator.fleet_scenario import assign, load_fleet


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=30)
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--scenario", default="healthy-day")
    args = p.parse_args(argv)
    fleet = load_fleet(args.scenario)
    nodes = [FleetNode(name, "c1", a.plan, fleet.sources, fleet.memory_envelope, 30.0).start()
             for name, a in assign(fleet, args.nodes, 30.0)]
    try:
        time.sleep(2)
        cpu, sizes = [], []
        for _ in range(args.rounds):
            start = time.process_time()
            for node in nodes:
                sizes.append(len(generate_latest(node.registry)))
            cpu.append((time.process_time() - start) / len(nodes) * 1000)
            time.sleep(1.05)
    finally:
        for node in nodes:
            node.stop()
    print(f"{args.nodes} nodes of {args.scenario}: CPU per node scrape median {statistics.median(cpu):.2f} ms, "
          f"min {min(cpu):.2f} ms; exposition {statistics.median(sizes):.0f} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
