"""Every series name and PromQL expression the report uses, in one place.

The rule pack (``alerts/recording.py``) records per-node 5m rates and SLI inputs; the report prefers those
recorded series and falls back to the raw exporter series (``contract.py``) when the pack is not loaded,
saying which it fell back from. Recorded series carry only the cluster and node labels (no ``job``), so
the configured selector applies to raw series only.

Hourly figures use ranges of one hour minus one millisecond: Prometheus 2.x range selectors include both
ends, so ``[1h]`` windows evaluated one hour apart would share the sample on their boundary. With
``[3599999ms]`` every sample belongs to exactly one hourly window (also in Prometheus 3, whose ranges are
left-open). ``avg_over_time(<rate>[hour]) * 3600`` is the number of events in the hour, whatever the rule
evaluation interval. The drop SLI is read in packets, not rates: the pack's hourly count chain
(``node:cilium_node_drop_slo_errors:increase1h_every1h`` and ``..._traffic:...``; each sample counts the
packets since the previous sample), summed per hour; a sum over any range telescopes to an exact count.

The names, the generator defaults and the drop-reason classes come from the monitoring mixin
(``cilium_node_exporter.mixin``), the configuration the rule pack is generated from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cilium_node_exporter import contract as c
from cilium_node_exporter.mixin import names as n
from cilium_node_exporter.mixin import slo
from cilium_node_exporter.mixin.config import DEFAULTS

# --- recorded series of the rule pack (cilium_node_exporter.mixin.names) -------------------------------
FLOWS_SEEN = n.FLOWS_SEEN
DROPS_BY_REASON = n.DROPS_BY_REASON
DROPS_UNEXPECTED = n.DROPS_UNEXPECTED
POLICY_DENIED = n.POLICY_DENIED
L7_DENIED = n.L7_DENIED
LOST_BY_SOURCE = n.LOST_BY_SOURCE
DATAPATH_DROPS_BY_REASON = n.DATAPATH_DROPS_BY_REASON
WORKING_SET = n.WORKING_SET
ENVELOPE_UPPER = n.ENVELOPE_UPPER
ENVELOPE_LOWER = n.ENVELOPE_LOWER
MEMORY_LIMIT = n.MEMORY_LIMIT
MEMORY_ENVELOPE_ERROR = n.MEMORY_ENVELOPE_ERROR
SLO_OBJECTIVE = n.SLO_OBJECTIVE
SLO_DROP = n.SLO_DROP
SLO_MEMORY = n.SLO_MEMORY
REVIEW_STEP = DEFAULTS["sloReviewStep"]


def drop_counts(step: str = REVIEW_STEP) -> tuple[str, str]:
    """The pack's exact per-node packet counts of the drop SLI, recorded once every ``step`` (errors, traffic):
    each sample counts the packets since the previous one, so a sum over any range is exact."""
    return n.tile(n.drop_errors(step), step), n.tile(n.drop_traffic(step), step)


DROP_ERRORS_COUNT, DROP_TRAFFIC_COUNT = drop_counts()

RECORDED: tuple[str, ...] = (
    FLOWS_SEEN, DROPS_BY_REASON, DROPS_UNEXPECTED, POLICY_DENIED, L7_DENIED, LOST_BY_SOURCE,
    DATAPATH_DROPS_BY_REASON, WORKING_SET, ENVELOPE_UPPER, ENVELOPE_LOWER, MEMORY_LIMIT,
    MEMORY_ENVELOPE_ERROR, SLO_OBJECTIVE, DROP_ERRORS_COUNT, DROP_TRAFFIC_COUNT,
)

# --- the generator configuration keys the report reads (the mixin's DEFAULTS) -------------------------
RULES_DEFAULTS: dict[str, Any] = {key: DEFAULTS[key] for key in (
    "selector", "nodeLabel", "clusterLabel", "dropSloObjective", "dropSloMinTrafficRate", "memorySloObjective",
    "memoryNearLimitRatio", "hubbleLostEventsRatio", "sloPeriod", "sloReviewStep")}

HOUR = "3599999ms"
OOM_REASON = "OOMKilled"
ALERT_NAMES = 'alertname=~"Cilium.*"'
KUBELET = 'source="kubelet"'
EVENT_DROP = 'event="drop"'
OOM = f'reason="{OOM_REASON}"'
DROPPED = 'action="dropped"'
NOT_L7 = 'match!~"l7/.*"'
FIRING = 'alertstate="firing"'
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def drop_class(reason: str) -> str:
    """The mixin's class of a drop reason (policy, expected, handled, configured, transient, unexpected)."""
    return slo.drop_class(reason)


