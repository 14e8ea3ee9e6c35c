"""The report's data model: what the renderers show and ``--format json`` writes (docs/report.schema.json).

Numbers are plain floats or ints; ``None`` means "not measured" (never zero). Times are Unix seconds in
the model and ISO 8601 strings in JSON. Series over the period are hourly (``Period.hour_ends``) or daily.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA = "https://cilium-node-exporter.io/report/v1"


@dataclass
class NodeSlo:
    """One node's figures for one SLO."""

    cluster: str
    node: str
    achieved: float | None
    budget_spent: float | None
    good: float  # events, or hours
    bad: float
    measured_hours: float
    eligible: bool  # enough traffic and lifetime to be ranked


@dataclass
class Rolling:
    """The same SLO over the pack's rolling window ending with the period (what the dashboards show)."""

    window: str  # sloPeriod, e.g. 28d
    start: float
    end: float
    achieved: float | None
    budget_spent: float | None
    why: str  # why it differs from the calendar figure


@dataclass
class Slo:
    """One SLO over the period, fleet-pooled (all measured node-hours of the cluster together)."""

    key: str  # drop-ratio, drop-ratio-hubble, memory-envelope, envoy-memory
    title: str
    what: str  # what an error is
    kind: str  # "events" or "time"
    approximation: bool
    objective: float
    achieved: float | None
    budget_spent: float | None
    budget_left: float | None
    good: float
    bad: float
    unit: str  # "packets", "flows", "hours"
    measured_hours: float
    not_measured_hours: float
    nodes: int
    eligible_nodes: int
    ranking_rule: str
    burndown: list[float | None]  # budget left at the end of each day (fleet-pooled)
    worst_burndown: list[float | None]  # 1 - the share of the fleet's budget the worst ranked node spent, per day
    worst: list[NodeSlo] = field(default_factory=list)
    per_node: list[NodeSlo] = field(default_factory=list)
    rolling: Rolling | None = None


@dataclass
class NodeMemory:
    cluster: str
    node: str
    component: str  # agent or envoy
    max_bytes: float | None
    envelope_upper: float | None
    hours_above: float
    first_above: float | None
    oom_kills: int
    restarts: int
    growth_bytes_per_day: float | None
    days_to_envelope: float | None


@dataclass
class Memory:
    component: str
    present: bool
    envelope_lower: float | None
    envelope_upper: float | None
    quantiles: dict[str, list[float | None]]  # p0/p50/p90/p100 of the hourly max working set, per hour
    envelope_band: dict[str, list[float | None]]  # lower/upper per hour (median over nodes)
    histogram: dict[str, list[float]]  # edges (bytes) and counts (node-hours)
    nodes_above: list[NodeMemory]
    oom_kills: int
    restarts: int
    top_growth: list[NodeMemory]
    median_growth_bytes_per_day: float | None
    per_node: list[NodeMemory] = field(default_factory=list)


@dataclass
class Reason:
    reason: str
    klass: str
    source: str  # datapath or hubble
    count: float
    nodes: int


@dataclass
class Drops:
    by_class_daily: dict[str, dict[str, list[float]]]  # source -> class -> per day
    class_totals: dict[str, dict[str, float]]  # source -> class -> total
    top_reasons: list[Reason]
    policy_denied_daily: list[float]
    l7_denied_daily: list[float]
    policy_denied: float
    l7_denied: float


@dataclass
class BlindNode:
    cluster: str
    node: str
    not_measured_hours: float
    reasons: dict[str, float]  # reason -> hours


@dataclass
class Hubble:
    lost_by_source: dict[str, float]
    lost_daily: list[float]
    flows_seen: float
    lost_ratio: float | None
    blind_nodes: list[BlindNode]
    not_measured_daily: list[float]  # node-hours of the drop SLI not measured, per day


@dataclass
class AlertSummary:
    alertname: str
    severity: str
    kind: str  # page, ticket, info
    episodes: int
    firing_hours: float
    median_minutes: float
    longest_minutes: float
    nodes: int


