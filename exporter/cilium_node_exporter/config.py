"""Command-line flags and environment variables → a validated, immutable :class:`Config`.

:data:`FLAGS` is the one definition of every flag: name, default, help, parser and the chart value that
sets it. The argument parser, :class:`Config`, the README's configuration table and the chart's
argument template (``config_render``) are all derived from it.

Every flag ``--some-name`` can also be set with the environment variable ``CNE_SOME_NAME``; the flag
wins. Defaults, and the values of address flags (listen, Hubble, kubelet, API server, agent), may name
``$NODE_IP``, ``$NODE_NAME``, ``$KUBERNETES_SERVICE_HOST`` and ``$KUBERNETES_SERVICE_PORT`` (the downward
API and the pod's service environment); an IPv6 ``$NODE_IP`` or service host is bracketed there.
Bad values raise :class:`ConfigError` with one line that names the flag.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cilium_node_exporter import __version__
from cilium_node_exporter.contract import ENVELOPE_MODES, OPTIONAL_LABELS, SOURCES
from cilium_node_exporter.units import UnitError, parse_duration, parse_envelope

ENV_PREFIX = "CNE_"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class ConfigError(ValueError):
    """A flag or environment variable has a value the exporter cannot use."""


# --- value parsers (each raises ValueError with a message; the caller names the flag) --------------

def _csv(allowed: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(item.strip() for item in text.split(",") if item.strip())
        for item in items:
            if item not in allowed:
                raise ValueError(f"{item!r} is not one of {', '.join(allowed)}")
        return items
    return parse


AUTO_REQUIRED = ("hubble", "kubelet", "apiserver")
AUTO_OPTIONAL = ("agent", "settings")


@dataclass(frozen=True)
class SourceSelection:
    """The enabled sources and which of them are optional (may be unavailable on a node).

    Iterating and ``in`` work on the names, so it reads like the tuple of enabled sources.
    """

    names: tuple[str, ...]
    optional: frozenset[str] = frozenset()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __len__(self) -> int:
        return len(self.names)


def _sources(text: str) -> SourceSelection:
    """``auto`` (hubble, kubelet, apiserver; agent and settings optional), a list (each required), or
    ``auto`` plus names (those become required)."""
    items = _csv((*SOURCES, "auto"))(text)
    explicit = [item for item in items if item != "auto"]
    if "auto" not in items:
        return SourceSelection(tuple(dict.fromkeys(explicit)))
    wanted = set(AUTO_REQUIRED) | set(AUTO_OPTIONAL) | set(explicit)
    return SourceSelection(tuple(s for s in SOURCES if s in wanted), frozenset(AUTO_OPTIONAL) - set(explicit))


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise ValueError(f"{text!r} is not one of {', '.join(allowed)}")
        return value
    return parse


def _bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"invalid boolean {text!r} (use true or false)")


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value
    return parse


def parse_listen(text: str) -> tuple[str, int]:
    """``[host]:port`` → (host, port): ``:9969``, ``0.0.0.0:9969``, ``[::]:9969``, ``[fd00::1]:9969``.

    An empty host means every interface (IPv6 and IPv4 where the kernel allows a dual-stack socket).
    """
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid listen address {text!r} (use [host]:port, e.g. :9969 or [::]:9969)")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(f"invalid listen address {text!r}: unclosed '['")
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"invalid listen address {text!r}: {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(f"invalid listen address {text!r}: write an IPv6 host in brackets, e.g. [::1]:9969")
    return host, int(port)


def parse_listen_list(text: str) -> list[tuple[str, int]]:
    """A comma list of ``[host]:port`` (:func:`parse_listen` each), without repeats; empty text is no address."""
    out: list[tuple[str, int]] = []
    for item in text.split(","):
        if item.strip() and (address := parse_listen(item.strip())) not in out:
            out.append(address)
    return out


def _listen(text: str) -> str:
    if not parse_listen_list(text):
        raise ValueError("give at least one [host]:port")
    return text


def _listen_optional(text: str) -> str:
    parse_listen_list(text)
    return text


def _hubble_address(text: str) -> str:
    if not text.startswith("unix://") and ":" not in text:
        raise ValueError(f"{text!r} is neither unix:///path nor host:port")
    return text


def _url(text: str) -> str:
    return text.rstrip("/")


def _duration(text: str) -> float:
    return parse_duration(text)


def _envelope(text: str) -> tuple[int, int]:
    return parse_envelope(text)


@dataclass(frozen=True)
class Flag:
    """One flag: the single place its default, help, parser and chart value are written."""

    name: str
    default: str
    help: str
    section: str
    parse: Callable[[str], Any] = str
    metavar: str = "VALUE"
    boolean: bool = False
    helm: str = ""  # the chart value that sets it ("" when the chart derives it, e.g. sources, listen address)
    aliases: tuple[str, ...] = ()  # other spellings, e.g. the ecosystem's --web.config.file

    @property
    def attr(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper().replace("-", "_")


SERVING = "serving"
HUBBLE = "Hubble (source 'hubble')"
LABELS = "optional dimensions and cardinality"
KUBELET = "kubelet (source 'kubelet')"
APISERVER = "API server (source 'apiserver')"
AGENT = "agent metrics (source 'agent')"
ENVOY = "cilium-envoy (sources 'kubelet' and 'apiserver')"
SETTINGS = "Cilium settings (source 'settings')"
ENVELOPE = "memory envelope"
SETTINGS_ORIGINS = ("agent-api", "configmap")


def _flag(name: str, default: str, help_: str, section: str, parse: Callable[[str], Any] = str,
          metavar: str = "VALUE", helm: str = "") -> Flag:
    return Flag(name, default, help_, section, parse, metavar, False, helm)


def _switch(name: str, help_: str, section: str, helm: str = "") -> Flag:
    return Flag(name, "false", help_, section, _bool, "BOOL", True, helm)


FLAGS: tuple[Flag, ...] = (
    _flag("listen-address", ":9969", "[host]:port for /metrics, /healthz, /readyz and /; IPv6 hosts in brackets "
          "([::]:9969); a comma list listens on each (e.g. $NODE_IP:9969,127.0.0.1:9969). An empty host or [::] "
          "listens on every interface, IPv6 and IPv4 (dual-stack) where the kernel allows. $NODE_IP as the host is "
          "the node's address from the environment (bracketed when IPv6; the chart binds there and on loopback).",
          SERVING, _listen, "ADDR"),
    _flag("health-listen-address", "", "[host]:port (comma list) serving only /healthz and /readyz, in plain "
          "HTTP without auth: for kubelet probes when --web-config-file asks for client certificates (the chart "
          "sets it whenever the endpoint is protected).", SERVING, _listen_optional, "ADDR"),
    _flag("node-name", "$NODE_NAME", "This node's name (downward API): finds the agent pod, used in logs.",
          SERVING, str, "NAME"),
    _flag("sources", "auto", "Enabled sources. auto: hubble, kubelet and apiserver, plus agent and settings "
          "where this node has them (an endpoint that does not exist - no listener, no socket - is reported by "
          "cilium_node_exporter_source_unavailable and raises no source_up, hence no SourceDown). A comma list of "
          f"{', '.join(SOURCES)}: exactly those, each required (a failing one is down). auto plus names makes "
          "those required, e.g. auto,agent.", SERVING, _sources, "LIST"),
    _flag("log-level", "info", "debug, info, warning or error.", SERVING,
          _choice("debug", "info", "warning", "error"), "LEVEL", helm="log.level"),
    _flag("log-format", "text", "text or json (one object per line).", SERVING, _choice("text", "json"),
          "FORMAT", helm="log.format"),
    Flag("web-config-file", "", "exporter-toolkit's web configuration file (the YAML of other exporters' "
         "--web.config.file: tls_server_config, http_server_config, basic_auth_users, rate_limit), re-read when it "
         "or a file it names changes. /healthz and /readyz stay open for probes (no auth, no rate limit). "
         "docs/deploy.md \"Security\" says where this server differs from the toolkit.", SERVING, str, "FILE",
         helm="", aliases=("web.config.file",)),
    _flag("scrape-timeout", "10s", "The scrape's timeout when the scraper does not send "
          "X-Prometheus-Scrape-Timeout-Seconds (Prometheus, the Prometheus Operator and VictoriaMetrics do).",
          SERVING, _duration, "DURATION"),
    _flag("scrape-timeout-offset", "500ms", "Subtracted from the scrape's timeout: the kubelet and agent sources, "
          "read at the same time, must answer within what is left (within their own timeouts too), so that "
          "/metrics still answers in time and a late source shows as source_up 0 (reason timeout).", SERVING,
          _duration, "DURATION"),

    _flag("hubble-address", "unix:///var/run/cilium/hubble.sock",
          "Hubble Observer API: unix:///path for the node-local socket, or host:port for TCP.", HUBBLE,
          _hubble_address, "ADDR", helm="hubble.address"),
    _flag("hubble-tls-ca", "", "CA bundle that signs the Hubble server certificate (TCP; enables TLS).", HUBBLE,
          metavar="FILE"),
    _flag("hubble-tls-cert", "", "Client certificate for mTLS to Hubble (TCP).", HUBBLE, metavar="FILE"),
    _flag("hubble-tls-key", "", "Client key for mTLS to Hubble (TCP).", HUBBLE, metavar="FILE"),
    _flag("hubble-tls-server-name", "", "TLS server name to verify: <node>.<cluster>.hubble-grpc.cilium.io, with "
          "every '.' in the node and cluster names written as '-' (Cilium's rule).", HUBBLE, metavar="NAME"),
    _flag("hubble-status-interval", "10s", "How often ServerStatus is polled (seen flows, buffer, version).",
          HUBBLE, _duration, "DURATION"),
    _flag("hubble-stall-timeout", "2m", "Check the stream when it delivered nothing for this long while the "
          "observer saw new flows; reconnect if a short probe finds events the stream did not deliver "
          "(Hubble's server allows keepalive pings only every 5 minutes).", HUBBLE, _duration, "DURATION"),
    _flag("hubble-backoff-max", "30s", "Upper bound of the jittered exponential reconnect backoff.", HUBBLE,
          _duration, "DURATION"),
    _switch("count-health-verdicts", "Count policy verdicts involving the health endpoint (identity 4).", HUBBLE),

    _flag("extra-labels", "", "Optional dimensions to switch on, comma list of: "
          f"{', '.join(OPTIONAL_LABELS)} (protocol on drops; endpoint_namespace on drops, verdicts and L7; "
          "policy on verdicts).", LABELS, _csv(OPTIONAL_LABELS), "LIST", helm="extraLabels"),
    _flag("label-cap", "50", "Distinct values kept per optional label; the rest count as 'other'.", LABELS,
          _int_between(1, 10_000), "N", helm="labelCap"),
    _flag("label-idle-expiry", "10m", "An optional label value idle this long frees its place under the cap.",
          LABELS, _duration, "DURATION"),

    _flag("kubelet-address", "https://$NODE_IP:10250", "Kubelet base URL.", KUBELET, _url, "URL",
          helm="kubelet.address"),
    _flag("kubelet-token-file", f"{SA_DIR}/token", "Bearer token file, re-read on every request (rotation).",
          KUBELET, metavar="FILE"),
    _flag("kubelet-ca", f"{SA_DIR}/ca.crt", "CA bundle that signs the kubelet serving certificate.", KUBELET,
          metavar="FILE", helm="kubelet.caFile"),
    _switch("kubelet-insecure-skip-verify", "Do not verify the kubelet certificate (self-signed kubelet "
            "certificates: kubeadm, kind, minikube). Logged as a warning.", KUBELET,
            helm="kubelet.insecureSkipVerify"),
    _flag("kubelet-timeout", "5s", "Timeout of one kubelet request.", KUBELET, _duration, "DURATION"),

    _flag("apiserver-address", "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT",
          "API server URL (in a pod: the kubernetes service from the pod's environment).", APISERVER, _url, "URL"),
    _flag("apiserver-token-file", f"{SA_DIR}/token", "Bearer token file for the API server, re-read on every "
          "request.", APISERVER, metavar="FILE"),
    _flag("apiserver-ca", f"{SA_DIR}/ca.crt", "CA bundle that signs the API server certificate.", APISERVER,
          metavar="FILE"),
    _flag("kubeconfig", "", "Kubeconfig for the API server when running outside the cluster (replaces the three "
          "flags above; needs the 'kubeconfig' extra: pip install 'cilium-node-exporter[kubeconfig]').",
          APISERVER, metavar="FILE"),
    _flag("cilium-namespace", "kube-system", "Namespace of the Cilium agent pods.", APISERVER, metavar="NAME",
          helm="cilium.namespace"),
    _flag("cilium-pod-selector", "k8s-app=cilium", "Label selector of the Cilium agent pods.", APISERVER,
          metavar="SELECTOR", helm="cilium.podSelector"),
    _flag("cilium-container", "cilium-agent", "Name of the agent container in the Cilium pod.", APISERVER,
          metavar="NAME", helm="cilium.container"),

    _flag("agent-metrics-address", "http://$NODE_IP:9962/metrics",
          "cilium-agent Prometheus endpoint (Cilium's prometheus.enabled).", AGENT, _url, "URL",
          helm="agentMetrics.address"),
    _flag("agent-timeout", "5s", "Timeout of one agent metrics request.", AGENT, _duration, "DURATION"),

    Flag("envoy", "true", "Report the cilium-envoy container (memory from the kubelet, restarts and last "
         "termination from the API server) when Envoy runs as its own DaemonSet (Cilium 1.16+ default). Without "
         "such a pod on the node (Envoy inside the agent container) there are no Envoy series.", ENVOY, _bool,
         "BOOL", True, helm="envoy.enabled"),
    _flag("envoy-namespace", "", "Namespace of the cilium-envoy pods (default: --cilium-namespace).", ENVOY,
          metavar="NAME", helm="envoy.namespace"),
    _flag("envoy-pod-selector", "k8s-app=cilium-envoy", "Label selector of the cilium-envoy pods.", ENVOY,
          metavar="SELECTOR", helm="envoy.podSelector"),
    _flag("envoy-container", "cilium-envoy", "Name of the Envoy container in the cilium-envoy pod.", ENVOY,
          metavar="NAME", helm="envoy.container"),

    _flag("settings-from", "agent-api,configmap", "Where the node's Cilium settings are read, in order: "
          "agent-api (GET /v1/config and /v1/healthz on --agent-api-socket: the values the running agent uses), "
          "configmap (--settings-configmap in --cilium-namespace through the API server, RBAC get on that one "
          "ConfigMap: what the agent was started with; used when the socket is absent, and for what the agent API "
          "does not show on this release).", SETTINGS, _csv(SETTINGS_ORIGINS), "LIST", helm="settings.from"),
    _flag("agent-api-socket", "/var/run/cilium/cilium.sock", "The cilium-agent REST API socket (only GETs are "
          "sent).", SETTINGS, metavar="FILE"),
    _flag("settings-configmap", "cilium-config", "Name of Cilium's ConfigMap.", SETTINGS, metavar="NAME",
          helm="settings.configMapName"),
    _flag("settings-interval", "1m", "How often the settings are read (they change rarely).", SETTINGS, _duration,
          "DURATION"),

    _flag("memory-envelope", "200Mi-500Mi", "Expected cilium-agent memory envelope LOWER-UPPER (Kubernetes "
          "quantities: 200Mi, 1Gi, 500M, bytes).", ENVELOPE, _envelope, "RANGE", helm="memoryEnvelope"),
    _switch("envelope-from-node-annotation", "Read a per-node envelope from the node annotation "
            "cilium-node-exporter.io/memory-envelope (needs RBAC nodes get); it wins over both modes.", ENVELOPE,
            helm="envelopeFromNodeAnnotation"),
    _flag("memory-envelope-mode", "static", "static: the envelope bounds are --memory-envelope. derived: they are "
          "derived per node from its memory, Cilium's BPF map sizing and the cluster's scale (docs/envelope.md; "
          "needs the kubelet and settings sources, and the agent source for the scale), falling back to "
          "--memory-envelope while an input is unknown. The derived bounds are exported by part in both modes.",
          ENVELOPE, _choice(*ENVELOPE_MODES), "MODE", helm="memoryEnvelopeMode"),
)
FLAGS_BY_NAME: dict[str, Flag] = {f.name: f for f in FLAGS}


@dataclass(frozen=True)
class Config:
    """Everything the exporter is configured with, one field per flag of :data:`FLAGS` (no defaults here)."""

    listen_address: str
    health_listen_address: str
    node_name: str
    sources: SourceSelection
    log_level: str
    log_format: str
    web_config_file: str
    scrape_timeout: float
    scrape_timeout_offset: float
    hubble_address: str
    hubble_tls_ca: str
    hubble_tls_cert: str
    hubble_tls_key: str
    hubble_tls_server_name: str
    hubble_status_interval: float
    hubble_stall_timeout: float
    hubble_backoff_max: float
    count_health_verdicts: bool
    extra_labels: tuple[str, ...]
    label_cap: int
    label_idle_expiry: float
    kubelet_address: str
    kubelet_token_file: str
    kubelet_ca: str
    kubelet_insecure_skip_verify: bool
    kubelet_timeout: float
    apiserver_address: str
    apiserver_token_file: str
    apiserver_ca: str
    kubeconfig: str
    cilium_namespace: str
    cilium_pod_selector: str
    cilium_container: str
    agent_metrics_address: str
    agent_timeout: float
    envoy: bool
    envoy_namespace: str
    envoy_pod_selector: str
    envoy_container: str
    settings_from: tuple[str, ...]
    agent_api_socket: str
    settings_configmap: str
    settings_interval: float
    memory_envelope: tuple[int, int]
    envelope_from_node_annotation: bool
    memory_envelope_mode: str

    def has_label(self, name: str) -> bool:
        """True when the optional dimension ``name`` is switched on."""
        return name in self.extra_labels

    @property
    def listen_addresses(self) -> list[tuple[str, int]]:
        return parse_listen_list(self.listen_address)

    @property
    def health_listen_addresses(self) -> list[tuple[str, int]]:
        return parse_listen_list(self.health_listen_address)


_PLACEHOLDER = re.compile(r"\$(NODE_IP|NODE_NAME|KUBERNETES_SERVICE_HOST|KUBERNETES_SERVICE_PORT)\b")
_PLACEHOLDER_FALLBACK = {"NODE_IP": "127.0.0.1"}


def url_host(host: str) -> str:
    """``host`` as it is written in a URL: an IPv6 address in brackets."""
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


_ADDRESS_METAVARS = ("ADDR", "URL")


def _substitute(text: str, environ: Mapping[str, str], address: bool) -> tuple[str, list[str]]:
    """``text`` with ``$NODE_IP`` and friends from ``environ`` (hosts bracketed when IPv6 in an address);
    also the names of the variables that were missing."""
    missing: list[str] = []

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        value = environ.get(name, _PLACEHOLDER_FALLBACK.get(name, ""))
        if not value:
            missing.append(name)
        return url_host(value) if address and name in ("NODE_IP", "KUBERNETES_SERVICE_HOST") else value

    return _PLACEHOLDER.sub(sub, text), missing


def resolve_default(flag: Flag, environ: Mapping[str, str]) -> str:
    """The flag's default with ``$NODE_IP`` and friends taken from ``environ``.

    In a URL default a missing variable leaves the default empty (e.g. no API server outside a pod).
    """
    value, missing = _substitute(flag.default, environ, flag.metavar in _ADDRESS_METAVARS)
    return "" if missing and "://" in flag.default else value


def resolve_value(flag: Flag, text: str, environ: Mapping[str, str]) -> str:
    """A given address (flag or ``CNE_*``) may name ``$NODE_IP`` and friends too: the chart passes
    ``--listen-address=$NODE_IP:9969`` because the kubelet's own ``$(NODE_IP)`` expansion cannot bracket
    an IPv6 address. Other flags are taken literally."""
    if flag.metavar not in _ADDRESS_METAVARS or "$" not in text:
        return text
    value, missing = _substitute(text, environ, True)
    if missing:
        raise ValueError(f"{text!r} names ${missing[0]}, which is not set")
    return value


# Flags that were replaced, and by what (a clear line instead of "unrecognized arguments").
REMOVED_FLAGS = {
    "--web-tls-cert-file": "--web-config-file (tls_server_config cert_file)",
    "--web-tls-key-file": "--web-config-file (tls_server_config key_file)",
    "--web-tls-client-ca-file": "--web-config-file (tls_server_config client_ca_file with client_auth_type "
                                "RequireAndVerifyClientCert)",
    "--web-basic-auth-users-file": "--web-config-file (basic_auth_users)",
}


class _Parser(argparse.ArgumentParser):
    """argparse with one clear error line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        for old, new in REMOVED_FLAGS.items():
            if old in message:
                raise ConfigError(f"{old} was replaced by {new}: exporter-toolkit's web configuration file")
        raise ConfigError(message)


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The exporter's flag parser; defaults come from ``CNE_*`` environment variables, then :data:`FLAGS`."""
    env = os.environ if environ is None else environ
    p = _Parser(
        prog="cilium-node-exporter",
        description=textwrap.fill("Prometheus exporter for one Cilium node: packet drops and their reasons, policy "
                                  "verdicts (L7 included), Hubble event loss, and the cilium-agent's memory against "
                                  "its expected envelope. Every flag can also be set as an environment variable: "
                                  "CNE_ followed by the flag name in upper case with '-' as '_' (e.g. "
                                  "CNE_LISTEN_ADDRESS); the flag wins.", 100),
        epilog=textwrap.fill("Subcommands: 'cilium-node-exporter simulate --help' runs the simulator (a separate "
                             "package) for demos, tests and fire drills.", 100),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"cilium-node-exporter {__version__}")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for flag in FLAGS:
        group = groups.get(flag.section) or groups.setdefault(flag.section, p.add_argument_group(flag.section))
        help_ = f"{flag.help} [default: {flag.default or 'none'}; env {flag.env}]"
        default = env.get(flag.env, resolve_default(flag, env))
        names = [f"--{flag.name}", *(f"--{alias}" for alias in flag.aliases)]
        if flag.boolean:
            group.add_argument(*names, dest=flag.attr, nargs="?", const="true", default=default,
                               metavar=flag.metavar, help=help_)
        else:
            group.add_argument(*names, dest=flag.attr, default=default, metavar=flag.metavar, help=help_)
    return p


def parse_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Parse flags and environment into a :class:`Config`; raise :class:`ConfigError` on bad input."""
    env = os.environ if environ is None else environ
    ns = build_parser(env).parse_args(argv)
    values: dict[str, Any] = {}
    for flag in FLAGS:
        try:
            values[flag.attr] = flag.parse(resolve_value(flag, getattr(ns, flag.attr), env))
        except (ValueError, UnitError) as exc:
            raise ConfigError(f"--{flag.name}: {exc}") from None
    config = Config(**values)
    _check(config)
    return config


def _check(config: Config) -> None:
    """Rules that involve more than one flag."""
    if bool(config.hubble_tls_cert) != bool(config.hubble_tls_key):
        raise ConfigError("--hubble-tls-cert and --hubble-tls-key must be given together")
    if "settings" in config.sources and not config.settings_from:
        raise ConfigError("--settings-from: name at least one of agent-api, configmap (or leave the settings "
                          "source out of --sources)")
    if config.settings_interval < 5:
        raise ConfigError("--settings-interval: must be at least 5s (settings change rarely; this is not a probe)")
    if config.scrape_timeout_offset >= config.scrape_timeout:
        raise ConfigError("--scrape-timeout-offset must be below --scrape-timeout")

