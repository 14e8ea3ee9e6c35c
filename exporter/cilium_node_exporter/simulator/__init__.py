"""The built-in simulator: a Hubble-compatible gRPC server, a kubelet, a Kubernetes API and an agent
metrics endpoint, driven by scenario files. Product code: demos, tests, benchmarks and fire drills use it."""
