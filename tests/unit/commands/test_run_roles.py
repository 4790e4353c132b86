"""`burnrate run --role`: the flag, its default, and where each role goes."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "configs" / "example.yaml"


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


def test_the_default_role_is_the_single_process() -> None:
    args = build_parser().parse_args(["run", "--config", "c.yaml"])
    assert args.role == "all"
    assert args.worker_id is None
    assert args.ingest_at_least_once is False


@pytest.mark.parametrize("role", ["all", "ingest", "evaluate"])
def test_each_role_parses(role: str) -> None:
    args = build_parser().parse_args(["run", "--config", "c.yaml", "--role", role])
    assert args.role == role


def test_an_unknown_role_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["run", "--config", str(EXAMPLE), "--role", "both"]) == 2
    assert "invalid choice: 'both'" in capsys.readouterr().err


def test_help_names_the_roles_and_the_worker_id(capsys: pytest.CaptureFixture[str]) -> None:
    _run(["run", "--help"])
    out = capsys.readouterr().out
    assert "--role {all,ingest,evaluate}" in out
    assert "--worker-id" in out
    assert "--ingest-at-least-once" not in out  # benchmarks only


def test_a_bad_config_is_refused_before_any_role_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("slos:\n  - {name: a, service: s, sli: availability, objective: 150}\n")
    assert _run(["run", "--config", str(path), "--role", "ingest"]) == 2
    assert "objective" in capsys.readouterr().err
