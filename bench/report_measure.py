"""Run ``cilium-node-exporter report`` in a process of its own and price it: CPU seconds and peak RSS.

The peak is the process's own ``VmHWM`` (``/proc/self/status``), read as the report returns: ``ru_maxrss``
is no good here, since Linux charges a child started by ``vfork`` with its parent's resident memory until
it executes (a benchmark that holds a fleet's history reads gigabytes for a small report).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

_RUN = """
import sys
from cilium_node_exporter.cli import main
try:
    code = main(["report", *sys.argv[1:]])
finally:
    hwm = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM"))
    sys.stderr.write(f"\\nreport-peak-rss-kib {hwm}\\n")
sys.exit(code)
"""


@dataclass
class Run:
    code: int
    cpu_s: float
    peak_rss_mib: float
    stderr: str


def run_report(args: list[str]) -> Run:
    """The report with ``args`` (after ``report``), its exit code, CPU seconds, peak RSS and stderr."""
    proc = subprocess.Popen([sys.executable, "-c", _RUN, *args], stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    peak = next((int(line.split()[1]) for line in reversed(err.splitlines())
                 if line.startswith("report-peak-rss-kib ")), 0)
    return Run(os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime, peak / 1024, err)
