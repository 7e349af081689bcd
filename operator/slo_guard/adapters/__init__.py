"""Implementations of the service's ports over Prometheus and the Kubernetes API."""
