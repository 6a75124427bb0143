"""Monitoring: Prometheus metrics."""
