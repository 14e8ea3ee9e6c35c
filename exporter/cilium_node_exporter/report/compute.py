"""From the hourly answers (:mod:`collect`) to the report's model (:mod:`model`).

Counting rules (each one a product decision, shown in the report's footnotes):
- an hour counts for an SLO only when it was measured; "not measured" time is reported, never good;
- the drop SLI is packet-exact (the agent's datapath counters) wherever that source answered; elsewhere it
  is the Hubble approximation (unexpected drop events over flows seen), reported as a separate SLO because
  its denominator counts connections, not packets;
- a Hubble hour is not measured when the node's drop notifications were off, Hubble filtered drop events,
  the BPF rate limiter discarded notifications, the Hubble source was down, or Hubble lost more than
  ``hubbleLostEventsRatio`` of the flows;
- memory SLOs are time-based: the share of measured time with the working set above the envelope (agent)
  or above ``memoryNearLimitRatio`` of the container limit (cilium-envoy);
- worst nodes are ranked only among nodes measured for at least ``min_node_hours`` and, for the drop SLO,
  with a mean traffic of at least ``dropSloMinTrafficRate`` per second.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import incidents
from . import model as m
from .collect import Data, NodeKey
from .period import HOUR, duration_seconds
from .series import drop_class
from .verdict import DEFAULT_MIN_COVERAGE, judge, retention_hint

BLIND_REASONS = ("drop events off", "Hubble filters drops", "rate-limited notifications", "Hubble down",
                 "Hubble lost events", "no SLI series", "no data")
GIB = 2**30
_VERSION = re.compile(r"(\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?)")


@dataclass(frozen=True)
class Settings:
    """The SLO definitions and ranking guards the report applies."""

    drop_objective: float
    memory_objective: float
    min_traffic_rate: float
    memory_near_limit_ratio: float
    lost_events_ratio: float
    min_node_hours: float
    top: int = 10
    min_coverage: float = DEFAULT_MIN_COVERAGE
    slo_period: str = ""  # the pack's rolling window (sloPeriod): the figure beside the calendar one
    grafana_url: str = ""  # incidents link to the dashboards at their time range
    group_by: str = ""  # split the SLOs by this node label


def version_name(text: str) -> str:
    """``cilium v1.16.5+g1234`` or ``1.16.5`` -> ``1.16.5``; anything else as it is."""
    match = _VERSION.search(text or "")
    return match.group(1) if match else (text or "unknown")


def _f(x: Any) -> float | None:
    """A finite float or None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _nz(a: np.ndarray) -> np.ndarray:
    return np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)


class _Cluster:
    """The arrays of one cluster's nodes."""

    def __init__(self, data: Data, name: str, nodes: list[NodeKey]) -> None:
        self.data = data
        self.name = name
        self.nodes = nodes
        self.n_hours = len(data.hours)

    def arr(self, key: str, node: NodeKey) -> np.ndarray:
        got = self.data.node.get(key, {}).get(node)
        return got if got is not None else np.full(self.n_hours, np.nan)

    def lab(self, key: str, node: NodeKey, label: str) -> np.ndarray:
        got = self.data.labelled.get(key, {}).get((node, label))
        return got if got is not None else np.full(self.n_hours, np.nan)


def _days(n_hours: int) -> int:
    return max(1, math.ceil(n_hours / 24))


def daily_sum(a: np.ndarray) -> list[float]:
    """Hourly values summed per day of the period (NaN counts as 0)."""
    days = _days(len(a))
    padded = np.zeros(days * 24)
    padded[: len(a)] = _nz(a)
    return [float(x) for x in padded.reshape(days, 24).sum(axis=1)]


def daily_last(a: np.ndarray) -> list[float | None]:
    """The value at the end of each day (the last hour of the day, or of the period)."""
    idx = [min(len(a), (d + 1) * 24) - 1 for d in range(_days(len(a)))]
    return [_f(a[i]) for i in idx]


def _budget_curve(bad: np.ndarray, budget_total: float) -> list[float | None]:
    """Budget left at the end of each day: 1 - cumulative errors / budget of the whole period."""
    if budget_total <= 0:
        return [None] * _days(len(bad))
    cum = np.cumsum(_nz(bad))
    return daily_last(1 - cum / budget_total)


