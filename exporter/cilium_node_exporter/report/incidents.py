"""The incidents that spent an SLO's error budget: runs of hours in which the fleet burned faster than
``BURN`` times the even-spend rate, with their nodes, cause, the alerts they raised and what they cost.

An hour is in an incident when the fleet-pooled errors in it exceed ``BURN`` x (budget / hours of the
period); runs closer than ``MERGE_GAP_HOURS`` are one incident. Its nodes are those that made at least
``NODE_SHARE`` of its errors (the largest first). Its cost is its errors over the period's whole budget,
so the incidents' costs add up to at most the budget spent.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable

import numpy as np

from . import model as m
from .collect import Episode, NodeKey
from .period import HOUR

BURN = 2.0
MERGE_GAP_HOURS = 1
NODE_SHARE = 0.1
MAX_NODES = 5
ALERT_SLACK = HOUR  # alerts that started up to an hour after the incident's end are its own


def _runs(hot: np.ndarray) -> list[tuple[int, int]]:
    """``[first, last]`` hour indexes of the runs of True, runs closer than the merge gap joined."""
    idx = np.flatnonzero(hot)
    runs: list[tuple[int, int]] = []
    for i in idx.tolist():
        if runs and i - runs[-1][1] <= MERGE_GAP_HOURS + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def link(grafana_url: str, dashboard: str, start: float, end: float, cluster: str, node: str = "") -> str:
    """A Grafana dashboard at the incident's time range (``""`` without ``--grafana-url``)."""
    if not grafana_url:
        return ""
    params = {"from": int(start * 1000), "to": int(end * 1000), "var-cluster": cluster}
    if node:
        params["var-node"] = node
    return f"{grafana_url.rstrip('/')}/d/{dashboard}?{urllib.parse.urlencode(params)}"


def find(slo: str, hours: np.ndarray, bad: dict[NodeKey, np.ndarray], budget: float,
         episodes: list[tuple[Episode, dict[str, str]]], cause: Callable[[int, int], str], cluster: str,
         grafana_url: str = "", dashboard: str = "cilium-node-slo", top: int = 10) -> list[m.Incident]:
    """The incidents of one SLO (largest cost first, at most ``top``); ``bad`` is per node and hour, in the
    budget's unit (packets or hours)."""
    if budget <= 0 or not bad:
        return []
    keys = sorted(bad)
    matrix = np.nan_to_num(np.vstack([bad[k] for k in keys]))
    fleet = matrix.sum(axis=0)
    even = budget / len(hours)
    out = []
    for first, last in _runs(fleet > BURN * even):
        window = matrix[:, first: last + 1].sum(axis=1)
        total = float(window.sum())
        order = np.argsort(-window)
        nodes = [keys[i][1] for i in order[:MAX_NODES].tolist() if window[i] >= NODE_SHARE * total and window[i] > 0]
        start, end = float(hours[first] - HOUR), float(hours[last])
        raised = sorted({f"{lab.get('alertname', '')} ({lab.get('severity', '')})" for ep, lab in episodes
                         if start <= ep.first_firing <= end + ALERT_SLACK})
        out.append(m.Incident(slo, start, end, nodes, cause(first, last), raised, total, total / budget,
                              link(grafana_url, dashboard, start, end, cluster, nodes[0] if len(nodes) == 1 else "")))
    out.sort(key=lambda i: (-i.budget_cost, i.start))
    return out[:top]
