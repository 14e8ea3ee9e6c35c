"""Cilium's enums and strings as the simulator knows them: its own tables, never the exporter's.

A fake that shares the exporter's assumptions cannot catch them, so everything the simulator needs
to build flows and its ground truth is written here from Cilium's sources:

- ``api/v1/flow/flow.proto`` (Verdict, TrafficDirection, LostEventSource, L7FlowType): the numbers
  are the wire format and identical in 1.14-1.19 (read at 1.14.2, 1.16.6 and 1.19.4); the
  DropReason *names* are taken from the generated descriptor of that proto (the 1.19.4 file, the
  project's wire format), which is Cilium's own enum, not a hand copy.
- ``pkg/monitor/api/types.go`` (PolicyMatchType strings, identical 1.14-1.19).
- ``pkg/monitor/api/drop.go`` (the agent's human drop-reason strings and ``DropReasonExt``).
- ``pkg/identity/numericidentity.go`` (reserved identities 1-8, identical 1.14-1.19).
"""

from __future__ import annotations

from typing import Final

from cilium_node_exporter.api.flow import flow_pb2

# flow.proto `Verdict` (identical 1.14-1.19).
VERDICTS: Final = {"VERDICT_UNKNOWN": 0, "FORWARDED": 1, "DROPPED": 2, "ERROR": 3, "AUDIT": 4, "REDIRECTED": 5,
                   "TRACED": 6, "TRANSLATED": 7}
# flow.proto `TrafficDirection` (identical 1.14-1.19).
TRAFFIC_DIRECTIONS: Final = {"TRAFFIC_DIRECTION_UNKNOWN": 0, "INGRESS": 1, "EGRESS": 2}
# flow.proto `LostEventSource` (identical 1.14-1.19).
LOST_EVENT_SOURCES: Final = {"UNKNOWN_LOST_EVENT_SOURCE": 0, "PERF_EVENT_RING_BUFFER": 1,
                             "OBSERVER_EVENTS_QUEUE": 2, "HUBBLE_RING_BUFFER": 3}
# flow.proto `L7FlowType`.
L7_REQUEST, L7_RESPONSE, L7_SAMPLE = 1, 2, 3
# pkg/monitor/api/types.go: MessageTypeDrop 1, MessageTypeTrace 4, MessageTypePolicyVerdict 5,
# MessageTypeAccessLog 129 (L7 flows, set by pkg/hubble/parser/seven/parser.go).
EVENT_DROP, EVENT_TRACE, EVENT_POLICY_VERDICT, EVENT_L7 = 1, 4, 5, 129
# pkg/monitor/api/types.go PolicyMatchType String(): number -> Cilium's string.
POLICY_MATCH_TYPES: Final = {0: "none", 1: "L3-Only", 2: "L3-L4", 3: "L4-Only", 4: "all", 5: "L3-Proto",
                             6: "Proto-Only"}
# pkg/identity/numericidentity.go reserved identities.
RESERVED_IDENTITIES: Final = {"host": 1, "world": 2, "unmanaged": 3, "health": 4, "init": 5, "remote-node": 6,
                              "kube-apiserver": 7, "ingress": 8}
