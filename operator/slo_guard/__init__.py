"""slo-guard: enforce error-budget policies on Kubernetes workloads."""

__version__ = "0.1.0"