@dataclass
class Alerts:
    pages: int
    tickets: int
    by_alert: list[AlertSummary]
    daily: dict[str, list[int]]  # page/ticket/info -> episodes starting that day


@dataclass
class Cohort:
    version: str
    nodes: int
    node_hours: float
    first_seen: float
    last_seen: float
    drop_achieved: float | None  # packet-exact over the cohort's node-hours
    drop_budget_spent: float | None
    memory_achieved: float | None
    median_working_set: float | None
    p90_working_set: float | None
    oom_kills: int
    restarts: int
    exposure: float = 0.0  # share of the cluster's node-hours that ran this version (0..1)


@dataclass
class Versions:
    cohorts: list[Cohort]
    daily_nodes: dict[str, list[int]]  # version -> nodes on it at the end of each day
    upgrades: list[dict[str, Any]]  # {node, from, to, at}


@dataclass
class Coverage:
    first_data: float | None
    last_data: float | None
    retention: str
    oldest_sample: float | None
    nodes: int
    nodes_with_gaps: list[dict[str, Any]]  # {node, hours_missing}
    days_without_data: list[str]
    daily_nodes_reporting: list[int]
    source_down_hours: dict[str, float]
    notes: list[str]  # every coverage problem, one sentence each (shown on the first page)


@dataclass
class Incident:
    """A run of hours that burned an SLO's budget fast (:mod:`incidents`)."""

    slo: str  # the SLO key
    start: float  # hour boundaries
    end: float
    nodes: list[str]  # the nodes that made most of its errors
    cause: str  # the largest unexpected drop reason and its class, or the memory cause
    alerts: list[str]  # "alertname (severity)" of the alerts that started in it
    errors: float  # packets, or hours
    budget_cost: float  # share of the period's budget it spent
    link: str  # the dashboard at its time range ("" without --grafana-url)


@dataclass
class Group:
    """The fleet-pooled SLOs of the nodes that share a value of the --group-by label."""

    label: str
    value: str  # "(none)" for nodes without it
    nodes: int
    slos: dict[str, dict[str, float | None]]  # SLO key -> achieved, budget_spent


@dataclass
class Verdict:
    """Whether the data can carry a verdict: "complete", or "partial" (no SLO card can then read met)."""

    status: str  # complete or partial (verdict.VERDICTS)
    coverage: float  # share of the period's node-hours with data (0..1)
    min_coverage: float  # the threshold (--min-coverage)
    reasons: list[str]  # why coverage is short, one phrase each


@dataclass
class Cluster:
    name: str
    nodes: int
    slos: list[Slo]
    memory: list[Memory]
    drops: Drops
    hubble: Hubble
    alerts: Alerts
    versions: Versions
    coverage: Coverage
    verdict: Verdict
    incidents: list[Incident] = field(default_factory=list)
    previous: Previous | None = None  # the same figures for the period before (None: no data then)
    groups: list[Group] = field(default_factory=list)  # split by --group-by (empty without it)


@dataclass
class Previous:
    """The headline figures of the period before, for the comparison."""

    label: str
    start: float
    end: float
    slos: dict[str, dict[str, float | None]]  # SLO key -> achieved, budget_spent
    pages: int
    tickets: int
    worst: list[str]  # the worst ranked nodes of the packet-exact drop SLO
    verdict: str  # complete or partial


@dataclass
class SeriesUsed:
    key: str
    what: str
    used: str
    recorded: str
    expr: str


@dataclass
class Report:
    schema: str
    generated_at: float
    prometheus: dict[str, str]
    period: dict[str, Any]
    config: dict[str, Any]
    days: list[str]  # the dates of the daily series
    clusters: list[Cluster]
    series: list[SeriesUsed]
    notes: list[str]
    query_stats: dict[str, Any]
    verdict: Verdict

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