IDENTITY_HOST: Final = RESERVED_IDENTITIES["host"]
IDENTITY_WORLD: Final = RESERVED_IDENTITIES["world"]
IDENTITY_HEALTH: Final = RESERVED_IDENTITIES["health"]
IDENTITY_KUBE_APISERVER: Final = RESERVED_IDENTITIES["kube-apiserver"]
# DropReason: value -> enum name, from flow.proto (see the module docstring).
DROP_REASON_NAMES: Final = {v.number: v.name for v in flow_pb2.DropReason.DESCRIPTOR.values}
# pkg/monitor/api/drop.go `errors`: the agent's drop-reason strings in cilium_drop_count_total{reason}
# (read at main, mhofstetter/cilium 9eaea51, whose map no longer has 189; 189 "Authentication required"
# as in the release branches' file; 1.16.15 has the same strings for every code it knows).
DROP_REASON_TEXT: Final = {
    0: "Success", 2: "Invalid packet", 130: "Invalid source mac", 131: "Invalid destination mac",
    132: "Invalid source ip", 133: "Policy denied", 134: "Invalid packet", 135: "CT: Truncated or invalid header",
    136: "Fragmentation needed", 137: "CT: Unknown L4 protocol", 138: "CT: Can't create entry from packet",
    139: "Unsupported L3 protocol", 140: "Missed tail call", 141: "Error writing to packet",
    142: "Unknown L4 protocol", 143: "Unknown ICMPv4 code", 144: "Unknown ICMPv4 type",
    145: "Unknown ICMPv6 code", 146: "Unknown ICMPv6 type", 147: "Error retrieving tunnel key",
    148: "Error retrieving tunnel options", 149: "Invalid Geneve option", 150: "Unknown L3 target address",
    151: "Stale or unroutable IP", 152: "No matching local container found",
    153: "Error while correcting L3 checksum", 154: "Error while correcting L4 checksum",
    155: "CT: Map insertion failed", 156: "Invalid IPv6 extension header", 157: "IP fragmentation not supported",
    158: "Service backend not found", 160: "No tunnel/encapsulation endpoint (datapath BUG!)",
    161: "NAT 46/64 not enabled", 162: "Reached EDT rate-limiting drop horizon",
    163: "Unknown connection tracking state", 164: "Local host is unreachable",
    165: "No configuration available to perform policy decision", 166: "Unsupported L2 protocol",
    167: "No mapping for NAT masquerade", 168: "Unsupported protocol for NAT masquerade", 169: "FIB lookup failed",
    170: "Encapsulation traffic is prohibited", 171: "Invalid identity", 172: "Unknown sender",
    173: "NAT not needed", 174: "Is a ClusterIP", 175: "First logical datagram fragment not found",
    176: "Forbidden ICMPv6 message", 177: "Denied by LB src range check", 178: "Socket lookup failed",
    179: "Socket assign failed", 180: "Proxy redirection not supported for protocol",
    181: "Policy denied by denylist", 182: "VLAN traffic disallowed by VLAN filter", 183: "Incorrect VNI from VTEP",
    184: "Failed to update or lookup TC buffer", 185: "No SID was found for the IP address",
    186: "SRv6 state was removed during tail call", 187: "L3 translation from IPv4 to IPv6 failed (NAT46)",
    188: "L3 translation from IPv6 to IPv4 failed (NAT64)", 189: "Authentication required",
    190: "No conntrack map found", 191: "No nat map found", 192: "Invalid ClusterID",
    193: "Unsupported packet protocol for DSR encapsulation", 194: "No egress gateway found",
    195: "Traffic is unencrypted", 196: "TTL exceeded", 197: "No node ID found", 198: "Rate limited",
    199: "IGMP handled", 200: "IGMP subscribed", 201: "Multicast handled", 202: "Host datapath not ready",
    203: "Endpoint policy program not available", 204: "No Egress IP configured", 205: "Punt to proxy",
}
# Kafka error codes the proxylib parser writes into a Denied entry (cilium/proxy proxylib/kafka/parser.go).
KAFKA_TOPIC_AUTHORIZATION_FAILED = 29
# cilium/proxy pkg/policy/api/kafka ApiKeyToString: the key names Hubble shows (0 is "produce").
KAFKA_API_KEYS: Final = {"produce": 0, "fetch": 1, "offsets": 2, "metadata": 3, "leaderandisr": 4,
                         "stopreplica": 5, "updatemetadata": 6, "controlledshutdown": 7, "offsetcommit": 8,
                         "offsetfetch": 9, "findcoordinator": 10, "joingroup": 11, "heartbeat": 12,
                         "leavegroup": 13, "syncgroup": 14, "describegroups": 15, "listgroups": 16,
                         "saslhandshake": 17, "apiversions": 18, "createtopics": 19, "deletetopics": 20}


def drop_reason_text(code: int, ext: int = 0) -> str:
    """The agent's reason string for ``code`` (``pkg/monitor/api/drop.go`` ``DropReasonExt``): the known
    string (``", <ext>"`` appended for a non-zero extended error), or ``"<code>, <ext>"`` when unknown."""
    text = DROP_REASON_TEXT.get(code)
    if text is None:
        return f"{code}, {ext}"
    return f"{text}, {ext}" if ext else text
