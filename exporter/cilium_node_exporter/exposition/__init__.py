"""Exposition: Prometheus collectors and the HTTP server."""
