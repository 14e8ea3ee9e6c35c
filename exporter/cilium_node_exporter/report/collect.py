"""Run the report's queries against Prometheus and hold the answers as hourly arrays.

Every hourly query is one ``query_range`` over the period with a one-hour step (744 points a series at
most), so the cost is bounded by nodes x hours whatever the scrape or rule interval. Queries run a few at a
time; a recorded series that is absent for the whole period is replaced by its raw fallback, and the
choice is kept for the report's "sources" table.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from .period import HOUR, Period
from .prom import Client, Labels
from .series import Query, Series

NodeKey = tuple[str, str]  # (cluster, node)
ALERT_CHUNK = 7 * 86400  # raw ALERTS samples are read a week at a time (bounded answers)


@dataclass
class Used:
    """Which series a figure came from."""

    key: str
    what: str
    used: str  # "recorded", "raw" or "none"
    recorded: str
    expr: str


@dataclass
class Episode:
    """One alert episode: an alert (labels without alertstate) active from ``active_at``."""

    labels: tuple[tuple[str, str], ...]
    active_at: float
    first_firing: float = math.inf
    last_firing: float = -math.inf
    firing_samples: int = 0


@dataclass
class Data:
    """Everything the queries returned for one period."""

    period: Period
    hours: np.ndarray
    node: dict[str, dict[NodeKey, np.ndarray]] = field(default_factory=dict)
    labelled: dict[str, dict[tuple[NodeKey, str], np.ndarray]] = field(default_factory=dict)
    cluster: dict[str, dict[tuple[str, str], np.ndarray]] = field(default_factory=dict)
    instant: dict[str, list[tuple[Labels, float]]] = field(default_factory=dict)
    episodes: list[Episode] = field(default_factory=list)
    alert_interval: float = 0.0
    used: list[Used] = field(default_factory=list)
    objectives: dict[str, float] = field(default_factory=dict)
    flags: dict[str, str] = field(default_factory=dict)
    buildinfo: dict[str, str] = field(default_factory=dict)
    oldest_sample: float | None = None


class Collector:
    """Fetches the report's data from ``client`` for ``series`` over ``period``."""

    def __init__(self, client: Client, series: Series, period: Period,
                 progress: Callable[[str], None] = lambda _: None, parallel: int = 3, group_by: str = "",
                 headline_only: bool = False) -> None:
        self.client = client
        self.series = series
        self.period = period
        self.progress = progress
        self.parallel = parallel
        self.group_by = group_by
        self.headline_only = headline_only
        self.hours = np.array(period.hour_ends(), dtype=np.int64)
        self._done = 0
        self._total = 0

    # --- helpers -----------------------------------------------------------------------------------
    def _tick(self, what: str) -> None:
        self._done += 1
        self.progress(f"querying {self._done}/{self._total}: {what}")

    def _range(self, expr: str) -> list[tuple[Labels, np.ndarray]]:
        start = self.period.start + HOUR
        result = self.client.query_range(expr, start, self.period.end, HOUR)
        out = []
        for labels, times, values in result:
            arr = np.full(len(self.hours), np.nan)
            idx = np.rint((times - start) / HOUR).astype(np.int64)
            ok = (idx >= 0) & (idx < len(arr))
            arr[idx[ok]] = values[ok]
            out.append((labels, arr))
        return out

    def _with_fallback(self, q: Query, run: Callable[[str], list[Any]]) -> tuple[list[Any], Used]:
        result = run(q.expr)
        if result or q.fallback is None:
            used = "recorded" if q.recorded else "raw"
            if not result:
                used = "none"
            return result, Used(q.key, q.what, used, q.recorded, q.expr)
        result = run(q.fallback.expr)
        return result, Used(q.key, q.what, "raw" if result else "none", q.recorded, q.fallback.expr)

    def _node_key(self, labels: Labels) -> NodeKey:
        return (labels.get(self.series.cluster, ""), labels.get(self.series.node, ""))

    # --- the queries ---------------------------------------------------------------------------------
    def collect(self) -> Data:
        s = self.series
        node_q, labelled_q, cluster_q = s.node_hourly(), s.node_labelled_hourly(), s.cluster_hourly()
        instant_q = s.reason_nodes(self.period.range) + s.rolling()
        if self.headline_only:  # the previous period: its SLIs, verdict, alerts and ranking only
            node_q = [q for q in node_q if q.key in HEADLINE_KEYS]
            labelled_q = [q for q in labelled_q if q.key == "source_up"]
            cluster_q, instant_q = [], []
        if self.group_by:
            instant_q.append(s.groups(self.group_by, self.period.range))
        chunks = math.ceil((self.period.end - self.period.start) / ALERT_CHUNK)
        self._total = len(node_q) + len(labelled_q) + len(cluster_q) + len(instant_q) + 2 * chunks + 2
        data = Data(self.period, self.hours)
        data.flags = self.client.flags()
        data.buildinfo = self.client.buildinfo()

        def hourly(q: Query) -> tuple[list[tuple[Labels, np.ndarray]], Used]:
            out = self._with_fallback(q, self._range)
            self._tick(q.what)
            return out

        def instant(q: Query) -> tuple[list[tuple[Labels, float]], Used]:
            out = self._with_fallback(q, lambda e: self.client.query(e, self.period.end))
            self._tick(q.what)
            return out

        with ThreadPoolExecutor(self.parallel) as pool:
            node_f = [(q, pool.submit(hourly, q)) for q in node_q]
            lab_f = [(q, pool.submit(hourly, q)) for q in labelled_q]
            cl_f = [(q, pool.submit(hourly, q)) for q in cluster_q]
            inst_f = [(q, pool.submit(instant, q)) for q in instant_q]
            for q, fut in node_f:
                result, used = fut.result()
                data.used.append(used)
                data.node[q.key] = {self._node_key(lab): arr for lab, arr in result}
            for q, fut in lab_f:
                result, used = fut.result()
                data.used.append(used)
                label = "source" if q.key == "source_up" else "version"
                data.labelled[q.key] = {(self._node_key(lab), lab.get(label, "")): arr for lab, arr in result}
            for q, fut in cl_f:
                result, used = fut.result()
                data.used.append(used)
                extra = "reason" if "reasons" in q.key else ("source" if q.key == "lost_by_source" else "")
                data.cluster[q.key] = {(lab.get(s.cluster, ""), lab.get(extra, "") if extra else ""): arr
                                       for lab, arr in result}
            for q, fut in inst_f:
                result, used = fut.result()
                data.used.append(used)
                data.instant[q.key] = [(lab, float(v)) for lab, v in result]
        if not self.headline_only:
            self._envoy_time_above(data)
        objectives = self.client.query(s.objectives().expr, self.period.end)
        data.objectives = {lab.get("slo", ""): float(v) for lab, v in objectives if math.isfinite(float(v))}
        self._tick("objectives recorded by the rule pack")
        oldest = self.client.query(s.oldest_sample().expr, self.period.end)
        data.oldest_sample = float(oldest[0][1]) if oldest and math.isfinite(float(oldest[0][1])) else None
        self._tick("oldest sample in the TSDB")
        self._alerts(data)
        return data

    def _envoy_time_above(self, data: Data, batch: int = 20) -> None:
        """cilium-envoy's share of time above the near-limit ratio: 0 in hours whose peak stayed below it, a
        per-minute subquery only for the nodes and hours whose peak crossed it (subqueries over a whole fleet
        and month are what would make the report slow)."""
        peak = data.node.get("envoy_peak", {})
        ratio = float(self.series.config["memoryNearLimitRatio"])
        data.node["envoy_bad"] = {k: np.where(np.isfinite(a), 0.0, np.nan) for k, a in peak.items()}
        data.node["envoy_samples"] = {k: np.where(np.isfinite(a), 1.0, np.nan) for k, a in peak.items()}
        flagged = {k: np.flatnonzero(np.nan_to_num(a) > ratio) for k, a in peak.items()}
        flagged = {k: v for k, v in flagged.items() if v.size}
        wanted = {k: set(v.tolist()) for k, v in flagged.items()}  # once per node, not once per sample
        keys = sorted(flagged)
        expr = ""
        for i in range(0, len(keys), batch):
            group = keys[i: i + batch]
            first = min(int(flagged[k][0]) for k in group)
            last = max(int(flagged[k][-1]) for k in group)
            q = self.series.envoy_above(sorted({k[1] for k in group}))
            expr = q.expr
            result = self.client.query_range(q.expr, float(self.hours[first]), float(self.hours[last]), HOUR)
            for labels, times, values in result:
                key = self._node_key(labels)
                if key not in flagged:
                    continue
                hours_wanted = wanted[key]
                for t, v in zip(times.tolist(), values.tolist(), strict=True):
                    idx = round((t - self.hours[0]) / HOUR)
                    if idx in hours_wanted and math.isfinite(v):
                        data.node["envoy_bad"][key][idx] = v
        data.used.append(Used("envoy_bad", "share of the hour with cilium-envoy near its limit",
                              "raw" if peak else "none", "", expr or "(no hour's peak crossed the ratio)"))

    def _alerts(self, data: Data) -> None:
        """Alert episodes from raw ALERTS_FOR_STATE (value = active since) and ALERTS{alertstate=firing}.

        Without ALERTS_FOR_STATE (older Prometheus, some rulers) an episode ends at a gap of more than
        RUN_GAP seconds between firing samples.
        """
        episodes: dict[tuple[tuple[tuple[str, str], ...], float], Episode] = {}
        history: dict[tuple[tuple[str, str], ...], tuple[list[float], list[float]]] = {}
        last_seen: dict[tuple[tuple[str, str], ...], tuple[float, float]] = {}  # key -> (last ts, run start)
        gaps: list[float] = []

        def fetch(t: int, end: int) -> tuple[list[Any], list[Any]]:
            window = f"{end - t}s"
            states = self.client.query(self.series.alerts_for_state(window), end)
            self._tick(f"alert history from {_day(t)}")
            firing = self.client.query(self.series.alerts_firing(window), end)
            self._tick(f"alerts firing from {_day(t)}")
            return states, firing

        bounds = [(t, min(t + ALERT_CHUNK, self.period.end)) for t in range(self.period.start, self.period.end,
                                                                             ALERT_CHUNK)]
        with ThreadPoolExecutor(self.parallel) as pool:
            fetched = [(t, end, pool.submit(fetch, t, end)) for t, end in bounds]
            for t, end, fut in fetched:
                states, firing = fut.result()
                for key in history:
                    times, values = history[key]
                    history[key] = (times[-1:], values[-1:])  # the state carried into this chunk
                for labels, samples in states:
                    times, values = history.setdefault(_alert_key(labels), ([], []))
                    for ts, v in _rows(samples):
                        if t < ts <= end:
                            times.append(ts)
                            values.append(v)
                for labels, samples in firing:
                    key = _alert_key(labels)
                    times = [ts for ts, _ in _rows(samples) if t < ts <= end]
                    gaps.extend(np.diff(times).tolist())
                    for ts in times:
                        active_at = _active_at(history.get(key), ts)
                        if active_at is None:  # no ALERTS_FOR_STATE: split runs at gaps
                            prev, run = last_seen.get(key, (-math.inf, ts))
                            active_at = run if ts - prev <= RUN_GAP else ts
                            last_seen[key] = (ts, active_at)
                        ep = episodes.setdefault((key, active_at), Episode(key, active_at))
                        ep.first_firing = min(ep.first_firing, ts)
                        ep.last_firing = max(ep.last_firing, ts)
                        ep.firing_samples += 1
        data.alert_interval = float(np.median(gaps)) if gaps else 0.0
        data.episodes = sorted(episodes.values(), key=lambda e: (e.labels, e.first_firing))


RUN_GAP = 900.0
# the node queries the SLIs, the verdict and the ranking need (the previous period reads only these)
HEADLINE_KEYS = frozenset({"present", "dp_traffic", "dp_errors", "hb_traffic", "hb_errors", "hb_lost", "drop_events_on",
                           "drop_monitored", "ratelimited", "mem_bad", "mem_samples", "ws_max"})


def _rows(samples: Any) -> list[Any]:
    """A range vector's samples as Python (time, value) pairs (the client gives an (n, 2) array)."""
    return samples.tolist() if hasattr(samples, "tolist") else list(samples)


def _alert_key(labels: Labels) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k not in ("__name__", "alertstate")))


def _active_at(history: tuple[list[float], list[float]] | None, ts: float) -> float | None:
    """The ALERTS_FOR_STATE value at ``ts`` (its last sample at or before it); None when unknown."""
    if not history or not history[0]:
        return None
    i = bisect.bisect_right(history[0], ts + 0.001) - 1
    return history[1][i] if i >= 0 else None


def _day(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")
