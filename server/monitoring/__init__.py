"""Monitoring: Prometheus metrics, and the health watch (workers, free space)."""
