"""Use cases: evaluate an SLO against a metrics source, reconcile its targets, build its status."""
