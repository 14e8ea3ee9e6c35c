"""Configuration of the rule pack: defaults, the accelerated preset, and value formatting.

The generator never does arithmetic on a configurable value: every value appears verbatim in the
rules (PromQL does the arithmetic), so the same builders render plain rule files and the Helm template
(where each value becomes ``{{ .Values.prometheusRule.config.<key> }}``).
"""

from __future__ import annotations

import copy
import re
from decimal import Decimal
from typing import Any

# Every key is a Helm value except the STRUCTURAL ones: they change the number of rules, their names
# and the burn factors, so they are fixed at render time (render plain files with --config to change them).
STRUCTURAL_KEYS: tuple[str, ...] = ("sloPeriod", "sloBurnWindows")

DEFAULTS: dict[str, Any] = {
    # --- selection, labels, links ---------------------------------------------------------------
    "selector": 'job="cilium-node-exporter"',
    "nodeLabel": "node",
    "clusterLabel": "cluster",
    "kubeStateMetricsSelector": 'job="kube-state-metrics"',
    "exporterDaemonSetSelector": 'daemonset="cilium-node-exporter"',
    "runbookUrlPattern":
        "https://github.com/cilium-node-exporter/cilium-node-exporter/blob/main/docs/runbooks.md#%s",
    # --- agent memory and lifecycle ---------------------------------------------------------------
    "memoryAboveEnvelopeFor": "15m",
    "memoryNearLimitRatio": 0.9,
    "memoryNearLimitFor": "5m",
    "memoryForecastWindow": "6h",
    "memoryForecastHorizonSeconds": 86400,
    "memoryForecastWarmupSeconds": 21600,
    "memoryGrowthForecastFor": "1h",
    "memoryBelowEnvelopeMinUptimeSeconds": 1800,
    "memoryBelowEnvelopeFor": "1h",
    "oomKilledWindowSeconds": 900,
    "oomKilledFor": "0s",
    "restartsThreshold": 3,
    "restartsWindow": "1h",
    "restartingFrequentlyFor": "0s",
    # --- datapath ---------------------------------------------------------------------------------
    "unexpectedDropsRate": 1,
    "unexpectedDropsRatio": 0.01,
    "unexpectedDropsFor": "10m",
    "conntrackFullDropRate": 0,
    "conntrackFullFor": "5m",
    "denialBaselineWindow": "1d",
    "denialBaselineMinAge": "1h",
    "policyDenialSurgeFactor": 4,
    "policyDenialSurgeFloor": 1,
    "policyDenialSurgeFor": "10m",
    "l7DenialSurgeFactor": 4,
    "l7DenialSurgeFloor": 1,
    "l7DenialSurgeFor": "10m",
    # --- telemetry --------------------------------------------------------------------------------
    "hubbleLostEventsRatio": 0.01,
    "hubbleEventsLostFor": "10m",
    "exporterDownFor": "5m",
    "sourceDownFor": "10m",
    "bpfMapPressureRatio": 0.9,
    "bpfMapPressureFor": "10m",
    "exporterMissingFor": "15m",
    # --- SLOs -------------------------------------------------------------------------------------
    "dropSloObjective": 0.999,
    "dropSloMinTrafficRate": 1,
    "memorySloObjective": 0.99,
    "sloPeriodInterval": "5m",
    "sloPeriod": "28d",
    # Google SRE workbook windows; factor = budget share x period / long window. The drop-ratio SLO
    # uses every entry, the memory-envelope SLO only the warning ones (it opens tickets, never pages).
    "sloBurnWindows": [
        {"severity": "critical", "long": "1h", "short": "5m", "budgetShare": 0.02, "for": "2m"},
        {"severity": "critical", "long": "6h", "short": "30m", "budgetShare": 0.05, "for": "15m"},
        {"severity": "warning", "long": "1d", "short": "2h", "budgetShare": 0.1, "for": "1h"},
        {"severity": "warning", "long": "3d", "short": "6h", "budgetShare": 0.1, "for": "3h"},
    ],
}

HELM_KEYS: tuple[str, ...] = tuple(k for k in DEFAULTS if k not in STRUCTURAL_KEYS)

