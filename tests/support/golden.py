"""Golden files: compare generated text with a checked-in file; `UPDATE_GOLDEN=1` rewrites it instead."""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"


def assert_matches_golden(name: str, expected: str) -> None:
    path = GOLDEN_DIR / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(expected, encoding="utf-8")
    assert path.exists(), f"{path} is missing; create it with UPDATE_GOLDEN=1"
    assert path.read_text(encoding="utf-8") == expected
