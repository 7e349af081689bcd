"""Benchmarks: scripts that start every part as a real process and print figures (never timed assertions).

Run them from the repository root as modules, e.g. `python -m benchmarks.soak`, so `tests.support` imports.
"""
