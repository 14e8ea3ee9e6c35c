"""The Cilium containers the kubelet and API server sources report: where to find each one.

``agent``: the cilium-agent container of the Cilium DaemonSet (``--cilium-*`` flags). ``envoy``: the
cilium-envoy container of its own DaemonSet (``--envoy-*`` flags; the Cilium chart's
``templates/cilium-envoy/daemonset.yaml``, 1.16+ default: labels ``k8s-app=cilium-envoy``, container
``cilium-envoy``, in Cilium's namespace). Embedded Envoy (1.14/1.15 default, or ``envoy.enabled=false``)
is a child process of the agent (``pkg/envoy/embedded_envoy.go``) and is counted in the agent
container's memory; there is then no cilium-envoy pod and no Envoy series.
"""

from __future__ import annotations

from dataclasses import dataclass

from cilium_node_exporter.aggregation.containers import AGENT, ENVOY
from cilium_node_exporter.config import Config


@dataclass(frozen=True)
class Component:
    """One container to report: its pods' namespace and label selector, and the container name."""

    name: str  # aggregation.containers.AGENT / ENVOY
    namespace: str
    pod_selector: str
    container: str


def components(config: Config) -> tuple[Component, ...]:
    """The components this configuration reports (the agent always, Envoy unless ``--envoy=false``)."""
    out = [Component(AGENT, config.cilium_namespace, config.cilium_pod_selector, config.cilium_container)]
    if config.envoy:
        out.append(Component(ENVOY, config.envoy_namespace or config.cilium_namespace, config.envoy_pod_selector,
                             config.envoy_container))
    return tuple(out)
