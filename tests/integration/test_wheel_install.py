"""The wheel, installed the way the Dockerfile installs it, into a fresh venv: what the image will contain.

Same steps as the Dockerfile's builder: `pip wheel --no-deps`, a venv without pip, `pip --python VENV install
--no-cache-dir -c requirements/constraints.txt WHEEL`. One difference, for speed: `--no-compile` (byte-compiling
the dependencies doubles the install time, ~8 s of ~16 s here, and changes no installed file's content).
`--no-cache-dir` stays as in the Dockerfile: here packages come from a local index that pip does not cache, so
the cache would save nothing (measured: 16.6 s without it, 16.3-18.4 s with it).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "requirements" / "constraints.txt"
PROJECT = "slo-guard"
INSTALL_TIMEOUT = 240


@dataclass(frozen=True, slots=True)
class Installed:
    wheel: Path
    venv: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A command from the venv, outside the checkout, so nothing can be imported from the source tree."""
        env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "VIRTUAL_ENV"}}
        return subprocess.run(
            [str(self.venv / "bin" / args[0]), *args[1:]],
            cwd=self.venv,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def _pip(*args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"pip {' '.join(args)} failed:\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel-install")
    _pip("wheel", "--no-cache-dir", "--no-deps", "--wheel-dir", str(base / "dist"), ".")
    (wheel,) = (base / "dist").glob("*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    _pip(
        "--python",
        str(venv / "bin" / "python"),
        "install",
        "--no-cache-dir",
        "--no-compile",
        "-c",
        str(CONSTRAINTS),
        str(wheel),
    )
    return Installed(wheel=wheel, venv=venv)


def test_wheel_ships_the_package_with_its_type_marker_and_nothing_else(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as archive:
        names = archive.namelist()
    assert "slo_guard/py.typed" in names
    assert "slo_guard/cli.py" in names
    strays = [name for name in names if not re.match(r"slo_guard(/|-[^/]+\.dist-info/)", name)]
    assert strays == [], f"the wheel carries files outside the package: {strays}"
    assert not [name for name in names if "tests/" in name or "/test_" in name]


def test_console_script_starts(installed: Installed) -> None:
    result = installed.run("slo-guard", "--help")
    assert result.returncode == 0, result.stderr
    assert "run" in result.stdout


def test_run_command_lists_the_prometheus_setting(installed: Installed) -> None:
    result = installed.run("slo-guard", "run", "--help")
    assert result.returncode == 0, result.stderr
    assert "--prometheus" in result.stdout
    assert "SLO_GUARD_PROMETHEUS_URL" in result.stdout


def test_every_module_imports_with_only_the_declared_dependencies(installed: Installed) -> None:
    """`run --help` does not load kopf; importing every module catches a dependency missing from pyproject.

    `__main__` is left out: importing it runs the command.
    """
    script = (
        "import importlib, pkgutil, slo_guard\n"
        "for module in pkgutil.walk_packages(slo_guard.__path__, 'slo_guard.'):\n"
        "    if not module.name.endswith('.__main__'):\n"
        "        importlib.import_module(module.name)\n"
        "print(slo_guard.__file__)\n"
    )
    result = installed.run("python", "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(installed.venv)), "imported from outside the fresh venv"


def test_every_installed_distribution_is_pinned_by_the_constraints(installed: Installed) -> None:
    """What the image installs is exactly what the tests ran with: no dependency floats."""
    listing = "import importlib.metadata as m, json; print(json.dumps({d.name: d.version for d in m.distributions()}))"
    result = installed.run("python", "-c", listing)
    assert result.returncode == 0, result.stderr
    versions = {_canonical(name): version for name, version in json.loads(result.stdout).items()}
    pins = {
        _canonical(name): version
        for name, _, version in (
            line.partition("==") for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines() if "==" in line
        )
    }
    unpinned = {name: version for name, version in versions.items() if name != PROJECT and pins.get(name) != version}
    assert unpinned == {}, f"installed but not pinned (or pinned to another version) in {CONSTRAINTS.name}"
    assert "pytest" not in versions, "a development dependency leaked into the runtime install"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower().strip()
