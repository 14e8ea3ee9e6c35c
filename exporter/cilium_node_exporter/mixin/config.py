"""One configuration for the rule pack, the dashboards and the SLO report (mixin ``_config`` style).

``DEFAULTS`` holds every setting; ``merge()`` applies a user's overrides and checks them; presets such as
``ACCELERATED`` are override dictionaries. The generators never do arithmetic on a configurable value that
the Helm chart can change: such values appear verbatim in the rules (PromQL does the arithmetic), so the
same builders render plain rule files and the Helm template (``Values`` hands out Helm tokens).

Standard library only: ``cilium-node-exporter report`` imports this module from the installed package.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from cilium_node_exporter import contract

# Structural keys change the number of rules, their names, group intervals or the burn factors: they are
# fixed when the rules are rendered (plain files with --config), never Helm values.
STRUCTURAL_KEYS: tuple[str, ...] = ("sloPeriod", "sloRateWindow", "sloReviewStep", "sloBurnWindows", "dropClasses",
                                    "dropSloStartupFor", "sloBirthWindow")

# Drop-reason classes (DropReason enum names). Everything not listed is "unexpected", REASON_<n> (a code
# this exporter does not know) included; "transient" reasons are listed for the docs but count as
# unexpected: the rates and `for:` windows ignore a start-up blip, not a sustained one. Why each reason
# sits where it does: slo.DROP_REASON_WHY (rendered into docs/metrics.md).
DEFAULT_DROP_CLASSES: dict[str, list[str]] = {
    "policy": ["POLICY_DENIED", "POLICY_DENY", "AUTH_REQUIRED", "DENIED_BY_LB_SRC_RANGE_CHECK"],
    # Cilium's connectivity test expects these on a healthy cluster (cilium-cli defaults/defaults.go
    # ExpectedDropReasons), apart from the policy and start-up reasons it also lists.
    "expected": ["UNSUPPORTED_L2_PROTOCOL", "UNSUPPORTED_L3_PROTOCOL", "STALE_OR_UNROUTABLE_IP",
                 "SERVICE_BACKEND_NOT_FOUND", "UNSUPPORTED_PROTOCOL_FOR_NAT_MASQUERADE", "INVALID_SOURCE_IP",
                 "UNKNOWN_L3_TARGET_ADDRESS", "UNKNOWN_ICMPV4_CODE", "UNKNOWN_ICMPV6_CODE",
                 "FORBIDDEN_ICMPV6_MESSAGE", "NO_EGRESS_GATEWAY"],
    "handled": ["IGMP_HANDLED", "IGMP_SUBSCRIBED", "MULTICAST_HANDLED", "NAT_NOT_NEEDED", "DROP_PUNT_PROXY"],
    "configured": ["UNENCRYPTED_TRAFFIC", "DROP_RATE_LIMITED", "VLAN_FILTERED"],
    "transient": ["DROP_EP_NOT_READY", "DROP_HOST_NOT_READY"],
}
DROP_CLASS_NAMES: tuple[str, ...] = tuple(DEFAULT_DROP_CLASSES)
# Classes whose drops are not SLO errors.
NOT_ERROR_CLASSES: tuple[str, ...] = ("policy", "expected", "handled", "configured")

DEFAULTS: dict[str, Any] = {
    # --- selection, labels, links ---------------------------------------------------------------
    "selector": 'job="cilium-node-exporter"',
    "nodeLabel": "node",
    "clusterLabel": "cluster",
    "kubeStateMetricsSelector": 'job="kube-state-metrics"',
    "exporterDaemonSetSelector": 'daemonset="cilium-node-exporter"',
    "prometheusSelector": 'job=~".*prometheus.*"',
    "runbookUrlPattern":
        "https://github.com/cilium-node-exporter/cilium-node-exporter/blob/main/docs/runbooks.md#%s",
    # --- fleet: a cluster alert fires once this share AND this number of its nodes have the problem --
    "fleetNodeShare": 0.1,
    "fleetMinNodes": 3,
    # --- cilium-agent memory and lifecycle --------------------------------------------------------
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
    "oomKillLoopThreshold": 2,
    "oomKillLoopWindow": "1h",
    "oomKillLoopFor": "1m",
    "restartsThreshold": 3,
    "restartsWindow": "1h",
    "restartingFrequentlyFor": "0s",
    # cluster pages: agents crash-looping (this many restarts each in restartsWindow: a rolling reboot restarts
    # each agent once) or about to hit their memory limit (the ratio now, or the trend within the horizon)
    "clusterCrashLoopRestarts": 2,
    "clusterCrashLoopFor": "0s",
    "memoryLimitForecastWindow": "1h",
    "memoryLimitForecastHorizonSeconds": 3600,
    # --- cilium-envoy (its own DaemonSet from Cilium 1.16) -------------------------------------------
    "envoyMemoryNearLimitRatio": 0.9,
    "envoyMemoryNearLimitFor": "5m",
    # --- datapath ---------------------------------------------------------------------------------
    "unexpectedDropsRate": 1,
    "unexpectedDropsRatio": 0.01,
    "unexpectedDropsFor": "10m",
    # Hubble-only nodes (no agent counters) page per cluster on their loss-corrected unexpected drop events/s:
    # seen / (1 - lost share), the correction capped at this factor (90 % loss)
    "hubbleLossCorrectionMax": 10,
    "conntrackFullDropRate": 1,
    "conntrackFullDropRatio": 0.001,
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
    "exporterRolloutStuckFor": "15m",
    "exportersAbsentFor": "15m",
    "blindFor": "3m",
    "blindUnseenDropsRate": 0.1,
    "retentionTooShortFor": "1h",
    # --- SLOs -------------------------------------------------------------------------------------
    "dropSloObjective": 0.999,
    "dropSloMinTrafficRate": 1,
    "dropSloMinErrors": 100,
    "memorySloObjective": 0.99,
    # a node whose SLI has had no sample for this long while its exporter was scraped all along (the alert's window;
    # it has no for:)
    "sloUnmeasuredFor": "30m",
    "sloLongWindowsInterval": "2m",
    "sloPeriodInterval": "5m",
    # --- structural (render time) -------------------------------------------------------------------
    "sloPeriod": "28d",
    # The SLIs' base window: the memory SLI's tiles and the drop SLI's chain of counts over days (windows
    # past 6h) are recorded at this step; the shortest burn window.
    "sloRateWindow": "5m",
    # Step of the coarse chain and tiles the period SLI, the SLO Review and the report read over weeks.
    "sloReviewStep": "1h",
    # Start-up: for this long after a node's counters appear or reset (a new node, an agent restart), plus the
    # short window, the burn alerts' short window leaves out the transient class (DROP_EP_NOT_READY ...): a
    # node's start-up drops do not page, a sustained not-ready does, and the SLI still counts every drop.
    "dropSloStartupFor": "5m",
    # A node's birth: when a node's counters first appear and its cilium-agent container started at most this
    # long ago, the SLI counts their first values too (the packets since the agent started); counters first
    # seen on an older agent (the exporter installed on a running cluster) start counting from there.
    "sloBirthWindow": "15m",
    # Google SRE workbook windows; factor = budget share x period / long window. The drop-ratio SLO
    # pages on the critical pairs; the memory-envelope SLO uses the warning pairs only (tickets).
    "sloBurnWindows": [
        {"severity": "critical", "long": "1h", "short": "5m", "budgetShare": 0.02, "for": "1m"},
        {"severity": "critical", "long": "6h", "short": "30m", "budgetShare": 0.05, "for": "15m"},
        {"severity": "warning", "long": "1d", "short": "2h", "budgetShare": 0.1, "for": "1h"},
        {"severity": "warning", "long": "3d", "short": "6h", "budgetShare": 0.1, "for": "3h"},
    ],
    "dropClasses": DEFAULT_DROP_CLASSES,
    # --- shaping the alerts (kube-prometheus-stack style): applied around the generated alerts by
    # alerts/tuning.py (plain files) and the chart's templates (Helm values), never inside them ----------
    # Every alert carries scopeLabel=scopeValue; the shipped Alertmanager routes and inhibitions match on it.
    # The chart's default value is "" = the namespace of its AlertmanagerConfig (the release namespace), as
    # prometheus-operator's OnNamespace matcher strategy requires.
    "scopeLabel": "namespace",
    "scopeValue": "cilium-node-exporter",
    "disabled": {},  # alert name -> true: the alert is not rendered, inhibitions naming only it are dropped
    "additionalRuleLabels": {},  # added to every alert
    "additionalRuleAnnotations": {},  # added to every alert
    "keepFiringFor": "",  # keep_firing_for of every alert ("" = none; Prometheus >= 2.42)
    # alert name -> {severity, for, keepFiringFor, labels, annotations}
    "customRules": {},
}

# --- issue 25 phase 2 (mixin/lifecycle.py, alerts/memory_lifecycle.py): restarts vs leaks, the version canary ---
DEFAULTS.update({
    # the growth forecast reads the footprint (working set + BPF memory not charged to the running container):
    # over this recent window it must still grow at this share of its rate over memoryForecastWindow (a warm-up
    # levels off, a leak does not), and faster than the cluster's churn explains (bytes per new ipcache entry:
    # twice the 10.5 KiB per pod of Cilium's scalability report)
    "memoryForecastRecentWindow": "1h",
    "memoryForecastRecentShare": 0.5,
    "memoryChurnBytesPerEntry": 21504,
    # CiliumClusterVersionCanary: while two Cilium versions run in a cluster, each cohort with at least
    # canaryMinNodes nodes (for memory, drops and denials: nodes whose agent started canarySettleSeconds ago),
    # the newest cohort is worse than the best by a factor AND a floor
    "canaryMinNodes": 3,
    "canarySettleSeconds": 1800,
    "canaryMemoryRatio": 1.25,
    "canaryMemoryMinBytes": 67108864,
    "canaryDropFactor": 2,
    "canaryDropRatio": 0.001,
    "canaryDenialFactor": 2,
    "canaryDenialFloor": 0.1,
    "canaryRestartsWindow": "1h",
    "canaryRestartsPerNode": 0.5,
    "canaryFor": "30m",
})

HELM_KEYS: tuple[str, ...] = tuple(k for k in DEFAULTS if k not in STRUCTURAL_KEYS)
TUNING_KEYS: tuple[str, ...] = ("scopeLabel", "scopeValue", "disabled", "additionalRuleLabels",
                                "additionalRuleAnnotations", "keepFiringFor", "customRules")
# The chart's defaults where they differ from DEFAULTS (values.yaml, `python -m alerts.generate --helm-values`).
HELM_DEFAULTS: dict[str, Any] = {"scopeValue": ""}
CUSTOM_RULE_KEYS: tuple[str, ...] = ("severity", "for", "keepFiringFor", "labels", "annotations")
SEVERITIES: tuple[str, ...] = ("critical", "warning", "info")

# End-to-end tests and the demo: the same expressions with every `for:` at most 10s and windows scaled
# down 30x (period 28d -> 1344m, so burn factors stay 13.44/5.6/2.8/0.93). Scrape and evaluate every 1s.
ACCELERATED: dict[str, Any] = {
    **{k: "10s" for k in DEFAULTS if k.endswith("For") and DEFAULTS[k] != "0s" and k not in TUNING_KEYS},
    # the warm-up equals the trend window (as 6h/6h in DEFAULTS): once it is over, the window holds no
    # sample from before a restart, so a leak fixed by a restart does not raise the forecast again
    "memoryForecastWindow": "1m",
    "memoryForecastHorizonSeconds": 600,
    "memoryForecastWarmupSeconds": 60,
    "memoryBelowEnvelopeMinUptimeSeconds": 30,
    "oomKilledWindowSeconds": 120,
    "oomKillLoopWindow": "2m",
    "restartsWindow": "2m",
    "denialBaselineWindow": "10m",
    "denialBaselineMinAge": "1m",
    "sloLongWindowsInterval": "4s",
    "sloPeriodInterval": "10s",
    "sloPeriod": "1344m",
    "sloRateWindow": "10s",
    "sloReviewStep": "2m",
    "dropSloStartupFor": "10s",
    "sloBirthWindow": "30s",
    "memoryLimitForecastWindow": "1m",
    "memoryLimitForecastHorizonSeconds": 120,
    "sloUnmeasuredFor": "1m",  # a window (the alert has no for:): 30m / 30, as the SLO windows
    "sloBurnWindows": [
        {"severity": "critical", "long": "2m", "short": "10s", "budgetShare": 0.02, "for": "10s"},
        {"severity": "critical", "long": "12m", "short": "1m", "budgetShare": 0.05, "for": "10s"},
        {"severity": "warning", "long": "48m", "short": "4m", "budgetShare": 0.1, "for": "10s"},
        {"severity": "warning", "long": "144m", "short": "12m", "budgetShare": 0.1, "for": "10s"},
    ],
}
ACCELERATED.update({"memoryForecastRecentWindow": "20s", "canarySettleSeconds": 60, "canaryRestartsWindow": "2m"})
PRESETS: dict[str, dict[str, Any]] = {"default": {}, "accelerated": ACCELERATED}

# Prometheus duration grammar (promql/parser/lex.go, model.ParseDuration): integer parts in the order
# y w d h m s ms. Stricter than the exporter's flag durations (units.parse_duration): no fractions, with days.
_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_UNIT_SECONDS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)
_DURATION_KEYS = ("Window", "For", "Interval", "MinAge")


class ConfigError(ValueError):
    """A configuration value the generators cannot use."""


def duration_seconds(text: str) -> float:
    """Seconds in a Prometheus duration ("1h30m", "28d", "500ms"); ConfigError otherwise."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not text or not match:
        raise ConfigError(f"invalid duration {text!r} (use e.g. 5m, 1h30m, 28d)")
    seconds = sum(int(part or 0) * unit for part, unit in zip(match.groups(), _UNIT_SECONDS, strict=True))
    return int(seconds) if float(seconds).is_integer() else seconds


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


