"""A simulated Cilium node: a Hubble Observer gRPC server that behaves like each emulated Cilium release,
a kubelet, a Kubernetes API and an agent metrics endpoint, driven by scenario files.

A separate distribution from the exporter (the DaemonSet image does not carry it): demos, fire drills,
tests and benchmarks use it through ``cilium-node-exporter simulate``.
"""

__version__ = "0.1.0"
