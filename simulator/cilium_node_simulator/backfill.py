"""Backfill Debian's Prometheus with simulated history: raw series via ``promtool tsdb create-blocks-from
openmetrics``, then the rule pack's recording rules evaluated by that Prometheus over the whole period.

promtool 2.42 writes one block per two hours and re-reads its whole input for every block, so the input is
split into one OpenMetrics file per two-hour window and promtool runs on them in parallel.

``promtool tsdb create-blocks-from rules`` issues one range query and writes one block per rule and two
hours (about 10 s per rule for 28 days here) and cannot see the output of rules it backfills in the same run.
:func:`record` does the equivalent in one pass: each rule's expression, with the recorded series it reads
replaced by the expressions that record them, is evaluated by the same Prometheus as one ``query_range``
at the rule interval, exactly as the rule manager evaluates it at those instants. :func:`verify` then
evaluates the original expressions against the backfilled recorded series and reports any difference.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import math
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Series = tuple[str, dict[str, str], list[tuple[int, float]]]
WINDOW = 7200  # promtool's block length
PROMTOOL = "promtool"
PROMETHEUS = "prometheus"
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


class BackfillError(RuntimeError):
    """promtool or Prometheus failed."""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def openmetrics(series: Iterable[Series], counter: list[int] | None = None) -> str:
    """OpenMetrics text: one ``unknown`` family per metric name, samples in time order, ``# EOF``
    (``counter[0]`` grows by the number of samples)."""
    families: dict[str, list[str]] = {}
    for name, labels, samples in series:
        if not samples:
            continue
        if counter is not None:
            counter[0] += len(samples)
        lab = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
        prefix = f"{name}{{{lab}}} "
        families.setdefault(name, []).append("".join(f"{prefix}{v!r} {t}\n" for t, v in samples))
    out = []
    for name, chunks in families.items():
        out.append(f"# TYPE {name} unknown\n")
        out.extend(chunks)
    out.append("# EOF\n")
    return "".join(out)


def write_windows(windows: Iterable[tuple[int, Iterable[Series]]], workdir: Path,
                  counter: list[int] | None = None) -> list[Path]:
    """One OpenMetrics file per window: ``[(window start, series)]`` -> file paths (empty windows skipped)."""
    workdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for start, series in windows:
        text = openmetrics(series, counter)
        if text == "# EOF\n":
            continue
        path = workdir / f"{start}.om"
        path.write_text(text)
        paths.append(path)
    return paths


def split(series: Iterable[Series], start: int, end: int) -> list[tuple[int, list[Series]]]:
    """Cut whole-period series into two-hour windows aligned like promtool's blocks."""
    first = start - start % WINDOW
    windows: dict[int, list[Series]] = {w: [] for w in range(first, end + 1, WINDOW)}
    for name, labels, samples in series:
        times = [t for t, _ in samples]
        for w in windows:
            lo, hi = bisect.bisect_left(times, w), bisect.bisect_left(times, w + WINDOW)
            if hi > lo:
                windows[w].append((name, labels, samples[lo:hi]))
    return sorted(windows.items())


