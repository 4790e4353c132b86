"""`burnrate import`: files in, a checked config out; warnings and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine.cli import main
from engine.core.config import load_config

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "import"


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


def test_writes_a_config_that_loads_and_prints_warnings_with_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "burnrate.yaml"
    code = _run(["import", str(DATA / "openslo"), str(DATA / "sloth"), "--output", str(out)])
    _, err = capsys.readouterr()
    assert code == 0, err
    cfg = load_config(out)
    assert len(cfg.slos) == 8
    lines = err.splitlines()
    assert lines[-1] == "burnrate import: 8 SLOs imported, 7 warnings"
    shared = DATA / "openslo" / "shared.yaml"
    assert f"{shared}: $[4].spec.condition.alertAfter: 5m is not mapped" in err
    assert all(line.startswith(str(DATA)) for line in lines[:-1])


def test_without_output_the_config_goes_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["import", str(DATA / "sloth" / "crd.yaml")]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("# Imported by `burnrate import` from: ")
    assert [s["name"] for s in yaml.safe_load(out)["slos"]] == ["ledger-availability"]
    assert err == "burnrate import: 1 SLO imported, 0 warnings\n"


def test_the_default_slo_period_applies_to_sloth(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["import", str(DATA / "sloth" / "crd.yaml"), "--default-slo-period", "28d"]
    assert _run(args) == 0
    out, _ = capsys.readouterr()
    assert yaml.safe_load(out)["slos"][0]["period"] == "28d"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "burnrate import: no such file or directory: {path}"),
        ("slos: [\n  - x\n", "burnrate import: {path}: not valid YAML (line 2, column 3): "),
        (b"\xff\xfe", "burnrate import: {path}: not UTF-8 text"),
    ],
)
def test_unreadable_input_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes | None, expected: str
) -> None:
    path = tmp_path / "in.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    assert _run(["import", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(expected.format(path=path)), err


def test_a_directory_without_yaml_and_a_bad_period_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(["import", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"burnrate import: no .yaml or .yml files in {tmp_path}\n"
    args = ["import", str(DATA / "sloth"), "--default-slo-period", "a month"]
    assert _run(args) == 2
    assert "--default-slo-period: not a duration: 'a month'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "note"),
    [
        (
            "apiVersion: openslo/v1\nkind: Dashboard\nmetadata: {name: d}\nspec: {}\n",
            "$.kind: unknown kind 'Dashboard'",
        ),
        (
            "apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: s}\nspec:\n  service: a\n"
            "  indicatorRef: gone\n  budgetingMethod: Occurrences\n"
            "  timeWindow: [{duration: 30d, isRolling: true}]\n  objectives: [{target: 0.99}]\n",
            "$.spec.indicatorRef: no SLI named 'gone' in the files read",
        ),
        ("apiVersion: v1\nkind: ConfigMap\n", "$: not an OpenSLO v1 or Sloth document"),
        ("apiVersion: openslo/v1alpha\nkind: SLO\n", "$.apiVersion: 'openslo/v1alpha': only"),
    ],
)
def test_nothing_usable_exits_1_with_the_reasons_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, note: str
) -> None:
    path = tmp_path / "in.yaml"
    path.write_text(content)
    out_file = tmp_path / "out.yaml"
    assert _run(["import", str(path), "--output", str(out_file)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert not out_file.exists()
    assert err.splitlines()[0].startswith(f"{path}: {note}"), err
    assert err.splitlines()[-1] == (
        "burnrate import: nothing usable maps (see the warnings above); no config written"
    )


def test_help_explains_the_formats_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["import", "--help"]) == 0
    out = capsys.readouterr().out
    for word in (
        "openslo/v1",
        "prometheus/v1",
        "PrometheusServiceLevel",
        "burnrate.dev/short-window",
        "--default-slo-period",
        "--output",
    ):
        assert word in out