def _ratio_slo(key: str, title: str, what: str, unit: str, approximation: bool, objective: float,
               per_node: dict[NodeKey, tuple[np.ndarray, np.ndarray, np.ndarray]], lifetimes: dict[NodeKey, float],
               eligible_fn: Any, ranking_rule: str, kind: str, top: int) -> m.Slo | None:
    """An SLO from per-node hourly (total, bad, measured-hours) arrays; None when nothing was measured."""
    if not per_node:
        return None
    budget = 1 - objective
    nodes: list[m.NodeSlo] = []
    total_bad = total_all = measured = 0.0
    hours = len(next(iter(per_node.values()))[0])
    fleet_bad = np.zeros(hours)
    for node_key, (total, bad, meas) in per_node.items():
        t, b, h = float(_nz(total).sum()), float(_nz(bad).sum()), float(_nz(meas).sum())
        if h <= 0:
            continue
        ratio = b / t if t > 0 else None
        nodes.append(m.NodeSlo(node_key[0], node_key[1], None if ratio is None else 1 - ratio,
                               None if ratio is None or budget <= 0 else ratio / budget,
                               t - b if kind == "events" else h - b, b, h, bool(eligible_fn(t, h))))
        total_bad += b
        total_all += t
        measured += h
        fleet_bad += _nz(bad)
    if not nodes:
        return None
    ratio = total_bad / total_all if total_all > 0 else None
    spent = None if ratio is None or budget <= 0 else ratio / budget
    ranked = sorted((n for n in nodes if n.eligible and n.budget_spent is not None),
                    key=lambda n: (-(n.budget_spent or 0), n.node))
    worst_curve: list[float | None] = []
    if ranked:
        wk = (ranked[0].cluster, ranked[0].node)
        # in the fleet's budget: the share of the pooled budget the worst node's errors spent (its own budget
        # would put the fleet's curve on a scale of -1000 %)
        worst_curve = _budget_curve(per_node[wk][1], budget * total_all)
    not_measured = sum(max(0.0, lifetimes.get((n.cluster, n.node), 0) - n.measured_hours) for n in nodes)
    return m.Slo(key, title, what, kind, approximation, objective, None if ratio is None else 1 - ratio, spent,
                 None if spent is None else 1 - spent, total_all - total_bad,
                 total_bad, unit, measured, not_measured, len(nodes), sum(n.eligible for n in nodes), ranking_rule,
                 _budget_curve(fleet_bad, budget * total_all), worst_curve, ranked[:top],
                 sorted(nodes, key=lambda n: (n.cluster, n.node)))


def _restarts(counter: np.ndarray, lowest: np.ndarray | None = None) -> np.ndarray:
    """Restarts per hour from the restart counter at each hour's end.

    A decrease is a new pod whose counter started again at 0: its restarts are its value (a counter that
    reset is not 0 restarts). In the first hour a node is seen there is no previous hour: the restarts are
    the counter's rise inside that hour (its end minus its lowest value), so a one-hour period or a node
    born in the period still counts the restarts it saw.
    """
    out = np.zeros(len(counter))
    prev = math.nan
    for i, v in enumerate(counter):
        if not math.isfinite(v):
            continue
        if math.isfinite(prev):
            out[i] = v - prev if v >= prev else v
        elif lowest is not None and math.isfinite(lowest[i]) and v >= lowest[i]:
            out[i] = v - lowest[i]
        prev = v
    return out


def _ooms(terminated: np.ndarray, oom: np.ndarray, restarts: np.ndarray, start: int) -> np.ndarray:
    """OOM kills per hour: a new termination time in the hour with OOMKilled as the last reason.

    Restarts counted in that hour all count as OOM kills (a crash loop of OOM kills); two kills in one hour
    without a restart count change count once.
    """
    out = np.zeros(len(terminated))
    prev = math.nan
    for i, ts in enumerate(terminated):
        if not math.isfinite(ts):
            continue
        changed = ts != prev if math.isfinite(prev) else ts > start
        if changed and oom[i] == 1:
            out[i] = max(1.0, restarts[i])
        prev = ts
    return out


def _slope_per_day(hours: np.ndarray, values: np.ndarray, started: np.ndarray) -> float | None:
    """Working-set growth per day since the agent last started (a restart resets the trend); None with
    less than a day of samples since then."""
    ok = np.isfinite(values)
    starts = np.flatnonzero(np.isfinite(started))
    if starts.size:
        last = started[starts[-1]]
        ok &= ~(hours - HOUR < last)
    if ok.sum() < 24:
        return None
    x = (hours[ok] - hours[ok][0]) / 86400.0
    return float(np.polyfit(x, values[ok], 1)[0])


