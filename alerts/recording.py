"""Recording rules: per-node rates for dashboards and alerts, the SLIs of both SLOs, and their chains and tiles.

The drop SLI counts packets exactly (sum of errors / sum of packets over the window) across scrape gaps,
counter resets, exporter and Prometheus restarts, missed rule evaluations and a node's birth:
- every evaluation, the datapath counters are summed per node (the exporter's pods merged): three series;
- windows up to 6h are ``increase()`` of those sums (2,000 samples per node per cycle at 30 s);
- longer windows sum a *chain*: every ``sloRateWindow`` (and every ``sloReviewStep`` for the period and the
  SLO Review), the packets counted since the previous snapshot of the counters; the counts telescope, so a
  sum over a range is exact whatever the evaluation interval or the gaps (no reliance on promtool or a ruler
  evaluating every step), plus what was counted since the last snapshot.
The memory SLI (time-based, unknown time not counted) averages its 5m tiles.
"""

from __future__ import annotations

from typing import Any

from alerts.memory_lifecycle import lifecycle_records
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


# The blind causes read from a setting, by the setting's series.
SETTING_CAUSES = {c.AGENT_NOTIFICATIONS_ENABLED: ("drop_notifications_off", "verdict_notifications_off"),
                  c.HUBBLE_MONITOR_EVENTS: ("monitor_events_filtered",)}


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
    # A cause read from a setting is held while that setting is unknown (the agent API failing: the exporter
    # serves no value rather than a stale one) and the exporter's target exists: the node is blind until it is
    # known to see. Forgotten when the target is gone (the node left the cluster).
    target = f"group by ({q.by()}) ({q.sel('up')})"
    held = [(f"last_over_time({n.BLIND}{{cause=~\"{'|'.join(causes_)}\"}}[{v.raw('sloRateWindow')}])\n"
             f"    unless {q.on()} group by ({q.by()}) ({q.sel(setting)})\n    and {q.on()} {target}")
            for setting, causes_ in SETTING_CAUSES.items()]
    return [_record(n.BLIND, "\nor\n".join([*causes, *held]))]



def _node_counter(q: PromQL, metric: c.Metric, *matchers: str) -> str:
    """A datapath counter summed per node, the exporter's pods merged (a rollout scrapes two for a while; their
    values are the agent's, equal): continuous across exporter restarts, unlike the per-pod raw series."""
    return f"sum by ({q.by()}) (max without (instance, pod) ({q.sel(metric, *matchers)}))"


def _counter_rules(q: PromQL, v: Values) -> list[dict[str, Any]]:
    """The drop SLI's per-node counters, every evaluation: errors, transient-class errors, all packets.

    Summed before any ``increase()``: a reason that appears on a known node counts from zero (the per-series
    ``increase()`` would miss its first value), and an agent restart resets the whole sum (a decrease is a
    reset). Absent while the agent source is not scraped; the counts resume from the agent's counters.
    """
    transient = q.reason(*v.config["dropClasses"]["transient"])
    return [
        _born(q, v, n.DROP_SLO_TRAFFIC_TOTAL, _traffic(q)),
        _born(q, v, n.DROP_SLO_ERRORS_TOTAL, f"{_node_counter(q, c.DATAPATH_DROPPED, q.errors())}\nor\n0 * "
                                             f"{n.DROP_SLO_TRAFFIC_TOTAL}"),
        _born(q, v, n.DROP_SLO_TRANSIENT_TOTAL, f"{_node_counter(q, c.DATAPATH_DROPPED, transient)}\nor\n0 * "
                                                f"{n.DROP_SLO_TRAFFIC_TOTAL}"),
    ]


def _traffic(q: PromQL) -> str:
    """All the node's datapath packets: forwarded plus dropped (for any reason)."""
    dropped = _node_counter(q, c.DATAPATH_DROPPED)
    forwarded = _node_counter(q, c.DATAPATH_FORWARDED)
    return f"{forwarded}\n+ on ({q.by()})\n({dropped} or 0 * {forwarded})"


def _young(q: PromQL, v: Values) -> str:
    """Nodes whose cilium-agent container started within ``sloBirthWindow``."""
    seconds = int(duration_seconds(v.raw("sloBirthWindow")))
    return f"time() - {q.max(c.AGENT_START_TIME)} < {seconds}"