def create_blocks(files: list[Path], out_dir: Path, workers: int = 2) -> None:
    """``promtool tsdb create-blocks-from openmetrics`` on every file (in parallel) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)

    def one(path: Path) -> None:
        done = subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", "-q", str(path), str(out_dir)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise BackfillError(f"promtool failed on {path.name}: {done.stderr.strip()[-500:]}")
        path.unlink()

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, files))


@dataclass
class Prometheus:
    """Debian's Prometheus on a TSDB directory, on loopback; retention long enough for any backfill."""

    tsdb: Path
    port: int
    config: Path | None = None
    log: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        workdir = self.tsdb.parent
        if self.config is None:
            self.config = workdir / "prometheus.yml"
            self.config.write_text("global: {scrape_interval: 1m}\n")
        self.log = self.log or workdir / "prometheus.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [shutil.which(PROMETHEUS) or PROMETHEUS, f"--config.file={self.config}",
                 f"--storage.tsdb.path={self.tsdb}", "--storage.tsdb.retention.time=100y",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--query.max-samples=200000000"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BackfillError(f"prometheus exited: {self.log.read_text()[-1000:]}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                if r.status == 200:
                    return
            time.sleep(0.2)
        raise BackfillError(f"prometheus not ready after {timeout:.0f} s: {self.log.read_text()[-1000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def api(self, path: str, **params: Any) -> Any:
        data = urllib.parse.urlencode(params).encode()
        with urllib.request.urlopen(f"{self.url}{path}", data=data, timeout=300) as resp:
            body = json.load(resp)
        if body.get("status") != "success":
            raise BackfillError(f"{path} {params}: {body}")
        return body["data"]


def inline(expr: str, rules: list[dict[str, Any]], _stack: tuple[str, ...] = ()) -> str:
    """``expr`` over raw series only: every recorded name of ``rules`` it reads replaced by what records it.

    A recorded name read without matchers becomes its expression in parentheses (several rules recording
    one name: their expressions joined with ``or``); read with matchers, the matchers move into the single
    selector of that expression (valid when that selector is aggregated by the matched labels, as
    ``sum by (cluster, node, reason) (rate(m{...}[5m]))`` filtered by ``reason``).
    """
    by_name: dict[str, list[str]] = {}
    for rule in rules:
        by_name.setdefault(rule["record"], []).append(rule["expr"])
    pattern = re.compile(r"(?<![\w:\"])(" + "|".join(re.escape(n) for n in sorted(by_name, key=len, reverse=True))
                         + r")(?![\w:])(\{[^}]*\})?")

    def repl(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in _stack:
            raise BackfillError(f"recording rules read each other in a cycle: {' -> '.join((*_stack, name))}")
        parts = [inline(e, rules, (*_stack, name)) for e in by_name[name]]
        inner = parts[0] if len(parts) == 1 else " or ".join(f"({p})" for p in parts)
        matchers = (match.group(2) or "{}")[1:-1].strip()
        if not matchers:
            return f"({inner})"
        selectors = list(re.finditer(r"\{([^{}]*)\}", inner))
        if len(selectors) != 1 or " or " in inner:
            raise BackfillError(f"cannot push matchers {{{matchers}}} into {inner!r}")
        sel = selectors[0]
        return f"({inner[: sel.start()]}{{{sel.group(1)}, {matchers}}}{inner[sel.end():]})"

    return pattern.sub(repl, expr)


def record(prom: Prometheus, rules: list[dict[str, Any]], start: int, end: int, interval: int,
           pack: list[dict[str, Any]] | None = None) -> list[Series]:
    """Evaluate ``rules`` at ``start + k x interval`` up to ``end`` (query_range, 10k points a call), reading
    the other recording rules of ``pack`` (default: ``rules``) through :func:`inline`."""
    pack = pack or rules
    out: list[Series] = []
    for rule in rules:
        name = rule["record"]
        expr = inline(rule["expr"], [r for r in pack if r["record"] != name])
        samples_by_series: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}
        step_start = start
        while step_start <= end:
            step_end = min(end, step_start + interval * 10000)
            data = prom.api("/api/v1/query_range", query=expr, start=step_start, end=step_end, step=interval)
            for s in data["result"]:
                labels = {k: v for k, v in s["metric"].items() if k != "__name__"}
                labels.update(rule.get("labels") or {})
                key = tuple(sorted(labels.items()))
                samples_by_series.setdefault(key, []).extend(
                    (int(float(t)), float(v)) for t, v in s["values"] if math.isfinite(float(v)))
            step_start = step_end + interval
        out.extend((name, dict(k), v) for k, v in samples_by_series.items())
    return out


_CHAIN_READ = re.compile(r"last_over_time\(([\w:]+)\[(\d+)d\]\)")
_TILE_STEP = re.compile(r"_every(\d+)([hm])$")


def chain_total(rule: dict[str, Any]) -> tuple[str, int, int] | None:
    """For a count-chain rule (``X:increase1h_every1h = total - last_over_time(X_total:sum_every1h[2d]) >= 0 or
    total < last ... or 0 * total``): the total it subtracts, its step and how long a previous total counts."""
    read = _CHAIN_READ.search(rule["expr"])
    step = _TILE_STEP.search(rule["record"])
    if not read or not step or ":increase" not in rule["record"]:
        return None
    return read.group(1), int(step.group(1)) * (3600 if step.group(2) == "h" else 60), int(read.group(2)) * 86400


def record_chain(prom: Prometheus, rule: dict[str, Any], pack: list[dict[str, Any]], start: int,
                 end: int) -> list[Series]:
    """A count chain as Prometheus's rule group records it once per step: the total at each evaluation minus
    the total recorded at the previous one (the previous at most ``keep`` old), the total itself after a
    decrease (a reset), 0 at a node's first evaluation. ``inline`` cannot express this (a range over a
    recorded series that the same group writes), so the totals are evaluated and the chain is computed here."""
    found = chain_total(rule)
    if found is None:
        raise BackfillError(f"{rule['record']} is not a count chain")
    total_name, step, keep = found
    total_rule = next(r for r in pack if r["record"] == total_name)
    totals = record(prom, [total_rule], start - start % step, end, step, pack)
    out: list[Series] = []
    for _, labels, samples in totals:
        values: list[tuple[int, float]] = []
        prev: tuple[int, float] | None = None
        for t, v in samples:
            if prev is None or t - prev[0] > keep:
                values.append((t, 0.0))
            else:
                values.append((t, v - prev[1] if v >= prev[1] else v))
            prev = (t, v)
        out.append((rule["record"], {**labels, **(rule.get("labels") or {})}, values))
    return out


def verify(prom: Prometheus, rules: list[dict[str, Any]], times: list[int]) -> list[str]:
    """The original rule expressions at ``times`` against what was backfilled: a list of differences."""
    problems = []
    for rule in rules:
        name = rule["record"]
        want_labels = dict(rule.get("labels") or {})
        for t in times:
            expected = {tuple(sorted({**{k: v for k, v in s["metric"].items() if k != "__name__"},
                                      **want_labels}.items())): float(s["value"][1])
                        for s in prom.api("/api/v1/query", query=rule["expr"], time=t)["result"]}
            sel = ",".join(f'{k}="{v}"' for k, v in want_labels.items())
            got = {tuple(sorted((k, v) for k, v in s["metric"].items() if k != "__name__")): float(s["value"][1])
                   for s in prom.api("/api/v1/query", query=f"last_over_time({name}{{{sel}}}[1s])", time=t)["result"]}
            if set(expected) != set(got):
                problems.append(f"{name} at {t}: series differ: rule {sorted(expected)} backfilled {sorted(got)}")
                continue
            for key, value in expected.items():
                if not math.isclose(value, got[key], rel_tol=1e-9, abs_tol=1e-9):
                    problems.append(f"{name}{dict(key)} at {t}: rule {value} backfilled {got[key]}")
    return problems


def with_dependencies(pack: list[dict[str, Any]], wanted: Iterable[str]) -> list[dict[str, Any]]:
    """The rules of ``pack`` recording ``wanted``, and the recorded series those read (transitively)."""
    names = set(wanted)
    while True:
        more = {r2["record"] for r in pack if r["record"] in names for r2 in pack
                if re.search(r"(?<![\w:])" + re.escape(r2["record"]) + r"(?![\w:])", r["expr"])}
        if more <= names:
            return [r for r in pack if r["record"] in names]
        names |= more


@dataclass
class Backfilled:
    """A running Prometheus with the fleet's history, and how long each step took."""

    prom: Prometheus
    timings: dict[str, float]
    samples: int


def backfill_fleet(workdir: Path, fleet: Any, pack: list[dict[str, Any]], wanted: Iterable[str], interval: int,
                   port: int, workers: int = 2, verify_at: int = 12) -> Backfilled:
    """Raw series of ``fleet`` (``history.Fleet``), then the recording rules of ``pack`` that record ``wanted``
    (and what they read) evaluated every ``interval`` seconds; verified at ``verify_at`` instants."""
    import random

    timings: dict[str, float] = {}
    tsdb = workdir / "tsdb"
    done_marker = workdir / "raw-blocks.done"  # a kept directory: the raw blocks are not written again
    samples = 0
    if not done_marker.exists():
        t0 = time.monotonic()
        first = fleet.start - fleet.start % WINDOW
        windows = ((w, fleet.samples(w, w + WINDOW)) for w in range(first, fleet.end + 1, WINDOW))
        counter = [0]
        files = write_windows(windows, workdir / "raw", counter)
        samples = counter[0]
        timings["generate"] = time.monotonic() - t0
        t0 = time.monotonic()
        create_blocks(files, tsdb, workers)
        timings["raw blocks"] = time.monotonic() - t0
        done_marker.write_text(f"{samples}\n")
    else:
        samples = int(done_marker.read_text())
    prom = Prometheus(tsdb, port)
    prom.start()
    rules = with_dependencies(pack, wanted)
    recorded_marker = workdir / "recorded-blocks.done"
    try:
        if not recorded_marker.exists():
            t0 = time.monotonic()
            chains = [r for r in rules if chain_total(r)]
            recorded = record(prom, [r for r in rules if r not in chains], fleet.start, fleet.end, interval, pack)
            for rule in chains:
                recorded.extend(record_chain(prom, rule, pack, fleet.start, fleet.end))
            timings["evaluate rules"] = time.monotonic() - t0
            t0 = time.monotonic()
            recorded_samples = sum(len(s[2]) for s in recorded)
            files = write_windows(split(recorded, fleet.start, fleet.end), workdir / "recorded")
            del recorded
            create_blocks(files, workdir / "recorded-blocks", workers)
            prom.stop()
            for block in (workdir / "recorded-blocks").iterdir():
                shutil.move(str(block), tsdb / block.name)
            prom.start()
            timings["recorded blocks"] = time.monotonic() - t0
            recorded_marker.write_text(f"{recorded_samples}\n")
        samples += int(recorded_marker.read_text())
        t0 = time.monotonic()
        rng = random.Random(7)
        times = sorted(fleet.start + interval * rng.randrange(1, (fleet.end - fleet.start) // interval)
                       for _ in range(verify_at))
        problems = verify(prom, [r for r in rules if not chain_total(r)], times)  # a chain reads its own group
        timings["verify"] = time.monotonic() - t0
        if problems:
            raise BackfillError("backfilled recording rules differ from the rule pack's expressions:\n"
                                + "\n".join(problems[:20]))
    except BaseException:
        prom.stop()
        raise
    return Backfilled(prom, timings, samples)
