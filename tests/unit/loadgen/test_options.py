"""The command-line spelling of a load spec: options in, the same LoadSpec out."""

from __future__ import annotations

import argparse
import math

import pytest

from engine.loadgen.options import add_load_arguments, spec_from_args
from engine.loadgen.spec import LoadSpec, parse_incident


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="burnrate produce")
    add_load_arguments(parser)
    return parser.parse_args(argv)


def test_the_defaults_are_the_load_spec_defaults() -> None:
    assert spec_from_args(parse([])) == LoadSpec()


def test_every_option_reaches_its_field() -> None:
    args = parse(
        [
            "--rate",
            "250.5",
            "--duration",
            "forever",
            "--services",
            "checkout,search",
            "--operations",
            "2",
            "--statuses",
            "grpc",
            "--error-ratio",
            "1%",
            "--latency-median-ms",
            "30",
            "--latency-p99-ms",
            "90",
            "--incident",
            "checkout:20%@1m:5m",
            "--incident",
            "latency=1s@2m",
            "--count",
            "3",
            "--label",
            "region=eu,us",
            "--label",
            "customer=2",
            "--seed",
            "7",
        ]
    )
    assert spec_from_args(args) == LoadSpec(
        rate_per_s=250.5,
        duration_s=math.inf,
        services=("checkout", "search"),
        operations_per_service=2,
        statuses="grpc",
        error_ratio=0.01,
        latency_median_ms=30.0,
        latency_p99_ms=90.0,
        incidents=(parse_incident("checkout:20%@1m:5m"), parse_incident("latency=1s@2m")),
        count=3,
        labels=(("region", ("eu", "us")), ("customer", ("customer-0", "customer-1"))),
        seed=7,
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--rate", "0"], "rate '0' must be a number > 0", id="a zero rate"),
        pytest.param(["--rate", "fast"], "rate 'fast' is not a number", id="a rate in words"),
        pytest.param(
            ["--rate", "1e12"],
            "rate '1e12' is more than 10,000,000 events per second",
            id="a rate no producer can send",
        ),
        pytest.param(["--duration", "0s"], "longer than 0s", id="an empty run"),
        pytest.param(["--services", "a,a"], "repeated: a", id="a repeated service"),
        pytest.param(["--seed", "-1"], "seed -1 must be between 0", id="a negative seed"),
        pytest.param(["--count", "1.5"], "is not a whole number", id="a fractional count"),
        pytest.param(["--label", "region"], "expected KEY=VALUE", id="a label without values"),
    ],
)
def test_a_bad_value_exits_2_saying_why(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_options_that_do_not_fit_together_are_a_value_error() -> None:
    args = parse(["--duration", "1m", "--incident", "20%@5m"])
    with pytest.raises(ValueError, match="starts after the end of the 1m run"):
        spec_from_args(args)
    args = parse(["--label", "region=eu", "--label", "region=us"])
    with pytest.raises(ValueError, match="repeated: region"):
        spec_from_args(args)


def test_the_rate_bound_is_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(["--help"])
    assert "at most 10,000,000" in " ".join(capsys.readouterr().out.split())
    assert spec_from_args(parse(["--rate", "1e7"])).rate_per_s == 10_000_000.0