def _check_type(key: str, value: Any) -> None:
    default = DEFAULTS[key]
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if isinstance(default, int | float) and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if isinstance(default, list | dict) and not isinstance(value, type(default)):
        raise ConfigError(f"{key}: expected a {type(default).__name__}, got {value!r}")


def _check_windows(config: dict[str, Any]) -> None:
    base = duration_seconds(config["sloRateWindow"])
    step = duration_seconds(config["sloReviewStep"])
    period = duration_seconds(config["sloPeriod"])
    if step % base or step <= base:
        raise ConfigError(f"sloReviewStep ({config['sloReviewStep']}) must be a multiple of sloRateWindow "
                          f"({config['sloRateWindow']}) and longer")
    duration_seconds(config["dropSloStartupFor"])
    duration_seconds(config["sloBirthWindow"])
    if period % step:
        raise ConfigError(f"sloPeriod ({config['sloPeriod']}) must be a multiple of sloReviewStep")
    if not config["sloBurnWindows"]:
        raise ConfigError("sloBurnWindows must not be empty")
    for window in config["sloBurnWindows"]:
        if not isinstance(window, dict) or set(window) != {"severity", "long", "short", "budgetShare", "for"}:
            raise ConfigError(f"sloBurnWindows entry needs severity, long, short, budgetShare, for: {window}")
        if window["severity"] not in ("critical", "warning"):
            raise ConfigError(f"sloBurnWindows severity must be critical or warning: {window}")
        long, short = duration_seconds(window["long"]), duration_seconds(window["short"])
        duration_seconds(window["for"])
        if long % base or short % base or short >= long:
            raise ConfigError(f"sloBurnWindows: windows must be multiples of sloRateWindow "
                              f"({config['sloRateWindow']}) and short < long: {window}")


