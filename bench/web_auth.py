"""What one basic-auth password check costs at each bcrypt cost, on this machine (issue 23 rows 1-3).

bcrypt's work doubles with each cost step: cost 5 is ``htpasswd -nbB``'s default, 10 Helm's ``htpasswd``
function's and Go's ``bcrypt.DefaultCost``, 12 Python's ``bcrypt.gensalt()``. The exporter runs at most one
check at a time (``exposition/web_auth.py``), so the last column is the most a flood of wrong passwords can
cost a node per second, and the per-peer budget (4, then 1 per second) keeps one attacker far below it.

    .venv/bin/python -m bench.web_auth [--repeat 5]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import bcrypt

COSTS = (4, 5, 10, 12)


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'cost':>4} {'wall ms (median)':>17} {'CPU ms (median)':>16} {'checks/s on one core':>21}")
    for cost in COSTS:
        digest = bcrypt.hashpw(b"right", bcrypt.gensalt(cost))
        walls, cpus = [], []
        for i in range(args.repeat):
            c0, t0 = cpu(), time.perf_counter()
            assert not bcrypt.checkpw(f"wrong-{i}".encode(), digest)
            walls.append(time.perf_counter() - t0)
            cpus.append(cpu() - c0)
        per = statistics.median(cpus) or statistics.median(walls)
        print(f"{cost:>4} {statistics.median(walls) * 1000:>17.1f} {statistics.median(cpus) * 1000:>16.1f} "
              f"{1 / per:>21.1f}")


if __name__ == "__main__":
    main()
