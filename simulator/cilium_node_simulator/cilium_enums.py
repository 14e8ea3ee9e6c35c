"""Cilium's enums and strings as the simulator knows them: its own tables, never the exporter's.

A fake that shares the exporter's assumptions cannot catch them, so everything the simulator needs
to build flows and its ground truth is written here from Cilium's sources (citations ``[LABEL path:lines]``,
:mod:`.sources`, next to each table): ``api/v1/flow/flow.proto`` enums, whose numbers are the wire format and
identical 1.14-1.19 (the DropReason *names* are taken from the generated descriptor of that proto, the 1.19.4
file that is the project's wire format: Cilium's own enum, not a hand copy), ``pkg/monitor/api`` (policy match
strings, message types, the agent's drop-reason strings), ``pkg/identity/numericidentity.go`` (reserved
identities) and the Kafka API key names Hubble shows.
"""

from __future__ import annotations

from typing import Final

from cilium_node_exporter.api.flow import flow_pb2

# [hubble-v0.12.3 api/v1/flow/flow.proto:298-321] to [hubble-v1.19.4 api/v1/flow/flow.proto:402-425]
VERDICTS: Final = {"VERDICT_UNKNOWN": 0, "FORWARDED": 1, "DROPPED": 2, "ERROR": 3, "AUDIT": 4, "REDIRECTED": 5,
                   "TRACED": 6, "TRANSLATED": 7}
# [hubble-v0.12.3 api/v1/flow/flow.proto:398-402] to [hubble-v1.19.4 api/v1/flow/flow.proto:518-522]
TRAFFIC_DIRECTIONS: Final = {"TRAFFIC_DIRECTION_UNKNOWN": 0, "INGRESS": 1, "EGRESS": 2}
# [hubble-v0.12.3 api/v1/flow/flow.proto:597-611] to [hubble-v1.19.4 api/v1/flow/flow.proto:772-786]
LOST_EVENT_SOURCES: Final = {"UNKNOWN_LOST_EVENT_SOURCE": 0, "PERF_EVENT_RING_BUFFER": 1,
                             "OBSERVER_EVENTS_QUEUE": 2, "HUBBLE_RING_BUFFER": 3}
# [hubble-v0.12.3 api/v1/flow/flow.proto:188-193] to [hubble-v1.19.4 api/v1/flow/flow.proto:265-270]
L7_REQUEST, L7_RESPONSE, L7_SAMPLE = 1, 2, 3
# MessageTypeDrop 1, MessageTypeTrace 4, MessageTypePolicyVerdict 5, MessageTypeAccessLog 129
# [v1.16.15 pkg/monitor/api/types.go:21-54] (L7 flows: [v1.16.15 pkg/hubble/parser/seven/parser.go:155]).
EVENT_DROP, EVENT_TRACE, EVENT_POLICY_VERDICT, EVENT_L7 = 1, 4, 5, 129
# PolicyMatchType String(): number -> Cilium's string [v1.14.16 pkg/monitor/api/types.go:544-562] to
# [hubble-v1.19.4 pkg/monitor/api/types.go:458-476].
POLICY_MATCH_TYPES: Final = {0: "none", 1: "L3-Only", 2: "L3-L4", 3: "L4-Only", 4: "all", 5: "L3-Proto",
                             6: "Proto-Only"}
# reserved identities 1-8 [v1.14.16 pkg/identity/numericidentity.go] [v1.16.15 pkg/identity/numericidentity.go:98-126]
# [main pkg/identity/numericidentity.go].
RESERVED_IDENTITIES: Final = {"host": 1, "world": 2, "unmanaged": 3, "health": 4, "init": 5, "remote-node": 6,
                              "kube-apiserver": 7, "ingress": 8}
IDENTITY_HOST: Final = RESERVED_IDENTITIES["host"]
IDENTITY_WORLD: Final = RESERVED_IDENTITIES["world"]
IDENTITY_HEALTH: Final = RESERVED_IDENTITIES["health"]
IDENTITY_KUBE_APISERVER: Final = RESERVED_IDENTITIES["kube-apiserver"]
# DropReason: value -> enum name, from flow.proto (see the module docstring).
DROP_REASON_NAMES: Final = {v.number: v.name for v in flow_pb2.DropReason.DESCRIPTOR.values}
# `errors`: the agent's drop-reason strings in cilium_drop_count_total{reason}, the drop codes (0, 2 and 130 up) of
# [v1.18.3 pkg/monitor/api/drop.go:17-107] [hubble-v1.19.4 pkg/monitor/api/drop.go:17-108]; every earlier release has
# the same string for each code it knows [v1.14.16 pkg/monitor/api/drop.go:17-96]
# [v1.16.15 pkg/monitor/api/drop.go:17-103]; main adds 206 [main pkg/monitor/api/drop.go:17-109].
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
# The Kafka error code proxylib writes into a Denied entry [proxy-1.16.15 proxylib/kafka/parser.go:110]
# [proxy-1.16.15 proxylib/kafka/kafkalib/error.go:39].
KAFKA_TOPIC_AUTHORIZATION_FAILED = 29
# ApiKeyToString: the key names Hubble shows (0 is "produce") [v1.16.15 pkg/envoy/accesslog_server.go:195]
# [v1.16.15 vendor/github.com/cilium/proxy/pkg/policy/api/kafka/kafka.go:135-156].
KAFKA_API_KEYS: Final = {"produce": 0, "fetch": 1, "offsets": 2, "metadata": 3, "leaderandisr": 4,
                         "stopreplica": 5, "updatemetadata": 6, "controlledshutdown": 7, "offsetcommit": 8,
                         "offsetfetch": 9, "findcoordinator": 10, "joingroup": 11, "heartbeat": 12,
                         "leavegroup": 13, "syncgroup": 14, "describegroups": 15, "listgroups": 16,
                         "saslhandshake": 17, "apiversions": 18, "createtopics": 19, "deletetopics": 20}


def drop_reason_text(code: int, ext: int = 0) -> str:
    """The agent's reason string for ``code`` (``DropReasonExt`` [v1.16.15 pkg/monitor/api/drop.go]): the known
    string (``", <ext>"`` appended for a non-zero extended error), or ``"<code>, <ext>"`` when unknown."""
    text = DROP_REASON_TEXT.get(code)
    if text is None:
        return f"{code}, {ext}"
    return f"{text}, {ext}" if ext else text
