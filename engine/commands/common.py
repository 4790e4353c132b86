"""What every command shares: exit codes, error printing, stop signals, the event loop.

Exit codes are a contract (DESIGN section 6): 0 ok, 1 failure (a failing gate, a
broken audit chain, a run that could not do its work), 2 usage or config error, 3 a
service the command needs is unreachable. Every error is one clear line on stderr,
never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from engine.errors import ConfigError

log = logging.getLogger("burnrate.commands")

if TYPE_CHECKING:  # the config model imports numpy: not loaded for `burnrate --help`
    from engine.core.config import Config

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "events_file_or_exit",
    "file_progress",
    "load_config_or_exit",
    "print_config_error",
    "print_error",
    "run_loop",
    "stop_on_signals",
]

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNREACHABLE: Final = 3
EXIT_INTERRUPTED: Final = 130
"""128 + SIGINT, what shells report for a Ctrl-C."""

_T = TypeVar("_T")


def print_error(command: str, message: str) -> None:
    """One line on stderr: `burnrate COMMAND: message`."""
    print(f"burnrate {command}: {message}", file=sys.stderr)


def print_config_error(source: str, exc: ConfigError) -> None:
    """Each problem of a config on its own line, prefixed with where it came from."""
    for line in exc.errors:
        print(f"{source}: {line}", file=sys.stderr)


def load_config_or_exit(path: str) -> Config:
    """The config at `path`; on any problem, its lines on stderr and exit 2."""
    from engine.core.config import load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        print_config_error(path, exc)
        raise SystemExit(EXIT_USAGE) from None


def events_file_or_exit(command: str, path: str) -> Path:
    """`path` as the events file a command reads; when there is no such file, a
    `burnrate COMMAND:` line on stderr and exit 2."""
    events = Path(path)
    if not events.is_file():
        print_error(command, f"no such events file: {events}")
        raise SystemExit(EXIT_USAGE)
    return events


@contextlib.asynccontextmanager
async def stop_on_signals(
    stop: asyncio.Event, on_signal: Callable[[signal.Signals], None] | None = None
) -> AsyncIterator[asyncio.Event]:
    """Set `stop` on the first SIGINT or SIGTERM; a second one ends the process at once
    (the handler is removed, so the default action applies)."""
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []

    def request_stop(sig: signal.Signals) -> None:
        if on_signal is not None:
            on_signal(sig)
        stop.set()
        loop.remove_signal_handler(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, request_stop, sig)
            handled.append(sig)
    try:
        yield stop
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


def run_loop(main: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run `main()` to completion on uvloop when it is installed, else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


@contextlib.contextmanager
def file_progress(path: Path, label: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar over reading `path` while stderr is a terminal: yields the
    callback to give the byte position read so far, or None (no terminal, no bar)."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=os.path.getsize(path))
        yield lambda pos: bar.update(task, completed=pos)
