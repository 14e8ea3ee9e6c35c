"""Recording rules: per-node rates for dashboards and alerts, the SLIs of both SLOs, and their tiles.

Cost rule: raw counters are only ``rate()``d over short windows (5m, the SLI base window). Every longer
window is an average of recorded base rates: up to ``TILED_FROM_BASE_WINDOWS`` base windows from the rates
sampled every evaluation, beyond that from *tiles* (the base rate recorded once per base window), in a group
evaluated every ``sloLongWindowsInterval``. The SLO period and the SLO Review read coarser tiles (one per
``sloReviewStep``). So a 3d window reads 864 samples per series, not 8,640, and 28d reads 672.
Ratios are traffic-weighted (sum of errors / sum of traffic over the same samples). Windowed rates are
averages over the samples that exist: for a node younger than the window, its rate over its life (ratios
are the same either way; counts come from the tiles: ``sum_over_time(tile[w]) * step``).
"""

from __future__ import annotations

from typing import Any

from cilium_node_exporter import contract as c
from cilium_node_exporter.mixin import names as n
from cilium_node_exporter.mixin import slo
from cilium_node_exporter.mixin.config import Values, duration_seconds
from cilium_node_exporter.mixin.promql import PromQL

MAIN_GROUP = "cilium-node-exporter.rules"
TILES_GROUP = "cilium-node-exporter.slo-tiles"
LONG_GROUP = "cilium-node-exporter.slo-long-windows"
REVIEW_GROUP = "cilium-node-exporter.slo-review-tiles"
PERIOD_GROUP = "cilium-node-exporter.slo-period"


def _tile(q: PromQL, name: str, expr: str, step: str) -> dict[str, Any]:
    """Record ``expr`` as the tile ``name``: at most one sample per ``step``, whatever the evaluation
    interval (the group runs every ``step``; Prometheus' scheduler never evaluates a group early, and
    promtool evaluates every group every evaluation_interval, so the rule skips a step it already has)."""
    almost = f"{int(duration_seconds(step)) - 1}s"
    return _record(name, f"{expr}\nunless {q.on()}\ncount_over_time({name}[{almost}])")


def _record(name: str, expr: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"record": name, "expr": expr}
    if labels:
        rule["labels"] = labels
    return rule


def _hubble_rules(q: PromQL) -> list[dict[str, Any]]:
    zero_if_hubble = f"0 * {n.FLOWS_SEEN}"
    policy_denied = q.rate(c.POLICY_VERDICTS, "5m", 'action="dropped"', 'match!~"l7/.*"')
    l7_denied = q.rate(c.L7_REQUESTS, "5m", 'action="dropped"')
    return [
        _record(n.FLOWS_SEEN, q.rate(c.FLOWS_SEEN, "5m")),
        _record(n.DROPS_BY_REASON, q.rate(c.DROPS, "5m", by=("reason",))),
        _record(n.DROPS_UNEXPECTED, f"sum by ({q.by()}) ({n.DROPS_BY_REASON}{{{q.errors()}}})\nor\n{zero_if_hubble}"),
        _record(n.POLICY_DENIED, f"{policy_denied}\nor\n{zero_if_hubble}"),
        _record(n.L7_DENIED, f"{l7_denied}\nor\n{zero_if_hubble}"),
        _record(n.LOST_BY_SOURCE, q.rate(c.LOST_EVENTS, "5m", by=("source",))),
    ]


def _datapath_rules(q: PromQL) -> list[dict[str, Any]]:
    dropped = f"sum by ({q.by()}) ({n.DATAPATH_DROPS_BY_REASON})"
    return [
        _record(n.DATAPATH_DROPS_BY_REASON, q.rate(c.DATAPATH_DROPPED, "5m", by=("reason",))),
        _record(n.DATAPATH_FORWARDED, q.rate(c.DATAPATH_FORWARDED, "5m")),
        _record(n.DATAPATH_PACKETS, f"({n.DATAPATH_FORWARDED} + {dropped})\nor\n{n.DATAPATH_FORWARDED}"),
        _record(n.DATAPATH_UNEXPECTED,
                f"sum by ({q.by()}) ({n.DATAPATH_DROPS_BY_REASON}{{{q.errors()}}})\nor\n0 * {n.DATAPATH_PACKETS}"),
    ]


