"""Pure SLO math and policy: no I/O, no clients, no clocks.

- `model`, `evaluation_types`: the shared domain types.
- `durations`: Prometheus duration strings <-> whole seconds (`format_duration` gives the canonical keys).
- `selectors`: parse user selectors and re-render them safely; no user text reaches PromQL unparsed.
- `windows`: the SRE-workbook burn-rate tiers, scaled to any SLO window.
- `promql`: the exact queries sent to Prometheus (pinned by tests/golden/).
- `evaluation`: SLI, error budget, burn rates and the verdict, with missing data kept Unknown.
- `policy`: the error-budget policy as a pure function of the evaluation and the target's state.
- `gate`: whether rollouts gated on an SLO may go ahead, decided by the policy's own trigger and hysteresis.
- `display`: numbers as people read them (the budget as a signed percent).
- `timestamps`: RFC 3339 text for every moment slo-guard writes.
"""
