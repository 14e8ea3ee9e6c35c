"""Small PromQL helpers bound to a configuration (selector, node and cluster label names)."""

from __future__ import annotations

from cilium_node_exporter.contract import Metric, expected_reasons_regex

from .config import Values


class PromQL:
    """Builds selectors and aggregations with the configured selector and label names."""

    def __init__(self, values: Values) -> None:
        self.v = values

    def by(self, *extra: str) -> str:
        """The aggregation labels: cluster, node, then ``extra``."""
        return ", ".join((self.v["clusterLabel"], self.v["nodeLabel"], *extra))

    def sel(self, metric: Metric | str, *matchers: str) -> str:
        """``metric{<selector>, matchers...}``."""
        name = metric.name if isinstance(metric, Metric) else metric
        return f"{name}{{{', '.join((self.v['selector'], *matchers))}}}"

    def rate(self, metric: Metric, window: str, *matchers: str, by: tuple[str, ...] = ()) -> str:
        """``sum by (cluster, node, by...) (rate(metric{...}[window]))``."""
        return f"sum by ({self.by(*by)}) (rate({self.sel(metric, *matchers)}[{window}]))"

    def max(self, metric: Metric, *matchers: str, by: tuple[str, ...] = ()) -> str:
        """``max by (cluster, node, by...) (metric{...})`` (duplicates during a rollout collapse)."""
        return f"max by ({self.by(*by)}) ({self.sel(metric, *matchers)})"

    @staticmethod
    def unexpected() -> str:
        """Matcher for drop reasons the contract classes as unexpected (REASON_<n> and transient count)."""
        return f'reason!~"{expected_reasons_regex()}"'

    def label(self, name: str) -> str:
        """Go-template reference to an alert label, e.g. ``$labels.node``."""
        return f"$labels.{self.v[name]}"

    def where(self) -> str:
        """Template fragment naming the node (and the cluster when the label is there)."""
        return (f"node {{{{ {self.label('nodeLabel')} }}}}"
                f"{{{{ with {self.label('clusterLabel')} }}}} in cluster {{{{ . }}}}{{{{ end }}}}")