def _memory_rules(q: PromQL) -> list[dict[str, Any]]:
    kubelet_up = q.max(c.SOURCE_UP, 'source="kubelet"')
    working_set = q.max(c.AGENT_WORKING_SET)
    return [
        _record(n.WORKING_SET, q.max(c.AGENT_WORKING_SET)),
        _record(n.ENVELOPE_UPPER, q.max(c.ENVELOPE_UPPER)),
        _record(n.ENVELOPE_LOWER, q.max(c.ENVELOPE_LOWER)),
        _record(n.MEMORY_LIMIT, q.max(c.AGENT_LIMIT)),
        # 1 = bad (above the upper bound, or not running while the kubelet answers), 0 = good; no
        # sample (unknown time) when the kubelet source is down or the exporter is not scraped. Raw series
        # only: one query sees a scrape whole, while the recorded working set of this same evaluation may
        # predate a scrape that committed in between (a first scrape would read as "not running").
        _record(n.MEMORY_ENVELOPE_ERROR,
                f"({working_set} > bool {q.max(c.ENVELOPE_UPPER)})\nor\n({kubelet_up} == 1 unless {working_set})"),
        _record(n.ENVOY_WORKING_SET, q.max(c.ENVOY_WORKING_SET)),
        _record(n.ENVOY_LIMIT, q.max(c.ENVOY_LIMIT)),
    ]


def _blind(q: PromQL, cause: str, expr: str) -> str:
    return f'label_replace(\n  group by ({q.by()}) (\n    {expr}\n  ),\n  "cause", "{cause}", "", ""\n)'


def _blind_rules(q: PromQL, v: Values) -> list[dict[str, Any]]:
    """One series per (node, cause) while Hubble cannot see what the node drops or denies.

    Cilium 1.16+ ``bpf-events-drop-enabled``/``bpf-events-policy-verdict-enabled`` off, a
    ``hubble-monitor-events`` list without drop or policy-verdict events, the 1.17+ BPF events rate limiter
    discarding notifications (``cilium_bpf_ratelimit_dropped_total{usage="events"}``), or the datapath
    counting drops Hubble never delivers. The agent's packet counters are not affected: the BPF metrics map
    is updated before the notification is emitted, rate-limited or compiled out (bpf/lib/drop.h
    ``_send_drop_notify``, v1.16 l.119/132, v1.17 l.150 with the limiter at l.79-82).
    """
    hubble_up = q.max(c.SOURCE_UP, 'source="hubble"')
    drop_off = q.sel(c.AGENT_NOTIFICATIONS_ENABLED, 'event="drop"')
    verdict_off = q.sel(c.AGENT_NOTIFICATIONS_ENABLED, 'event="policy_verdict"')
    filtered = q.sel(c.HUBBLE_MONITOR_EVENTS, 'event=~"drop|policy_verdict"')
    unseen = (f"sum by ({q.by()}) ({n.DATAPATH_DROPS_BY_REASON}) > {v['blindUnseenDropsRate']}\n"
              f"    unless {q.on()} (sum by ({q.by()}) ({n.DROPS_BY_REASON}) > 0)\n"
              f"    and {q.on()} ({hubble_up} == 1)")
    causes = [
        _blind(q, "drop_notifications_off", f"{drop_off} == 0"),
        _blind(q, "verdict_notifications_off", f"{verdict_off} == 0"),
        _blind(q, "monitor_events_filtered", f"{filtered} == 0"),
        _blind(q, "events_rate_limited", f"rate({q.sel(c.DATAPATH_RATELIMIT_DROPPED)}[5m]) > 0"),
        _blind(q, "datapath_drops_unseen", unseen),
    ]
    return [_record(n.BLIND, "\nor\n".join(causes))]


def _sli_base_rules(q: PromQL, v: Values) -> list[dict[str, Any]]:
    """The SLIs over the base window: packet-exact drops (agent source only) and envelope time."""
    base = v.raw("sloRateWindow")
    if base == n.RATE_WINDOW:
        errors, traffic = n.DATAPATH_UNEXPECTED, n.DATAPATH_PACKETS
    else:
        forwarded = q.rate(c.DATAPATH_FORWARDED, base)
        traffic = f"({forwarded}\n + {q.rate(c.DATAPATH_DROPPED, base)})\nor\n{forwarded}"
        errors = f"{q.rate(c.DATAPATH_DROPPED, base, q.errors())}\nor\n0 * {forwarded}"
    return [
        _record(n.drop_errors(base), errors),
        _record(n.drop_traffic(base), traffic),
        _record(n.drop_ratio(base), f"{n.drop_errors(base)}\n/\n({n.drop_traffic(base)} > 0)"),
        _record(n.memory_ratio(base), f"avg_over_time({n.MEMORY_ENVELOPE_ERROR}[{base}])"),
    ]


