"""The metric contract (v1) in code: names, help texts, label values and the drop-reason classes.

The exporter, the alert generator (`alerts/`), the dashboards (`dashboards/`) and `docs/metrics.md`
all read this module, so a rename here is a rename everywhere. It imports nothing but the standard
library so that generators can use it without pulling in gRPC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

PREFIX: Final = "cilium_node_"
SELF_PREFIX: Final = "cilium_node_exporter_"


@dataclass(frozen=True)
class Metric:
    """One metric family of the contract; ``name`` is the exposed name (``_total`` included)."""

    name: str
    type: str  # "counter" | "gauge"
    help: str
    labels: tuple[str, ...] = ()
    optional_labels: tuple[str, ...] = ()
    source: str = ""

    @property
    def family(self) -> str:
        """The family name prometheus_client expects (without ``_total`` for counters)."""
        return self.name.removesuffix("_total") if self.type == "counter" else self.name


def _m(name: str, type_: str, help_: str, labels: tuple[str, ...] = (), optional: tuple[str, ...] = (),
       source: str = "") -> Metric:
    return Metric(name, type_, help_, labels, optional, source)


# --- datapath events (Hubble) ---------------------------------------------------------------
DROPS = _m("cilium_node_drops_total", "counter",
           "Packets dropped on this node, from Hubble drop notifications (event type 1 only: one per dropped "
           "packet); direction is the packet's at the endpoint, not the agent datapath's.",
           ("reason", "direction"), ("protocol", "endpoint_namespace"), "hubble")
POLICY_VERDICTS = _m("cilium_node_policy_verdicts_total", "counter",
                     "Policy verdicts on this node: type-5 events (allowed: one per new connection, dropped: one per "
                     "packet, only where policy is enforced; host and, by default, health identities excluded) and "
                     "L7 requests, once per REQUEST flow (match=l7/<protocol>).",
                     ("direction", "match", "action"), ("endpoint_namespace", "policy"), "hubble")
L7_REQUESTS = _m("cilium_node_l7_requests_total", "counter",
                 "L7 requests seen by the proxy on this node, once per REQUEST flow (a denied HTTP request and its "
                 "403 response count once, as dropped; a Kafka request once per topic), by method and verdict.",
                 ("protocol", "method", "direction", "action"), ("endpoint_namespace",), "hubble")
LOST_EVENTS = _m("cilium_node_hubble_lost_events_total", "counter",
                 "Events Hubble reported lost (sum of num_events_lost); hubble_ring_buffer means this "
                 "exporter read too slowly, the other sources mean the agent was overloaded.",
                 ("source",), (), "hubble")
FLOWS_SEEN = _m("cilium_node_hubble_flows_seen_total", "counter",
                "Flows the node's Hubble observer has seen since it started (ServerStatus.seen_flows); "
                "resets when the agent restarts.", (), (), "hubble")
BUFFER_FLOWS = _m("cilium_node_hubble_buffer_flows", "gauge",
                  "Events currently held in Hubble's ring buffer (ServerStatus.num_flows).", (), (), "hubble")
BUFFER_CAPACITY = _m("cilium_node_hubble_buffer_capacity_flows", "gauge",
                     "Capacity of Hubble's ring buffer (ServerStatus.max_flows).", (), (), "hubble")
HUBBLE_INFO = _m("cilium_node_hubble_info", "gauge",
                 "Hubble server version on this node (ServerStatus.version, e.g. cilium v1.16.15+g1a2b3c4d; always 1).",
                 ("version",), (), "hubble")

# --- datapath packets (agent metrics endpoint) -------------------------------------------------
DATAPATH_DROPPED = _m("cilium_node_datapath_dropped_packets_total", "counter",
                      "Packets dropped by the datapath, from the agent's BPF metrics map "
                      "(cilium_drop_count_total), reason as DropReason enum name (REASON_<n> for an agent string "
                      "\"<n>, <ext>\"); direction ingress, egress, service or unknown: the map's, not Hubble's.",
                      ("reason", "direction"), (), "agent")
DATAPATH_FORWARDED = _m("cilium_node_datapath_forwarded_packets_total", "counter",
                        "Packets forwarded by the datapath (cilium_forward_count_total); direction ingress, egress, "
                        "service or unknown.",
                        ("direction",), (), "agent")
BPF_MAP_PRESSURE = _m("cilium_node_bpf_map_pressure", "gauge",
                      "Fill ratio of a BPF map (cilium_bpf_map_pressure), 0 to 1; present only above the map's "
                      "threshold: absent means below it or unknown, never 0.", ("map_name",), (), "agent")

# --- agent memory and lifecycle (kubelet, API server) ------------------------------------------
AGENT_WORKING_SET = _m("cilium_node_agent_memory_working_set_bytes", "gauge",
                       "Working set of the cilium-agent container (kubelet Summary API).", (), (), "kubelet")
AGENT_RSS = _m("cilium_node_agent_memory_rss_bytes", "gauge",
               "RSS of the cilium-agent container (kubelet Summary API).", (), (), "kubelet")
AGENT_USAGE = _m("cilium_node_agent_memory_usage_bytes", "gauge",
                 "Memory usage of the cilium-agent container (kubelet Summary API).", (), (), "kubelet")
AGENT_LIMIT = _m("cilium_node_agent_memory_limit_bytes", "gauge",
                 "Memory limit of the cilium-agent container (availableBytes + workingSetBytes); absent "
                 "when the container has no limit.", (), (), "kubelet")
ENVELOPE_LOWER = _m("cilium_node_agent_memory_envelope_lower_bytes", "gauge",
                    "Lower bound of the cilium-agent's expected memory envelope on this node.", (), (), "")
ENVELOPE_UPPER = _m("cilium_node_agent_memory_envelope_upper_bytes", "gauge",
                    "Upper bound of the cilium-agent's expected memory envelope on this node.", (), (), "")
AGENT_START_TIME = _m("cilium_node_agent_container_start_time_seconds", "gauge",
                      "Start time of the cilium-agent container, Unix seconds (kubelet Summary API).",
                      (), (), "kubelet")
AGENT_RESTARTS = _m("cilium_node_agent_restarts_total", "counter",
                    "Restarts of the cilium-agent container (pod status restartCount).", (), (), "apiserver")
AGENT_LAST_TERMINATED_REASON = _m("cilium_node_agent_last_terminated_reason", "gauge",
                                  "Reason of the cilium-agent container's last termination (always 1).",
                                  ("reason",), (), "apiserver")
AGENT_LAST_TERMINATED_TIMESTAMP = _m("cilium_node_agent_last_terminated_timestamp_seconds", "gauge",
                                     "When the cilium-agent container last terminated, Unix seconds.",
                                     (), (), "apiserver")
AGENT_INFO = _m("cilium_node_agent_info", "gauge", "The cilium-agent pod found on this node (always 1).",
                ("agent_namespace", "agent_pod", "agent_uid"), (), "apiserver")

# --- agent memory by part and the derived envelope (docs/envelope.md) --------------------------------------
AGENT_MEMORY_PART = _m("cilium_node_agent_memory_part_bytes", "gauge",
                       "The cilium-agent's memory by part, from its own metrics endpoint: go_heap "
                       "(go_memstats_heap_inuse_bytes), go_runtime (go_memstats_sys_bytes: all the Go runtime "
                       "obtained from the OS), process_rss (cilium_process_resident_memory_bytes), bpf_maps and "
                       "bpf_progs (cilium_bpf_{maps,progs}_virtual_memory_max_bytes: every map and program on the "
                       "node up to 1.16, maps named cilium_* in 1.17, those of Cilium's programs from 1.18); absent "
                       "when this release or this scrape does not say.", ("part",), (), "agent")
AGENT_BPF_CHARGED = _m("cilium_node_agent_bpf_maps_charged_bytes", "gauge",
                       "Estimate of the BPF memory charged to the running cilium-agent container: its working set "
                       "beyond its anonymous memory (kubelet), at most the agent's BPF memory (bpf_maps + bpf_progs "
                       "parts, else the derived BPF terms). High after the container created the maps; low after a "
                       "restart that reused them (cilium/cilium#37935): the working set then drops although the "
                       "maps are still there.", (), (), "kubelet")
CLUSTER_OBJECTS = _m("cilium_node_agent_cluster_objects", "gauge",
                     "What the agent holds state for, from its own metrics: ipcache_entries (cilium_bpf_map_pressure "
                     "of the ipcache map x its capacity: pods, nodes and CIDRs of the whole cluster), policies "
                     "(cilium_policy), services (load-balancer reverse-NAT entries: service frontends), identities "
                     "(sum of cilium_identity); absent when not reported.", ("kind",), (), "agent")
MACHINE_MEMORY = _m("cilium_node_machine_memory_bytes", "gauge",
                    "The node's total memory (kubelet Summary node.memory: availableBytes + workingSetBytes, the "
                    "machine's MemTotal), which Cilium sizes its dynamic BPF maps by.", (), (), "kubelet")
BPF_MAP_SIZE_RATIO = _m("cilium_node_bpf_map_dynamic_size_ratio", "gauge",
                        "bpf-map-dynamic-size-ratio of this node's agent (0: dynamic sizing off).", (), (), "settings")
DERIVED_LOWER = _m("cilium_node_agent_memory_derived_lower_bytes", "gauge",
                   "Lower bound of the cilium-agent's envelope derived for this node, by the part each term comes "
                   "from (the sum over part is the bound; terms whose lower bound is 0 have no series; "
                   "docs/envelope.md).", ("part",), (), "")
DERIVED_UPPER = _m("cilium_node_agent_memory_derived_upper_bytes", "gauge",
                   "Upper bound of the cilium-agent's envelope derived for this node, by the part each term comes "
                   "from (the sum over part is the bound; docs/envelope.md).", ("part",), (), "")
ENVELOPE_SOURCE = _m("cilium_node_agent_memory_envelope_source", "gauge",
                     "Where the envelope bounds come from now (always 1): static (--memory-envelope), derived "
                     "(--memory-envelope-mode=derived and every input known) or annotation (the node's own).",
                     ("source",), (), "")

# --- cilium-envoy (external Envoy DaemonSet, Cilium 1.16+ default) ------------------------------------
ENVOY_WORKING_SET = _m("cilium_node_envoy_memory_working_set_bytes", "gauge",
                       "Working set of the cilium-envoy container on this node (kubelet Summary API); absent when "
                       "Envoy runs inside the agent container (envoy_mode=\"embedded\").", (), (), "kubelet")
ENVOY_RSS = _m("cilium_node_envoy_memory_rss_bytes", "gauge",
               "RSS of the cilium-envoy container (kubelet Summary API).", (), (), "kubelet")
ENVOY_USAGE = _m("cilium_node_envoy_memory_usage_bytes", "gauge",
                 "Memory usage of the cilium-envoy container (kubelet Summary API).", (), (), "kubelet")
ENVOY_LIMIT = _m("cilium_node_envoy_memory_limit_bytes", "gauge",
                 "Memory limit of the cilium-envoy container (availableBytes + workingSetBytes); absent without a "
                 "limit.", (), (), "kubelet")
ENVOY_START_TIME = _m("cilium_node_envoy_container_start_time_seconds", "gauge",
                      "Start time of the cilium-envoy container, Unix seconds (kubelet Summary API).",
                      (), (), "kubelet")
ENVOY_RESTARTS = _m("cilium_node_envoy_restarts_total", "counter",
                    "Restarts of the cilium-envoy container (pod status restartCount).", (), (), "apiserver")
ENVOY_LAST_TERMINATED_REASON = _m("cilium_node_envoy_last_terminated_reason", "gauge",
                                  "Reason of the cilium-envoy container's last termination (always 1).",
                                  ("reason",), (), "apiserver")
ENVOY_LAST_TERMINATED_TIMESTAMP = _m("cilium_node_envoy_last_terminated_timestamp_seconds", "gauge",
                                     "When the cilium-envoy container last terminated, Unix seconds.",
                                     (), (), "apiserver")
ENVOY_INFO = _m("cilium_node_envoy_info", "gauge", "The cilium-envoy pod found on this node (always 1).",
                ("envoy_namespace", "envoy_pod", "envoy_uid"), (), "apiserver")

# --- the node's Cilium settings (source settings: the agent's REST API, else the cilium-config ConfigMap) ----
CILIUM_INFO = _m("cilium_node_cilium_info", "gauge",
                 "The node's Cilium version and the settings that change what is measured (always 1): "
                 "envoy_mode (embedded, external, or none without the L7 proxy), kube_proxy_replacement, "
                 "monitor_aggregation; unknown where this release or source does not say. origin: agent-api (the "
                 "running agent), configmap (ConfigMap-only mode: start-up values) or agent-api+configmap.",
                 ("version", "envoy_mode", "kube_proxy_replacement", "monitor_aggregation", "origin"), (), "settings")
AGENT_NOTIFICATIONS_ENABLED = _m("cilium_node_agent_notifications_enabled", "gauge",
                                 "1 when the agent emits this monitor notification (drop, policy_verdict, trace), "
                                 "0 when it is switched off (bpf-events-*-enabled, or the runtime option); absent "
                                 "when unknown, including while the agent API fails. origin: agent-api (the "
                                 "runtime option) or configmap (ConfigMap-only mode: the start-up value).",
                                 ("event", "origin"), (), "settings")
HUBBLE_MONITOR_EVENTS = _m("cilium_node_hubble_monitor_events", "gauge",
                           "1 when Hubble observes this monitor event type (hubble-monitor-events empty or listing "
                           "it; l7 only when it lists agent: Cilium passes L7 records as agent events), 0 when "
                           "filtered out; absent when unknown (a comma list while the release is unknown). origin: "
                           "agent-api (1.14-1.16) or configmap.", ("event", "origin"), (), "settings")
AGENT_EVENTS_RATE_LIMIT = _m("cilium_node_agent_events_rate_limit", "gauge",
                             "The agent's BPF events rate limit (bpf-events-default-rate-limit, events per second; "
                             "kind=burst for the burst), 0 = unlimited (Cilium 1.17+; from the agent API).",
                             ("kind", "origin"), (), "settings")
DATAPATH_RATELIMIT_DROPPED = _m("cilium_node_datapath_ratelimited_events_total", "counter",
                                "Monitor notifications the BPF rate limiter discarded before Hubble could see them "
                                "(cilium_bpf_ratelimit_dropped_total{usage=\"events\"}, Cilium 1.17+).",
                                (), (), "agent")

# --- the exporter's own health -----------------------------------------------------------------
BUILD_INFO = _m("cilium_node_exporter_build_info", "gauge", "Exporter build information (always 1).",
                ("version",))
SOURCE_UNAVAILABLE = _m("cilium_node_exporter_source_unavailable", "gauge",
                        "1 when an optional source (--sources=auto) has no endpoint on this node (the agent metrics "
                        "endpoint with Cilium's prometheus.enabled off; neither cilium.sock nor the cilium-config "
                        "ConfigMap for settings): it is skipped, not down, and reports no source_up; 0 once it "
                        "answers.", ("source",))
SOURCE_UP = _m("cilium_node_exporter_source_up", "gauge",
               "1 when the source delivered data at its last attempt, else 0 (enabled sources only; absent "
               "until a source's first attempt has completed).",
               ("source",))
SOURCE_ERRORS = _m("cilium_node_exporter_source_errors_total", "counter",
                   "Errors talking to a source, by bounded reason (rejected: Hubble refused the GetFlows request; "
                   "the exporter retried once without a field mask).", ("source", "reason"))
EVENTS = _m("cilium_node_exporter_events_total", "counter",
            "Messages received from the Hubble stream, by kind.", ("kind",))
HUBBLE_RECONNECTS = _m("cilium_node_exporter_hubble_reconnects_total", "counter",
                       "Times the Hubble GetFlows stream was re-established after a failure.")
HUBBLE_DISCONNECTED = _m("cilium_node_exporter_hubble_disconnected_seconds_total", "counter",
                         "Time without a live GetFlows stream since start: the gap no counter covers.")
LABEL_OVERFLOW = _m("cilium_node_exporter_label_overflow_total", "counter",
                    "Events whose optional label value was past its cap and counted as 'other'.", ("label",))
WEB_AUTH_FAILURES = _m("cilium_node_exporter_web_auth_failures_total", "counter",
                       "Requests refused by basic auth (basic_auth_users of --web-config-file), by reason: missing "
                       "or invalid Authorization header, unknown_user, wrong_password, throttled (answered 429: "
                       "too many password checks from that peer, or the bcrypt gate busy). Absent without basic "
                       "auth.", ("reason",))
SAMPLES_DROPPED = _m("cilium_node_exporter_samples_dropped_total", "counter",
                     "Samples left out of /metrics because their value cannot be represented (not a finite "
                     "number, or a negative counter); the rest of the scrape is served.", ("family",))

ALL_METRICS: Final[tuple[Metric, ...]] = (
    DROPS, POLICY_VERDICTS, L7_REQUESTS, LOST_EVENTS, FLOWS_SEEN, BUFFER_FLOWS, BUFFER_CAPACITY, HUBBLE_INFO,
    DATAPATH_DROPPED, DATAPATH_FORWARDED, BPF_MAP_PRESSURE,
    AGENT_WORKING_SET, AGENT_RSS, AGENT_USAGE, AGENT_LIMIT, ENVELOPE_LOWER, ENVELOPE_UPPER, AGENT_START_TIME,
    AGENT_RESTARTS, AGENT_LAST_TERMINATED_REASON, AGENT_LAST_TERMINATED_TIMESTAMP, AGENT_INFO,
    ENVOY_WORKING_SET, ENVOY_RSS, ENVOY_USAGE, ENVOY_LIMIT, ENVOY_START_TIME, ENVOY_RESTARTS,
    ENVOY_LAST_TERMINATED_REASON, ENVOY_LAST_TERMINATED_TIMESTAMP, ENVOY_INFO,
    AGENT_MEMORY_PART, AGENT_BPF_CHARGED, CLUSTER_OBJECTS, MACHINE_MEMORY, BPF_MAP_SIZE_RATIO, DERIVED_LOWER,
    DERIVED_UPPER, ENVELOPE_SOURCE,
    CILIUM_INFO, AGENT_NOTIFICATIONS_ENABLED, HUBBLE_MONITOR_EVENTS, AGENT_EVENTS_RATE_LIMIT,
    DATAPATH_RATELIMIT_DROPPED,
    BUILD_INFO, SOURCE_UNAVAILABLE, SOURCE_UP, SOURCE_ERRORS, EVENTS, HUBBLE_RECONNECTS, HUBBLE_DISCONNECTED,
    LABEL_OVERFLOW, WEB_AUTH_FAILURES, SAMPLES_DROPPED,
)

# Labels a Prometheus Operator adds as target labels; the exporter must never emit them.
RESERVED_TARGET_LABELS: Final = frozenset(
    {"namespace", "pod", "container", "service", "endpoint", "instance", "job", "node", "cluster"})

# --- label values ------------------------------------------------------------------------------
SOURCES: Final = ("hubble", "kubelet", "apiserver", "agent", "settings")
OPTIONAL_LABELS: Final = ("protocol", "endpoint_namespace", "policy")
# Node annotation with a per-node memory envelope LOWER-UPPER (--envelope-from-node-annotation).
ENVELOPE_ANNOTATION: Final = "cilium-node-exporter.io/memory-envelope"
# Memory by part and the derived envelope (docs/envelope.md).
ENVELOPE_METRICS: Final = (AGENT_MEMORY_PART, AGENT_BPF_CHARGED, CLUSTER_OBJECTS, MACHINE_MEMORY, BPF_MAP_SIZE_RATIO,
                           DERIVED_LOWER, DERIVED_UPPER, ENVELOPE_SOURCE)
MEMORY_PARTS: Final = ("go_heap", "go_runtime", "process_rss", "bpf_maps", "bpf_progs")  # agent_memory_part_bytes
CLUSTER_OBJECT_KINDS: Final = ("ipcache_entries", "policies", "services", "identities")  # agent_cluster_objects
DYNAMIC_MAPS: Final = ("ct_tcp", "ct_any", "nat", "neigh", "sock_rev")  # the maps Cilium sizes by memory
# The terms of the derived envelope (derived_{lower,upper}_bytes{part}).
ENVELOPE_PARTS: Final = ("go_base", "cluster_pods", "services", "policies", "process_static", "hubble_ring",
                         "envoy_embedded", "bpf_dynamic_maps", "bpf_other")
ENVELOPE_MODES: Final = ("static", "derived")  # --memory-envelope-mode
ENVELOPE_SOURCES: Final = ("static", "derived", "annotation")  # agent_memory_envelope_source{source}
ERROR_REASONS: Final = ("connect", "timeout", "tls", "auth", "http", "decode", "protocol", "rejected")
WEB_AUTH_FAILURE_REASONS: Final = ("missing", "invalid", "unknown_user", "wrong_password", "throttled")
EVENT_KINDS: Final = ("drop", "policy_verdict", "l7", "lost", "other")
DIRECTIONS: Final = ("ingress", "egress", "unknown")
ACTIONS: Final = ("forwarded", "dropped", "audit", "redirected", "error", "unknown")
OVERFLOW_VALUE: Final = "other"
UNKNOWN_VALUE: Final = "unknown"

# The node's Cilium settings (source settings).
NOTIFICATION_EVENTS: Final = ("drop", "policy_verdict", "trace")  # agent_notifications_enabled{event}
MONITOR_EVENTS: Final = ("drop", "policy_verdict", "trace", "l7")  # hubble_monitor_events{event}
ENVOY_MODES: Final = ("embedded", "external", "none")  # none: L7 proxy off (no Envoy at all)
KUBE_PROXY_REPLACEMENT_MODES: Final = ("true", "false", "strict", "partial", "probe", "disabled")
MONITOR_AGGREGATION_LEVELS: Final = ("none", "lowest", "low", "medium", "max")
RATE_LIMIT_KINDS: Final = ("rate", "burst")

# Monitor event types (CiliumEventType.type).
EVENT_TYPE_DROP: Final = 1
EVENT_TYPE_TRACE: Final = 4
EVENT_TYPE_POLICY_VERDICT: Final = 5
EVENT_TYPE_L7: Final = 129

# Reserved identities.
IDENTITY_HOST: Final = 1
IDENTITY_HEALTH: Final = 4

# TrafficDirection enum value -> label.
DIRECTION_BY_ENUM: Final = {0: "unknown", 1: "ingress", 2: "egress"}
# Verdict enum value -> action label (TRACED/TRANSLATED never carry a policy decision: unknown).
ACTION_BY_VERDICT: Final = {0: "unknown", 1: "forwarded", 2: "dropped", 3: "error", 4: "audit", 5: "redirected"}
# policy_match_type -> match label (Cilium's PolicyMatchType strings, lower-cased).
MATCH_BY_TYPE: Final = {0: "none", 1: "l3-only", 2: "l3-l4", 3: "l4-only", 4: "all", 5: "l3-proto",
                        6: "proto-only"}
MATCH_UNKNOWN: Final = "unknown"
# LostEventSource enum value -> label.
LOST_SOURCE_BY_ENUM: Final = {0: "unknown", 1: "perf_event_ring_buffer", 2: "observer_events_queue",
                              3: "hubble_ring_buffer"}
HTTP_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})

# DropReason enum: value -> (name, Cilium's monitor string as in cilium_drop_count_total{reason}).
DROP_REASONS: Final[dict[int, tuple[str, str]]] = {
    0: ("DROP_REASON_UNKNOWN", "Success"),
    130: ("INVALID_SOURCE_MAC", "Invalid source mac"),
    131: ("INVALID_DESTINATION_MAC", "Invalid destination mac"),
    132: ("INVALID_SOURCE_IP", "Invalid source ip"),
    133: ("POLICY_DENIED", "Policy denied"),
    134: ("INVALID_PACKET_DROPPED", "Invalid packet"),
    135: ("CT_TRUNCATED_OR_INVALID_HEADER", "CT: Truncated or invalid header"),
    136: ("CT_MISSING_TCP_ACK_FLAG", "Fragmentation needed"),
    137: ("CT_UNKNOWN_L4_PROTOCOL", "CT: Unknown L4 protocol"),
    138: ("CT_CANNOT_CREATE_ENTRY_FROM_PACKET", "CT: Can't create entry from packet"),
    139: ("UNSUPPORTED_L3_PROTOCOL", "Unsupported L3 protocol"),
    140: ("MISSED_TAIL_CALL", "Missed tail call"),
    141: ("ERROR_WRITING_TO_PACKET", "Error writing to packet"),
    142: ("UNKNOWN_L4_PROTOCOL", "Unknown L4 protocol"),
    143: ("UNKNOWN_ICMPV4_CODE", "Unknown ICMPv4 code"),
    144: ("UNKNOWN_ICMPV4_TYPE", "Unknown ICMPv4 type"),
    145: ("UNKNOWN_ICMPV6_CODE", "Unknown ICMPv6 code"),
    146: ("UNKNOWN_ICMPV6_TYPE", "Unknown ICMPv6 type"),
    147: ("ERROR_RETRIEVING_TUNNEL_KEY", "Error retrieving tunnel key"),
    148: ("ERROR_RETRIEVING_TUNNEL_OPTIONS", "Error retrieving tunnel options"),
    149: ("INVALID_GENEVE_OPTION", "Invalid Geneve option"),
    150: ("UNKNOWN_L3_TARGET_ADDRESS", "Unknown L3 target address"),
    151: ("STALE_OR_UNROUTABLE_IP", "Stale or unroutable IP"),
    152: ("NO_MATCHING_LOCAL_CONTAINER_FOUND", "No matching local container found"),
    153: ("ERROR_WHILE_CORRECTING_L3_CHECKSUM", "Error while correcting L3 checksum"),
    154: ("ERROR_WHILE_CORRECTING_L4_CHECKSUM", "Error while correcting L4 checksum"),
    155: ("CT_MAP_INSERTION_FAILED", "CT: Map insertion failed"),
    156: ("INVALID_IPV6_EXTENSION_HEADER", "Invalid IPv6 extension header"),
    157: ("IP_FRAGMENTATION_NOT_SUPPORTED", "IP fragmentation not supported"),
    158: ("SERVICE_BACKEND_NOT_FOUND", "Service backend not found"),
    160: ("NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT", "No tunnel/encapsulation endpoint (datapath BUG!)"),
    161: ("FAILED_TO_INSERT_INTO_PROXYMAP", "NAT 46/64 not enabled"),
    162: ("REACHED_EDT_RATE_LIMITING_DROP_HORIZON", "Reached EDT rate-limiting drop horizon"),
    163: ("UNKNOWN_CONNECTION_TRACKING_STATE", "Unknown connection tracking state"),
    164: ("LOCAL_HOST_IS_UNREACHABLE", "Local host is unreachable"),
    165: ("NO_CONFIGURATION_AVAILABLE_TO_PERFORM_POLICY_DECISION",
          "No configuration available to perform policy decision"),
    166: ("UNSUPPORTED_L2_PROTOCOL", "Unsupported L2 protocol"),
    167: ("NO_MAPPING_FOR_NAT_MASQUERADE", "No mapping for NAT masquerade"),
    168: ("UNSUPPORTED_PROTOCOL_FOR_NAT_MASQUERADE", "Unsupported protocol for NAT masquerade"),
    169: ("FIB_LOOKUP_FAILED", "FIB lookup failed"),
    170: ("ENCAPSULATION_TRAFFIC_IS_PROHIBITED", "Encapsulation traffic is prohibited"),
    171: ("INVALID_IDENTITY", "Invalid identity"),
    172: ("UNKNOWN_SENDER", "Unknown sender"),
    173: ("NAT_NOT_NEEDED", "NAT not needed"),
    174: ("IS_A_CLUSTERIP", "Is a ClusterIP"),
    175: ("FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND", "First logical datagram fragment not found"),
    176: ("FORBIDDEN_ICMPV6_MESSAGE", "Forbidden ICMPv6 message"),
    177: ("DENIED_BY_LB_SRC_RANGE_CHECK", "Denied by LB src range check"),
    178: ("SOCKET_LOOKUP_FAILED", "Socket lookup failed"),
    179: ("SOCKET_ASSIGN_FAILED", "Socket assign failed"),
    180: ("PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL", "Proxy redirection not supported for protocol"),
    181: ("POLICY_DENY", "Policy denied by denylist"),
    182: ("VLAN_FILTERED", "VLAN traffic disallowed by VLAN filter"),
    183: ("INVALID_VNI", "Incorrect VNI from VTEP"),
    184: ("INVALID_TC_BUFFER", "Failed to update or lookup TC buffer"),
    185: ("NO_SID", "No SID was found for the IP address"),
    186: ("MISSING_SRV6_STATE", "SRv6 state was removed during tail call"),
    187: ("NAT46", "L3 translation from IPv4 to IPv6 failed (NAT46)"),
    188: ("NAT64", "L3 translation from IPv6 to IPv4 failed (NAT64)"),
    189: ("AUTH_REQUIRED", "Authentication required"),
    190: ("CT_NO_MAP_FOUND", "No conntrack map found"),
    191: ("SNAT_NO_MAP_FOUND", "No nat map found"),
    192: ("INVALID_CLUSTER_ID", "Invalid ClusterID"),
    193: ("UNSUPPORTED_PROTOCOL_FOR_DSR_ENCAP", "Unsupported packet protocol for DSR encapsulation"),
    194: ("NO_EGRESS_GATEWAY", "No egress gateway found"),
    195: ("UNENCRYPTED_TRAFFIC", "Traffic is unencrypted"),
    196: ("TTL_EXCEEDED", "TTL exceeded"),
    197: ("NO_NODE_ID", "No node ID found"),
    198: ("DROP_RATE_LIMITED", "Rate limited"),
    199: ("IGMP_HANDLED", "IGMP handled"),
    200: ("IGMP_SUBSCRIBED", "IGMP subscribed"),
    201: ("MULTICAST_HANDLED", "Multicast handled"),
    202: ("DROP_HOST_NOT_READY", "Host datapath not ready"),
    203: ("DROP_EP_NOT_READY", "Endpoint policy program not available"),
    204: ("DROP_NO_EGRESS_IP", "No Egress IP configured"),
    205: ("DROP_PUNT_PROXY", "Punt to proxy"),
}
DROP_REASON_NAME_BY_CODE: Final = {code: name for code, (name, _) in DROP_REASONS.items()}
DROP_REASON_NAME_BY_STRING: Final = {text: name for name, text in DROP_REASONS.values()}
DROP_REASON_STRING_BY_NAME: Final = {name: text for name, text in DROP_REASONS.values()}

# Which drop reasons are errors (the drop-reason classes) is a monitoring decision, configurable:
# cilium_node_exporter.mixin.config DEFAULT_DROP_CLASSES and slo.drop_class().
CONNTRACK_FULL_REASON: Final = "CT_MAP_INSERTION_FAILED"


def drop_reason_name(code: int) -> str:
    """DropReason enum name for ``code``; ``REASON_<n>`` for a value this exporter does not know."""
    name = DROP_REASON_NAME_BY_CODE.get(code)
    return name if name is not None else f"REASON_{code}"
