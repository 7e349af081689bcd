"""`python -m slo_guard` is the same as the `slo-guard` command."""

import sys

from slo_guard.cli import main

sys.exit(main())
