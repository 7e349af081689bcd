"""The Dockerfile, checked without a Docker engine: what it builds from, what it runs, as whom, with which pins.

tests/integration/test_wheel_install.py replays its install steps for real.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from slo_guard.config import OPERATOR_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CONSTRAINTS = "requirements/constraints.txt"
PINNED_BASE = re.compile(r"^python:(?P<python>3\.\d+)(?:\.\d+)?-slim-bookworm@sha256:[0-9a-f]{64}$")
BUILD_TOOLS = re.compile(r"\b(apt-get|apt|apk|gcc|g\+\+|make|build-essential|pip install|pip wheel)\b")


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    """Upper-cased, e.g. RUN."""
    arguments: str
    """Everything after the keyword, continuation lines joined."""


@dataclass(slots=True)
class Stage:
    base: str
    """The FROM image with build arguments substituted."""
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [item.arguments for item in self.instructions if item.keyword == keyword]

    def key_values(self, keyword: str) -> dict[str, str]:
        """ENV or LABEL pairs in the `key=value` form, quotes removed."""
        pairs: dict[str, str] = {}
        for arguments in self.all(keyword):
            for word in shlex.split(arguments):
                key, _, value = word.partition("=")
                pairs[key] = value
        return pairs


def _instructions(text: str) -> list[Instruction]:
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped[:-1].rstrip() + " " if stripped.endswith("\\") else stripped
        if not stripped.endswith("\\"):
            logical.append(pending)
            pending = ""
    result = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        result.append(Instruction(keyword.upper(), arguments.strip()))
    return result


def parse_dockerfile(text: str) -> list[Stage]:
    build_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in _instructions(text):
        if instruction.keyword == "ARG" and not stages:
            name, _, default = instruction.arguments.partition("=")
            build_args[name] = default
        elif instruction.keyword == "FROM":
            image, *alias = instruction.arguments.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: build_args[m.group(1) or m.group(2)], image)
            stages.append(Stage(base=base, name=alias[-1] if alias else None))
        elif stages:
            stages[-1].instructions.append(instruction)
    return stages


STAGES = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
BUILDER, FINAL = STAGES[0], STAGES[-1]
PROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _default(name: str) -> Any:
    return next(setting.default for setting in OPERATOR_SETTINGS if setting.name == name)


def test_parser_reads_continuations_args_and_aliases() -> None:
    stages = parse_dockerfile(
        'ARG BASE=img:1@sha256:ab\n# note\nFROM ${BASE} AS one\nRUN a \\\n    && b\nFROM $BASE\nENV A=1 B="x y"\n'
    )
    assert [(stage.base, stage.name) for stage in stages] == [("img:1@sha256:ab", "one"), ("img:1@sha256:ab", None)]
    assert stages[0].all("RUN") == ["a && b"]
    assert stages[1].key_values("ENV") == {"A": "1", "B": "x y"}


def test_is_multi_stage_from_one_base_pinned_by_version_and_digest() -> None:
    assert len(STAGES) >= 2
    python = PROJECT["requires-python"].removeprefix(">=")
    for stage in STAGES:
        match = PINNED_BASE.match(stage.base)
        assert match, f"FROM {stage.base} is not python:<version>-slim-bookworm@sha256:<digest>"
        assert match["python"] == python, f"image Python {match['python']}, project requires {python}"
    assert {stage.base for stage in STAGES} == {FINAL.base}, "the final stage must run on the image it was built on"


def test_final_stage_runs_as_numeric_non_root_user() -> None:
    users = FINAL.all("USER")
    assert users, "the final stage has no USER: it would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), f"USER {users[-1]}: a name cannot be checked by runAsNonRoot; use a number"
    assert int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)


def test_entrypoint_is_the_console_script_running_the_operator() -> None:
    entrypoints = FINAL.all("ENTRYPOINT")
    assert entrypoints, "no ENTRYPOINT"
    command = json.loads(entrypoints[-1])
    assert command == ["slo-guard", "run"]
    assert PROJECT["scripts"][command[0]] == "slo_guard.cli:main"


def test_dependencies_install_with_the_constraints_the_tests_use() -> None:
    installs = [run for run in BUILDER.all("RUN") if " install " in run]
    assert installs, "the builder installs nothing"
    for run in installs:
        assert f"-c {CONSTRAINTS}" in run, run
        assert "--no-cache-dir" in run, run
    assert any(CONSTRAINTS in copy.split() for copy in BUILDER.all("COPY")), f"{CONSTRAINTS} is not copied in"


def test_every_runtime_dependency_is_pinned_in_the_constraints() -> None:
    pins = {
        _canonical(line.split("==")[0]): line.split("==")[1]
        for line in (ROOT / CONSTRAINTS).read_text(encoding="utf-8").splitlines()
        if "==" in line and not line.startswith("#")
    }
    for requirement in PROJECT["dependencies"]:
        name = _canonical(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0])
        assert name in pins, f"{name} is not pinned in {CONSTRAINTS}: the image would float"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower().strip()


def test_final_stage_has_no_build_tools_and_no_pip_cache() -> None:
    for run in FINAL.all("RUN"):
        assert not BUILD_TOOLS.search(run), f"build tooling in the final stage: {run}"
    copies = FINAL.all("COPY")
    assert copies == ["--from=builder /opt/venv /opt/venv"], "the final stage copies more than the venv"
    assert all("--mount=type=cache" not in run for stage in STAGES for run in stage.all("RUN"))


def test_final_stage_suits_a_read_only_root_filesystem() -> None:
    env = FINAL.key_values("ENV")
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env["PATH"].startswith("/opt/venv/bin:"), "the console script must be found on PATH"


def test_exposes_the_health_and_metrics_port() -> None:
    assert FINAL.all("EXPOSE") == [str(_default("health_port"))]


def test_oci_labels_describe_this_release() -> None:
    labels = FINAL.key_values("LABEL")
    assert labels["org.opencontainers.image.title"] == PROJECT["name"]
    assert labels["org.opencontainers.image.version"] == PROJECT["version"]
    assert labels["org.opencontainers.image.licenses"] == PROJECT["license"]
    assert labels["org.opencontainers.image.description"]


@pytest.mark.parametrize("source", [source for copy in BUILDER.all("COPY") for source in copy.split()[:-1]])
def test_dockerignore_lets_every_copied_path_into_the_build_context(source: str) -> None:
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines() if not line.startswith("#")
    ]
    assert patterns[0] == "*", ".dockerignore should allow-list, so new top-level files stay out of the image"
    assert f"!{source}" in patterns, f"{source} is copied but excluded from the build context"
