"""`burnrate dashboards --config C --output DIR`: Grafana dashboards for a config.

Writes the overview and one dashboard per SLO (engine.adapters.grafana.dashboards) as
Grafana's JSON model, one file each, ready for Grafana's file provisioning
(docker/grafana does that for docker/compose.yaml). Each file is written whole to a
temporary name and renamed, so a provisioning poller never reads half a dashboard.
Files that are not this config's (an SLO since removed) are named on stderr and left
alone.

Exit 0 written, 1 when `grafana-foundation-sdk` is not installed (the `dashboards`
extra), 2 on a config error, a bad `--datasource-uid` or an output directory that
cannot be written.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from engine.commands.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    load_config_or_exit,
    print_config_error,
    print_error,
)
from engine.core.config import Config
from engine.errors import ConfigError

__all__ = ["DEFAULT_DATASOURCE_UID", "add_arguments", "main", "render"]

DEFAULT_DATASOURCE_UID = "burnrate-prometheus"
"""The uid docker/grafana/provisioning/datasources/prometheus.yaml gives Prometheus."""
UID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,40}")
"""Grafana's data source uids: letters, digits, `-` and `_`, at most 40."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (
        "Write Grafana dashboards for a config's SLOs, built with grafana-foundation-sdk\n"
        "(the `dashboards` extra: pip install 'burnrate[dashboards]'), one JSON file each:\n\n"
        "  burnrate-overview.json    every SLO's error budget left, burn rate over a chosen\n"
        "                            window, alert state and traffic; a `service` variable\n"
        "                            picks the services whose SLOs are shown\n"
        "  burnrate-slo-NAME.json    per SLO: the long and short window of each policy row\n"
        "                            it is evaluated with against the row's factor (the\n"
        "                            alert fires while both reach it), budget left, time to\n"
        "                            exhaustion, events and bad events, alert state\n\n"
        "Both mark the changes of the services concerned (burnrate_changes_total) as\n"
        "annotations. The queries read the engine's /metrics as scraped by one Prometheus\n"
        "data source, named by its uid. Point Grafana's dashboard provisioning at DIR\n"
        "(docker/compose.yaml does, with docker/grafana/).\n\n"
        "Exit 0 written, 1 grafana-foundation-sdk missing, 2 config error, bad uid or an\n"
        "output directory that cannot be written. See docs/dashboards.md."
    )
    parser.epilog = "example: burnrate dashboards --config burnrate.yaml --output dashboards/"
    parser.add_argument(
        "--config", required=True, help="YAML (.yaml/.yml) or TOML (.toml) config file"
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="DIR",
        help="directory to write the dashboards to (created if missing)",
    )
    parser.add_argument(
        "--datasource-uid",
        default=DEFAULT_DATASOURCE_UID,
        metavar="UID",
        help="uid of the Prometheus data source that scrapes the engine "
        f"(default {DEFAULT_DATASOURCE_UID}, as docker/grafana provisions it)",
    )


def render(config: Config, datasource_uid: str) -> dict[str, str]:
    """File name -> JSON text of every dashboard of `config`.

    Raises ConfigError for a config the dashboards cannot be made from, ImportError
    without grafana-foundation-sdk (imported here, so other commands never load it)."""
    from engine.adapters.grafana.dashboards import build_dashboards, encode

    return {
        name: json.dumps(encode(board), indent=2, ensure_ascii=False) + "\n"
        for name, board in build_dashboards(config, datasource_uid).items()
    }


def _write(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        target = directory / name
        tmp = directory / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)


def main(args: argparse.Namespace) -> int:
    if not UID_PATTERN.fullmatch(args.datasource_uid):
        print_error(
            "dashboards",
            f"--datasource-uid: {args.datasource_uid!r} is not a Grafana uid "
            "(1-40 letters, digits, '-' or '_')",
        )
        return EXIT_USAGE
    config = load_config_or_exit(args.config)
    try:
        files = render(config, args.datasource_uid)
    except ImportError as exc:
        print_error(
            "dashboards",
            f"needs grafana-foundation-sdk ({exc.name or exc}): pip install 'burnrate[dashboards]'",
        )
        return EXIT_FAILURE
    except ConfigError as exc:
        print_config_error(args.config, exc)
        return EXIT_USAGE
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        print_error("dashboards", f"--output: {out} is not a directory")
        return EXIT_USAGE
    try:
        _write(out, files)
    except OSError as exc:
        print_error("dashboards", f"cannot write to {out}: {exc.strerror or exc}")
        return EXIT_USAGE
    others = sorted(
        p.name for p in out.glob("burnrate-*.json") if p.name not in files and p.is_file()
    )
    for name in others:
        print(
            f"burnrate dashboards: {out / name}: not a dashboard of this config (left as is)",
            file=sys.stderr,
        )
    print(
        f"burnrate dashboards: {len(files)} dashboards written to {out} "
        f"(overview and {len(files) - 1} SLO{'s' if len(files) != 2 else ''})",
        file=sys.stderr,
    )
    return EXIT_OK