def _check_drop_classes(classes: dict[str, Any]) -> None:
    if set(classes) != set(DROP_CLASS_NAMES):
        raise ConfigError(f"dropClasses needs exactly the classes {', '.join(DROP_CLASS_NAMES)}")
    known = set(contract.DROP_REASON_STRING_BY_NAME)
    seen: dict[str, str] = {}
    for name, reasons in classes.items():
        if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
            raise ConfigError(f"dropClasses.{name}: expected a list of DropReason names")
        for reason in reasons:
            if reason not in known and not re.fullmatch(r"REASON_\d+", reason):
                raise ConfigError(f"dropClasses.{name}: {reason!r} is not a DropReason name")
            if reason in seen:
                raise ConfigError(f"dropClasses: {reason} is in both {seen[reason]} and {name}")
            seen[reason] = name


def merge(overrides: Mapping[str, Any] | None = None, preset: str = "default") -> dict[str, Any]:
    """DEFAULTS, then ``preset``, then ``overrides``; unknown keys and wrongly typed values are errors."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r} (one of {', '.join(PRESETS)})")
    config = copy.deepcopy(DEFAULTS)
    for key, value in {**PRESETS[preset], **(overrides or {})}.items():
        if key not in DEFAULTS:
            raise ConfigError(f"unknown configuration key {key!r}")
        _check_type(key, value)
        config[key] = copy.deepcopy(value)
    for key, value in config.items():
        if (key.endswith(_DURATION_KEYS) or key in ("sloPeriod", "sloReviewStep")) and key not in TUNING_KEYS:
            duration_seconds(value)
    for key in ("selector", "nodeLabel", "clusterLabel", "runbookUrlPattern"):
        if not config[key]:
            raise ConfigError(f"{key} must not be empty")
    if config["runbookUrlPattern"].count("%s") != 1:
        raise ConfigError("runbookUrlPattern must contain %s exactly once (the lower-case alert name)")
    if not 0 < config["fleetNodeShare"] <= 1:
        raise ConfigError("fleetNodeShare must be in (0, 1]")
    _check_windows(config)
    _check_drop_classes(config["dropClasses"])
    _check_tuning(config)
    return config


_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Characters a label value in the pack's Alertmanager matchers (name="value") cannot hold unescaped.
_UNQUOTABLE = re.compile(r'["\\\n]')


def _check_strings(key: str, mapping: Any, labels: bool, reserved: tuple[str, ...]) -> None:
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise ConfigError(f"{key}: expected a mapping of strings, got {mapping!r}")
    for name in mapping:
        if labels and (not _LABEL_NAME.match(name) or name.startswith("__")):
            raise ConfigError(f"{key}: {name!r} is not a Prometheus label name")
        if name in reserved:
            raise ConfigError(f"{key}: {name!r} is set by the pack (use customRules.<Alert>.severity for severity, "
                              "scopeLabel and scopeValue for the scope)")


def _check_duration(key: str, value: Any) -> None:
    try:
        duration_seconds(value)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _check_tuning(config: dict[str, Any]) -> None:
    """The alert-shaping keys; which alert names exist is checked where the alerts are (alerts/tuning.py)."""
    scope = config["scopeLabel"]
    if not _LABEL_NAME.match(scope) or scope.startswith("__") or scope in ("alertname", "severity"):
        raise ConfigError(f"scopeLabel: {scope!r} is not a label name the pack can set")
    if not config["scopeValue"] or _UNQUOTABLE.search(config["scopeValue"]):
        raise ConfigError("scopeValue must be a non-empty label value without quotes, backslashes or newlines "
                          "(the chart's empty default means its release namespace; plain files need the value)")
    reserved = ("alertname", "severity", scope)
    if config["keepFiringFor"]:
        _check_duration("keepFiringFor", config["keepFiringFor"])
    disabled = config["disabled"]
    if not all(isinstance(k, str) and isinstance(v, bool) for k, v in disabled.items()):
        raise ConfigError(f"disabled: expected alert name -> true/false, got {disabled!r}")
    _check_strings("additionalRuleLabels", config["additionalRuleLabels"], True, reserved)
    _check_strings("additionalRuleAnnotations", config["additionalRuleAnnotations"], False, ())
    for name, custom in config["customRules"].items():
        where = f"customRules.{name}"
        if not isinstance(custom, dict) or not set(custom) <= set(CUSTOM_RULE_KEYS):
            raise ConfigError(f"{where}: expected a mapping of {', '.join(CUSTOM_RULE_KEYS)}, got {custom!r}")
        if "severity" in custom and custom["severity"] not in SEVERITIES:
            raise ConfigError(f"{where}.severity: one of {', '.join(SEVERITIES)}, got {custom['severity']!r}")
        for key in ("for", "keepFiringFor"):
            if key in custom:
                _check_duration(f"{where}.{key}", custom[key])
        _check_strings(f"{where}.labels", custom.get("labels", {}), True, reserved)
        _check_strings(f"{where}.annotations", custom.get("annotations", {}), False, ())


class Values:
    """Read access to a merged configuration for the builders of rules and dashboards.

    ``values[key]`` is the value as text (numbers formatted as Helm prints them). In Helm mode every
    non-structural value comes back as a token that the renderer replaces with a Helm expression; tokens
    are plain ASCII words, safe in any YAML scalar style. Structural values come from ``raw()``.
    """

    def __init__(self, config: dict[str, Any], helm: bool = False) -> None:
        self.config = config
        self.helm = helm

    def __getitem__(self, key: str) -> str:
        if key in STRUCTURAL_KEYS:
            raise KeyError(f"{key} is structural: use .raw()")
        value = self.config[key]
        if self.helm:
            return helm_token(key)
        return go_number(value) if isinstance(value, int | float) else value

    def raw(self, key: str) -> Any:
        """A structural value (never templated)."""
        if key not in STRUCTURAL_KEYS:
            raise KeyError(f"{key} is a Helm value: use [key]")
        return self.config[key]

    def label(self, key: str) -> str:
        """A label name (clusterLabel, nodeLabel) as it appears in PromQL and templates."""
        return self[key]

    def runbook_url(self, alert: str) -> str:
        """The runbook URL of ``alert`` (anchor = lower-case alert name)."""
        if self.helm:
            return f"HELMRUNBOOK_{alert.lower()}_END"
        return self.config["runbookUrlPattern"].replace("%s", alert.lower())


def helm_token(key: str) -> str:
    """Placeholder for a Helm value in the rendered text."""
    return f"HELMVALUE_{key}_END"


def overrides_from(data: Any, origin: str = "configuration") -> dict[str, Any]:
    """Overrides from a parsed configuration file: DEFAULTS keys, flat or under ``prometheusRule.config``
    (the chart's values layout)."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping of configuration keys")
    if set(data) == {"prometheusRule"}:
        data = (data["prometheusRule"] or {}).get("config") or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{origin}: prometheusRule.config must be a mapping")
    return dict(data)