def _quantiles(matrix: np.ndarray) -> dict[str, list[float | None]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        q = np.nanpercentile(matrix, [0, 50, 90, 100], axis=0) if matrix.size else np.empty((4, 0))
    return {name: [_f(v) for v in row] for name, row in zip(("p0", "p50", "p90", "p100"), q, strict=True)}


def _median_rows(rows: list[np.ndarray], n: int) -> list[float | None]:
    if not rows:
        return [None] * n
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return [_f(v) for v in np.nanmedian(np.vstack(rows), axis=0)]


class Builder:
    """Builds the report model from collected data."""

    def __init__(self, data: Data, settings: Settings, cluster_label: str = "cluster",
                 node_label: str = "node") -> None:
        self.cluster_label = cluster_label
        self.node_label = node_label
        self.data = data
        self.s = settings
        self.hours = data.hours
        self.n = len(data.hours)
        self.period = data.period
        keys: set[NodeKey] = set()
        for k in ("present", "dp_traffic", "hb_traffic", "ws_max", "envoy_ws_max"):
            keys.update(data.node.get(k, {}))
        self.keys = sorted(keys)
        self._memory_bad: dict[NodeKey, np.ndarray] = {}  # the agent's bad hour-shares, for its incidents

    # --- per node basics ---------------------------------------------------------------------------
    def present(self, c: _Cluster, k: NodeKey) -> np.ndarray:
        p = np.isfinite(c.arr("present", k)) & (c.arr("present", k) > 0)
        for key in ("dp_traffic", "hb_traffic", "ws_max"):
            p |= np.isfinite(c.arr(key, k))
        return p

    @staticmethod
    def lifetime(present: np.ndarray) -> tuple[int, int] | None:
        idx = np.flatnonzero(present)
        return (int(idx[0]), int(idx[-1])) if idx.size else None

    def drop_hours(self, c: _Cluster, k: NodeKey, present: np.ndarray) -> dict[str, np.ndarray]:
        """Per hour: exact / hubble measured masks and the reason an hour is not measured."""
        dp_t = c.arr("dp_traffic", k)
        agent_up = c.lab("source_up", k, "agent")
        exact = np.isfinite(dp_t) & ~(agent_up == 0)
        hb_t = c.arr("hb_traffic", k)
        lost = _nz(c.arr("hb_lost", k))
        hubble_up = c.lab("source_up", k, "hubble")
        with np.errstate(divide="ignore", invalid="ignore"):
            seen = _nz(hb_t)
            lossy = np.where(seen > 0, lost / np.where(seen > 0, seen, 1), lost > 0) > self.s.lost_events_ratio
        blind = {
            "drop events off": c.arr("drop_events_on", k) == 0,
            "Hubble filters drops": c.arr("drop_monitored", k) == 0,
            "rate-limited notifications": _nz(c.arr("ratelimited", k)) > 0,
            "Hubble down": np.isfinite(hubble_up) & (hubble_up < 1),
            "Hubble lost events": lossy & np.isfinite(hb_t),
        }
        any_blind = np.zeros(self.n, dtype=bool)
        for mask in blind.values():
            any_blind |= mask
        hubble = np.isfinite(hb_t) & ~exact & ~any_blind
        reasons: dict[str, np.ndarray] = {}
        rest = present & ~exact & ~hubble
        for name, mask in blind.items():
            reasons[name] = rest & mask
            rest = rest & ~mask
        reasons["no SLI series"] = rest
        return {"exact": exact, "hubble": hubble, **reasons}

    # --- the report ----------------------------------------------------------------------------------
    def clusters(self) -> list[m.Cluster]:
        by_cluster: dict[str, list[NodeKey]] = defaultdict(list)
        for k in self.keys:
            by_cluster[k[0]].append(k)
        return [self.cluster(name, nodes) for name, nodes in sorted(by_cluster.items())]

    def cluster(self, name: str, nodes: list[NodeKey]) -> m.Cluster:
        c = _Cluster(self.data, name, nodes)
        s = self.s
        self._memory_bad = {}
        present = {k: self.present(c, k) for k in nodes}
        life = {k: self.lifetime(p) for k, p in present.items()}
        lifetimes = {k: float(v[1] - v[0] + 1) if v else 0.0 for k, v in life.items()}
        in_life = {}
        for k, v in life.items():
            mask = np.zeros(self.n, dtype=bool)
            if v:
                mask[v[0]: v[1] + 1] = True
            in_life[k] = mask
        drop = {k: self.drop_hours(c, k, present[k]) for k in nodes}

        def events_eligible(total: float, hours: float) -> bool:
            return hours >= s.min_node_hours and total / (hours * HOUR) >= s.min_traffic_rate

        def time_eligible(total: float, hours: float) -> bool:
            return hours >= s.min_node_hours

        rule_events = (f"nodes measured for at least {s.min_node_hours:g} h with at least "
                       f"{s.min_traffic_rate:g} events/s on average")
        rule_time = f"nodes measured for at least {s.min_node_hours:g} h"
        slos: list[m.Slo] = []
        exact_in = {k: (np.where(d["exact"], c.arr("dp_traffic", k), 0), np.where(d["exact"], c.arr("dp_errors", k), 0),
                        d["exact"].astype(float)) for k, d in drop.items() if d["exact"].any()}
        hub_in = {k: (np.where(d["hubble"], c.arr("hb_traffic", k), 0), np.where(d["hubble"], c.arr("hb_errors", k), 0),
                      d["hubble"].astype(float)) for k, d in drop.items() if d["hubble"].any()}
        for slo in (
            _ratio_slo("drop-ratio", "Unexpected drops (packet-exact)",
                       "a packet dropped for an unexpected reason, out of all packets the datapath handled "
                       "(the agent's datapath counters)", "packets", False, s.drop_objective, exact_in, lifetimes,
                       events_eligible, rule_events, "events", s.top),
            _ratio_slo("drop-ratio-hubble", "Unexpected drops (Hubble approximation)",
                       "an unexpected drop event seen by Hubble, out of the flows Hubble saw: drop events count "
                       "packets, flows count connections thinned by monitor aggregation, so this reads high and "
                       "is not comparable with the packet-exact SLI", "flows", True, s.drop_objective, hub_in,
                       lifetimes, events_eligible, rule_events, "events", s.top),
        ):
            if slo is not None:
                slos.append(slo)
        memories: list[m.Memory] = []
        mem_slo, agent_mem, oom_h, rst_h = self.memory(c, nodes, lifetimes, time_eligible, rule_time, "agent")
        if mem_slo:
            slos.append(mem_slo)
        memories.append(agent_mem)
        envoy_slo, envoy_mem, _, _ = self.memory(c, nodes, lifetimes, time_eligible, rule_time, "envoy")
        if envoy_slo:
            slos.append(envoy_slo)
        if envoy_mem.present:
            memories.append(envoy_mem)
        for slo in slos:
            slo.rolling = self.rolling(name, slo)
        coverage = self.coverage(c, nodes, present, in_life, drop)
        found = self.incidents(name, slos, {k: v[1] for k, v in exact_in.items()}, oom_h)
        return m.Cluster(name, len(nodes), slos, memories, self.drops(c), self.hubble(c, nodes, drop, in_life),
                         self.alerts(name), self.versions(c, nodes, drop, oom_h, rst_h), coverage,
                         self.verdict(nodes, present, in_life, coverage), found, groups=self.groups(name, nodes, slos))

    def groups(self, cluster: str, nodes: list[NodeKey], slos: list[m.Slo]) -> list[m.Group]:
        """Each SLO pooled over the nodes of each value of the --group-by label (per-node good and bad summed:
        the same pooling as the fleet figure)."""
        label = self.s.group_by
        if not label:
            return []
        value_of = {}
        for lab, _ in self.data.instant.get("groups", []):
            key = (lab.get(self.cluster_label, ""), lab.get(self.node_label, lab.get("node", "")))
            value_of[key] = lab.get(label, lab.get(f"label_{label}", ""))
        members: dict[str, set[str]] = defaultdict(set)
        for k in nodes:
            members[value_of.get(k) or "(none)"].add(k[1])
        out = []
        for value, names in sorted(members.items()):
            figures: dict[str, dict[str, float | None]] = {}
            for slo in slos:
                rows = [n for n in slo.per_node if n.node in names]
                good, bad = sum(n.good for n in rows), sum(n.bad for n in rows)
                ratio = bad / (good + bad) if good + bad > 0 else None
                budget = 1 - slo.objective
                figures[slo.key] = {"achieved": None if ratio is None else 1 - ratio,
                                    "budget_spent": None if ratio is None or budget <= 0 else ratio / budget}
            out.append(m.Group(label, value, len(names), figures))
        return out

    def incidents(self, cluster: str, slos: list[m.Slo], drop_bad: dict[NodeKey, np.ndarray],
                  oom_h: dict[NodeKey, np.ndarray]) -> list[m.Incident]:
        """The incidents that spent the packet-exact drop budget and the agent memory budget, largest first."""
        episodes = [(ep, dict(ep.labels)) for ep in self.data.episodes
                    if dict(ep.labels).get(self.cluster_label, "") == cluster]
        reasons = {r: _nz(a) for (cl, r), a in self.data.cluster.get("dp_reasons", {}).items()
                   if cl == cluster and drop_class(r) == "unexpected"}

        def drop_cause(first: int, last: int) -> str:
            sums = {r: float(a[first: last + 1].sum()) for r, a in reasons.items()}
            top = max(sums, key=lambda r: sums[r], default="")
            return f"{top} (unexpected)" if top and sums[top] > 0 else "unexpected drops"

        def memory_cause(first: int, last: int) -> str:
            kills = int(sum(a[first: last + 1].sum() for a in oom_h.values()))
            return "agent working set above its envelope" + (f", {kills} OOM kill(s)" if kills else "")

        found: list[m.Incident] = []
        for slo in slos:
            budget = (slo.good + slo.bad) * (1 - slo.objective) if slo.kind == "events" else \
                slo.measured_hours * (1 - slo.objective)
            if slo.key == "drop-ratio":
                found += incidents.find(slo.key, self.hours, drop_bad, budget, episodes, drop_cause, cluster,
                                        self.s.grafana_url, top=self.s.top)
            elif slo.key == "memory-envelope":
                found += incidents.find(slo.key, self.hours, self._memory_bad, budget, episodes, memory_cause,
                                        cluster, self.s.grafana_url, top=self.s.top)
        return sorted(found, key=lambda i: (-i.budget_cost, i.start))

    def rolling(self, cluster: str, slo: m.Slo) -> m.Rolling | None:
        """The pack's rolling window ending with the period, for the drop (packet-exact) and memory SLOs."""
        keys = {"drop-ratio": ("rolling_drop_errors", "rolling_drop_traffic"),
                "memory-envelope": ("rolling_memory_bad", "rolling_memory_samples")}.get(slo.key)
        if keys is None or not self.s.slo_period:
            return None
        got = [next((float(v) for lab, v in self.data.instant.get(k, []) if lab.get(self.cluster_label, "") == cluster),
                    None) for k in keys]
        if got[0] is None or got[1] is None or not got[1] > 0:
            return None
        ratio = got[0] / got[1]
        budget = 1 - slo.objective
        window = self.s.slo_period
        start = self.period.end - duration_seconds(window)
        hours = (self.period.end - self.period.start) / HOUR
        length = f"{hours / 24:g} days" if hours >= 48 else f"{hours:g} hour(s)"
        why = (f"The rule pack's SLO and the dashboards use a rolling {window} window, here {_iso(start)} to "
               f"{_iso(self.period.end)}; this review counts its own {length} from {_iso(self.period.start)}. "
               "The two differ by the days each includes (an incident inside one window and not the other), and "
               "each budget is its own window's traffic or time times the error budget.")
        return m.Rolling(window, float(start), float(self.period.end), 1 - ratio,
                         ratio / budget if budget > 0 else None, why)

    def verdict(self, nodes: list[NodeKey], present: dict[NodeKey, np.ndarray], in_life: dict[NodeKey, np.ndarray],
                coverage: m.Coverage) -> m.Verdict:
        """Complete or partial data (:mod:`verdict`): the covered span times the node-hours with data."""
        span = 0.0
        if coverage.first_data is not None and coverage.last_data is not None:
            span = (coverage.last_data - coverage.first_data) / HOUR
        have = float(sum(int((present[k] & in_life[k]).sum()) for k in nodes))
        life = float(sum(int(in_life[k].sum()) for k in nodes))
        hint = retention_hint(self.period.start, self.period.end, self.data.oldest_sample, coverage.retention)
        return judge(span, float(self.n), have, life, self.s.min_coverage, hint)

    # --- memory ------------------------------------------------------------------------------------
    def memory(self, c: _Cluster, nodes: list[NodeKey], lifetimes: dict[NodeKey, float], eligible: Any,
               rule: str, component: str) -> tuple[m.Slo | None, m.Memory, dict[NodeKey, np.ndarray],
                                                   dict[NodeKey, np.ndarray]]:
        agent = component == "agent"
        bad_key, samples_key = ("mem_bad", "mem_samples") if agent else ("envoy_bad", "envoy_samples")
        ws_key = "ws_max" if agent else "envoy_ws_max"
        all_samples = [c.arr(samples_key, k) for k in nodes]
        full = max((float(np.nanmax(a)) for a in all_samples if np.isfinite(a).any()), default=0.0)
        per_node: dict[NodeKey, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        node_mem: list[m.NodeMemory] = []
        ws_rows, upper_rows, lower_rows = [], [], []
        oom_hours: dict[NodeKey, np.ndarray] = {}
        rst_hours: dict[NodeKey, np.ndarray] = {}
        ooms = restarts = 0
        for k in nodes:
            ws = c.arr(ws_key, k)
            if agent:
                upper, lower = c.arr("env_upper", k), c.arr("env_lower", k)
            else:
                limit = c.arr("envoy_limit", k)
                upper, lower = limit, limit * self.s.memory_near_limit_ratio
            rst = _restarts(c.arr("restarts" if agent else "envoy_restarts", k),
                            c.arr("restarts_min" if agent else "envoy_restarts_min", k))
            oom = _ooms(c.arr("terminated_at" if agent else "envoy_terminated_at", k),
                        c.arr("oom_reason" if agent else "envoy_oom_reason", k), rst, self.period.start)
            oom_hours[k], rst_hours[k] = oom, rst
            if not np.isfinite(ws).any():
                continue
            ws_rows.append(ws)
            upper_rows.append(upper)
            lower_rows.append(lower)
            samples = c.arr(samples_key, k)
            meas = np.clip(_nz(samples) / full, 0, 1) if full > 0 else np.zeros(self.n)
            bad = _nz(c.arr(bad_key, k)) * meas
            if meas.sum() > 0:
                per_node[k] = (meas, bad, meas)
                if agent:
                    self._memory_bad[k] = bad
            above = np.flatnonzero(bad > 0)
            slope = _slope_per_day(self.hours.astype(float), c.arr("ws_avg", k) if agent else ws,
                                   c.arr("started" if agent else "envoy_started", k))
            last_ws = ws[np.isfinite(ws)][-1]
            up_f = upper[np.isfinite(upper)]
            last_upper = float(up_f[-1]) if up_f.size else None
            days_to = None
            if slope and slope > 0 and last_upper is not None and last_ws < last_upper:
                days_to = (last_upper - float(last_ws)) / slope
            node_mem.append(m.NodeMemory(k[0], k[1], component, _f(np.nanmax(ws)), last_upper, float(bad.sum()),
                                         float(self.hours[above[0]] - HOUR) if above.size else None,
                                         int(oom.sum()), int(rst.sum()), slope, days_to))
            ooms += int(oom.sum())
            restarts += int(rst.sum())
        present = bool(ws_rows)
        slo = None
        if present:
            if agent:
                title, what = ("Agent memory within the envelope", "an hour-share with the cilium-agent working set "
                               "above the node's memory envelope (or unknown while the kubelet answers)")
            else:
                title, what = ("cilium-envoy memory below its limit", f"an hour-share with the cilium-envoy working "
                               f"set above {self.s.memory_near_limit_ratio:g} of its container limit")
            slo = _ratio_slo("memory-envelope" if agent else "envoy-memory", title, what, "hours", False,
                             self.s.memory_objective, per_node, lifetimes, eligible, rule, "time", self.s.top)
        matrix = np.vstack(ws_rows) if ws_rows else np.empty((0, self.n))
        finite = matrix[np.isfinite(matrix)]
        edges, counts = [], []
        if finite.size:
            hi = max(float(finite.max()), float(np.nanmax(np.vstack(upper_rows))) if np.isfinite(
                np.vstack(upper_rows)).any() else 0.0)
            hist, bin_edges = np.histogram(finite, bins=40, range=(0.0, hi * 1.05 or 1.0))
            edges, counts = [float(e) for e in bin_edges], [float(h) for h in hist]
        band_upper = _median_rows(upper_rows, self.n)
        band_lower = _median_rows(lower_rows, self.n)
        finite_u = [v for v in band_upper if v is not None]
        finite_l = [v for v in band_lower if v is not None]
        growth = [x for x in node_mem if x.growth_bytes_per_day is not None]
        memory = m.Memory(
            component, present, float(np.median(finite_l)) if finite_l else None,
            float(np.median(finite_u)) if finite_u else None, _quantiles(matrix),
            {"lower": band_lower, "upper": band_upper}, {"edges": edges, "counts": counts},
            sorted((x for x in node_mem if x.hours_above > 0), key=lambda x: -x.hours_above),
            ooms, restarts,
            sorted(growth, key=lambda x: -(x.growth_bytes_per_day or 0))[: self.s.top],
            float(np.median([x.growth_bytes_per_day for x in growth])) if growth else None,
            sorted(node_mem, key=lambda x: (x.cluster, x.node)))
        return slo, memory, oom_hours, rst_hours

    # --- drops, denials, Hubble ------------------------------------------------------------------------
    def drops(self, c: _Cluster) -> m.Drops:
        by_class_daily: dict[str, dict[str, list[float]]] = {}
        class_totals: dict[str, dict[str, float]] = {}
        reasons: list[m.Reason] = []
        nodes_per_reason = {
            src: {(lab.get(self.cluster_label, ""), lab.get("reason", "")): int(v)
                  for lab, v in self.data.instant.get(key, [])}
            for src, key in (("datapath", "dp_reason_nodes"), ("hubble", "hb_reason_nodes"))}
        for src, key in (("datapath", "dp_reasons"), ("hubble", "hb_reasons")):
            series = {r: a for (cl, r), a in self.data.cluster.get(key, {}).items() if cl == c.name}
            if not series:
                continue
            classes: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(self.n))
            for reason, a in series.items():
                classes[drop_class(reason)] += _nz(a)
                reasons.append(m.Reason(reason, drop_class(reason), src, float(_nz(a).sum()),
                                        nodes_per_reason[src].get((c.name, reason), 0)))
            by_class_daily[src] = {k: daily_sum(v) for k, v in sorted(classes.items())}
            class_totals[src] = {k: float(v.sum()) for k, v in sorted(classes.items())}
        top = sorted(reasons, key=lambda r: (r.source != "datapath", -r.count))
        top = [r for src in ("datapath", "hubble") for r in [x for x in top if x.source == src][: self.s.top]]
        pol = self._cluster_arr("policy_denied", c.name)
        l7 = self._cluster_arr("l7_denied", c.name)
        return m.Drops(by_class_daily, class_totals, top, daily_sum(pol), daily_sum(l7), float(_nz(pol).sum()),
                       float(_nz(l7).sum()))

    def _cluster_arr(self, key: str, cluster: str, label: str | None = None) -> np.ndarray:
        total = np.zeros(self.n)
        for (cl, lab), a in self.data.cluster.get(key, {}).items():
            if cl == cluster and (label is None or lab == label):
                total += _nz(a)
        return total

    def hubble(self, c: _Cluster, nodes: list[NodeKey], drop: dict[NodeKey, dict[str, np.ndarray]],
               in_life: dict[NodeKey, np.ndarray]) -> m.Hubble:
        lost_by_source = {lab: float(_nz(a).sum())
                          for (cl, lab), a in self.data.cluster.get("lost_by_source", {}).items()
                          if cl == c.name}
        lost = self._cluster_arr("lost_by_source", c.name)
        flows = float(sum(_nz(c.arr("hb_traffic", k)).sum() for k in nodes))
        blind_nodes = []
        not_measured = np.zeros(self.n)
        for k in nodes:
            d = drop[k]
            reasons = {r: float(d[r].sum()) for r in BLIND_REASONS[:-1] if d[r].sum() > 0}
            missing = in_life[k] & ~self.present(c, k)
            if missing.any():
                reasons["no data"] = float(missing.sum())
            nm = in_life[k] & ~d["exact"] & ~d["hubble"]
            not_measured += nm
            if reasons:
                blind_nodes.append(m.BlindNode(k[0], k[1], float(nm.sum()), reasons))
        blind_nodes.sort(key=lambda b: (-b.not_measured_hours, b.node))
        return m.Hubble(lost_by_source, daily_sum(lost), flows, (float(lost.sum()) / flows) if flows > 0 else None,
                        blind_nodes, daily_sum(not_measured))

    # --- alerts ------------------------------------------------------------------------------------
    def alerts(self, cluster: str) -> m.Alerts:
        interval = self.data.alert_interval or 60.0
        cl_label = self.cluster_label
        by_alert: dict[str, list[Any]] = defaultdict(list)
        days = _days(self.n)
        daily = {k: [0] * days for k in ("page", "ticket", "info")}
        for ep in self.data.episodes:
            labels = dict(ep.labels)
            if labels.get(cl_label, "") != cluster:
                continue
            kind = {"critical": "page", "warning": "ticket"}.get(labels.get("severity", ""), "info")
            by_alert[labels.get("alertname", "")].append((ep, labels, kind))
            day = int((ep.first_firing - self.period.start) // 86400)
            if 0 <= day < days:
                daily[kind][day] += 1
        out = []
        for name, eps in by_alert.items():
            minutes = [(e.last_firing - e.first_firing + interval) / 60 for e, _, _ in eps]
            severity = Counter(lab.get("severity", "") for _, lab, _ in eps).most_common(1)[0][0]
            out.append(m.AlertSummary(name, severity, eps[0][2], len(eps), sum(minutes) / 60,
                                      float(np.median(minutes)), max(minutes),
                                      len({lab.get(self.node_label, "") for _, lab, _ in eps} - {""})))
        out.sort(key=lambda a: ({"page": 0, "ticket": 1}.get(a.kind, 2), -a.episodes, a.alertname))
        return m.Alerts(sum(a.episodes for a in out if a.kind == "page"),
                        sum(a.episodes for a in out if a.kind == "ticket"), out, daily)

    # --- versions ----------------------------------------------------------------------------------
    def versions(self, c: _Cluster, nodes: list[NodeKey], drop: dict[NodeKey, dict[str, np.ndarray]],
                 oom_h: dict[NodeKey, np.ndarray], rst_h: dict[NodeKey, np.ndarray]) -> m.Versions:
        per_node: dict[NodeKey, list[str | None]] = {k: [None] * self.n for k in nodes}
        for (k, raw), a in self.data.labelled.get("version", {}).items():
            if k not in per_node:
                continue
            name = version_name(raw)
            for i in np.flatnonzero(np.isfinite(a)):
                current = per_node[k][i]
                if current is None or _vkey(name) > _vkey(current):
                    per_node[k][i] = name
        versions = sorted({v for row in per_node.values() for v in row if v}, key=_vkey)
        cohorts = []
        mem_full = max((float(np.nanmax(c.arr("mem_samples", k))) for k in nodes
                        if np.isfinite(c.arr("mem_samples", k)).any()), default=0.0)
        for v in versions:
            e = t = bad = meas = 0.0
            ws: list[float] = []
            hours = 0
            nodes_on: set[NodeKey] = set()
            first, last = math.inf, -math.inf
            ooms = restarts = 0
            for k in nodes:
                mask = np.array([x == v for x in per_node[k]])
                if not mask.any():
                    continue
                nodes_on.add(k)
                hours += int(mask.sum())
                idx = np.flatnonzero(mask)
                first, last = min(first, float(self.hours[idx[0]] - HOUR)), max(last, float(self.hours[idx[-1]]))
                ex = mask & drop[k]["exact"]
                e += float(_nz(c.arr("dp_errors", k))[ex].sum())
                t += float(_nz(c.arr("dp_traffic", k))[ex].sum())
                mm = np.clip(_nz(c.arr("mem_samples", k)) / mem_full, 0, 1) if mem_full else np.zeros(self.n)
                bad += float((_nz(c.arr("mem_bad", k)) * mm)[mask].sum())
                meas += float(mm[mask].sum())
                w = c.arr("ws_avg", k)[mask]
                ws.extend(w[np.isfinite(w)].tolist())
                ooms += int(oom_h[k][mask].sum())
                restarts += int(rst_h[k][mask].sum())
            ratio = e / t if t > 0 else None
            budget = 1 - self.s.drop_objective
            cohorts.append(m.Cohort(
                v, len(nodes_on), float(hours), first, last, None if ratio is None else 1 - ratio,
                None if ratio is None or budget <= 0 else ratio / budget, (1 - bad / meas) if meas > 0 else None,
                float(np.median(ws)) if ws else None, float(np.percentile(ws, 90)) if ws else None, ooms, restarts))
        daily_nodes = {v: [0] * _days(self.n) for v in versions}
        upgrades = []
        for k, row in per_node.items():
            for d in range(_days(self.n)):
                i = min(self.n, (d + 1) * 24) - 1
                if row[i]:
                    daily_nodes[row[i]][d] += 1
            prev = None
            for i, v in enumerate(row):
                if v and prev and v != prev:
                    upgrades.append({"cluster": k[0], "node": k[1], "from": prev, "to": v,
                                     "at": float(self.hours[i] - HOUR)})
                if v:
                    prev = v
        upgrades.sort(key=lambda u: (u["at"], u["node"]))
        all_hours = sum(x.node_hours for x in cohorts)
        for x in cohorts:
            x.exposure = x.node_hours / all_hours if all_hours > 0 else 0.0
        return m.Versions(cohorts, daily_nodes, upgrades)

    # --- coverage ------------------------------------------------------------------------------------
    def coverage(self, c: _Cluster, nodes: list[NodeKey], present: dict[NodeKey, np.ndarray],
                 in_life: dict[NodeKey, np.ndarray], drop: dict[NodeKey, dict[str, np.ndarray]]) -> m.Coverage:
        any_present = np.zeros(self.n, dtype=bool)
        reporting = np.zeros(self.n)
        for k in nodes:
            any_present |= present[k]
            reporting += present[k]
        idx = np.flatnonzero(any_present)
        first = float(self.hours[idx[0]] - HOUR) if idx.size else None
        last = float(self.hours[idx[-1]]) if idx.size else None
        gaps = []
        for k in nodes:
            missing = int((in_life[k] & ~present[k]).sum())
            if missing:
                gaps.append({"cluster": k[0], "node": k[1], "hours_missing": missing})
        gaps.sort(key=lambda g: (-g["hours_missing"], g["node"]))
        days = _days(self.n)
        day_names = day_labels(self.period.start, days)
        daily_reporting = [int(max(reporting[d * 24: (d + 1) * 24], default=0)) for d in range(days)]
        days_without = [day_names[d] for d in range(days) if daily_reporting[d] == 0]
        source_down: dict[str, float] = defaultdict(float)
        for ((k, source), a) in self.data.labelled.get("source_up", {}).items():
            if k in present:
                source_down[source] += float(_nz(1 - a).clip(0, 1).sum())
        notes = []
        period_start, period_end = self.period.start, self.period.end
        if first is None:
            notes.append("No exporter data in this cluster during the period.")
        else:
            if first > period_start:
                notes.append(f"No data before {_iso(first)}: the first {(first - period_start) / 86400:.1f} days of "
                             "the period are not covered" + self._retention_hint() + ".")
            if last is not None and last < period_end:
                notes.append(f"No data after {_iso(last)}: the last {(period_end - last) / 86400:.1f} days of the "
                             "period are not covered.")
        if days_without:
            notes.append(f"{len(days_without)} day(s) without any data: {', '.join(days_without[:10])}"
                         + (" ..." if len(days_without) > 10 else "") + ".")
        if gaps:
            total = sum(g["hours_missing"] for g in gaps)
            notes.append(f"{len(gaps)} node(s) have {total} hour(s) without data inside their lifetime "
                         f"(most: {gaps[0]['node']}, {gaps[0]['hours_missing']} h); those hours count as not "
                         "measured.")
        for source, hours in sorted(source_down.items()):
            if hours >= 1:
                notes.append(f"Source {source} was down for {hours:.0f} node-hour(s).")
        blind = {k: sum(float(drop[k][r].sum()) for r in BLIND_REASONS[:-2]) for k in nodes}
        blind_nodes = [k for k, h in blind.items() if h > 0]
        if blind_nodes:
            notes.append(f"The drop SLI was blind for {sum(blind.values()):.0f} node-hour(s) on {len(blind_nodes)} "
                         "node(s) (drop events off, filtered, rate-limited, Hubble down or lossy): shown as not "
                         "measured, never counted as good.")
        # the packet-exact SLI still counts these nodes, but nobody can see which flows they drop
        notif_off = sorted(k for k in nodes if (drop[k]["exact"] & (c.arr("drop_events_on", k) == 0)).any())
        if notif_off:
            names = ", ".join(k[1] for k in notif_off[:10]) + (" ..." if len(notif_off) > 10 else "")
            notes.append(f"{len(notif_off)} node(s) count drops in the agent's datapath counters with drop "
                         f"notifications off ({names}): their packet-exact SLI is measured, but Hubble shows no drop "
                         "events for them, so no flow or reason detail (enable them: Cilium's "
                         "bpf-events-drop-enabled).")
        hubble_only = [k for k in nodes if drop[k]["hubble"].any() and not drop[k]["exact"].any()]
        if hubble_only:
            notes.append(f"{len(hubble_only)} node(s) have no agent datapath counters: their drop SLI is the Hubble "
                         "approximation, reported separately.")
        return m.Coverage(first, last, retention_of(self.data.flags), self.data.oldest_sample, len(nodes),
                          gaps, days_without, daily_reporting, dict(source_down), notes)

    def _retention_hint(self) -> str:
        retention = retention_of(self.data.flags)
        oldest = self.data.oldest_sample
        if oldest and oldest > self.period.start:
            return f" (the TSDB's oldest sample is {_iso(oldest)}; retention {retention or 'unknown'})"
        if retention and retention != "0s":
            return f" (this Prometheus keeps {retention})"
        return ""


def retention_of(flags: dict[str, str]) -> str:
    """The server's time retention as it applies: Prometheus 2.x reports ``0s`` when neither retention flag is
    set, which means its default of 15 days (``""``: the server does not tell, as Thanos and Mimir)."""
    time_flag = flags.get("storage.tsdb.retention.time", "")
    legacy = flags.get("storage.tsdb.retention", "")
    value = time_flag if time_flag not in ("", "0s") else legacy if legacy not in ("", "0s") else time_flag
    if value == "0s":
        size = flags.get("storage.tsdb.retention.size", "0B")
        return "15d (the default)" if size in ("", "0", "0B") else f"by size ({size})"
    return value


def _vkey(v: str) -> tuple[Any, ...]:
    parts = re.split(r"[.-]", v)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)


def _iso(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def day_labels(start: int, days: int) -> list[str]:
    from datetime import UTC, datetime

    return [datetime.fromtimestamp(start + d * 86400, UTC).strftime("%Y-%m-%d") for d in range(days)]
