"""`kubectl slo`: a kubectl plugin (the `kubectl-slo` console script) that lists, describes, overrides and gates
slo-guard's ServiceLevelObjectives from the API server alone."""

from slo_guard.kubectl_slo.command import main

__all__ = ["main"]