def _window_rules(source: dict[str, str], window: str) -> list[dict[str, Any]]:
    """SLI windows averaged from ``source`` (kind -> series sampled at a fixed step)."""
    return [
        _record(n.drop_errors(window), f"avg_over_time({source['errors']}[{window}])"),
        _record(n.drop_traffic(window), f"avg_over_time({source['traffic']}[{window}])"),
        _record(n.drop_ratio(window), f"{n.drop_errors(window)}\n/\n({n.drop_traffic(window)} > 0)"),
        _record(n.memory_ratio(window), f"avg_over_time({source['memory']}[{window}])"),
    ]


def _sources(base: str, step: str | None = None) -> dict[str, str]:
    """The base-window series, or their tiles when ``step`` is given."""
    plain = {"errors": n.drop_errors(base), "traffic": n.drop_traffic(base), "memory": n.memory_ratio(base)}
    return plain if step is None else {k: n.tile(name, step) for k, name in plain.items()}


# 5m rates recorded as tiles too: the denial-surge baselines read a day of them.
TILED_RATES: tuple[str, ...] = (n.POLICY_DENIED, n.L7_DENIED)


def recording_groups(v: Values) -> list[dict[str, Any]]:
    """The recording-rule groups, in evaluation order."""
    q = PromQL(v)
    base, step, period = v.raw("sloRateWindow"), v.raw("sloReviewStep"), v.raw("sloPeriod")
    windows = [w for w in slo.windows(v.config) if w != base]
    short = [w for w in windows if not slo.from_tiles(v.config, w)]
    long = [w for w in windows if slo.from_tiles(v.config, w)]

    main = _hubble_rules(q) + _datapath_rules(q) + _memory_rules(q) + _blind_rules(q, v) + _sli_base_rules(q, v)
    for window in short:
        main += _window_rules(_sources(base), window)
    main += [_record(n.SLO_OBJECTIVE, f"vector({v[s.objective_key]})", {"slo": s.name}) for s in slo.SLOS]

    plain, tiles = _sources(base), _sources(base, base)
    tile_rules = [_tile(q, tiles[k], plain[k], base) for k in plain]
    tile_rules += [_tile(q, n.tile(rate, base), rate, base) for rate in TILED_RATES]
    long_rules = [rule for window in long for rule in _window_rules(tiles, window)]

    review = _sources(step, step)
    review_rules = [_tile(q, review[k], f"avg_over_time({tiles[k]}[{step}])", step) for k in tiles]

    cl = q.cluster
    err, traffic = f"sum_over_time({review['errors']}[{period}])", f"sum_over_time({review['traffic']}[{period}])"
    memory = review["memory"]
    period_rules = [
        _record(n.drop_ratio(period), f"{err}\n/\n({traffic} > 0)"),
        _record(n.memory_ratio(period), f"avg_over_time({memory}[{period}])"),
        # fleet-pooled: all packets of the cluster's nodes; all node-time of the cluster's nodes
        _record(n.cluster(n.drop_ratio(period)), f"sum by ({cl}) ({err})\n/\n(sum by ({cl}) ({traffic}) > 0)"),
        _record(n.cluster(n.memory_ratio(period)),
                f"sum by ({cl}) (sum_over_time({memory}[{period}]))\n/\n"
                f"sum by ({cl}) (count_over_time({memory}[{period}]))"),
    ]
    return [
        {"name": MAIN_GROUP, "rules": main},
        {"name": TILES_GROUP, "interval": base, "rules": tile_rules},
        {"name": LONG_GROUP, "interval": v["sloLongWindowsInterval"], "rules": long_rules},
        {"name": REVIEW_GROUP, "interval": step, "rules": review_rules},
        {"name": PERIOD_GROUP, "interval": v["sloPeriodInterval"], "rules": period_rules},
    ]
