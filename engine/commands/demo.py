"""`burnrate demo`: the whole pipeline on one machine, live in the terminal.

Starts an embedded Kafka-protocol broker (unless KAFKA_BOOTSTRAP_SERVERS is set),
creates a topic, produces synthetic traffic with an incident, runs the engine on the
bundled `engine/data/demo.yaml` and shows the SLOs, their burn rates and budgets and
the alerts as they fire and resolve. It ends by itself once the page has fired and resolved (or on
Ctrl-C), and leaves no process behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from engine.adapters.alerts.console import format_transition
from engine.adapters.kafka.embedded_broker import EMBEDDED_SESSION_TIMEOUT
from engine.adapters.kafka.settings import bootstrap_from_env
from engine.commands.common import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    print_config_error,
    print_error,
)
from engine.core.config import Config, load_config
from engine.core.durations import format_duration
from engine.core.evaluator import Transition
from engine.errors import BurnrateError, ConfigError
from engine.loadgen.options import argument_type
from engine.loadgen.spec import parse_incident, parse_rate

if TYPE_CHECKING:
    from engine.runtime.service import Runtime

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "data" / "demo.yaml"
"""Package data, so a wheel install finds it too."""
log = logging.getLogger("burnrate.commands.demo")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run the whole pipeline locally: an embedded Kafka-protocol broker (or the one in "
        "KAFKA_BOOTSTRAP_SERVERS), a producer with an incident, and the engine, shown live "
        "in the terminal and in its web UI (the URL is printed at the start). Ends once "
        "the page alert has fired and resolved, or on Ctrl-C."
    )
    parser.add_argument("--config", default=str(DEMO_CONFIG), help="config (default: %(default)s)")
    parser.add_argument(
        "--listen", default="127.0.0.1:0", help="HTTP address (default: a free port on loopback)"
    )
    parser.add_argument(
        "--rate", type=argument_type(parse_rate), default=200.0, help="events/s (default: 200)"
    )
    parser.add_argument(
        "--incident",
        type=argument_type(parse_incident),
        help="incident in the `burnrate produce` grammar (default: checkout:20%%@+40s:60s, "
        "with --quick checkout:15%%@+5s:2s)",
    )
    parser.add_argument(
        "--max-duration",
        type=float,
        help="stop after this many seconds even if the page has not resolved (default: 600, "
        "with --quick 120)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short incident right at the start: the page fires within seconds and "
        "resolves within about a minute (smoke tests)",
    )


@contextlib.contextmanager
def _broker() -> Iterator[tuple[str, bool]]:
    external = bootstrap_from_env()
    if external is not None:
        yield external, False
        return
    from engine.adapters.kafka.embedded_broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        yield broker.bootstrap_servers, True


def _view(
    config: Config, runtime: Runtime, started: float, url: str, notes: list[str], phase: str
) -> Group:
    ev = runtime.evaluator
    burn = ev.burn_rates()
    budget = ev.budget_remaining()
    windows = sorted({r.long_s for r in ev.rows} | {r.short_s for r in ev.rows})
    table = Table(title=f"Burnrate demo  {format_duration(round(time.time() - started))}  {phase}")
    table.add_column("SLO")
    table.add_column("objective", justify="right")
    table.add_column("events", justify="right")
    for w in windows:
        table.add_column(f"burn {format_duration(w)}", justify="right")
    table.add_column("budget left", justify="right")
    table.add_column("alerts")
    events = ev.counts().events_total
    firing_now = ev.alerts().firing
    for i, slo in enumerate(config.slos):
        cells: list[str | Text] = [slo.name, f"{slo.objective:g}%", f"{int(events[i]):,}"]
        for w in windows:
            b = float(burn[ev.window_index(w), i])
            cells.append("-" if math.isnan(b) else f"{b:.1f}x")
        left = float(budget[i])
        cells.append("no data" if math.isnan(left) else f"{100 * left:.1f}%")
        firing = [sev for j, sev in enumerate(ev.severities) if firing_now[i, j]]
        cells.append(
            Text(" ".join(s.upper() for s in firing), style="bold red")
            if firing
            else Text("ok", style="green")
        )
        table.add_row(*cells)
    lines = [Text(f"web UI: {url}/   metrics: {url}/metrics   Ctrl-C to stop", style="dim")]
    lines += [Text(n) for n in notes[-8:]]
    return Group(table, *lines)


async def _demo(args: argparse.Namespace, console: Console) -> int:
    from engine.adapters.kafka.embedded_broker import create_topic
    from engine.core.history import DEFAULT_TIERS, Tier
    from engine.loadgen.publish import produce
    from engine.loadgen.spec import LoadSpec
    from engine.runtime.service import Runtime

    config = load_config(args.config)
    # --quick: checkout fails 15% of requests for 2 s, 5 s in. demo.yaml's windows still
    # hold the whole run then, so they all burn at >= 25x right after it and the page
    # fires; its 20m/2m row (>= 6x) resolves once ~55 s of traffic dilute those failures.
    # A longer incident would keep that row firing until it left the 2m window.
    incident = args.incident or parse_incident(
        "checkout:15%@+5s:2s" if args.quick else "checkout:20%@+40s:60s"
    )
    max_duration_s = args.max_duration
    if max_duration_s is None:
        max_duration_s = 120.0 if args.quick else 600.0
    spec = LoadSpec(
        rate_per_s=args.rate,
        duration_s=math.inf,
        services=tuple(sorted({s.service for s in config.slos if s.service is not None})),
        error_ratio=0.0005,
        latency_median_ms=60.0,
        latency_p99_ms=180.0,
        incidents=(incident,),
        seed=int(time.time()),
    )
    stop = asyncio.Event()
    with _broker() as (bootstrap, embedded):
        topic = config.kafka.topics[0] if embedded else f"burnrate-demo-{uuid.uuid4().hex[:8]}"
        console.print(
            f"broker: {bootstrap} ({'embedded' if embedded else 'KAFKA_BOOTSTRAP_SERVERS'}), "
            f"topic: {topic}"
        )
        await create_topic(bootstrap, topic, 3)
        kafka = msgspec.structs.replace(
            config.kafka,
            bootstrap_servers=bootstrap,
            topics=[topic],
            group_id=f"{config.kafka.group_id}-{uuid.uuid4().hex[:8]}",
        )
        if embedded:
            kafka = msgspec.structs.replace(kafka, session_timeout=EMBEDDED_SESSION_TIMEOUT)
        config = msgspec.structs.replace(config, kafka=kafka, receivers=[])
        # The demo's windows are compressed to minutes, and so is the finest tier of its
        # history: a point every 5 s, so the web UI's charts show the incident.
        tiers = (Tier(5, 240), *DEFAULT_TIERS)
        runtime = Runtime(config, listen=args.listen, sinks=[], history_tiers=tiers)
        transitions: list[Transition] = []  # a demo's few alerts, for the screen
        runtime.subscribe(transitions.extend)
        run = asyncio.create_task(runtime.run(stop))
        await asyncio.wait(
            {run, asyncio.create_task(runtime.started.wait())},
            return_when=asyncio.FIRST_COMPLETED,
        )
        if run.done():
            run.result()
            return EXIT_FAILURE
        console.print(f"web UI: {runtime.http.url}/  (open it in a browser while the demo runs)")
        started = time.time()
        # A page before the incident (background errors in thin early windows) is not
        # the one the demo is about: only a resolve after the incident began ends it.
        incident_at = started + spec.incidents[0].start_s
        producer = asyncio.create_task(produce(bootstrap, topic, spec, stop=stop))
        notes: list[str] = []
        seen = 0
        resolved_at: float | None = None
        live = (
            Live(console=console, refresh_per_second=2, transient=False)
            if console.is_terminal
            else None
        )
        try:
            with live or contextlib.nullcontext():
                while not stop.is_set():
                    await asyncio.sleep(0.5)
                    for tr in transitions[seen:]:
                        notes.append(format_transition(tr))
                        if live is None:
                            console.print(notes[-1])
                    page = runtime.evaluator.severities.index("page")
                    if runtime.evaluator.alerts().firing[:, page].any():
                        resolved_at = None
                    elif resolved_at is None and any(
                        tr.severity == "page" and tr.state == "resolved" and tr.at > incident_at
                        for tr in transitions
                    ):
                        resolved_at = time.time()
                    seen = len(transitions)
                    elapsed = time.time() - started
                    waiting = time.time() < incident_at
                    phase = "waiting for the incident" if waiting else "incident under way"
                    if resolved_at is not None:
                        phase = "every page resolved: done"
                    if live is not None:
                        live.update(_view(config, runtime, started, runtime.http.url, notes, phase))
                    if producer.done() or run.done():
                        break
                    if resolved_at is not None and time.time() - resolved_at > 3:
                        break
                    if elapsed > max_duration_s:
                        console.print("max duration reached before the page resolved")
                        break
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError, BurnrateError):
                async with asyncio.timeout(15):
                    await producer
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(15):
                    await run
    if live is None:
        console.print(f"the web UI and metrics were at {runtime.http.url}/")
    pages = [tr.state for tr in transitions if tr.severity == "page"]
    console.print(f"page transitions: {', '.join(pages) or 'none'}")
    return EXIT_OK if resolved_at is not None else EXIT_FAILURE


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console = Console(stderr=False)
    try:
        return asyncio.run(_demo(args, console))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except ConfigError as exc:
        print_config_error(args.config, exc)
        return EXIT_USAGE
    except BurnrateError as exc:
        print_error("demo", str(exc))
        return EXIT_FAILURE
