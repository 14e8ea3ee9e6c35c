"""Source ``settings``: the node's Cilium settings that decide what the other sources can see.

Read in a background thread every ``--settings-interval`` (default 1m, with jitter; settings change
rarely, so a scrape never triggers a read), from the places ``--settings-from`` names, in order:

- ``agent-api`` (:mod:`.agent_api`): the running agent's REST API on ``--agent-api-socket`` - the
  effective values, no RBAC (the socket is reached like ``hubble.sock``, through its own file mount);
- ``configmap`` (:mod:`.configmap`): Cilium's ConfigMap through the API server - the values the agent
  was started with.

A setting is served only while the place that measured it answers:

- the agent API answers: its values; the ConfigMap adds only what this release's agent API does not show and
  the agent reads at start alone (hubble-monitor-events from 1.17, kube-proxy-replacement from 1.18, the Envoy
  mode), never a runtime option (notifications, monitor aggregation);
- no agent API here (``agent-api`` not configured, the socket file absent, or its GET endpoints disabled by the
  agent's API allow-list: 403): the ConfigMap's values (ConfigMap-only mode: a runtime change made with
  ``cilium-dbg config`` is not seen, and the series say ``origin="configmap"``);
- the agent API fails (refused, an error status, garbage, a timeout): nothing - every setting is unknown
  (absent) until it answers again, whatever the ConfigMap says and whatever was read before.

A reading that fails drops the published settings (nothing stale is served). When nothing answers
where the settings would be (no socket or no listener, and no readable ConfigMap), an optional source
is *unavailable*, a required one down. A failure here never touches another source's state.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from dataclasses import replace
from typing import TypeVar

from cilium_node_exporter.aggregation.settings import CiliumSettings
from cilium_node_exporter.aggregation.state import ExporterState
from cilium_node_exporter.config import Config
from cilium_node_exporter.sources.k8s_http import Endpoint, SourceError
from cilium_node_exporter.sources.settings import agent_api, configmap, map_sizing
from cilium_node_exporter.sources.settings import values as v

log = logging.getLogger(__name__)

NAME = "settings"
REQUEST_TIMEOUT = 5.0
RETRY_MIN = 5.0  # after a failed reading, retry sooner than the interval (doubling up to it)
T = TypeVar("T")


def _first(a: T | None, b: T | None) -> T | None:
    return a if a is not None else b


def fill(primary: CiliumSettings, secondary: CiliumSettings) -> CiliumSettings:
    """``primary`` (the agent API) with the start-up-only settings it does not show taken from ``secondary``
    (the ConfigMap): hubble-monitor-events, kube-proxy-replacement, the Envoy mode, the map sizes set explicitly.
    Runtime options (notifications, monitor aggregation) are never filled: the ConfigMap holds only their
    start-up value."""
    origins = dict(primary.origins)
    events = primary.hubble_monitor_events
    if not events and secondary.hubble_monitor_events:
        events = secondary.hubble_monitor_events
        origins["hubble_monitor_events"] = secondary.origin
    merged = replace(primary, hubble_monitor_events=events, origins=origins,
                     kube_proxy_replacement=_first(primary.kube_proxy_replacement, secondary.kube_proxy_replacement),
                     envoy_mode=_first(primary.envoy_mode, secondary.envoy_mode),
                     map_sizing=map_sizing.fill(primary.map_sizing, secondary.map_sizing))
    return merged if merged == primary else replace(merged, origin=f"{primary.origin}+{secondary.origin}")


def _complete(settings: CiliumSettings) -> bool:
    """Everything the ConfigMap could add is already known."""
    return (settings.kube_proxy_replacement is not None and bool(settings.hubble_monitor_events)
            and settings.envoy_mode is not None)


def _without_agent_api(exc: SourceError, socket_path: str) -> bool:
    """The agent API is not there to be read (ConfigMap-only mode), as opposed to failing: its socket file is
    absent, or the agent's API allow-list disables GetConfig/GetHealthz (403, ``rejected``)."""
    return exc.reason == "rejected" or not os.path.lexists(socket_path)