def unexpected_matcher() -> str:
    """Matcher for the reasons counted as unexpected drops (SLO errors), as in the rule pack."""
    return f'reason!~"{slo.not_error_regex()}"'


@dataclass(frozen=True)
class Query:
    """One PromQL query of the report: what it is for, the expression, and whether it reads the pack."""

    key: str
    what: str
    expr: str
    recorded: str = ""  # the recorded series it reads ("" = raw series only)
    fallback: Query | None = None  # the same figure from raw series, when the recorded one is missing


class Series:
    """The report's queries for one rules configuration and an optional cluster."""

    def __init__(self, config: dict[str, Any], cluster: str | None = None) -> None:
        for key in ("nodeLabel", "clusterLabel"):
            if not _LABEL.match(str(config[key])):
                raise ValueError(f"{key} {config[key]!r} is not a Prometheus label name")
        self.node = config["nodeLabel"]
        self.cluster = config["clusterLabel"]
        self.selector = config["selector"]
        self.cluster_value = cluster
        self.config = config

    # --- selectors ------------------------------------------------------------------------------
    def _cluster_matcher(self) -> list[str]:
        if self.cluster_value is None:
            return []
        value = self.cluster_value.replace("\\", "\\\\").replace('"', '\\"')
        return [f'{self.cluster}="{value}"']

    def raw(self, metric: c.Metric | str, *matchers: str) -> str:
        """A raw exporter series under the configured selector (and cluster)."""
        name = metric.name if isinstance(metric, c.Metric) else metric
        parts = [m for m in (self.selector, *self._cluster_matcher(), *matchers) if m]
        return f"{name}{{{', '.join(parts)}}}"

    def rec(self, name: str, *matchers: str) -> str:
        """A recorded series (no job label) under the cluster matcher."""
        parts = [*self._cluster_matcher(), *matchers]
        return f"{name}{{{', '.join(parts)}}}" if parts else name

    def by(self, *extra: str) -> str:
        return ", ".join((self.cluster, self.node, *extra))

    # --- per node, per hour ----------------------------------------------------------------------
    def _count(self, key: str, what: str, recorded: str, raw_counter: str, *matchers: str) -> Query:
        """Events in each hour: recorded 5m rate averaged over the hour x 3600, else raw increase."""
        return Query(key, what, f"sum by ({self.by()}) (avg_over_time({self.rec(recorded, *matchers)}[{HOUR}])) * 3600",
                     recorded, Query(key, what, raw_counter) if raw_counter else None)

    def _tile_count(self, key: str, what: str, recorded: str, raw_counter: str) -> Query:
        """Packets in each hour from the pack's count chain: the samples inside the hour summed (each sample
        counts the packets since the one before it), else the raw counters' increase."""
        return Query(key, what, f"sum by ({self.by()}) (sum_over_time({self.rec(recorded)}[{HOUR}]))", recorded,
                     Query(key, what, raw_counter))

    def node_hourly(self) -> list[Query]:
        """Per (cluster, node) queries evaluated at every hour of the period."""
        by = self.by()
        inc = lambda m, *ms: f"sum by ({by}) (increase({self.raw(m, *ms)}[1h]))"  # noqa: E731
        unexpected = unexpected_matcher()
        dp_traffic = f"({inc(c.DATAPATH_FORWARDED)} + {inc(c.DATAPATH_DROPPED)}) or {inc(c.DATAPATH_FORWARDED)}"
        errors_count, traffic_count = drop_counts(str(self.config.get("sloReviewStep", REVIEW_STEP)))
        ws_raw = f"max by ({by}) ({self.raw(c.AGENT_WORKING_SET)})"
        upper_raw = f"max by ({by}) ({self.raw(c.ENVELOPE_UPPER)})"
        kubelet_up = f"max by ({by}) ({self.raw(c.SOURCE_UP, KUBELET)})"
        mem_err_raw = f"(({ws_raw} > bool {upper_raw}) or ({kubelet_up} == 1 unless {ws_raw}))"
        # fallback only (no recorded envelope error): a subquery at 5m, evaluated 12 times an hour
        return [
            Query("present", "samples of the exporter's build_info (exporter scraped)",
                  f"count by ({by}) (count_over_time({self.raw(c.BUILD_INFO)}[{HOUR}]))"),
            self._tile_count("dp_traffic", "datapath packets (agent counters)", traffic_count, dp_traffic),
            self._tile_count("dp_errors", "unexpected datapath drops (agent counters)", errors_count,
                             f"{inc(c.DATAPATH_DROPPED, unexpected)} or 0 * ({dp_traffic})"),
            self._count("hb_traffic", "flows seen by Hubble", FLOWS_SEEN, inc(c.FLOWS_SEEN)),
            self._count("hb_errors", "unexpected drops seen by Hubble", DROPS_UNEXPECTED,
                        f"{inc(c.DROPS, unexpected)} or 0 * {inc(c.FLOWS_SEEN)}"),
            self._count("hb_lost", "events Hubble lost", LOST_BY_SOURCE, inc(c.LOST_EVENTS)),
            Query("drop_events_on", "drop notifications enabled (min over the hour; absent = unknown)",
                  f"min by ({by}) (min_over_time({self.raw(c.AGENT_NOTIFICATIONS_ENABLED, EVENT_DROP)}"
                  f"[{HOUR}]))"),
            Query("drop_monitored", "Hubble observes drop events (min over the hour; absent = unknown)",
                  f"min by ({by}) (min_over_time({self.raw(c.HUBBLE_MONITOR_EVENTS, EVENT_DROP)}[{HOUR}]))"),
            Query("ratelimited", "notifications the BPF rate limiter discarded",
                  inc(c.DATAPATH_RATELIMIT_DROPPED)),
            Query("mem_bad", "share of the hour with the agent above its envelope",
                  f"max by ({by}) (avg_over_time({self.rec(MEMORY_ENVELOPE_ERROR)}[{HOUR}]))", MEMORY_ENVELOPE_ERROR,
                  Query("mem_bad", "", f"max by ({by}) (avg_over_time({mem_err_raw}[{HOUR}:5m]))")),
            Query("mem_samples", "samples of the envelope error in the hour (measured time)",
                  f"max by ({by}) (count_over_time({self.rec(MEMORY_ENVELOPE_ERROR)}[{HOUR}]))", MEMORY_ENVELOPE_ERROR,
                  Query("mem_samples", "", f"max by ({by}) (count_over_time({mem_err_raw}[{HOUR}:5m]))")),
            Query("ws_max", "agent working set, maximum in the hour",
                  f"max by ({by}) (max_over_time({self.rec(WORKING_SET)}[{HOUR}]))", WORKING_SET,
                  Query("ws_max", "", f"max by ({by}) (max_over_time({self.raw(c.AGENT_WORKING_SET)}[{HOUR}]))")),
            Query("ws_avg", "agent working set, mean in the hour",
                  f"max by ({by}) (avg_over_time({self.rec(WORKING_SET)}[{HOUR}]))", WORKING_SET,
                  Query("ws_avg", "", f"max by ({by}) (avg_over_time({self.raw(c.AGENT_WORKING_SET)}[{HOUR}]))")),
            Query("env_upper", "memory envelope upper bound",
                  f"max by ({by}) (max_over_time({self.rec(ENVELOPE_UPPER)}[{HOUR}]))", ENVELOPE_UPPER,
                  Query("env_upper", "", f"max by ({by}) (max_over_time({self.raw(c.ENVELOPE_UPPER)}[{HOUR}]))")),
            Query("env_lower", "memory envelope lower bound",
                  f"max by ({by}) (max_over_time({self.rec(ENVELOPE_LOWER)}[{HOUR}]))", ENVELOPE_LOWER,
                  Query("env_lower", "", f"max by ({by}) (max_over_time({self.raw(c.ENVELOPE_LOWER)}[{HOUR}]))")),
            Query("mem_limit", "agent container memory limit",
                  f"max by ({by}) (max_over_time({self.rec(MEMORY_LIMIT)}[{HOUR}]))", MEMORY_LIMIT,
                  Query("mem_limit", "", f"max by ({by}) (max_over_time({self.raw(c.AGENT_LIMIT)}[{HOUR}]))")),
            Query("started", "when the agent container started (at the end of the hour)",
                  f"max by ({by}) (last_over_time({self.raw(c.AGENT_START_TIME)}[{HOUR}]))"),
            Query("envoy_started", "when the cilium-envoy container started",
                  f"max by ({by}) (last_over_time({self.raw(c.ENVOY_START_TIME)}[{HOUR}]))"),
            Query("restarts", "agent restart count at the end of the hour",
                  f"max by ({by}) (last_over_time({self.raw(c.AGENT_RESTARTS)}[{HOUR}]))"),
            Query("restarts_min", "agent restart count, lowest in the hour (restarts inside a first hour)",
                  f"max by ({by}) (min_over_time({self.raw(c.AGENT_RESTARTS)}[{HOUR}]))"),
            Query("terminated_at", "when the agent last terminated, at the end of the hour",
                  f"max by ({by}) (last_over_time({self.raw(c.AGENT_LAST_TERMINATED_TIMESTAMP)}[{HOUR}]))"),
            Query("oom_reason", "the agent's last termination was an OOM kill (at the end of the hour)",
                  f"max by ({by}) (last_over_time({self.raw(c.AGENT_LAST_TERMINATED_REASON, OOM)}[{HOUR}]))"),
            Query("envoy_ws_max", "cilium-envoy working set, maximum in the hour",
                  f"max by ({by}) (max_over_time({self.raw(c.ENVOY_WORKING_SET)}[{HOUR}]))"),
            Query("envoy_limit", "cilium-envoy memory limit",
                  f"max by ({by}) (max_over_time({self.raw(c.ENVOY_LIMIT)}[{HOUR}]))"),
            Query("envoy_peak", "cilium-envoy's highest working set in the hour over its limit",
                  f"max by ({by}) (max_over_time({self.raw(c.ENVOY_WORKING_SET)}[{HOUR}])) / max by ({by}) "
                  f"(max_over_time({self.raw(c.ENVOY_LIMIT)}[{HOUR}]))"),
            Query("envoy_restarts", "cilium-envoy restart count at the end of the hour",
                  f"max by ({by}) (last_over_time({self.raw(c.ENVOY_RESTARTS)}[{HOUR}]))"),
            Query("envoy_restarts_min", "cilium-envoy restart count, lowest in the hour",
                  f"max by ({by}) (min_over_time({self.raw(c.ENVOY_RESTARTS)}[{HOUR}]))"),
            Query("envoy_terminated_at", "when cilium-envoy last terminated",
                  f"max by ({by}) (last_over_time({self.raw(c.ENVOY_LAST_TERMINATED_TIMESTAMP)}[{HOUR}]))"),
            Query("envoy_oom_reason", "cilium-envoy's last termination was an OOM kill",
                  f"max by ({by}) (last_over_time({self.raw(c.ENVOY_LAST_TERMINATED_REASON, OOM)}[{HOUR}]))"),
        ]

    def envoy_above(self, nodes: list[str]) -> Query:
        """Share of each hour with cilium-envoy above ``memoryNearLimitRatio`` of its limit, for ``nodes`` only
        (a subquery evaluated every minute: run only where the hourly peak crossed the ratio)."""
        by = self.by()
        regex = "|".join(re.escape(n) for n in nodes).replace("\\", "\\\\").replace('"', '\\"')
        node = f'{self.node}=~"{regex}"'
        bad = (f"(max by ({by}) ({self.raw(c.ENVOY_WORKING_SET, node)}) / max by ({by}) "
               f"({self.raw(c.ENVOY_LIMIT, node)}) > bool {self.config['memoryNearLimitRatio']})")
        return Query("envoy_bad", "share of the hour with cilium-envoy near its limit",
                     f"max by ({by}) (avg_over_time({bad}[{HOUR}:1m]))")

    def node_labelled_hourly(self) -> list[Query]:
        """Per (cluster, node, <label>) queries evaluated at every hour."""
        by = self.by()
        return [
            Query("source_up", "share of the hour each exporter source was up",
                  f"min by ({by}, source) (avg_over_time({self.raw(c.SOURCE_UP)}[{HOUR}]))"),
            # last_over_time: the period's last hour ends in the future while it is in progress (the demo's
            # one-hour report), where a plain selector finds nothing
            Query("version", "Cilium version in the hour (the node's settings source)",
                  f"max by ({by}, version) (last_over_time({self.raw(c.CILIUM_INFO)}[{HOUR}]))", "",
                  Query("version", "", f"max by ({by}, version) (last_over_time({self.raw(c.HUBBLE_INFO)}"
                                       f"[{HOUR}]))")),
        ]

    # --- per cluster, per hour ---------------------------------------------------------------------
    def cluster_hourly(self) -> list[Query]:
        """Per cluster (and reason or source) queries evaluated at every hour."""
        cl = self.cluster
        avg = lambda name, *extra: (f"sum by ({cl}{''.join(', ' + e for e in extra)}) "  # noqa: E731
                                    f"(avg_over_time({self.rec(name)}[{HOUR}])) * 3600")
        inc = lambda m, *extra: (f"sum by ({cl}{''.join(', ' + e for e in extra)}) "  # noqa: E731
                                 f"(increase({self.raw(m)}[1h]))")
        policy_raw = (f"sum by ({cl}) (increase({self.raw(c.POLICY_VERDICTS, DROPPED, NOT_L7)}"
                      f"[1h]))")
        l7_raw = f"sum by ({cl}) (increase({self.raw(c.L7_REQUESTS, DROPPED)}[1h]))"
        return [
            Query("hb_reasons", "drops seen by Hubble, by reason", avg(DROPS_BY_REASON, "reason"), DROPS_BY_REASON,
                  Query("hb_reasons", "", inc(c.DROPS, "reason"))),
            Query("dp_reasons", "datapath drops (agent counters), by reason", avg(DATAPATH_DROPS_BY_REASON, "reason"),
                  DATAPATH_DROPS_BY_REASON, Query("dp_reasons", "", inc(c.DATAPATH_DROPPED, "reason"))),
            Query("policy_denied", "policy denials (L3/L4)", avg(POLICY_DENIED), POLICY_DENIED,
                  Query("policy_denied", "", policy_raw)),
            Query("l7_denied", "L7 denials", avg(L7_DENIED), L7_DENIED, Query("l7_denied", "", l7_raw)),
            Query("lost_by_source", "Hubble lost events, by source", avg(LOST_BY_SOURCE, "source"), LOST_BY_SOURCE,
                  Query("lost_by_source", "", inc(c.LOST_EVENTS, "source"))),
        ]

    # --- instant queries at the end of the period ----------------------------------------------------
    def reason_nodes(self, period: str) -> list[Query]:
        """Per (cluster, reason): how many nodes dropped packets for that reason in the period."""
        cl, by = self.cluster, self.by("reason")
        return [
            Query("hb_reason_nodes", "nodes with Hubble drops per reason",
                  f"count by ({cl}, reason) (sum by ({by}) (max_over_time({self.rec(DROPS_BY_REASON)}[{period}])) > 0)",
                  DROPS_BY_REASON,
                  Query("hb_reason_nodes", "", f"count by ({cl}, reason) (sum by ({by}) "
                                               f"(increase({self.raw(c.DROPS)}[{period}])) > 0)")),
            Query("dp_reason_nodes", "nodes with datapath drops per reason",
                  f"count by ({cl}, reason) (sum by ({by}) "
                  f"(max_over_time({self.rec(DATAPATH_DROPS_BY_REASON)}[{period}])) > 0)", DATAPATH_DROPS_BY_REASON,
                  Query("dp_reason_nodes", "", f"count by ({cl}, reason) (sum by ({by}) "
                                               f"(increase({self.raw(c.DATAPATH_DROPPED)}[{period}])) > 0)")),
        ]

    def rolling(self) -> list[Query]:
        """The fleet-pooled SLIs over the pack's rolling ``sloPeriod`` ending at the period's end (instant
        queries): the window the pack's SLO rules and the dashboards show, beside the calendar figure."""
        from .period import duration_seconds

        window = f"{duration_seconds(str(self.config['sloPeriod'])) * 1000 - 1}ms"
        errors_count, traffic_count = drop_counts(str(self.config.get("sloReviewStep", REVIEW_STEP)))
        cl = self.cluster
        return [
            Query("rolling_drop_errors", f"unexpected datapath drops over the rolling {self.config['sloPeriod']}",
                  f"sum by ({cl}) (sum_over_time({self.rec(errors_count)}[{window}]))", errors_count),
            Query("rolling_drop_traffic", f"datapath packets over the rolling {self.config['sloPeriod']}",
                  f"sum by ({cl}) (sum_over_time({self.rec(traffic_count)}[{window}]))", traffic_count),
            Query("rolling_memory_bad", f"envelope-error samples over the rolling {self.config['sloPeriod']}",
                  f"sum by ({cl}) (sum_over_time({self.rec(MEMORY_ENVELOPE_ERROR)}[{window}]))",
                  MEMORY_ENVELOPE_ERROR),
            Query("rolling_memory_samples", f"envelope samples over the rolling {self.config['sloPeriod']}",
                  f"sum by ({cl}) (count_over_time({self.rec(MEMORY_ENVELOPE_ERROR)}[{window}]))",
                  MEMORY_ENVELOPE_ERROR),
        ]

    def groups(self, label: str, period: str) -> Query:
        """Each node's value of ``label`` in the period (instant): a label of the exporter's targets (a
        relabelled zone or node pool), else kube-state-metrics' ``kube_node_labels{label_<label>}``."""
        if not _LABEL.match(label):
            raise ValueError(f"--group-by {label!r} is not a Prometheus label name")
        has_label = label + '!=""'
        own = f"max by ({self.by(label)}) (last_over_time({self.raw(c.BUILD_INFO, has_label)}[{period}]))"
        ksm_sel = ", ".join([*self._cluster_matcher(), f'label_{label}!=""'])
        ksm = f"max by ({self.cluster}, node, label_{label}) (last_over_time(kube_node_labels{{{ksm_sel}}}[{period}]))"
        return Query("groups", f"each node's {label}", own, "", Query("groups", "", ksm))

    def objectives(self) -> Query:
        """The objectives the running rule pack records."""
        return Query("objectives", "SLO objectives recorded by the rule pack",
                     f"max by (slo) (last_over_time({SLO_OBJECTIVE}[1d]))", SLO_OBJECTIVE)

    def any_data(self, period: str) -> Query:
        """Exporter series anywhere in the period (count per cluster)."""
        return Query("any_data", "exporter data in the period",
                     f"count by ({self.cluster}) (count_over_time({self.raw(c.BUILD_INFO)}[{period}]))")

    def oldest_sample(self) -> Query:
        """The oldest sample this Prometheus holds (its retention), when it monitors itself."""
        return Query("oldest", "oldest sample in the TSDB", "min(prometheus_tsdb_lowest_timestamp_seconds)")

    def alerts_firing(self, window: str) -> str:
        """Raw ALERTS samples (firing) of the pack's alerts over ``window`` (a range-vector instant query)."""
        return f"ALERTS{{{', '.join([ALERT_NAMES, FIRING, *self._cluster_matcher()])}}}[{window}]"

    def alerts_for_state(self, window: str) -> str:
        """Raw ALERTS_FOR_STATE samples (value = when the alert became active) over ``window``."""
        return f"ALERTS_FOR_STATE{{{', '.join([ALERT_NAMES, *self._cluster_matcher()])}}}[{window}]"
