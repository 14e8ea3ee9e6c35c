"""Command-line flags and environment variables → a validated, immutable :class:`Config`.

Every flag ``--some-name`` can also be set with the environment variable ``CNE_SOME_NAME``;
the flag wins. Bad values raise :class:`ConfigError` with one line that names the flag.
"""

from __future__ import annotations

import argparse
import os
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cilium_node_exporter import __version__
from cilium_node_exporter.contract import SOURCES

ENV_PREFIX = "CNE_"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
OPTIONAL_LABELS = ("protocol", "endpoint_namespace", "policy")
DEFAULT_LISTEN = ":9969"


class ConfigError(ValueError):
    """A flag or environment variable has a value the exporter cannot use."""


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Parse ``1h30m``, ``10s``, ``250ms`` or plain seconds into seconds."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        if not _DURATION.match(text):
            raise ConfigError(f"invalid duration {text!r} (use e.g. 10s, 5m, 1h30m)") from None
        value = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    if value < 0:
        raise ConfigError(f"invalid duration {text!r}: must not be negative")
    return value


_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|k|K|M|G|T)?\s*$")
_QUANTITY_FACTOR = {None: 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
                    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def parse_quantity(text: str) -> int:
    """Parse a Kubernetes memory quantity (``500Mi``, ``1G``, ``1.5Gi``, plain bytes) into bytes."""
    match = _QUANTITY.match(text)
    if not match:
        raise ConfigError(f"invalid memory quantity {text!r} (use e.g. 200Mi, 1Gi, 500M or bytes)")
    return int(float(match.group(1)) * _QUANTITY_FACTOR[match.group(2)])


def parse_envelope(text: str) -> tuple[int, int]:
    """Parse ``LOWER-UPPER`` (e.g. ``200Mi-500Mi``) into bytes; lower must be below upper."""
    parts = text.split("-")
    if len(parts) != 2:
        raise ConfigError(f"invalid memory envelope {text!r} (use LOWER-UPPER, e.g. 200Mi-500Mi)")
    lower, upper = parse_quantity(parts[0]), parse_quantity(parts[1])
    if lower >= upper:
        raise ConfigError(f"invalid memory envelope {text!r}: lower bound must be below upper bound")
    return lower, upper


def parse_listen(text: str) -> tuple[str, int]:
    """Parse ``[host]:port`` into (host, port); an empty host means all interfaces."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"invalid listen address {text!r} (use [host]:port, e.g. :9969)")
    return host.strip("[]"), int(port)


def _csv(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


@dataclass(frozen=True)
class Config:
    """Everything the exporter is configured with; built by :func:`parse_args`."""

    listen_address: str = DEFAULT_LISTEN
    node_name: str = ""
    sources: tuple[str, ...] = ("hubble", "kubelet", "apiserver")
    log_level: str = "info"
    log_format: str = "text"
    # Hubble
    hubble_address: str = "unix:///var/run/cilium/hubble.sock"
    hubble_tls_ca: str = ""
    hubble_tls_cert: str = ""
    hubble_tls_key: str = ""
    hubble_tls_server_name: str = ""
    hubble_status_interval: float = 10.0
    hubble_stall_timeout: float = 120.0
    hubble_backoff_max: float = 30.0
    count_health_verdicts: bool = False
    # optional dimensions and cardinality
    extra_labels: tuple[str, ...] = ()
    label_cap: int = 50
    label_idle_expiry: float = 600.0
    # kubelet / API server / agent (see sources/)
    kubelet_address: str = ""
    kubelet_token_file: str = f"{SA_DIR}/token"
    kubelet_ca: str = f"{SA_DIR}/ca.crt"
    kubelet_insecure_skip_verify: bool = False
    kubelet_timeout: float = 5.0
    cilium_namespace: str = "kube-system"
    cilium_container: str = "cilium-agent"
    cilium_pod_selector: str = "k8s-app=cilium"
    kubeconfig: str = ""
    agent_metrics_address: str = ""
    agent_timeout: float = 5.0
    memory_envelope: tuple[int, int] = (200 * 2**20, 500 * 2**20)
    envelope_from_node_annotation: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)

    def has_label(self, name: str) -> bool:
        """True when the optional dimension ``name`` is switched on."""
        return name in self.extra_labels


def _env(name: str, default: str, environ: Mapping[str, str]) -> str:
    return environ.get(ENV_PREFIX + name.upper().replace("-", "_"), default)


def _bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"invalid boolean {text!r} (use true or false)")


class _Parser(argparse.ArgumentParser):
    """argparse with one clear error line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The exporter's flag parser; defaults come from ``CNE_*`` environment variables."""
    env = os.environ if environ is None else environ
    node_ip = env.get("NODE_IP", "127.0.0.1")
    p = _Parser(
        prog="cilium-node-exporter",
        description=textwrap.fill("Prometheus exporter for one Cilium node: packet drops and their reasons, policy "
        "verdicts (L7 included), Hubble event loss, and the cilium-agent's memory against its "
        "expected envelope. Every flag can also be set as an environment variable: CNE_ followed by "
        "the flag name in upper case with '-' as '_' (e.g. CNE_LISTEN_ADDRESS).", 100),
        epilog=textwrap.fill("Subcommand: 'cilium-node-exporter simulate --help' runs the built-in "
                             "Hubble/kubelet simulator for demos, tests and fire drills.", 100),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"cilium-node-exporter {__version__}")

    group: argparse._ArgumentGroup | argparse.ArgumentParser = p

    def section(title: str) -> None:
        nonlocal group
        group = p.add_argument_group(title)

    def env_help(name: str, default: str, help_: str) -> str:
        var = ENV_PREFIX + name.upper().replace("-", "_")
        return f"{help_} [default: {default or 'none'}; env {var}]"

    def add(name: str, default: object, help_: str, metavar: str | None = None) -> None:
        group.add_argument(f"--{name}", default=_env(name, str(default), env), metavar=metavar or "VALUE",
                           help=env_help(name, str(default), help_))

    def flag(name: str, help_: str) -> None:
        group.add_argument(f"--{name}", nargs="?", const="true", default=_env(name, "false", env),
                           metavar="BOOL", help=env_help(name, "false", help_))

    section("serving")
    add("listen-address", DEFAULT_LISTEN, "[host]:port for /metrics, /healthz, /readyz and /.", "ADDR")
    group.add_argument("--node-name", default=_env("node-name", env.get("NODE_NAME", ""), env), metavar="NAME",
                       help="Name of this node, used in logs and to find the agent pod [default: $NODE_NAME from "
                       "the downward API; env CNE_NODE_NAME].")
    add("sources", "hubble,kubelet,apiserver", f"Comma list of enabled sources: {', '.join(SOURCES)}.", "LIST")
    add("log-level", "info", "debug, info, warning or error.", "LEVEL")
    add("log-format", "text", "text or json.", "FORMAT")
    section("Hubble (source 'hubble')")

    add("hubble-address", "unix:///var/run/cilium/hubble.sock",
        "Hubble Observer API: unix:///path for the node-local socket, or host:port for TCP.")
    add("hubble-tls-ca", "", "CA bundle that signs the Hubble server certificate (TCP; enables TLS).")
    add("hubble-tls-cert", "", "Client certificate for mTLS to Hubble (TCP).")
    add("hubble-tls-key", "", "Client key for mTLS to Hubble (TCP).")
    add("hubble-tls-server-name", "", "TLS server name to verify, e.g. <node>.<cluster>.hubble-grpc.cilium.io.")
    add("hubble-status-interval", "10s", "How often ServerStatus is polled (seen flows, buffer, version).")
    add("hubble-stall-timeout", "2m", "Check the stream when it delivered nothing for this long while the "
        "observer saw new flows; reconnect if a short probe finds events the stream did not deliver "
        "(Hubble's server allows keepalive pings only every 5 minutes).")
    add("hubble-backoff-max", "30s", "Upper bound of the jittered exponential reconnect backoff.")
    flag("count-health-verdicts", "Count policy verdicts involving the health endpoint (identity 4).")

    section("optional dimensions and cardinality")
    add("extra-labels", "", "Optional dimensions to switch on, comma list of: "
        f"{', '.join(OPTIONAL_LABELS)} (protocol on drops; endpoint_namespace on drops, verdicts and L7; "
        "policy on verdicts).")
    add("label-cap", "50", "Distinct values kept per optional label; the rest count as 'other'.")
    add("label-idle-expiry", "10m", "An optional label value idle this long frees its place under the cap.")

    section("kubelet (source 'kubelet'), API server (source 'apiserver'), agent metrics (source 'agent')")
    add("kubelet-address", f"https://{node_ip}:10250", "Kubelet base URL (default from $NODE_IP).")
    add("kubelet-token-file", f"{SA_DIR}/token", "Bearer token file, re-read on every request (rotation).")
    add("kubelet-ca", f"{SA_DIR}/ca.crt", "CA bundle that signs the kubelet serving certificate.")
    flag("kubelet-insecure-skip-verify", "Do not verify the kubelet certificate (self-signed kubelet "
         "certificates: kubeadm, kind, minikube). Logged as a warning.")
    add("kubelet-timeout", "5s", "Timeout of one kubelet request.")
    add("cilium-namespace", "kube-system", "Namespace of the Cilium agent pods.")
    add("cilium-container", "cilium-agent", "Name of the agent container in the Cilium pod.")
    add("cilium-pod-selector", "k8s-app=cilium", "Label selector of the Cilium agent pods.")
    add("kubeconfig", "", "Kubeconfig for the API server when running outside the cluster.")
    add("agent-metrics-address", f"http://{node_ip}:9962/metrics",
        "cilium-agent Prometheus endpoint (source 'agent', opt-in).")
    add("agent-timeout", "5s", "Timeout of one agent metrics request.")
    add("memory-envelope", "200Mi-500Mi", "Expected cilium-agent memory envelope LOWER-UPPER "
        "(Kubernetes quantities: 200Mi, 1Gi, 500M, bytes).")
    flag("envelope-from-node-annotation", "Read a per-node envelope from the node annotation "
         "cilium-node-exporter.io/memory-envelope (needs RBAC nodes get).")
    return p


def parse_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Parse flags and environment into a :class:`Config`; raise :class:`ConfigError` on bad input."""
    ns = build_parser(environ).parse_args(argv)
    return config_from_namespace(ns)


def config_from_namespace(ns: argparse.Namespace) -> Config:
    """Validate the parsed namespace into a :class:`Config`."""

    def in_(name: str, value: str, allowed: Sequence[str]) -> str:
        if value not in allowed:
            raise ConfigError(f"--{name}: {value!r} is not one of {', '.join(allowed)}")
        return value

    def dur(name: str) -> float:
        try:
            return parse_duration(getattr(ns, name.replace("-", "_")))
        except ConfigError as exc:
            raise ConfigError(f"--{name}: {exc}") from None

    def boolean(name: str) -> bool:
        try:
            return _bool(getattr(ns, name.replace("-", "_")))
        except ConfigError as exc:
            raise ConfigError(f"--{name}: {exc}") from None

    sources = _csv(ns.sources)
    for s in sources:
        in_("sources", s, SOURCES)
    extra = _csv(ns.extra_labels)
    for label in extra:
        in_("extra-labels", label, OPTIONAL_LABELS)
    try:
        parse_listen(ns.listen_address)
        envelope = parse_envelope(ns.memory_envelope)
    except ConfigError as exc:
        flag_name = "listen-address" if "listen" in str(exc) else "memory-envelope"
        raise ConfigError(f"--{flag_name}: {exc}") from None
    try:
        cap = int(ns.label_cap)
    except ValueError:
        raise ConfigError(f"--label-cap: {ns.label_cap!r} is not a whole number") from None
    if not 1 <= cap <= 10_000:
        raise ConfigError("--label-cap: must be between 1 and 10000")
    addr = ns.hubble_address
    if not addr.startswith("unix://") and ":" not in addr:
        raise ConfigError(f"--hubble-address: {addr!r} is neither unix:///path nor host:port")
    if bool(ns.hubble_tls_cert) != bool(ns.hubble_tls_key):
        raise ConfigError("--hubble-tls-cert and --hubble-tls-key must be given together")
    return Config(
        listen_address=ns.listen_address,
        node_name=ns.node_name,
        sources=sources,
        log_level=in_("log-level", ns.log_level.lower(), ("debug", "info", "warning", "error")),
        log_format=in_("log-format", ns.log_format.lower(), ("text", "json")),
        hubble_address=addr,
        hubble_tls_ca=ns.hubble_tls_ca,
        hubble_tls_cert=ns.hubble_tls_cert,
        hubble_tls_key=ns.hubble_tls_key,
        hubble_tls_server_name=ns.hubble_tls_server_name,
        hubble_status_interval=dur("hubble-status-interval"),
        hubble_stall_timeout=dur("hubble-stall-timeout"),
        hubble_backoff_max=dur("hubble-backoff-max"),
        count_health_verdicts=boolean("count-health-verdicts"),
        extra_labels=extra,
        label_cap=cap,
        label_idle_expiry=dur("label-idle-expiry"),
        kubelet_address=ns.kubelet_address.rstrip("/"),
        kubelet_token_file=ns.kubelet_token_file,
        kubelet_ca=ns.kubelet_ca,
        kubelet_insecure_skip_verify=boolean("kubelet-insecure-skip-verify"),
        kubelet_timeout=dur("kubelet-timeout"),
        cilium_namespace=ns.cilium_namespace,
        cilium_container=ns.cilium_container,
        cilium_pod_selector=ns.cilium_pod_selector,
        kubeconfig=ns.kubeconfig,
        agent_metrics_address=ns.agent_metrics_address,
        agent_timeout=dur("agent-timeout"),
        memory_envelope=envelope,
        envelope_from_node_annotation=boolean("envelope-from-node-annotation"),
    )
