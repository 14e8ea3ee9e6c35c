"""A cilium-agent Prometheus endpoint (Cilium's ``:9962/metrics``) for the simulator.

Serves the families the exporter re-exports, labelled as Cilium labels them
(``cilium_drop_count_total{direction="INGRESS",reason="Policy denied"}``,
``cilium_forward_count_total{direction=...}``, ``cilium_bpf_map_pressure{map_name=...}``,
``cilium_bpf_ratelimit_dropped_total{usage="events"}``) among other agent series. Counters follow
the scenario: when the runtime offers ``agent_datapath()`` (a mapping ``{"dropped":
{(reason_string, DIRECTION): packets}, "forwarded": {DIRECTION: packets}, "map_pressure": {map_name:
ratio}, "ratelimited": events or None}``), its totals are served; otherwise packets accumulate at
fixed rates. The rate-limit counter appears only once the 1.17+ limiter checked a first event
([v1.17.8 pkg/maps/ratelimitmap/ratelimitmap.go:188] exports the BPF metrics map's entries, which
``ratelimit_check_and_take`` creates at the first check [v1.17.8 bpf/lib/ratelimit.h:61]). The agent's memory
families follow the runtime's ``agent_memory()`` (:mod:`.memory_model`) as each release exposes them
(:func:`memory_lines`). While the agent container is not running the endpoint drops connections, like a dead
agent. :class:`NoAgentMetrics` is a node without the endpoint (Cilium's ``prometheus.enabled=false``, the chart
default): a port nothing listens on.
"""

from __future__ import annotations

import socket
import threading
import time
from decimal import Decimal
from typing import Any

from cilium_node_simulator.k8s import FakeHandler, FakeServer, NodeModel
from cilium_node_simulator.memory_model import IPCACHE_MAX, LB_MAX, MemoryModel, MemorySample
from cilium_node_simulator.scenario import DEFAULT_MAP_PRESSURE

# Labels as the metrics map writes them [v1.16.15 pkg/maps/metricsmap/metricsmap.go:78-81]: reason = DropReasonExt
# [v1.16.15 pkg/monitor/api/drop.go:112] ("<code>, <ext>" for a code the agent has no string for), direction
# INGRESS/EGRESS/SERVICE/UNKNOWN.
DEFAULT_DROP_RATES = {("Policy denied", "INGRESS"): 3.0, ("Policy denied", "EGRESS"): 1.0,
                      ("Stale or unroutable IP", "INGRESS"): 0.2, ("Service backend not found", "SERVICE"): 0.1,
                      ("206, 0", "EGRESS"): 0.1}
DEFAULT_FORWARD_RATES = {"INGRESS": 800.0, "EGRESS": 1200.0, "SERVICE": 150.0}


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# client_golang's Go collector help texts: as up to v1.19 (Cilium 1.14 vendors v1.16.0, 1.15 v1.17.0, 1.16 v1.19.1)
# and from v1.20.0 (Cilium 1.17 v1.20.5, 1.18 v1.22.0, 1.19 v1.23.2; prometheus/go_collector.go).
_GO_HELP = {
    False: {"go_memstats_heap_inuse_bytes": "Number of heap bytes that are in use.",
            "go_memstats_sys_bytes": "Number of bytes obtained from system."},
    True: {"go_memstats_heap_inuse_bytes": "Number of heap bytes that are in use. Equals to "
                                           "/memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes",
           "go_memstats_sys_bytes": "Number of bytes obtained from system. Equals to /memory/classes/total:byte."},
}
LB_PRESSURE_INTERVAL = 300.0  # 1.18+ lb-pressure-metrics-interval default (pkg/loadbalancer/config.go)


