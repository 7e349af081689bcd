import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import yaml


@pytest.fixture
def prometheus_parses(tmp_path: Path) -> Callable[[Sequence[str]], None]:
    """Assert that Prometheus's own parser (promtool check rules) accepts every query."""
    from tests.support.prometheus import prometheus_bin

    def check(queries: Sequence[str]) -> None:
        rules = [{"record": f"check:query{index}", "expr": query} for index, query in enumerate(queries)]
        rule_file = tmp_path / "rules.yml"
        rule_file.write_text(yaml.safe_dump({"groups": [{"name": "check", "rules": rules}]}), encoding="utf-8")
        result = subprocess.run(
            [str(prometheus_bin("promtool")), "check", "rules", str(rule_file)],
            capture_output=True,
            text=True,
            check=False,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert f"SUCCESS: {len(queries)} rules found" in output

    return check
