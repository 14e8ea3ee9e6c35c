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
``ratelimit_check_and_take`` creates at the first check [v1.17.8 bpf/lib/ratelimit.h:61]). While the agent
container is not running the endpoint drops connections, like a dead agent. :class:`NoAgentMetrics` is a node
without the endpoint (Cilium's ``prometheus.enabled=false``, the chart default): a port nothing listens on.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from cilium_node_simulator.k8s import FakeHandler, FakeServer, NodeModel
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

    def render(self) -> str:
        d = self.datapath()
        s = self.model.agent.sample
        ratelimited = d.get("ratelimited")
        lines = [
            "# HELP cilium_bpf_map_ops_total Total operations on map, tagged by map name",
            "# TYPE cilium_bpf_map_ops_total counter",
            'cilium_bpf_map_ops_total{map_name="cilium_ct4_global",operation="update",outcome="success"} 91234',
            "# HELP cilium_bpf_map_pressure Fill percentage of map, tagged by map name",
            "# TYPE cilium_bpf_map_pressure gauge",
            *(f'cilium_bpf_map_pressure{{map_name="{_esc(m)}"}} {v}' for m, v in sorted(d["map_pressure"].items())),
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
            "# HELP cilium_process_resident_memory_bytes Resident memory size in bytes.",
            "# TYPE cilium_process_resident_memory_bytes gauge",
            f"cilium_process_resident_memory_bytes {s.rss}",
            "# HELP go_goroutines Number of goroutines that currently exist.",
            "# TYPE go_goroutines gauge",
            "go_goroutines 812",
        ]
        return "\n".join(lines) + "\n"


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