def go_float(value: float) -> str:
    """``value`` as Go's ``strconv.FormatFloat(v, 'g', -1, 64)`` writes it (Prometheus' text encoder): the
    shortest digits, in exponent form from 1e6 up and below 1e-4 (``2.62144e+08``, ``65536``, ``0.0005``)."""
    digits, exponent = Decimal(repr(float(value))).normalize().as_tuple()[1:]
    if not isinstance(exponent, int) or value == 0:
        return "0"
    text = "".join(map(str, digits))
    point = len(text) + exponent  # digits before the decimal point
    sign = "-" if value < 0 else ""
    if point - 1 < -4 or point - 1 >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{sign}{mantissa}e{point - 1:+03d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{text}"
    if point >= len(text):
        return sign + text + "0" * (point - len(text))
    return f"{sign}{text[:point]}.{text[point:]}"


Family = tuple[str, str, list[tuple[dict[str, str], float]]]  # name, help, samples (labels, value)


def memory_families(model: MemoryModel, sample: MemorySample, uptime: float, start_time: float) -> list[Family]:
    """The agent's memory families as ``model.release`` exposes them (see :mod:`.memory_model`): ``uptime`` is the
    container's (simulated seconds; 1.18+ reports load-balancer pressure every 5 minutes)."""
    release, cluster = model.release, model.cluster
    maps = model.maps
    out: list[Family] = []
    if release >= (1, 15):
        capacity = [({"map_group": "default"}, LB_MAX), ({"map_group": "endpoint_policy"}, 16384),
                    ({"map_group": f"cilium_{_ipcache(release)}"}, IPCACHE_MAX)]
        capacity += [({"map_group": m.name}, m.entries) for m in maps if m.entries != LB_MAX]
        out.append(("cilium_bpf_map_capacity", "Capacity of map, tagged by map group. All maps with a capacity of "
                    "65536 are grouped under 'default'", sorted(capacity, key=lambda c: c[0]["map_group"])))
    pressure = [({"map_name": _ipcache(release)}, model.ipcache_entries / IPCACHE_MAX)]
    if cluster.services and (release < (1, 18) or uptime >= LB_PRESSURE_INTERVAL):
        pressure.append(({"map_name": "lb4_reverse_nat"}, cluster.services / LB_MAX))
    out.append(("cilium_bpf_map_pressure", "Fill percentage of map, tagged by map name", pressure))
    if release >= (1, 17):
        out.append(("cilium_bpf_maps", "Total count of BPF maps.", [({}, 40 + len(maps) + 2 * cluster.endpoints)]))
    out.append(("cilium_bpf_maps_virtual_memory_max_bytes", "BPF maps kernel max memory usage size in bytes.",
                [({}, sample.reported_maps)]))
    if release >= (1, 17):
        out.append(("cilium_bpf_progs", "Total count of BPF programs.", [({}, 20 + 6 * cluster.endpoints)]))
    out.append(("cilium_bpf_progs_virtual_memory_max_bytes", "BPF programs kernel max memory usage size in bytes.",
                [({}, sample.reported_progs)]))
    out.append(("cilium_identity", "Number of identities currently allocated",
                [({"type": "cluster_local"}, cluster.identities), ({"type": "reserved"}, 9)]))
    out.append(("cilium_policy", "Number of policies currently loaded", [({}, cluster.policies)]))
    out.append(("cilium_process_resident_memory_bytes", "Resident memory size in bytes.",
                [({}, sample.process_rss)]))
    out.append(("cilium_process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
                [({}, start_time)]))
    helps = _GO_HELP[release >= (1, 17)]
    out.append(("go_memstats_heap_inuse_bytes", helps["go_memstats_heap_inuse_bytes"], [({}, sample.go_heap)]))
    out.append(("go_memstats_sys_bytes", helps["go_memstats_sys_bytes"], [({}, sample.go_sys)]))
    return out


def memory_lines(model: MemoryModel, sample: MemorySample, uptime: float, start_time: float) -> list[str]:
    """:func:`memory_families` in the text format."""
    lines: list[str] = []
    for name, help_, samples in memory_families(model, sample, uptime, start_time):
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} gauge"]
        for labels, value in samples:
            text = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{text}}} {go_float(value)}" if text else f"{name} {go_float(value)}")
    return lines


def _ipcache(release: tuple[int, int]) -> str:
    return "ipcache_v2" if release >= (1, 18) else "ipcache"  # pkg/maps/ipcache/ipcache.go Name


class _Handler(FakeHandler):
    server: AgentMetricsFake

    def do_GET(self) -> None:
        server = self.server
        server.requests += 1
        if not server.model.agent.sample.running:
            self.close_connection = True
            self.connection.close()
            return
        if self.common_fault():
            return
        if self.route != "/metrics":
            self.send_body(404, b"404 page not found\n", "text/plain; charset=utf-8")
            return
        self.send_body(200, server.render().encode(), "text/plain; version=0.0.4; charset=utf-8")


