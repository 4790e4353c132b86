"""The wheel works outside the checkout: build it, install it with the `embedded` extra in
a fresh venv, and run `burnrate` from another directory.

This catches what the editable install of the test venv hides: a module or the demo
config missing from the package data, an import of something only the checkout has.
It needs PyPI (the build backend and the dependencies); without it the test fails with
pip's own message, it is not skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from engine import __version__
from engine.adapters.http.ui import ASSETS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
"""The checkout: holds pyproject.toml."""
IGNORED = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
    ".kafka", "benchmarks",
)  # fmt: skip
"""Not part of the wheel; some are large (benchmark data) or stale (build/)."""
BUILD_TIMEOUT_S = 600.0
INSTALL_TIMEOUT_S = 900.0
COMMAND_TIMEOUT_S = 60.0
DEMO_TIMEOUT_S = 300.0
"""`demo --quick` takes about a minute; the rest is slack for a loaded CI machine."""


def _env() -> dict[str, str]:
    """This environment without what would point the child at the checkout or at a broker
    other than the wheel's embedded one."""
    drop = {"PYTHONPATH", "VIRTUAL_ENV", "KAFKA_BOOTSTRAP_SERVERS", "PYTHONHOME"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run(args: list[str | Path], cwd: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run to completion within `timeout_s`; fail with its output when it does not, or when
    it exits non-zero."""
    shown = " ".join(str(a) for a in args)
    try:
        proc = subprocess.run(
            [str(a) for a in args],
            cwd=cwd,
            env=_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        pytest.fail(
            f"`{shown}` did not finish within {timeout_s:.0f}s\n"
            f"--- stdout\n{out or ''}\n--- stderr\n{err or ''}"
        )
    if proc.returncode != 0:
        pytest.fail(
            f"`{shown}` exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n"
            f"{proc.stderr}"
        )
    return proc


def build_wheel(tmp_path: Path) -> Path:
    # From a copy: an in-place build reuses build/lib, where a module deleted from the
    # source lingers and lands in the wheel, and two runs at once would share it.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=IGNORED)
    wheels = tmp_path / "wheels"
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", wheels, source],
        tmp_path,
        BUILD_TIMEOUT_S,
    )
    built = sorted(wheels.glob("burnrate-*.whl"))
    assert len(built) == 1, f"expected one burnrate wheel in {wheels}, found {built}"
    return built[0]


def test_the_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
    ui = [f"engine/data/ui/{name}" for name in ("list.html", "slo.html", "login.html")]
    ui += [f"engine/data/ui/{name}" for name in ASSETS]
    for needed in ("engine/data/demo.yaml", "engine/py.typed", "engine/__main__.py", *ui):
        assert needed in names, f"{needed} missing from {wheel.name}"
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))], names

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], tmp_path, COMMAND_TIMEOUT_S)
    python, burnrate = venv / "bin" / "python", venv / "bin" / "burnrate"
    run(
        [python, "-m", "pip", "install", "-q", f"burnrate[embedded] @ {wheel.as_uri()}"],
        tmp_path,
        INSTALL_TIMEOUT_S,
    )
    elsewhere = tmp_path / "elsewhere"  # not the checkout: nothing importable from there
    elsewhere.mkdir()

    version = run([burnrate, "--version"], elsewhere, COMMAND_TIMEOUT_S)
    assert version.stdout.strip() == f"burnrate {__version__}"

    where = run(
        [python, "-c", "import engine, pathlib; print(pathlib.Path(engine.__file__).parent)"],
        elsewhere,
        COMMAND_TIMEOUT_S,
    )
    package = Path(where.stdout.strip())
    assert package.is_relative_to(venv), f"engine imported from {package}, not the wheel"
    demo_config = package / "data" / "demo.yaml"
    check = run([burnrate, "check", demo_config], elsewhere, COMMAND_TIMEOUT_S)
    assert check.stdout.startswith(f"{demo_config}: ok: "), check.stdout

    demo = run([burnrate, "demo", "--quick"], elsewhere, DEMO_TIMEOUT_S)
    report = f"--- stdout\n{demo.stdout}\n--- stderr\n{demo.stderr}"
    assert "(embedded)" in demo.stdout, report
    assert "web UI: http://127.0.0.1:" in demo.stdout, report
    last = demo.stdout.strip().splitlines()[-1]
    assert last.startswith("page transitions: firing"), report
    assert last.endswith("resolved"), report