def _born(q: PromQL, v: Values, name: str, expr: str) -> dict[str, Any]:
    """Record ``expr`` as ``name``, but 0 at its first evaluation on a node whose agent has just started: the
    next sample then counts the packets since the agent started, which ``increase()`` would otherwise take as
    the series' starting point (a node's birth, its start-up drops). First values on an older agent (the
    exporter installed on a running node) are its starting point."""
    # no sample since the agent started (within sloBirthWindow): the first since the agent started
    first = f"({_young(q, v)})\n  unless {q.on()}\n  last_over_time({name}[{v.raw('sloBirthWindow')}])"
    return _record(name, f"(\n{expr}\n)\nunless {q.on()}\n(\n  {first}\n)\nor\n0 * (\n{expr}\n)")


def _ratio(window: str) -> dict[str, Any]:
    return _record(n.drop_ratio(window), f"{n.drop_errors(window)}\n/\n({n.drop_traffic(window)} > 0)")


def _raw_window_rules(window: str, transient: bool) -> list[dict[str, Any]]:
    """Counts over ``window`` from the per-node counters: exact across scrape gaps, exporter and Prometheus
    restarts and missed evaluations (the counters keep counting meanwhile; ``increase()`` spans the gap). The
    transient class is counted apart where a burn alert's short window needs it (start-up)."""
    rules = [
        _record(n.drop_errors(window), f"increase({n.DROP_SLO_ERRORS_TOTAL}[{window}])"),
        _record(n.drop_traffic(window), f"increase({n.DROP_SLO_TRAFFIC_TOTAL}[{window}])"),
    ]
    if transient:
        rules.append(_record(n.drop_transient(window), f"increase({n.DROP_SLO_TRANSIENT_TOTAL}[{window}])"))
    return [*rules, _ratio(window)]


_KINDS = (("errors", n.drop_errors, n.DROP_SLO_ERRORS_TOTAL), ("traffic", n.drop_traffic, n.DROP_SLO_TRAFFIC_TOTAL))
# How far back a chain looks for its previous snapshot: a node silent longer starts again from zero.
CHAIN_LOOKBACK = {"base": "1d", "review": "2d"}


def _delta(current: str, snapshot: str, lookback: str) -> str:
    """Packets counted since the node's last ``snapshot`` (a counter value): the difference, or the value
    itself after a reset (a decrease)."""
    last = f"last_over_time({snapshot}[{lookback}])"
    return f"({current} - {last}) >= 0\nor\n{current} < {last}"


def _chain_rules(q: PromQL, v: Values, step: str, lookback: str) -> list[dict[str, Any]]:
    """The chain of counts at ``step``: each sample counts the packets since the previous snapshot, so the
    samples telescope and a sum over any range is exact, whatever the gaps, restarts, missed or doubled
    evaluations and the evaluation interval (Prometheus, Thanos Ruler, Mimir, promtool). A node seen for
    the first time (or silent longer than ``lookback``) starts at zero. Counts first, then snapshots: the
    count of an evaluation reads the snapshots of the one before."""
    rules = []
    for kind, count_name, total in _KINDS:
        count = n.tile(count_name(step), step)
        current = _current(q, v, kind)
        snapshot = n.tile(total, step)
        born = f"{current}\nand {q.on()}\n({_young(q, v)})"
        rules.append(_record(count, f"{_delta(current, snapshot, lookback)}\nor\n{born}\nor\n0 * {current}"))
        rules.append(_record(snapshot, current))
    return rules


def _current(q: PromQL, v: Values, kind: str) -> str:
    """The node counter read from the raw series (a chain group does not depend on the main group's timing)."""
    traffic = _traffic(q)
    if kind == "traffic":
        return f"(\n{traffic}\n)"
    return f"(\n{_node_counter(q, c.DATAPATH_DROPPED, q.errors())}\nor\n0 * (\n{traffic}\n)\n)"


def _chain_window_rules(q: PromQL, v: Values, window: str, step: str, lookback: str) -> list[dict[str, Any]]:
    """Counts over ``window`` from the chain at ``step``: its samples in the window (the range left-open on
    every Prometheus release) plus what was counted since the last snapshot."""
    rng = f"{int(duration_seconds(window) * 1000) - 1}ms"
    rules = []
    for kind, count_name, total in _KINDS:
        name = count_name(window)
        chain = f"sum_over_time({n.tile(count_name(step), step)}[{rng}])"
        pending = _delta(_current(q, v, kind), n.tile(total, step), lookback)
        rules.append(_record(name, f"{chain}\n+ on ({q.by()})\n(\n{pending}\n)\nor\n{chain}"))
    return [*rules, _ratio(window)]


