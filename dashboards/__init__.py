"""Grafana dashboards as code (grafana-foundation-sdk, Grafana 11.6); see generate.py."""
