"""Pure SLO math and policy: no I/O, no clients, no clocks."""
