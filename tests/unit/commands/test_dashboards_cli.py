"""`burnrate dashboards` as a process: the files it writes (and that the committed
docker ones are what it writes now), its errors and exit codes, and what it imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCKER_CONFIG = ROOT / "docker" / "burnrate.yaml"
COMMITTED = ROOT / "docker" / "grafana" / "dashboards"


def burnrate(*argv: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m engine ARGV`, or `code` then `engine.cli.main(ARGV)`, from this tree."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = (
        [sys.executable, "-m", "engine", *argv]
        if code is None
        else [sys.executable, "-c", code, *argv]
    )
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)


def test_the_committed_docker_dashboards_are_what_the_command_writes_now(tmp_path: Path) -> None:
    """docker/grafana/dashboards cannot go stale: regenerate them with the command in
    docker/grafana/provisioning/dashboards/burnrate.yaml when this fails."""
    out = tmp_path / "out"
    run = burnrate("dashboards", "--config", str(DOCKER_CONFIG), "--output", str(out))
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    assert run.stderr.strip() == (
        f"burnrate dashboards: 5 dashboards written to {out} (overview and 4 SLOs)"
    )
    written = {p.name: p.read_text() for p in out.iterdir()}
    committed = {p.name: p.read_text() for p in COMMITTED.iterdir()}
    assert sorted(written) == [
        "burnrate-overview.json",
        "burnrate-slo-catalog-availability.json",
        "burnrate-slo-checkout-availability.json",
        "burnrate-slo-checkout-latency.json",
        "burnrate-slo-ledger-availability.json",
    ]
    assert written == committed


def test_the_datasource_uid_is_in_every_query(tmp_path: Path) -> None:
    run = burnrate(
        "dashboards", "--config", str(DOCKER_CONFIG), "-o", str(tmp_path), "--datasource-uid", "P1"
    )
    assert run.returncode == 0, run.stderr
    for path in tmp_path.glob("*.json"):
        board = json.loads(path.read_text())
        refs = [t["datasource"] for p in board["panels"] for t in p["targets"]]
        refs += [a["datasource"] for a in board["annotations"]["list"]]
        assert refs
        assert all(r == {"type": "prometheus", "uid": "P1"} for r in refs), path.name


def test_other_burnrate_files_in_the_directory_are_named_and_left_alone(tmp_path: Path) -> None:
    stale = tmp_path / "burnrate-slo-gone.json"
    stale.write_text("{}")
    run = burnrate("dashboards", "--config", str(DOCKER_CONFIG), "--output", str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert f"{stale}: not a dashboard of this config (left as is)" in run.stderr
    assert stale.read_text() == "{}"
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_bad_config_exits_2_with_its_paths(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("slos:\n  - {name: a, service: s, sli: availability, objective: 100}\n")
    run = burnrate("dashboards", "--config", str(cfg), "--output", str(tmp_path / "o"))
    assert run.returncode == 2
    assert run.stderr.startswith(f"{cfg}: $.slos[0].objective:")
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "o").exists()


def test_a_service_grafana_cannot_offer_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("slos:\n  - {name: a, service: 'x,y', sli: availability, objective: 99}\n")
    run = burnrate("dashboards", "--config", str(cfg), "--output", str(tmp_path / "o"))
    assert run.returncode == 2
    assert run.stderr.startswith(f"{cfg}: $.slos[0].service: 'x,y' cannot be a Grafana")


@pytest.mark.parametrize("uid", ["", "has space", "x" * 41, "a.b"])
def test_a_bad_datasource_uid_exits_2(tmp_path: Path, uid: str) -> None:
    run = burnrate(
        "dashboards", "--config", str(DOCKER_CONFIG), "-o", str(tmp_path), "--datasource-uid", uid
    )
    assert run.returncode == 2
    assert run.stderr.strip() == (
        f"burnrate dashboards: --datasource-uid: {uid!r} is not a Grafana uid "
        "(1-40 letters, digits, '-' or '_')"
    )


def test_an_output_that_is_no_directory_exits_2(tmp_path: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    run = burnrate("dashboards", "--config", str(DOCKER_CONFIG), "-o", str(afile))
    assert run.returncode == 2
    assert run.stderr.strip() == f"burnrate dashboards: --output: {afile} is not a directory"
    run = burnrate("dashboards", "--config", str(DOCKER_CONFIG), "-o", str(afile / "sub"))
    assert run.returncode == 2
    assert run.stderr.startswith(f"burnrate dashboards: cannot write to {afile / 'sub'}: ")
    assert afile.read_text() == "x"


def test_without_the_sdk_it_says_which_extra_to_install(tmp_path: Path) -> None:
    block = (
        "import sys\n"
        "class Block:\n"
        "    @staticmethod\n"
        "    def find_spec(name, path=None, target=None):\n"
        "        if name.partition('.')[0] == 'grafana_foundation_sdk':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block)\n"
        "from engine.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    run = burnrate(
        "dashboards", "--config", str(DOCKER_CONFIG), "-o", str(tmp_path / "o"), code=block
    )
    assert run.returncode == 1
    assert run.stderr.strip() == (
        "burnrate dashboards: needs grafana-foundation-sdk (grafana_foundation_sdk): "
        "pip install 'burnrate[dashboards]'"
    )


def test_only_the_dashboards_command_loads_the_sdk(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from engine.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "heavy = ('grafana_foundation_sdk', 'aiokafka', 'aiohttp', 'rich')\n"
        "print(code, sorted(m for m in heavy if m in sys.modules))\n"
    )
    check = burnrate("check", str(DOCKER_CONFIG), code=probe)
    assert check.stdout.splitlines()[-1] == "0 []", check.stderr
    dashboards = burnrate(
        "dashboards", "--config", str(DOCKER_CONFIG), "-o", str(tmp_path), code=probe
    )
    assert dashboards.stdout.splitlines()[-1] == "0 ['grafana_foundation_sdk']", dashboards.stderr


def test_help_explains_the_files_and_exit_codes() -> None:
    run = burnrate("dashboards", "--help")
    assert run.returncode == 0
    for words in (
        "burnrate-overview.json",
        "burnrate-slo-NAME.json",
        "burnrate_changes_total",
        "--datasource-uid UID",
        "pip install 'burnrate[dashboards]'",
        "Exit 0 written, 1 grafana-foundation-sdk missing, 2 config error",
    ):
        assert words in run.stdout, words