def _memory_sli_rules(base: str) -> list[dict[str, Any]]:
    return [_record(n.memory_ratio(base), f"avg_over_time({n.MEMORY_ENVELOPE_ERROR}[{base}])")]


def _memory_window(source: str, window: str) -> dict[str, Any]:
    return _record(n.memory_ratio(window), f"avg_over_time({source}[{window}])")


# 5m rates recorded as tiles too: the denial-surge baselines read a day of them.
TILED_RATES: tuple[str, ...] = (n.POLICY_DENIED, n.L7_DENIED)


def recording_groups(v: Values) -> list[dict[str, Any]]:
    """The recording-rule groups, in evaluation order."""
    q = PromQL(v)
    base, step, period = v.raw("sloRateWindow"), v.raw("sloReviewStep"), v.raw("sloPeriod")
    windows = slo.windows(v.config)
    raw = [w for w in windows if slo.from_raw(v.config, w)]
    chained = [w for w in windows if not slo.from_raw(v.config, w)]
    memory_short = [w for w in windows if w != base and duration_seconds(w) < 24 * duration_seconds(base)]
    memory_long = [w for w in windows if w != base and w not in memory_short]

    main = _hubble_rules(q) + _datapath_rules(q) + _memory_rules(q) + _blind_rules(q, v) + _counter_rules(q, v)
    shorts = {pair.short for pair in slo.burn_windows(v.config, slo.DROP)}
    for window in raw:
        main += _raw_window_rules(window, window in shorts)
    main += _memory_sli_rules(base)
    main += [_memory_window(n.memory_ratio(base), w) for w in memory_short]
    main += [_record(n.SLO_OBJECTIVE, f"vector({v[s.objective_key]})", {"slo": s.name}) for s in slo.SLOS]
    main += lifecycle_records(q)  # the footprint and the version canary (alerts/memory_lifecycle.py)

    memory_tile = n.tile(n.memory_ratio(base), base)
    tile_rules = _chain_rules(q, v, base, CHAIN_LOOKBACK["base"])
    tile_rules += [_tile(q, memory_tile, n.memory_ratio(base), base)]
    tile_rules += [_tile(q, n.tile(rate, base), rate, base) for rate in TILED_RATES]
    long_rules = [r for w in chained for r in _chain_window_rules(q, v, w, base, CHAIN_LOOKBACK["base"])]
    long_rules += [_memory_window(memory_tile, w) for w in memory_long]

    memory_review = n.tile(n.memory_ratio(step), step)
    review_rules = _chain_rules(q, v, step, CHAIN_LOOKBACK["review"])
    review_rules += [_tile(q, memory_review, f"avg_over_time({memory_tile}[{step}])", step)]

    cl = q.cluster
    period_rules = _chain_window_rules(q, v, period, step, CHAIN_LOOKBACK["review"])
    err, traffic = n.drop_errors(period), n.drop_traffic(period)
    period_rules += [
        _record(n.memory_ratio(period), f"avg_over_time({memory_review}[{period}])"),
        # fleet-pooled: all packets of the cluster's nodes; all node-time of the cluster's nodes
        _record(n.cluster(n.drop_ratio(period)), f"sum by ({cl}) ({err})\n/\n(sum by ({cl}) ({traffic}) > 0)"),
        _record(n.cluster(n.memory_ratio(period)),
                f"sum by ({cl}) (sum_over_time({memory_review}[{period}]))\n/\n"
                f"sum by ({cl}) (count_over_time({memory_review}[{period}]))"),
    ]
    return [
        {"name": MAIN_GROUP, "rules": main},
        {"name": TILES_GROUP, "interval": base, "rules": tile_rules},
        {"name": LONG_GROUP, "interval": v["sloLongWindowsInterval"], "rules": long_rules},
        {"name": REVIEW_GROUP, "interval": step, "rules": review_rules},
        {"name": PERIOD_GROUP, "interval": v["sloPeriodInterval"], "rules": period_rules},
    ]