# For end-to-end tests: the same expressions with every `for:` at most 10s and windows scaled down
# 30x (period 28d -> 1344m, so burn factors stay 13.44/5.6/2.8/0.93). Scrape and evaluate every 1s.
ACCELERATED: dict[str, Any] = {
    **{k: "10s" for k in DEFAULTS if k.endswith("For") and DEFAULTS[k] != "0s"},
    # the warm-up equals the trend window (as 6h/6h in DEFAULTS): once it is over, the window holds no
    # sample from before a restart, so a leak fixed by a restart does not raise the forecast again
    "memoryForecastWindow": "1m",
    "memoryForecastHorizonSeconds": 600,
    "memoryForecastWarmupSeconds": 60,
    "memoryBelowEnvelopeMinUptimeSeconds": 30,
    "oomKilledWindowSeconds": 120,
    "restartsWindow": "2m",
    "denialBaselineWindow": "10m",
    "denialBaselineMinAge": "1m",
    "sloPeriodInterval": "10s",
    "sloPeriod": "1344m",
    "sloBurnWindows": [
        {"severity": "critical", "long": "2m", "short": "10s", "budgetShare": 0.02, "for": "10s"},
        {"severity": "critical", "long": "12m", "short": "1m", "budgetShare": 0.05, "for": "10s"},
        {"severity": "warning", "long": "48m", "short": "4m", "budgetShare": 0.1, "for": "10s"},
        {"severity": "warning", "long": "144m", "short": "12m", "budgetShare": 0.1, "for": "10s"},
    ],
}

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_UNIT_SECONDS = (86400, 3600, 60, 1)


class ConfigError(ValueError):
    """A configuration value the generator cannot use."""


def duration_seconds(text: str) -> int:
    """Seconds in a Prometheus duration made of d/h/m/s parts ("1h30m")."""
    match = _DURATION.match(text)
    if not text or not match:
        raise ConfigError(f"invalid duration {text!r} (use e.g. 5m, 1h30m, 28d)")
    return sum(int(part or 0) * unit for part, unit in zip(match.groups(), _UNIT_SECONDS, strict=True))


def go_number(value: int | float) -> str:
    """Format a number exactly as Helm's Go templates print a values.yaml number (float64, %v)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"not a number: {value!r}")
    number = Decimal(repr(float(value))).normalize()
    sign, digits, exponent = number.as_tuple()
    if number.is_zero():
        return "0"
    text_digits = "".join(map(str, digits))
    sci_exp = len(digits) + int(exponent) - 1
    prefix = "-" if sign else ""
    if sci_exp < -4 or sci_exp >= 6:  # Go's shortest %g switches to an exponent from 1e+06 on
        mantissa = text_digits[0] + ("." + text_digits[1:] if len(text_digits) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if sci_exp < 0 else '+'}{abs(sci_exp):02d}"
    return format(number, "f")


def merge(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """DEFAULTS with ``overrides`` applied; unknown keys and wrongly typed values are errors."""
    config = copy.deepcopy(DEFAULTS)
    for key, value in (overrides or {}).items():
        if key not in DEFAULTS:
            raise ConfigError(f"unknown configuration key {key!r}")
        default = DEFAULTS[key]
        if isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        if isinstance(default, int | float) and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        config[key] = copy.deepcopy(value)
    for key, value in config.items():
        if key.endswith("For") or key.endswith("Window") or key in ("sloPeriod", "sloPeriodInterval",
                                                                     "denialBaselineMinAge"):
            duration_seconds(value)
    for key in ("selector", "nodeLabel", "clusterLabel", "runbookUrlPattern"):
        if not config[key]:
            raise ConfigError(f"{key} must not be empty")
    if config["runbookUrlPattern"].count("%s") != 1:
        raise ConfigError("runbookUrlPattern must contain %s exactly once (the lower-case alert name)")
    for window in config["sloBurnWindows"]:
        if set(window) != {"severity", "long", "short", "budgetShare", "for"}:
            raise ConfigError(f"sloBurnWindows entry needs severity, long, short, budgetShare, for: {window}")
        for part in ("long", "short", "for"):
            duration_seconds(window[part])
    return config


def burn_factor(period: str, window: dict[str, Any]) -> float:
    """Burn-rate factor of a window pair: budget share x period / long window, rounded to 2 decimals."""
    return round(window["budgetShare"] * duration_seconds(period) / duration_seconds(window["long"]), 2)


class Values:
    """Read access to a configuration for the rule builders.

    In Helm mode every non-structural value comes back as a token that the renderer later replaces
    with a Helm expression; tokens are plain ASCII words, safe in any YAML scalar style.
    """

    def __init__(self, config: dict[str, Any], helm: bool = False) -> None:
        self.config = config
        self.helm = helm

    def __getitem__(self, key: str) -> str:
        value = self.config[key]
        if key in STRUCTURAL_KEYS:
            raise KeyError(f"{key} is structural: use .raw()")
        if self.helm:
            return helm_token(key)
        return go_number(value) if isinstance(value, int | float) else value

    def raw(self, key: str) -> Any:
        """A structural value (never templated)."""
        if key not in STRUCTURAL_KEYS:
            raise KeyError(f"{key} is a Helm value: use [key]")
        return self.config[key]

    def runbook_url(self, alert: str) -> str:
        """The runbook URL of ``alert`` (anchor = lower-case alert name)."""
        if self.helm:
            return f"HELMRUNBOOK_{alert.lower()}_END"
        return self.config["runbookUrlPattern"].replace("%s", alert.lower())


def helm_token(key: str) -> str:
    """Placeholder for a Helm value in the rendered text."""
    return f"HELMVALUE_{key}_END"