class AgentMetricsFake(FakeServer):
    """The simulated agent's metrics endpoint (``--agent-metrics-port``)."""

    def __init__(self, port: int, model: NodeModel, fault: str = "none", host: str = "127.0.0.1") -> None:
        super().__init__(port, _Handler, None, fault, host)
        self.model = model
        self._start = time.monotonic()
        self._lock = threading.Lock()

    def datapath(self) -> dict[str, Any]:
        """Totals now: from the runtime when it offers them, else from the default rates."""
        offer = getattr(self.model.runtime, "agent_datapath", None)
        if callable(offer):
            return offer()
        elapsed = time.monotonic() - self._start
        return {"dropped": {k: int(r * elapsed) for k, r in DEFAULT_DROP_RATES.items()},
                "forwarded": {k: int(r * elapsed) for k, r in DEFAULT_FORWARD_RATES.items()},
                "map_pressure": dict(DEFAULT_MAP_PRESSURE)}

    def memory(self) -> tuple[MemoryModel, MemorySample]:
        """The agent's memory model and its parts now: the runtime's, else a 1.19 agent of the container's RSS."""
        offer = getattr(self.model.runtime, "agent_memory", None)
        model = getattr(self.model.runtime, "memory", None)
        if callable(offer) and isinstance(model, MemoryModel):
            return model, offer()
        model = MemoryModel((1, 19))
        return model, model.sample(self.model.agent.sample.rss, owns_maps=True)

    def render(self) -> str:
        d = self.datapath()
        model, sample = self.memory()
        ratelimited = d.get("ratelimited")
        started = self.model.agent.container_started
        speed = float(getattr(self.model.runtime, "speed", 1.0))
        pressure = {**d["map_pressure"]}
        memory = memory_lines(model, sample, (time.time() - started) * speed, started)
        lines = [
            "# HELP cilium_bpf_map_ops_total Total operations on map, tagged by map name",
            "# TYPE cilium_bpf_map_ops_total counter",
            'cilium_bpf_map_ops_total{map_name="ct4_global",operation="update",outcome="success"} 91234',
            *(f'cilium_bpf_map_pressure{{map_name="{_esc(m)}"}} {go_float(v)}' for m, v in sorted(pressure.items())),
            *(("# HELP cilium_bpf_ratelimit_dropped_total Total drops resulting from BPF ratelimiter, tagged by "
               "source of drop", "# TYPE cilium_bpf_ratelimit_dropped_total counter",
               f'cilium_bpf_ratelimit_dropped_total{{usage="events"}} {ratelimited}') if ratelimited is not None
              else ()),
            "# HELP cilium_drop_bytes_total Total dropped bytes, tagged by drop reason and ingress/egress direction",
            "# TYPE cilium_drop_bytes_total counter",
            *(f'cilium_drop_bytes_total{{direction="{di}",reason="{_esc(r)}"}} {n * 74}'
              for (r, di), n in sorted(d["dropped"].items())),
            "# HELP cilium_drop_count_total Total dropped packets, tagged by drop reason and ingress/egress direction",
            "# TYPE cilium_drop_count_total counter",
            *(f'cilium_drop_count_total{{direction="{di}",reason="{_esc(r)}"}} {n}'
              for (r, di), n in sorted(d["dropped"].items())),
            "# HELP cilium_forward_bytes_total Total forwarded bytes, tagged by ingress/egress direction",
            "# TYPE cilium_forward_bytes_total counter",
            *(f'cilium_forward_bytes_total{{direction="{di}"}} {n * 800}' for di, n in sorted(d["forwarded"].items())),
            "# HELP cilium_forward_count_total Total forwarded packets, tagged by ingress/egress direction",
            "# TYPE cilium_forward_count_total counter",
            *(f'cilium_forward_count_total{{direction="{di}"}} {n}' for di, n in sorted(d["forwarded"].items())),
            "# HELP go_goroutines Number of goroutines that currently exist.",
            "# TYPE go_goroutines gauge",
            "go_goroutines 812",
        ]
        return "\n".join(exposition(memory + lines)) + "\n"


def exposition(lines: list[str]) -> list[str]:
    """Families in name order, as client_golang writes them; samples of one family given in two places (the
    map pressures of the phase and of the memory model) are written under one HELP/TYPE."""
    families: dict[str, list[str]] = {}
    name = ""
    for line in lines:
        if line.startswith("# HELP "):
            name = line.split()[2]
            families.setdefault(name, [line, ""])
        elif line.startswith("# TYPE "):
            families[name][1] = line
        else:
            family = line.split("{", 1)[0].split(" ", 1)[0]
            families.setdefault(family, [f"# HELP {family} Fill percentage of map, tagged by map name",
                                         f"# TYPE {family} gauge"]).append(line)
    return [line for family in sorted(families) for line in families[family]]


class NoAgentMetrics:
    """A port on 127.0.0.1 that is bound but never listens: connections are refused, as on a node whose
    agent serves no metrics. Holding the socket keeps another process from taking the port."""

    scheme = "http"

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.requests = 0

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> NoAgentMetrics:
        return self

    def stop(self) -> None:
        self._sock.close()