class SettingsSource:
    """Reads the settings every ``--settings-interval`` in a background thread."""

    name = NAME

    def __init__(self, config: Config, state: ExporterState) -> None:
        self.config = config
        self.state = state
        self.health = state.health[NAME]
        self.interval = config.settings_interval
        self.endpoint: Endpoint | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._side_problem: str | None = None
        self._origin: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="settings", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def _run(self) -> None:
        retry = RETRY_MIN
        while not self._stop.is_set():
            try:
                ok = self.read_once()
            except Exception:  # a bug must not end the loop silently, nor reach another source
                log.exception("settings: unexpected error")
                self.state.settings = None
                self.health.fail("protocol", "unexpected error (see log)")
                ok = False
            if ok:
                retry = RETRY_MIN
                wait = self.interval * random.uniform(0.9, 1.1)
            else:
                wait = min(retry, self.interval) * random.uniform(0.9, 1.1)
                retry = min(retry * 2, self.interval)
            self._stop.wait(wait)

    def read_once(self) -> bool:
        """One reading from every configured place; publish it, or drop the previous one. True on success."""
        errors: list[SourceError] = []
        settings: CiliumSettings | None = None
        use_configmap = "configmap" in self.config.settings_from
        if "agent-api" in self.config.settings_from:
            try:
                settings = agent_api.read(self.config.agent_api_socket, REQUEST_TIMEOUT)
            except SourceError as exc:
                errors.append(exc)
                # failing, not absent: what it would say is unknown now, not what the ConfigMap says
                use_configmap = use_configmap and _without_agent_api(exc, self.config.agent_api_socket)
        if use_configmap and (settings is None or not _complete(settings)):
            try:
                release = v.version_of(settings.version) if settings is not None else None
                from_configmap = configmap.read(self._endpoint(), self.config.cilium_namespace,
                                                self.config.settings_configmap, REQUEST_TIMEOUT,
                                                release[1] if release else None)
                settings = from_configmap if settings is None else fill(settings, from_configmap)
            except SourceError as exc:
                errors.append(exc)
        if settings is None:
            self.state.settings = None
            self._origin = None
            message = "; ".join(e.message for e in errors)
            if self.health.optional and all(e.absent for e in errors):
                self.health.absent(errors[0].reason, message)
            else:
                first = next((e for e in errors if not e.absent), errors[0])
                for exc in errors:
                    if exc is not first:
                        self.health.errors[exc.reason] += 1
                self.health.fail(first.reason, message)
            return False
        if settings.unreadable:
            errors.append(SourceError("protocol", f"agent API /v1/config: {', '.join(settings.unreadable)} not a "
                                                  "uint32 (left unknown)"))
        self.state.settings = settings
        self._side_errors(errors)
        if settings.origin != self._origin:
            log.info("settings read from %s", settings.origin.replace("+", " and "))
            self._origin = settings.origin
        self.health.ok()
        return True

    def _side_errors(self, errors: list[SourceError]) -> None:
        """Failures of one place while another answered: counted (unless absent) and logged once."""
        for exc in errors:
            if not exc.absent:
                self.health.errors[exc.reason] += 1
        problem = "; ".join(e.message for e in errors) or None
        if problem != self._side_problem:
            if problem is not None:
                level = logging.INFO if all(e.absent for e in errors) else logging.WARNING
                log.log(level, "settings: %s (using what did answer)", problem)
            self._side_problem = problem

    def _endpoint(self) -> Endpoint:
        if self.endpoint is None:
            from cilium_node_exporter.sources.apiserver import config_endpoint, kubeconfig_endpoint

            try:
                self.endpoint = (kubeconfig_endpoint(self.config.kubeconfig) if self.config.kubeconfig
                                 else config_endpoint(self.config))
            except SourceError as exc:
                raise SourceError(exc.reason, f"ConfigMap: {exc.message}", absent=True) from None
        return self.endpoint
