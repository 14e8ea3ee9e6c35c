"""PromQL builders bound to a configuration: the one vocabulary of the rule pack and the dashboards.

The rule pack selects raw series with the configured ``selector`` (``job="cilium-node-exporter"``) and reads
its own recorded series unfiltered. The dashboards select raw series with their ``$job`` variable and scope
every series, raw or recorded, to the ``$cluster`` and ``$node`` variables. Label names (cluster, node)
always come from the configuration.
"""

from __future__ import annotations

from cilium_node_exporter import contract as c
from cilium_node_exporter.contract import Metric
from cilium_node_exporter.mixin import lifecycle as lc
from cilium_node_exporter.mixin import names as n
from cilium_node_exporter.mixin import slo
from cilium_node_exporter.mixin.config import Values


class PromQL:
    """Selectors and aggregations with the configured selector and label names.

    ``selector`` replaces the configured raw-series selector and ``scope`` adds matchers to every series
    (raw and recorded): the dashboards pass ``job=~"$job"`` and the cluster and node variables.
    """

    def __init__(self, values: Values, selector: str | None = None, scope: tuple[str, ...] = ()) -> None:
        self.v = values
        self.selector = values["selector"] if selector is None else selector
        self.scope = scope

    @classmethod
    def for_dashboards(cls, values: Values) -> PromQL:
        """Raw series by ``$job``; everything scoped to the ``$cluster`` and ``$node`` variables."""
        return cls(values, 'job=~"$job"', (f'{values["clusterLabel"]}=~"$cluster"', f'{values["nodeLabel"]}=~"$node"'))

    @property
    def cluster(self) -> str:
        """The cluster label name."""
        return self.v["clusterLabel"]

    @property
    def node(self) -> str:
        """The node label name."""
        return self.v["nodeLabel"]

    def by(self, *extra: str) -> str:
        """The per-node aggregation labels: cluster, node, then ``extra``."""
        return ", ".join((self.cluster, self.node, *extra))

    def on(self, *extra: str) -> str:
        """``on (cluster, node, extra...)`` for vector matching."""
        return f"on ({self.by(*extra)})"

    def sel(self, metric: Metric | str, *matchers: str) -> str:
        """A raw series: ``metric{<selector>, <scope>, matchers...}``."""
        name = metric.name if isinstance(metric, Metric) else metric
        parts = [p for p in (self.selector, *self.scope, *matchers) if p]
        return f"{name}{{{', '.join(parts)}}}"

    def rec(self, name: str, *matchers: str) -> str:
        """A recorded series, with the scope and ``matchers`` (bare name when there are none)."""
        parts = [*self.scope, *matchers]
        return f"{name}{{{', '.join(parts)}}}" if parts else name

    def rate(self, metric: Metric, window: str, *matchers: str, by: tuple[str, ...] = ()) -> str:
        """``sum by (cluster, node, by...) (rate(metric{...}[window]))``."""
        return f"sum by ({self.by(*by)}) (rate({self.sel(metric, *matchers)}[{window}]))"

    def max(self, metric: Metric, *matchers: str, by: tuple[str, ...] = ()) -> str:
        """``max by (cluster, node, by...) (metric{...})`` (duplicate pods during a rollout collapse)."""
        return f"max by ({self.by(*by)}) ({self.sel(metric, *matchers)})"

    def errors(self) -> str:
        """Matcher for drop reasons that are SLO errors (all but the policy/expected/handled/configured
        classes of the configuration; REASON_<n> and the transient class included)."""
        return f'reason!~"{slo.not_error_regex(self.v.config)}"'

    def reason(self, *reasons: str) -> str:
        """Matcher for one or more drop reasons."""
        return f'reason="{reasons[0]}"' if len(reasons) == 1 else f'reason=~"{"|".join(reasons)}"'

    def label(self, key: str) -> str:
        """Go-template reference to an alert label named by ``key`` (``$labels.node``)."""
        return f"$labels.{self.v[key]}"

    def where(self) -> str:
        """Alert-description fragment naming the node and, when the label is there, its cluster."""
        return (f"node {{{{ {self.label('nodeLabel')} }}}}"
                f"{{{{ with {self.label('clusterLabel')} }}}} in cluster {{{{ . }}}}{{{{ end }}}}")

    def in_cluster(self) -> str:
        """Alert-description fragment naming the cluster ("the cluster" without a cluster label)."""
        return f"{{{{ with {self.label('clusterLabel')} }}}}cluster {{{{ . }}}}{{{{ else }}}}the cluster{{{{ end }}}}"

    # --- per-node conditions: the alerts and the dashboards' node states use the same expressions ---------
    def exporter_up(self) -> str:
        """1 per node whose exporter target is up, 0 when it is down (duplicate pods collapse)."""
        return f"max by ({self.by()}) ({self.sel('up')})"

    def sources_up(self) -> str:
        """source_up per node and source, without the optional sources reported unavailable."""
        return (f"({self.max(c.SOURCE_UP, by=('source',))}\n"
                f"unless {self.on('source')}\n{self.max(c.SOURCE_UNAVAILABLE, by=('source',))} == 1)")

    def above_envelope(self) -> str:
        """The agent's footprint (value: working set + BPF memory an earlier container is charged for) where it is
        above the envelope's upper bound (mixin/lifecycle.py)."""
        return lc.above_envelope(self)

    def envelope_fill(self) -> str:
        """Working set / envelope upper bound per node (1 = at the bound)."""
        return f"{self.rec(n.WORKING_SET)} / {self.rec(n.ENVELOPE_UPPER)}"

    def unexpected_ratio_packets(self) -> str:
        """Unexpected drops / packets per node over 5m, from the agent's counters."""
        return f"{self.rec(n.DATAPATH_UNEXPECTED)} / ({self.rec(n.DATAPATH_PACKETS)} > 0)"

    def unexpected_drops_packets(self) -> str:
        """Unexpected drops/s (value) where rate and share are above the thresholds (agent counters)."""
        v = self.v
        return (f"{self.rec(n.DATAPATH_UNEXPECTED)} > {v['unexpectedDropsRate']}\n"
                f"and {self.on()}\n{self.unexpected_ratio_packets()} > {v['unexpectedDropsRatio']}")

    def unexpected_drops_hubble(self) -> str:
        """The same from Hubble events over flows seen, on nodes without the agent's counters and not blind."""
        v = self.v
        return (f"{self.rec(n.DROPS_UNEXPECTED)} > {v['unexpectedDropsRate']}\n"
                f"and {self.on()}\n{self.rec(n.DROPS_UNEXPECTED)} / ({self.rec(n.FLOWS_SEEN)} > 0) > "
                f"{v['unexpectedDropsRatio']}\nunless {self.on()}\n{self.rec(n.DATAPATH_PACKETS)}\n"
                f"unless {self.on()}\n{self.rec(n.BLIND)}")

    def unexpected_drops_hubble_corrected(self) -> str:
        """Unexpected Hubble drop events/s corrected for lost events (seen / (1 - lost share), the factor capped
        at hubbleLossCorrectionMax), above unexpectedDropsRate, on nodes without the agent's counters and
        not blind: no per-flow denominator, so lost flows cannot hide a regression."""
        v = self.v
        lost = f"sum by ({self.by()}) ({self.rec(n.LOST_BY_SOURCE)})"
        factor = (f"clamp_max(({self.rec(n.FLOWS_SEEN)} + on ({self.by()}) {lost}) / {self.rec(n.FLOWS_SEEN)}, "
                  f"{v['hubbleLossCorrectionMax']})")
        drops = self.rec(n.DROPS_UNEXPECTED)
        corrected = f"{drops} * on ({self.by()}) ({factor} or {drops} * 0 + 1)"
        return (f"{corrected} > {v['unexpectedDropsRate']}\nunless {self.on()}\n{self.rec(n.DATAPATH_PACKETS)}\n"
                f"unless {self.on()}\n{self.rec(n.BLIND)}")

    def blind(self) -> str:
        """1 per node where Hubble is blind for any cause."""
        return f"group by ({self.by()}) ({self.rec(n.BLIND)})"

    def restarts(self, restarts: Metric, window: str) -> str:
        """Container restarts per node over ``window``."""
        return f"max by ({self.by()}) (increase({self.sel(restarts)}[{window}]))"

    def oom_killed(self, timestamp: Metric, reason: Metric) -> str:
        """Seconds since the last termination, where it was an OOM kill less than oomKilledWindowSeconds ago."""
        return (f"time() - {self.max(timestamp)} < {self.v['oomKilledWindowSeconds']}\n"
                f"and {self.on()}\n{self.max(reason, self.reason('OOMKilled'))} == 1")

    def oom_kill_loop(self, restarts: Metric, reason: Metric) -> str:
        """Restarts in oomKillLoopWindow (at least oomKillLoopThreshold) where an OOM kill was among them."""
        w, oom = self.v["oomKillLoopWindow"], self.reason("OOMKilled")
        return (f"{self.restarts(restarts, w)} >= {self.v['oomKillLoopThreshold']}\n"
                f"and {self.on()}\nmax by ({self.by()}) (max_over_time({self.sel(reason, oom)}[{w}])) == 1")

    def rec_cluster(self, name: str, *matchers: str) -> str:
        """A recorded per-cluster series: only the cluster part of the scope applies."""
        parts = [m for m in self.scope if m.startswith(f"{self.cluster}=")] + list(matchers)
        return f"{name}{{{', '.join(parts)}}}" if parts else name
