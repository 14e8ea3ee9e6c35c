"""The monitoring mixin's single source of truth: configuration, recorded-series names and SLO definitions.

The rule pack (``alerts/``), the dashboards (``dashboards/``) and ``cilium-node-exporter report`` all read it;
standard library only, so the installed exporter package carries it without yaml or Grafana libraries.

    from cilium_node_exporter.mixin import config, names, slo
    cfg = config.merge(overrides)                       # DEFAULTS + checked overrides (config.ConfigError)
    names.drop_ratio(cfg["sloPeriod"])                  # node:cilium_node_drop_slo_errors:ratio_rate28d
    names.tile(names.drop_errors(cfg["sloReviewStep"]), cfg["sloReviewStep"])   # hourly tiles
    slo.burn_windows(cfg, slo.DROP)                     # pairs with their factors (13.44, 5.6, 2.8, 0.93)
    slo.objective(cfg, slo.DROP); slo.drop_class("FIB_LOOKUP_FAILED", cfg)
"""

from cilium_node_exporter.mixin import config, names, slo
from cilium_node_exporter.mixin.config import ACCELERATED, DEFAULTS, ConfigError, Values, merge

__all__ = ["ACCELERATED", "DEFAULTS", "ConfigError", "Values", "config", "merge", "names", "slo"]
