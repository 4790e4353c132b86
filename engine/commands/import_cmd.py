"""`burnrate import PATH...`: OpenSLO v1 and Sloth documents into a burnrate config.

Reads the files (every `.yaml`/`.yml` of a directory; several documents per file),
maps them with engine.core.importers, prints each warning as `file: $.path: message` on
stderr, checks the result as `burnrate check` does, and writes it to `--output` or
stdout. Exit 0 with a config that passes the checks, 1 when nothing usable maps (or the
result fails the checks: nothing is written then), 2 on a usage error (a missing file,
YAML that does not parse, a bad `--default-slo-period`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from engine.commands.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, print_error
from engine.commands.preflight import adapter_errors
from engine.core.config import config_errors, decode_config
from engine.core.durations import DURATION_PATTERN
from engine.core.importers import DEFAULT_PERIOD, Document, import_documents
from engine.core.importers.openslo import SHORT_WINDOW_ANNOTATION
from engine.errors import ConfigError

__all__ = ["add_arguments", "main", "read_documents", "render"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (
        "Turn OpenSLO v1 and Sloth SLO documents into a burnrate config that passes "
        "`burnrate check`.\n\n"
        "OpenSLO v1 (apiVersion: openslo/v1): Service, SLO, SLI, AlertPolicy, "
        "AlertCondition,\n  AlertNotificationTarget and DataSource objects, inline or "
        "referenced across files.\n"
        "  SLIs: metricSource type `burnrate` (spec: service, operation, sli, threshold_ms) "
        "maps\n  exactly; Prometheus ratio metrics map by their label matchers. Burn-rate "
        "AlertConditions\n  become policy rows (short window = lookbackWindow / 12, or the "
        f"`{SHORT_WINDOW_ANNOTATION}`\n  annotation).\n"
        "Sloth (version: prometheus/v1, or kind: PrometheusServiceLevel): events SLIs by "
        "their label\n  matchers, page/ticket alerts, the period from "
        "--default-slo-period.\n\n"
        "Whatever does not map exactly is a warning on stderr as `file: $.path: message`. "
        "Exit 0 with\na valid config, 1 when nothing usable maps or the result fails the "
        "checks, 2 on a usage\nerror (missing file, YAML that does not parse). The field "
        "mapping tables are in docs/import.md."
    )
    parser.epilog = "example: burnrate import slos/ --output burnrate.yaml"
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="YAML files, or directories of .yaml/.yml files"
    )
    parser.add_argument("-o", "--output", help="where to write the config (default: stdout)")
    parser.add_argument(
        "--default-slo-period",
        default=DEFAULT_PERIOD,
        metavar="DURATION",
        help=f"the period of Sloth SLOs, as Sloth's flag of that name (default {DEFAULT_PERIOD})",
    )


class UsageError(Exception):
    """A file that cannot be read or parsed: exit 2 with this message."""


def _files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for name in paths:
        p = Path(name)
        if p.is_dir():
            found = sorted(x for x in p.iterdir() if x.suffix in (".yaml", ".yml") and x.is_file())
            if not found:
                raise UsageError(f"no .yaml or .yml files in {p}")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise UsageError(f"no such file or directory: {p}")
    return out


def read_documents(paths: list[str]) -> list[Document]:
    """Every YAML document of the files (`$` when a file holds one, `$[i]` for several)."""
    docs: list[Document] = []
    for path in _files(paths):
        try:
            bodies = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise UsageError(f"{path}: not UTF-8 text") from None
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise UsageError(f"{path}: not valid YAML{at}: {problem}") from None
        several = len(bodies) > 1
        docs += [
            Document(str(path), f"$[{i}]" if several else "$", body)
            for i, body in enumerate(bodies)
            if body is not None
        ]
    return docs


def _plain(value: Any) -> Any:
    """YAML-safe values: times (YAML reads unquoted ones) as text."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def render(config: dict[str, Any], sources: list[str]) -> str:
    """The config as YAML, with a header naming what it was imported from."""
    body: str = yaml.safe_dump(_plain(config), sort_keys=False, allow_unicode=True, width=100)
    header = "# Imported by `burnrate import` from: " + ", ".join(sources) + "\n"
    header += "# Add kafka, receivers and the rest; validate with `burnrate check`.\n"
    return header + body


def main(args: argparse.Namespace) -> int:
    if not re.fullmatch(DURATION_PATTERN, args.default_slo_period):
        print_error("import", f"--default-slo-period: not a duration: {args.default_slo_period!r}")
        return EXIT_USAGE
    try:
        docs = read_documents(args.paths)
    except UsageError as exc:
        print_error("import", str(exc))
        return EXIT_USAGE
    result = import_documents(docs, period=args.default_slo_period)
    for note in result.notes:
        print(note, file=sys.stderr)
    if result.errors:
        for line in result.errors:
            print(f"burnrate import: the result fails the config checks: {line}", file=sys.stderr)
        return EXIT_FAILURE
    if not result.config["slos"]:
        print_error("import", "nothing usable maps (see the warnings above); no config written")
        return EXIT_FAILURE
    text = render(result.config, [str(p) for p in args.paths])
    problems = _check(text)
    if problems:
        for line in problems:
            print(f"burnrate import: the result fails the config checks: {line}", file=sys.stderr)
        return EXIT_FAILURE
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            print_error("import", f"cannot write {args.output}: {exc.strerror}")
            return EXIT_USAGE
    else:
        sys.stdout.write(text)
    slos = len(result.config["slos"])
    print(
        f"burnrate import: {slos} SLO{'s' if slos != 1 else ''} imported, "
        f"{len(result.notes)} warning{'s' if len(result.notes) != 1 else ''}",
        file=sys.stderr,
    )
    return EXIT_OK


def _check(text: str) -> list[str]:
    """What `burnrate check` would say of the written text (document and adapters)."""
    try:
        cfg = decode_config(text)
    except ConfigError as exc:
        return exc.errors
    return config_errors(cfg) + adapter_errors(cfg)
