"""The cilium-node-exporter alert rule pack and its generator (see generate.py)."""
