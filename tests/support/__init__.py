"""Test infrastructure shared by every test directory: real Prometheus, synthetic history, fault injection.

- `prometheus`: `prometheus_bin()`, `PrometheusServer` (the real binary on a free loopback port).
- `openmetrics`: exact counter/histogram history as OpenMetrics text; `backfill()` with promtool.
- `datasets`: the 30-day dataset (`NOW`, `EXPECTED`) and its session fixtures `dataset_storage`,
  `dataset_prometheus` (import them into a conftest.py to use them).
- `exporter`: `SyntheticService`, a live exporter whose traffic can change at run time.
- `faults`: `FaultProxy`, a loopback proxy that delays, fails and records requests.
"""
