"""The SLO definitions the report applies: the rule generator's configuration, as the rules and dashboards.

A ``--rules-config`` file is the generator's ``--config`` file (keys of its DEFAULTS, flat or under
``prometheusRule.config``, as in the chart's values). Objectives come from that file when it sets them,
else from the objectives the running rule pack records (``cilium_node_slo:objective:ratio``), else from
the generator's defaults; the report says which.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .period import PeriodError, duration_seconds
from .series import RULES_DEFAULTS, SLO_DROP, SLO_MEMORY


class SettingsError(ValueError):
    """A rules configuration the report cannot use."""


@dataclass
class RulesConfig:
    """The generator keys the report reads, and where each came from."""

    values: dict[str, Any]
    origin: dict[str, str] = field(default_factory=dict)  # key -> "defaults" | "file <path>" | "recorded"


def load(path: str | None) -> RulesConfig:
    """Defaults merged with ``path`` (keys the report does not use are accepted and ignored)."""
    values = copy.deepcopy(RULES_DEFAULTS)
    origin = dict.fromkeys(values, "defaults")
    if not path:
        return RulesConfig(values, origin)
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise SettingsError(f"--rules-config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"--rules-config {path}: not YAML: {exc}") from None
    if isinstance(raw, dict) and isinstance(raw.get("prometheusRule"), dict):
        raw = raw["prometheusRule"].get("config") or {}
    if not isinstance(raw, dict):
        raise SettingsError(f"--rules-config {path}: expected a mapping of generator keys")
    for key, default in RULES_DEFAULTS.items():
        if key not in raw:
            continue
        value = raw[key]
        if isinstance(default, str) and not isinstance(value, str):
            raise SettingsError(f"--rules-config {path}: {key}: expected a string, got {value!r}")
        if isinstance(default, int | float) and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise SettingsError(f"--rules-config {path}: {key}: expected a number, got {value!r}")
        values[key] = value
        origin[key] = f"file {path}"
    for key in ("dropSloObjective", "memorySloObjective"):
        if not 0 < float(values[key]) < 1:
            raise SettingsError(f"--rules-config {path}: {key} must be between 0 and 1, got {values[key]}")
    for key in ("sloPeriod", "sloReviewStep"):
        try:
            duration_seconds(values[key])
        except PeriodError as exc:
            raise SettingsError(f"--rules-config {path}: {key}: {exc}") from None
    return RulesConfig(values, origin)


def apply_recorded(config: RulesConfig, recorded: dict[str, float]) -> None:
    """Objectives recorded by the running rule pack, for keys no file set."""
    for key, slo in (("dropSloObjective", SLO_DROP), ("memorySloObjective", SLO_MEMORY)):
        if slo in recorded and config.origin.get(key) == "defaults" and 0 < recorded[slo] < 1:
            config.values[key] = recorded[slo]
            config.origin[key] = f"recorded {slo}"
